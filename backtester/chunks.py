"""Split the traded bars into walk-forward chunks (quarter, month, week, year, N bars)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtester.errors import ConfigError

_PERIODS = {"quarter": "Q", "month": "M", "week": "W", "year": "Y"}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bars [start, stop) of the loaded range, traded as one walk-forward step."""

    index: int
    label: str
    start: int
    stop: int


def _label(period: pd.Period, kind: str) -> str:
    if kind == "quarter":
        return f"{period.year}Q{period.quarter}"
    if kind == "month":
        return period.strftime("%Y-%m")
    if kind == "week":
        iso = period.start_time.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return str(period.year)


def plan_chunks(times: np.ndarray, first: int, kind: str) -> list[Chunk]:
    """Plan chunks over bars [first, len(times)) of ``times`` (int64 ns UTC).

    ``kind`` is quarter, month, week, year, all (one chunk), or a positive number of bars.
    Calendar chunks follow UTC calendar boundaries; a chunk holds at least one bar.
    """
    n = len(times)
    if first >= n:
        raise ConfigError("run.chunk: there are no bars to trade in the requested range")
    if kind == "all":
        return [Chunk(0, "all", first, n)]
    if kind.isdigit():
        size = int(kind)
        if size <= 0:
            raise ConfigError(f"run.chunk must be a positive number of bars, was {kind!r}")
        starts = range(first, n, size)
        return [
            Chunk(i, f"bars {s - first}-{min(s + size, n) - first - 1}", s, min(s + size, n))
            for i, s in enumerate(starts)
        ]
    if kind not in _PERIODS:
        raise ConfigError(
            f"run.chunk must be quarter, month, week, year, all or a number of bars, was {kind!r}"
        )
    stamps = pd.DatetimeIndex(times[first:].astype("datetime64[ns]"))
    periods = stamps.to_period(_PERIODS[kind])
    codes = periods.asi8
    boundaries = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], boundaries]) + first
    stops = np.concatenate([boundaries + first, [n]])
    return [
        Chunk(i, _label(periods[s - first], kind), int(s), int(e))
        for i, (s, e) in enumerate(zip(starts, stops))
    ]
