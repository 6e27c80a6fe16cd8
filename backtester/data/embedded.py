"""What the embedded market offers: its symbols and its period, checked before a run asks
for bars it does not have (``generate_market`` itself accepts any name)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import pandas as pd

from backtester.data.generator import DEFAULT_SYMBOLS, GENERATOR_EPOCH
from backtester.errors import ConfigError

EMBEDDED_SYMBOLS = DEFAULT_SYMBOLS  # the symbols with documented, crypto-like profiles


def check_embedded_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """Return the symbols, refusing one the embedded market does not have."""
    names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    for name in names:
        if name not in EMBEDDED_SYMBOLS:
            close = difflib.get_close_matches(str(name), EMBEDDED_SYMBOLS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"symbol {name!r} is not in the embedded market; {hint}it has "
                f"{', '.join(EMBEDDED_SYMBOLS)}; choose among them or pass --data with bars "
                f"for {name}"
            )
    return names


def check_embedded_period(start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Refuse a period that begins before the embedded market does."""
    if start < GENERATOR_EPOCH:
        raise ConfigError(
            f"the embedded market covers {GENERATOR_EPOCH:%Y-%m-%d} on, the period starts "
            f"{start:%Y-%m-%d}; choose --year {GENERATOR_EPOCH.year} or later, or pass --data "
            "with bars for earlier dates"
        )
