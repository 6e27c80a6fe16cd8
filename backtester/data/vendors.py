"""Vendor table shapes made plain before validation: one time column, one volume column.

- an unnamed first column (a pandas-written index: ",Open,High,Low,Close,Volume", or a
  Parquet index) is the time;
- a unix column beside a date column (CryptoDataDownload: "unix,date,symbol,...") is the
  time, the date text is dropped;
- a date column and a time-of-day column (MetaTrader "<DATE>,<TIME>" with "2019.10.09" and
  "23:00"; Stooq "<DATE>,<TIME>" with 20191009 and 230000) are joined into one time;
- without a volume column, the first "Volume <asset>" (CryptoDataDownload) or a tick
  volume (MetaTrader "<TICKVOL>") is the volume;
- MetaTrader's "<SPREAD>" is in points, not price units: dropped, with a note.

Formats of the time values themselves are in ``backtester.data.times``.
"""

from __future__ import annotations

import re

import pandas as pd

from backtester.data.validate import COLUMN_ALIASES, normalize_header

JOINED_TIME = "date_time"
_UNNAMED = re.compile(r"^(Unnamed: 0|index|level_0)?$")
_UNIX = ("unix", "unix_timestamp")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_SECONDARY_VOLUME = ("tickvol", "tick_volume", "tickvolume")


def _keys(frame: pd.DataFrame) -> dict[str, str]:
    """Normalised header -> the first column with it."""
    keys: dict[str, str] = {}
    for column in frame.columns:
        keys.setdefault(normalize_header(column), str(column))
    return keys


def _is_clock(values: pd.Series, dates: pd.Series) -> bool:
    """A time-of-day column: "23:00", "23:00:00"; or Stooq's HHMMSS beside YYYYMMDD."""
    if pd.api.types.is_integer_dtype(values.dtype) and pd.api.types.is_integer_dtype(dates.dtype):
        return bool(values.between(0, 235959).all() and dates.between(1900_01_01, 2100_12_31).all())
    text = values.astype("string").str.strip()
    return bool(text.notna().all() and text.str.match(_CLOCK).all())


def _joined(dates: pd.Series, clock: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(clock.dtype):  # Stooq: 20191009 230000
        return dates.astype(str) + " " + clock.astype(str).str.zfill(6)
    return dates.astype("string").str.strip() + " " + clock.astype("string").str.strip()


def prepare_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The table with vendor columns made plain (see the module docstring), and notes."""
    notes: list[str] = []
    time_keys = set(COLUMN_ALIASES["time"]) | set(_UNIX)
    keys = _keys(frame)
    columns = [str(c) for c in frame.columns]
    if columns and _UNNAMED.match(columns[0]) and not time_keys & set(keys):
        frame = frame.rename(columns={frame.columns[0]: "time"})
        keys = _keys(frame)
    unix = next((keys[k] for k in _UNIX if k in keys), None)
    if unix is not None:
        others = [c for c in frame.columns
                  if normalize_header(c) in COLUMN_ALIASES["time"] and str(c) != unix]
        frame = frame.drop(columns=others)
        keys = _keys(frame)
    clock_key = next((k for k in ("time", "clock") if k in keys), None)
    if "date" in keys and clock_key is not None:
        date, clock = keys["date"], keys[clock_key]
        if _is_clock(frame[clock], frame[date]):
            joined = _joined(frame[date], frame[clock])
            frame = frame.drop(columns=[date, clock])
            frame.insert(0, JOINED_TIME, joined)
            keys = _keys(frame)
    if not set(COLUMN_ALIASES["volume"]) & set(keys):
        candidates = [k for k in keys if k.startswith("volume_")]
        candidates += [k for k in _SECONDARY_VOLUME if k in keys]
        if candidates:
            column = keys[candidates[0]]
            frame = frame.rename(columns={column: "volume"})
            notes.append(f"column '{column}' read as the volume")
    spread = [c for c in frame.columns if str(c).strip().upper() == "<SPREAD>"]
    if spread:
        frame = frame.drop(columns=spread)
        notes.append("ignored column '<SPREAD>' (MetaTrader spreads are in points, not price "
                     "units; add a spread column in price units to use spreads)")
    return frame, notes
