"""Rule strategies. Each module holds one strategy's config and class; every Strategy
subclass found in this package is registered under its ``name``."""

from __future__ import annotations

import importlib
import pkgutil

from strategies.base import Signals, Strategy, StrategyConfig


def _discover() -> dict[str, type[Strategy]]:
    registry: dict[str, type[Strategy]] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    for cls in Strategy.__subclasses__():
        registry[cls.name] = cls
    return registry


STRATEGY_REGISTRY: dict[str, type[Strategy]] = _discover()

__all__ = ["STRATEGY_REGISTRY", "Signals", "Strategy", "StrategyConfig"]
