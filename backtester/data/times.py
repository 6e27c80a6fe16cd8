"""Time columns to int64 ns UTC: ISO 8601, epoch numbers, YYYYMMDD integers and the date
formats vendors write (CryptoDataDownload, MetaTrader, Stooq, Dukascopy)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from backtester.data.validate import row_error, to_float
from backtester.errors import DataError

_FILL = "fill it in or drop that row"
# A UTC offset after a time of day: "09:30Z", "09:30:00-04:00", "0930+0100", "09:30 UTC".
_OFFSET = r"\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?|UTC|GMT)\s*$"
# Vendor formats pandas does not read by itself (or reads month first): tried, in order,
# when the first value matches the pattern and before pandas guesses.
VENDOR_TIME_FORMATS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), fmt) for pattern, fmt in (
        # CryptoDataDownload: 2019-10-09 11-PM
        (r"^\d{4}-\d{2}-\d{2} \d{1,2}-[AaPp][Mm]$", "%Y-%m-%d %I-%p"),
        # MetaTrader: 2019.10.09 23:00[:00], 2019.10.09
        (r"^\d{4}\.\d{2}\.\d{2} \d{1,2}:\d{2}:\d{2}$", "%Y.%m.%d %H:%M:%S"),
        (r"^\d{4}\.\d{2}\.\d{2} \d{1,2}:\d{2}$", "%Y.%m.%d %H:%M"),
        (r"^\d{4}\.\d{2}\.\d{2}$", "%Y.%m.%d"),
        # Dukascopy and European exports, day first: 09.10.2019 23:00:00.000
        (r"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}\.\d+$", "%d.%m.%Y %H:%M:%S.%f"),
        (r"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}$", "%d.%m.%Y %H:%M:%S"),
        (r"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}$", "%d.%m.%Y %H:%M"),
        (r"^\d{2}\.\d{2}\.\d{4}$", "%d.%m.%Y"),
        # Stooq date and time joined: 20191009 230000
        (r"^\d{8} \d{6}$", "%Y%m%d %H%M%S"),
    )
)
_GMT_OFFSET = re.compile(r"\s*GMT([+-])(\d{2}):?(\d{2})\s*$")


def _vendor_times(text: pd.Series) -> tuple[pd.DatetimeIndex, bool] | None:
    """(times, aware) read with the vendor format the first value matches, or None.

    A trailing "GMT+0200" (Dukascopy's local time) is an offset: such times are
    returned in UTC and ``aware`` is True; others are naive, tagged UTC.
    """
    parts = text.str.extract(_GMT_OFFSET)
    aware = bool(parts[0].notna().all())
    if aware:
        text = text.str.replace(_GMT_OFFSET, "", regex=True)
    first = str(text.iloc[0])
    for pattern, fmt in VENDOR_TIME_FORMATS:
        if not pattern.match(first):
            continue
        stamps = pd.to_datetime(text, format=fmt, errors="coerce")
        if stamps.notna().sum() <= 0.5 * len(stamps):
            return None
        if aware:
            sign = np.where(parts[0].to_numpy() == "-", -1, 1)
            minutes = parts[1].astype(int).to_numpy() * 60 + parts[2].astype(int).to_numpy()
            stamps = stamps - pd.to_timedelta(sign * minutes, unit="min")
        return pd.DatetimeIndex(stamps).tz_localize("UTC"), aware
    return None


def _epoch_unit(numbers: np.ndarray) -> str:
    """Unit of epoch times from their magnitude: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns."""
    magnitude = float(np.median(np.abs(numbers)))
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if magnitude < limit:
            return unit
    return "ns"


def _numeric_times(numbers: np.ndarray) -> np.ndarray:
    """Epoch seconds/ms/us/ns (int64 or float64), or YYYYMMDD integers, to int64 ns UTC."""
    integral = numbers.dtype.kind in "iu"
    if integral and numbers.min() >= 1900_01_01 and numbers.max() <= 2100_12_31:
        dates = pd.to_datetime(numbers.astype(str), format="%Y%m%d", errors="coerce")
        if not dates.isna().any():
            return dates.as_unit("ns").asi8.copy()
    scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[_epoch_unit(numbers)]
    if integral:
        return numbers.astype(np.int64) * scale
    return np.round(numbers * scale).astype(np.int64)


def _localize(naive: pd.DatetimeIndex, tz: str, source: str, column: str) -> pd.DatetimeIndex:
    try:
        return naive.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except Exception as e:
        raise DataError(
            f"{source}: a time in column '{column}' does not exist or is ambiguous in {tz} "
            f"(a daylight-saving change: {str(e).splitlines()[0]}); write times with UTC "
            "offsets or in UTC"
        ) from None


def parse_times(values: pd.Series, source: str, column: str, tz: str = "UTC") -> np.ndarray:
    """Return the time column as int64 ns UTC.

    Accepts ISO 8601 or other consistent date formats (with offsets: converted to UTC;
    naive: read in `tz`), datetime columns, and epoch numbers in s/ms/us/ns (unit from
    magnitude) or YYYYMMDD integers.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = pd.DatetimeIndex(values).tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = _localize(pd.DatetimeIndex(values), tz, source, column).tz_convert("UTC")
    else:
        stamps = None
    if stamps is not None:
        if stamps.isna().any():
            i = int(np.argmax(stamps.isna()))
            raise row_error(source, i + 1, None, f"{column} is empty", _FILL)
        return stamps.as_unit("ns").asi8.copy()
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return _numeric_times(values.to_numpy(dtype=np.int64))
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return _numeric_times(to_float(values, source, column, None))
    text = values.astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy()
    if empty.any():
        i = int(np.argmax(empty))
        raise row_error(source, i + 1, None, f"{column} is empty", _FILL)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        kind = np.int64 if pd.api.types.is_integer_dtype(numbers.dtype) else np.float64
        return _numeric_times(numbers.to_numpy(dtype=kind))
    vendor = _vendor_times(text)
    if vendor is not None:
        stamps, aware = vendor
    else:
        aware = False
        stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    if stamps.isna().any() and vendor is None:
        with warnings.catch_warnings():  # "could not infer format" when there is none
            warnings.simplefilter("ignore", UserWarning)
            inferred = pd.to_datetime(text, utc=True, errors="coerce")
        if inferred.isna().sum() < stamps.isna().sum():
            stamps = inferred
    if stamps.isna().any():
        i = int(np.argmax(stamps.isna().to_numpy()))
        raise row_error(
            source,
            i + 1,
            None,
            f"{column} {text.iloc[i]!r} is not a timestamp",
            "use ISO 8601 like 2025-01-03 04:00:00+00:00, one date format for the whole "
            "column, or epoch seconds",
        )
    stamps = pd.DatetimeIndex(stamps)
    if tz != "UTC" and not aware:
        naive = ~text.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool)
        if naive.any():
            local = _localize(stamps[naive].tz_localize(None), tz, source, column)
            ns = stamps.as_unit("ns").asi8.copy()
            ns[naive] = local.tz_convert("UTC").as_unit("ns").asi8
            return ns
    return stamps.as_unit("ns").asi8.copy()
