"""Checks on loaded bars: one-line DataError per problem (file, row, column, fix), gaps, info.

Row numbers are 1-based data rows as in the file: row 1 is the first line after the header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from backtester.data.bars import Bars
from backtester.data.resample import parse_timeframe
from backtester.errors import DataError

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "timestamp", "date", "datetime", "date_time", "open_time", "ts", "t",
             "gmt_time", "local_time", "unix", "unix_timestamp"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "symbol": ("symbol", "ticker"),
    "spread": ("spread", "bid_ask_spread", "ba_spread"),  # optional, in price units
}
REQUIRED_COLUMNS = ("time", "open", "high", "low", "close")
PRICE_COLUMNS = ("open", "high", "low", "close")
# Relative slack for high/low against open/close: real feeds round prices to float
# precision (1e-16 breaches are common); such bars are clipped, larger ones refused.
PRICE_TOLERANCE = 1e-9
_DAY_NS = 86_400 * 10**9
_HEADER_SEPARATORS = re.compile(r"[\s\-]+")


def normalize_header(name: object) -> str:
    """A header as matched against the aliases: lower case, spaces and hyphens as
    underscores, without a BOM, quotes or MetaTrader's angle brackets (<DATE> -> date)."""
    text = str(name).strip().lstrip("\ufeff").strip().strip("\"'").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return _HEADER_SEPARATORS.sub("_", text.lower())


def resolve_columns(columns: Sequence[object], source: str) -> dict[str, str]:
    """Map each canonical field (time, open, ..., volume, symbol, spread) to the file's column.

    Headers match in any case, with spaces or hyphens read as underscores; columns that
    match no alias ("Adj Close", "trades") are ignored.
    """
    found: dict[str, list[str]] = {}
    for column in columns:
        key = normalize_header(column)
        for field, aliases in COLUMN_ALIASES.items():
            if key in aliases:
                found.setdefault(field, []).append(str(column))
    for field, names in found.items():
        if len(names) > 1:
            listed = " and ".join(f"'{n}'" for n in names)
            raise DataError(
                f"{source}: columns {listed} both name the {field}; drop or rename all but one"
            )
    missing = [f for f in REQUIRED_COLUMNS if f not in found]
    if missing:
        have = ", ".join(str(c) for c in columns) or "none"
        quoted = ", ".join(f"'{f}'" for f in missing)
        fix = (
            f"rename a column to {missing[0]}"
            if len(missing) == 1
            else f"rename columns to {', '.join(missing)}"
        )
        plural = "s" if len(missing) > 1 else ""
        raise DataError(f"{source}: missing column{plural} {quoted} (columns are: {have}); {fix}")
    return {field: names[0] for field, names in found.items()}


def _when(time_ns: int | None) -> str:
    return "" if time_ns is None else f" ({pd.Timestamp(int(time_ns), tz='UTC')})"


def row_error(source: str, row: int, time_ns: int | None, problem: str, fix: str) -> DataError:
    """Return the one-line error for a data row: '<file>: row N (<time>): <problem>; <fix>'."""
    return DataError(f"{source}: row {int(row)}{_when(time_ns)}: {problem}; {fix}")


def _number(value: float) -> str:
    return f"{float(value):.10g}"


def check_not_empty(n_rows: int, source: str) -> None:
    """Refuse a file without data rows."""
    if n_rows == 0:
        raise DataError(f"{source}: the file has no data rows; add bars or remove the file")


def to_float(values: pd.Series, source: str, column: str, times: np.ndarray | None) -> np.ndarray:
    """Return a column as float64, refusing empty, NaN and non-numeric cells by row."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        text = None
    else:
        text = values.astype("string").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.argmax(bad))
        when = None if times is None else times[i]
        raw = None if text is None or pd.isna(text.iloc[i]) else str(text.iloc[i])
        if np.isinf(numbers[i]):
            problem = f"{column} is infinite"
        elif raw and raw.lower() != "nan":
            problem = f"{column} {raw!r} is not a number"
        else:
            problem = f"{column} is empty or NaN"
        raise row_error(source, i + 1, when, problem, "fill it in or drop that row")
    return numbers


def _first(bad: np.ndarray) -> int | None:
    return int(np.argmax(bad)) if bad.any() else None


def check_prices(
    source: str,
    names: dict[str, str],
    times: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Refuse non-positive prices, negative volume, high below low and high/low that do
    not contain open and close; return (high, low) with float-rounding breaches clipped.

    `names` maps the canonical field names to the file's column names (for messages).
    """

    def refuse(i: int, problem: str) -> DataError:
        return row_error(source, i + 1, times[i], problem, "fix or drop that row")

    for field, values in zip(PRICE_COLUMNS, (open_, high, low, close)):
        if (i := _first(values <= 0)) is not None:
            raise refuse(i, f"{names[field]} {_number(values[i])} is not positive")
    if volume is not None and (i := _first(volume < 0)) is not None:
        raise refuse(i, f"{names['volume']} {_number(volume[i])} is negative")
    if (i := _first(high < low - PRICE_TOLERANCE * high)) is not None:
        raise refuse(i, f"{names['high']} {_number(high[i])} is below "
                        f"{names['low']} {_number(low[i])}")
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    if (i := _first(high < top - PRICE_TOLERANCE * high)) is not None:
        field = names["open" if open_[i] >= close[i] else "close"]
        raise refuse(i, f"{names['high']} {_number(high[i])} is below {field} {_number(top[i])}")
    if (i := _first(low > bottom + PRICE_TOLERANCE * low)) is not None:
        field = names["open" if open_[i] <= close[i] else "close"]
        raise refuse(i, f"{names['low']} {_number(low[i])} is above {field} {_number(bottom[i])}")
    return np.maximum(high, top), np.minimum(low, bottom)


def check_spread(source: str, column: str, times: np.ndarray, spread: np.ndarray) -> None:
    """Refuse a negative bid-ask spread (price units, ask - bid) by row."""
    if (i := _first(spread < 0)) is not None:
        raise row_error(source, i + 1, times[i], f"{column} {_number(spread[i])} is negative",
                        "fix or drop that row")


def check_time_order(
    source: str, times: np.ndarray, rows: np.ndarray, column: str, symbol: str | None = None
) -> bool:
    """Refuse duplicate and unsorted times of one symbol (in file order); return True if
    the times are strictly decreasing (a newest-first file, to be reversed)."""
    if times.shape[0] < 2:
        return False
    step = np.diff(times)
    if (step > 0).all():
        return False
    if (step < 0).all():
        return True
    of = f" for {symbol}" if symbol is not None else ""
    order = np.argsort(times, kind="stable")
    same = np.flatnonzero(np.diff(times[order]) == 0)
    if same.shape[0]:
        later, earlier = order[same + 1], order[same]
        j = int(np.argmin(later))
        total = f", {same.shape[0]} duplicate times in all" if same.shape[0] > 1 else ""
        raise row_error(
            source,
            rows[later[j]],
            times[later[j]],
            f"duplicate time in column '{column}'{of} (also at row {rows[earlier[j]]}{total})",
            "drop one of the two rows, or keep one or their mean with --on-duplicate "
            "first|last|mean (data.on_duplicate in the config)",
        )
    direction = np.sign(step[0])
    k = int(np.argmax(np.sign(step) != direction))
    raise row_error(
        source,
        rows[k + 1],
        times[k + 1],
        f"time in column '{column}'{of} goes {'back' if direction > 0 else 'forward'} from "
        f"row {rows[k]} ({pd.Timestamp(int(times[k]), tz='UTC')})",
        "sort the file by time",
    )


def _is_continuous(times: np.ndarray) -> bool:
    """True for 24/7 data: bars fall on weekends about as often as on weekdays."""
    days = times // _DAY_NS
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    span = np.arange(days[0], days[-1] + 1)
    if not ((span + 3) % 7 >= 5).any():
        return True  # no weekend in the span: nothing tells sessions apart
    return float(np.mean(weekday >= 5)) >= 0.5 * 2 / 7


def find_gaps(bars: Bars) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Return (last bar before, first bar after) of each gap: spacing above 1.5 bars.

    For session data (few weekend bars) a break that starts or ends at a time of day
    where breaks recur (overnight, weekends, holidays, early closes, lunch) is normal; a
    break is reported when both its ends are at unusual times of day or it lasts longer
    than a long weekend. For daily or coarser session data only breaks longer than a long
    weekend (more than 3 days plus one bar) are reported.
    """
    if bars.n_bars < 2:
        return []
    step = int(parse_timeframe(bars.timeframe).value)
    times = bars.times
    spacing = np.diff(times)
    candidate = spacing > 1.5 * step
    if _is_continuous(times):
        gap = candidate
    else:
        long_break = spacing > max(1.5 * step, 3 * _DAY_NS + max(step, _DAY_NS))
        if step >= _DAY_NS:
            gap = long_break
        else:
            n_days = np.count_nonzero(np.diff(times // _DAY_NS)) + 1
            usual = np.zeros_like(candidate)
            for edge in (times[:-1] % _DAY_NS, times[1:] % _DAY_NS):
                values, counts = np.unique(edge[candidate], return_counts=True)
                usual |= np.isin(edge, values[counts >= max(3, 0.1 * n_days)])
            gap = candidate & (~usual | long_break)
    index = np.flatnonzero(gap)
    return [
        (pd.Timestamp(int(times[i]), tz="UTC"), pd.Timestamp(int(times[i + 1]), tz="UTC"))
        for i in index
    ]


def bars_info(bars: Bars) -> dict:
    """Summary for `bt data info`: symbols, first/last time (ISO), n_bars, timeframe,
    per-symbol min/max close and total volume, the gaps (count and first 10), and, only
    when the bars have a spread column, each symbol's mean spread (price units)."""
    gaps = find_gaps(bars)
    empty = bars.n_bars == 0
    info = {
        "symbols": list(bars.symbols),
        "first": None if empty else bars.index[0].isoformat(),
        "last": None if empty else bars.index[-1].isoformat(),
        "n_bars": bars.n_bars,
        "timeframe": bars.timeframe,
        "per_symbol": {
            symbol: {
                "min_close": None if empty else float(bars.close[:, j].min()),
                "max_close": None if empty else float(bars.close[:, j].max()),
                "total_volume": float(bars.volume[:, j].sum()),
            }
            for j, symbol in enumerate(bars.symbols)
        },
        "n_gaps": len(gaps),
        "gaps": [{"from": a.isoformat(), "to": b.isoformat()} for a, b in gaps[:10]],
    }
    if bars.spread is not None:
        info["mean_spread"] = {
            symbol: None if empty else float(bars.spread[:, j].mean())
            for j, symbol in enumerate(bars.symbols)
        }
    return info
