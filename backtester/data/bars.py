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
    """

    times: np.ndarray
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe: str = "1min"

    def __post_init__(self) -> None:
        n = self.times.shape[0]
        for name in FIELDS:
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
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.times.astype("datetime64[ns]"), tz="UTC")

    def slice(self, start: int, stop: int) -> Bars:
        """Return bars [start, stop) as a new Bars (views, no copy)."""
        return Bars(
            self.times[start:stop],
            self.symbols,
            *(getattr(self, f)[start:stop] for f in FIELDS),
            timeframe=self.timeframe,
        )

    def select(self, symbols: list[str] | tuple[str, ...]) -> Bars:
        """Return only the given symbols, in the given order."""
        cols = [self.symbols.index(s) for s in symbols]
        return Bars(
            self.times,
            tuple(symbols),
            *(np.ascontiguousarray(getattr(self, f)[:, cols]) for f in FIELDS),
            timeframe=self.timeframe,
        )

    def to_long_frame(self) -> pd.DataFrame:
        """Long format: one row per (time, symbol), columns time, symbol, open..volume."""
        n, a = self.n_bars, self.n_assets
        frame = pd.DataFrame(
            {
                "time": np.repeat(self.index, a),
                "symbol": np.tile(np.array(self.symbols, dtype=object), n),
            }
        )
        for f in FIELDS:
            frame[f] = getattr(self, f).reshape(-1)
        return frame
