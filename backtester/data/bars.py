"""The in-memory shape of market data: aligned bars x assets arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars of several assets on one shared, strictly increasing time axis.

    ``times`` holds int64 nanoseconds since the Unix epoch (UTC), shape (n_bars,).
    Each price/volume field is a C-contiguous float64 array of shape (n_bars, n_assets),
    column j belonging to ``symbols[j]``.

    ``spread`` is optional: the quoted bid-ask spread of each bar in price units (ask -
    bid, not a fraction of the price), float64 (n_bars, n_assets), >= 0; None when the
    data has no spread column (the embedded generator never has one). A resampled bar's
    spread is the mean of its bars' spreads; a filled missing bar repeats the previous one.
    """

    times: np.ndarray
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe: str = "1min"
    spread: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.times.shape[0]
        for name in FIELDS + (("spread",) if self.spread is not None else ()):
            arr = getattr(self, name)
            if arr.shape != (n, len(self.symbols)):
                raise ValueError(
                    f"Bars.{name} has shape {arr.shape}, was expected {(n, len(self.symbols))}"
                )

    @property
    def n_bars(self) -> int:
        return int(self.times.shape[0])

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    @property
    def has_spread(self) -> bool:
        """True when the bars carry a per-bar bid-ask spread from the data."""
        return self.spread is not None

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.times.astype("datetime64[ns]"), tz="UTC")

    def slice(self, start: int, stop: int) -> Bars:
        """Return bars [start, stop) as a new Bars (views, no copy)."""
        return Bars(
            self.times[start:stop],
            self.symbols,
            *(getattr(self, f)[start:stop] for f in FIELDS),
            timeframe=self.timeframe,
            spread=None if self.spread is None else self.spread[start:stop],
        )

    def select(self, symbols: list[str] | tuple[str, ...]) -> Bars:
        """Return only the given symbols, in the given order."""
        cols = [self.symbols.index(s) for s in symbols]
        return Bars(
            self.times,
            tuple(symbols),
            *(np.ascontiguousarray(getattr(self, f)[:, cols]) for f in FIELDS),
            timeframe=self.timeframe,
            spread=None if self.spread is None else np.ascontiguousarray(self.spread[:, cols]),
        )

    def to_long_frame(self) -> pd.DataFrame:
        """Long format: one row per (time, symbol), columns time, symbol, open..volume,
        and spread when the bars have one."""
        n, a = self.n_bars, self.n_assets
        frame = pd.DataFrame(
            {
                "time": np.repeat(self.index, a),
                "symbol": np.tile(np.array(self.symbols, dtype=object), n),
            }
        )
        for f in FIELDS:
            frame[f] = getattr(self, f).reshape(-1)
        if self.spread is not None:
            frame["spread"] = self.spread.reshape(-1)
        return frame
