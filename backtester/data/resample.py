"""The time axis: timestamps, timeframes, resampling to coarser bars, range selection."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from backtester.data.bars import FIELDS, Bars
from backtester.errors import ConfigError, DataError

_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "min", "t": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "wk": "W", "week": "W", "weeks": "W",
}  # fmt: skip
_UNIT_NS = {"s": 10**9, "min": 60 * 10**9, "h": 3600 * 10**9, "D": 86400 * 10**9}
_TIMEFRAME = re.compile(r"^\s*(\d*)\s*([A-Za-z]+)\s*$")


def to_utc(
    value: str | dt.datetime | pd.Timestamp | np.datetime64, field: str = "time"
) -> pd.Timestamp:
    """Return `value` as a UTC pd.Timestamp; naive values are taken to be UTC already."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ConfigError(
            f"{field} is not a timestamp, was {value!r}; use ISO 8601 like 2025-01-01 "
            "or 2025-01-01T09:30:00+00:00"
        )
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_timeframe(text: str) -> pd.Timedelta:
    """Parse a bar length such as "1min", "5m", "15min", "60min", "1h", "4H", "1d", "1w".

    Units are case-insensitive except "M", which is refused as ambiguous (minute or month).
    """
    match = _TIMEFRAME.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(2).lower()) if match else None
    count = int(match.group(1) or 1) if match else 0
    if match and match.group(2) == "M":
        raise ConfigError(
            f"timeframe {text!r} is ambiguous (minutes or months); write {count}min for minutes"
        )
    if unit is None or count <= 0:
        raise ConfigError(
            f"timeframe is not a bar length, was {text!r}; use a count and a unit like "
            "1min, 5min, 15min, 1h, 4h or 1d"
        )
    if unit == "W":
        return pd.Timedelta(days=7 * count)
    return pd.Timedelta(count * _UNIT_NS[unit], unit="ns")


def format_timeframe(length: pd.Timedelta) -> str:
    """Return the canonical name of a bar length: "1min", "5min", "1h", "4h", "1d", "90s"."""
    ns = int(pd.Timedelta(length).value)
    if ns <= 0:
        raise ConfigError(f"timeframe must be a positive length, was {length}")
    for unit, suffix in (("D", "d"), ("h", "h"), ("min", "min"), ("s", "s")):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{suffix}"
    return f"{ns}ns"


def infer_timeframe(times: np.ndarray) -> str:
    """Return the bar length of int64 ns times from the median spacing ("1min", "1h", "1d")."""
    times = np.asarray(times, dtype=np.int64)
    if times.shape[0] < 2:
        raise DataError(
            f"cannot infer the timeframe from {times.shape[0]} bar(s); provide at least two bars"
        )
    spacing = np.diff(times)
    spacing = spacing[spacing > 0]
    if spacing.shape[0] == 0:
        raise DataError(
            "cannot infer the timeframe: all bars share one time; check the time column"
        )
    median = int(np.median(spacing))
    # Snap to the nearest whole second so jittered feeds still read "1min", "1h".
    return format_timeframe(pd.Timedelta(max(1, round(median / 10**9)) * 10**9, unit="ns"))


def resample(bars: Bars, timeframe: str) -> Bars:
    """Aggregate bars to a coarser timeframe: first open, max high, min low, last close,
    summed volume, and (when the bars have one) the mean spread of the bin's bars.

    Bins are aligned to the Unix epoch (so a slice of the data resamples like the whole
    of it), labelled by their left edge and closed on the left; empty bins (sessions,
    weekends) are dropped. Equivalent to pandas
    ``frame.resample(timeframe, label="left", closed="left", origin="epoch").agg(...)``
    followed by dropping empty bins (the spread: ``.mean()`` of the spread column).
    """
    target = parse_timeframe(timeframe)
    source = parse_timeframe(bars.timeframe)
    if target < source:
        raise DataError(
            f"cannot resample {bars.timeframe} bars to the finer {timeframe}; choose a "
            f"timeframe of at least {bars.timeframe}"
        )
    if target == source:
        return bars
    target_ns, source_ns = int(target.value), int(source.value)
    if target_ns % source_ns:
        raise DataError(
            f"{timeframe} is not a whole multiple of the data's {bars.timeframe}; choose a "
            f"multiple of {bars.timeframe}"
        )
    name = format_timeframe(target)
    if bars.n_bars == 0:
        return Bars(bars.times, bars.symbols, *(getattr(bars, f) for f in FIELDS),
                    timeframe=name, spread=bars.spread)
    bins = bars.times // target_ns
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], bars.n_bars] - 1
    spread = None
    if bars.spread is not None:
        counts = (ends - starts + 1).astype(np.float64)[:, None]
        spread = np.add.reduceat(bars.spread, starts, axis=0) / counts
    return Bars(
        bins[starts] * target_ns,
        bars.symbols,
        np.ascontiguousarray(bars.open[starts]),
        np.maximum.reduceat(bars.high, starts, axis=0),
        np.minimum.reduceat(bars.low, starts, axis=0),
        np.ascontiguousarray(bars.close[ends]),
        np.add.reduceat(bars.volume, starts, axis=0),
        timeframe=name,
        spread=spread,
    )


def select_range(
    bars: Bars, start: pd.Timestamp, end: pd.Timestamp, warmup_bars: int, source: str
) -> tuple[Bars, int]:
    """Return bars from up to `warmup_bars` bars before `start` to the last bar before
    `end`, and the index in them of the first bar at or after `start`."""
    if warmup_bars < 0:
        raise ConfigError(f"warmup_bars must be 0 or more, was {warmup_bars}")
    start_ts, end_ts = to_utc(start, "start"), to_utc(end, "end")
    first = int(np.searchsorted(bars.times, start_ts.value, side="left"))
    stop = int(np.searchsorted(bars.times, end_ts.value, side="left"))
    if stop <= first:
        covers = (
            f"the data covers {bars.index[0]} to {bars.index[-1]}"
            if bars.n_bars
            else "the data has no bars"
        )
        raise DataError(
            f"{source}: no bars between {start_ts} and {end_ts}; {covers}; "
            "choose --year/--start/--end inside it"
        )
    begin = max(0, first - warmup_bars)
    return bars.slice(begin, stop), first - begin
