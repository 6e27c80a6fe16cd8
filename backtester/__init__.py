"""bt: a chunked, memory-learning backtester for ensembles of models, LLMs and rules.

A notebook needs a handful of names::

    import backtester as bt

    result = bt.run(year=2025, chunk="month")      # the embedded market, learning on
    result.metrics["sharpe"], result.chunks, result.trades, result.equity, result.books
    result.report()                                # runs/<run id>/report.html
    bt.open_run("runs/<run id>")                   # a run folder, read-only
    bt.open_memory("data/memory").search("stopped out in a volatile market")

Names load on first use, so ``import backtester`` stays fast (no pandas, Numba or torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from backtester import _kernel_cache
from backtester.errors import BtError, ConfigError, DataError, MemoryStoreError, ProviderError

_kernel_cache.refresh()  # before any kernel loads from Numba's on-disk cache

if TYPE_CHECKING:
    from backtester.api import Memory, Result, configure, open_memory, open_run, run
    from backtester.config import Config, load_config

__all__ = [
    "BtError",
    "Config",
    "ConfigError",
    "DataError",
    "Memory",
    "MemoryStoreError",
    "ProviderError",
    "Result",
    "__version__",
    "configure",
    "load_config",
    "open_memory",
    "open_run",
    "run",
]

_LAZY = {
    "Memory": "backtester.api",
    "Result": "backtester.api",
    "configure": "backtester.api",
    "open_memory": "backtester.api",
    "open_run": "backtester.api",
    "run": "backtester.api",
    "Config": "backtester.config",
    "load_config": "backtester.config",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("bt")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0+unknown"
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'backtester' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
