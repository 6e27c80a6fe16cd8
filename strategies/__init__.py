"""Rule strategies. Each module holds one strategy's config and class; every Strategy
subclass found in this package is registered under its ``name``.

`STRATEGY_REGISTRY` holds the built-in strategies only (iterating it lists them); looking
a name up also finds a plugin strategy loaded from a config (``class = "module:Class"``)
or from the ``bt.strategies`` entry-point group (see backtester/plugins.py).
"""

from __future__ import annotations

import importlib
import pkgutil

from strategies.base import Signals, Strategy, StrategyConfig


class StrategyRegistry(dict[str, type[Strategy]]):
    """Built-in strategies by name; ``registry[name]`` falls back to loaded plugins."""

    def __missing__(self, name: str) -> type[Strategy]:
        from backtester.plugins import loaded_strategy

        cls = loaded_strategy(name)
        if cls is None:
            raise KeyError(name)
        return cls


def _discover() -> StrategyRegistry:
    registry = StrategyRegistry()
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    for cls in Strategy.__subclasses__():
        if cls.__module__.startswith(f"{__name__}."):  # a user's subclass is a plugin
            registry[cls.name] = cls
    return registry


STRATEGY_REGISTRY: StrategyRegistry = _discover()

__all__ = ["STRATEGY_REGISTRY", "Signals", "Strategy", "StrategyConfig", "StrategyRegistry"]
