"""Decision providers: anything that votes on candidate entries.

A provider kind is one module of this package that declares ``KIND`` (the name used in
``[providers.<name>] kind = ...``), ``CONFIG_CLASS`` and ``PROVIDER_CLASS``; it is found by
``provider_kinds`` without being listed anywhere else. Rule strategies (strategies/) are
providers too.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from backtester.providers.base import Candidates, MarketContext, Provider, Votes


@functools.cache
def provider_kinds() -> dict[str, ModuleType]:
    """kind -> module, for every module here that declares KIND (importing one loads no
    model library: scikit-learn and torch load when a model first trains)."""
    kinds = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "KIND"):
            kinds[module.KIND] = module
    return kinds


def provider_kind(config: Any) -> str:
    """The kind of a provider config object."""
    return next(kind for kind, module in provider_kinds().items()
                if isinstance(config, module.CONFIG_CLASS))


def build_provider(config: Any, *, cache_dir: Path) -> Provider:
    """The provider a [providers.<name>] config describes; a provider whose class takes a
    ``cache_dir`` (LLMs, for their response cache) gets one."""
    cls = provider_kinds()[provider_kind(config)].PROVIDER_CLASS
    if "cache_dir" in inspect.signature(cls).parameters:
        return cls(config, cache_dir=cache_dir)
    return cls(config)


__all__ = ["Candidates", "MarketContext", "Provider", "Votes", "build_provider",
           "provider_kind", "provider_kinds"]
