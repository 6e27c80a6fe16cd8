"""Read bars from CSV or Parquet files (one per symbol, or long with a symbol column)
into aligned Bars, and write Bars back in the long format."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from backtester.data.bars import FIELDS, Bars
from backtester.data.resample import infer_timeframe
from backtester.data.validate import (
    PRICE_COLUMNS,
    check_not_empty,
    check_prices,
    check_spread,
    check_time_order,
    resolve_columns,
    row_error,
    to_float,
)
from backtester.errors import ConfigError, DataError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip", ".zst")
_FILL = "fill it in or drop that row"
# A UTC offset after a time of day: "09:30Z", "09:30:00-04:00", "0930+0100", "09:30 UTC".
_OFFSET = r"\d{2}:?\d{2}(?::?\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?|UTC|GMT)\s*$"


@dataclass(frozen=True, slots=True)
class _Series:
    """One symbol's bars as read from one file, sorted oldest first."""

    source: str
    times: np.ndarray
    values: tuple[np.ndarray, ...]  # open, high, low, close, volume
    has_volume: bool
    spread: np.ndarray | None = None  # bid-ask spread in price units, when the file has it


def _kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in CSV_SUFFIXES:
        return "csv"
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    return None


def _stem(path: Path) -> str:
    """File name without its data and compression suffixes: BRK.B.csv.gz -> BRK.B."""
    name = path.name
    lowered = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _data_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; check the --data path")
    if path.is_file():
        if _kind(path) is None:
            raise DataError(f"{path}: not a .csv or .parquet file; convert it or rename it")
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p) is not None)
    if not files:
        raise DataError(f"{path}: the folder has no .csv or .parquet files; add bar files")
    return files


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if _kind(path) == "parquet":
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()
            return frame
        return pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; add a header and bars or remove it") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{path}: cannot be read as {_kind(path)} ({detail}); check that the file is "
            "intact and in that format"
        ) from None


def _check_tz(tz: str | None) -> str:
    if tz is None:
        return "UTC"
    try:
        pd.Timestamp("2020-01-01").tz_localize(tz)
    except Exception:
        raise ConfigError(
            f"tz is not a known time zone, was {tz!r}; use an IANA name like "
            "'America/New_York' or 'UTC'"
        ) from None
    return tz


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
    stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    if stamps.isna().any():
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
    if tz != "UTC":
        naive = ~text.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool)
        if naive.any():
            local = _localize(stamps[naive].tz_localize(None), tz, source, column)
            ns = stamps.as_unit("ns").asi8.copy()
            ns[naive] = local.tz_convert("UTC").as_unit("ns").asi8
            return ns
    return stamps.as_unit("ns").asi8.copy()


def _read_file(path: Path, tz: str) -> list[tuple[str, _Series]]:
    """Read, validate and split one file into per-symbol series, oldest bar first."""
    return _frame_series(_read_table(path), str(path), tz, _stem(path))


def _frame_series(frame: pd.DataFrame, source: str, tz: str,
                  default_symbol: str) -> list[tuple[str, _Series]]:
    """Validate and split one table (a file's, or a caller's DataFrame) into per-symbol
    series, oldest bar first; without a symbol column it holds ``default_symbol``."""
    names = resolve_columns(list(frame.columns), source)
    check_not_empty(len(frame), source)
    times = parse_times(frame[names["time"]], source, names["time"], tz)
    open_, high, low, close = (
        to_float(frame[names[f]], source, names[f], times) for f in PRICE_COLUMNS
    )
    if "volume" in names:
        volume = to_float(frame[names["volume"]], source, names["volume"], times)
    else:
        volume = np.zeros(len(frame))
    high, low = check_prices(
        source, names, times, open_, high, low, close, volume if "volume" in names else None
    )
    spread = None
    if "spread" in names:
        spread = to_float(frame[names["spread"]], source, names["spread"], times)
        check_spread(source, names["spread"], times, spread)
    rows = np.arange(1, len(frame) + 1)
    if "symbol" in names:
        symbol_text = frame[names["symbol"]].astype("string").str.strip()
        blank = (symbol_text.isna() | (symbol_text == "")).to_numpy()
        if blank.any():
            i = int(np.argmax(blank))
            raise row_error(source, i + 1, times[i], f"{names['symbol']} is empty", _FILL)
        codes, symbols = pd.factorize(symbol_text)
        groups = [(str(s), np.flatnonzero(codes == k)) for k, s in enumerate(symbols)]
    else:
        groups = [(default_symbol, rows - 1)]
    result = []
    for symbol, index in groups:
        label = symbol if "symbol" in names else None
        if check_time_order(source, times[index], rows[index], names["time"], label):
            index = index[::-1]
        values = tuple(np.ascontiguousarray(a[index]) for a in (open_, high, low, close, volume))
        spreads = None if spread is None else np.ascontiguousarray(spread[index])
        result.append((symbol, _Series(source, times[index], values, "volume" in names, spreads)))
    return result


def _align(symbols: list[str], series: dict[str, _Series]) -> tuple[Bars, list[str]]:
    """Put the symbols on the union of their times, starting when the last one starts;
    missing bars become flat bars at the previous close with volume 0 (and the previous
    bar's spread, when the series have spreads: all or none of them, see _assemble)."""
    notes = []
    start = max(series[s].times[0] for s in symbols)
    late = max(symbols, key=lambda s: series[s].times[0])
    trimmed = {s: int(np.searchsorted(series[s].times, start, side="left")) for s in symbols}
    dropped = {s: n for s, n in trimmed.items() if n}
    if dropped:
        counts = ", ".join(f"{s}: {n}" for s, n in dropped.items())
        notes.append(
            f"dropped {sum(dropped.values())} leading bars ({counts}) before "
            f"{pd.Timestamp(int(start), tz='UTC')}, when {late} starts, so all symbols "
            "start together"
        )
    union = np.sort(np.concatenate([series[s].times[trimmed[s] :] for s in symbols]))
    union = union[np.r_[True, union[1:] != union[:-1]]]
    n = union.shape[0]
    fields = [np.empty((n, len(symbols))) for _ in FIELDS]
    with_spread = series[symbols[0]].spread is not None
    spread = np.empty((n, len(symbols))) if with_spread else None
    filled = {}
    for j, s in enumerate(symbols):
        data, first = series[s], trimmed[s]
        position = np.searchsorted(union, data.times[first:])
        present = np.zeros(n, dtype=bool)
        present[position] = True
        for target, values in zip(fields, data.values):
            target[:, j] = np.nan
            target[position, j] = values[first:]
        if spread is not None:
            spread[:, j] = np.nan
            spread[position, j] = data.spread[first:]
        if present.all():
            continue
        filled[s] = int(n - present.sum())
        last = np.maximum.accumulate(np.where(present, np.arange(n), -1))
        before = data.values[3][first - 1] if first else np.nan
        previous_close = np.where(last >= 0, fields[3][np.maximum(last, 0), j], before)
        missing = ~present
        for target in fields[:4]:
            target[missing, j] = previous_close[missing]
        fields[4][missing, j] = 0.0
        if spread is not None:
            before = data.spread[first - 1] if first else np.nan
            previous = np.where(last >= 0, spread[np.maximum(last, 0), j], before)
            spread[missing, j] = previous[missing]
    if filled:
        counts = ", ".join(f"{s}: {k}" for s, k in filled.items())
        notes.append(
            f"filled {sum(filled.values())} missing bars ({counts}) with flat bars at the "
            "previous close and volume 0"
        )
    timeframe = infer_timeframe(union)
    return Bars(union, tuple(symbols), *fields, timeframe=timeframe, spread=spread), notes


def load_bars(
    path: str | Path,
    *,
    symbols: Sequence[str] | None = None,
    tz: str | None = None,
) -> Bars:
    """Load bars from a CSV or Parquet file, or a folder of them.

    Parameters
    ----------
    path : str or Path
        A file, or a folder whose .csv/.parquet files are read. Files without a symbol
        (or ticker) column hold one symbol named after the file (AAPL.csv -> AAPL).
    symbols : sequence of str, optional
        Keep only these symbols, in this order.
    tz : str, optional
        Time zone of naive timestamps (default UTC). Times are returned in UTC.

    An optional spread column (spread, bid_ask_spread or ba_spread: the bid-ask spread in
    price units, >= 0) becomes ``Bars.spread``; it must be in every file or in none.

    Warns (UserWarning) about a missing volume column, trimmed leading bars and filled
    missing bars; raises DataError naming the file, row and column for invalid data.
    """
    path = Path(path)
    zone = _check_tz(tz)
    series: dict[str, _Series] = {}
    for file in _data_files(path):
        for symbol, data in _read_file(file, zone):
            if symbol in series:
                raise DataError(
                    f"{file}: symbol {symbol} is also in {series[symbol].source}; keep each "
                    "symbol in one file"
                )
            series[symbol] = data
    return _assemble(series, str(path), symbols)


def bars_from_frame(
    frame: pd.DataFrame,
    *,
    symbols: Sequence[str] | None = None,
    tz: str | None = None,
    source: str = "DataFrame",
    default_symbol: str = "ASSET",
) -> Bars:
    """Build bars from a long table already in memory, checked exactly like a file.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns time (or a DatetimeIndex), open, high, low, close, optional volume,
        optional symbol and optional spread, as in a CSV file ``load_bars`` reads.
    symbols : sequence of str, optional
        Keep only these symbols, in this order.
    tz : str, optional
        Time zone of naive timestamps (default UTC).
    source : str
        What error messages and warnings call the table.
    default_symbol : str
        The symbol of a table without a symbol column.

    Returns
    -------
    Bars
        The symbols aligned on one time axis, as ``load_bars`` returns them.
    """
    zone = _check_tz(tz)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.rename_axis(frame.index.name or "time").reset_index()
    series: dict[str, _Series] = {}
    for symbol, data in _frame_series(frame, source, zone, default_symbol):
        series[symbol] = data
    return _assemble(series, source, symbols)


def _assemble(series: dict[str, _Series], path: str,
              symbols: Sequence[str] | None) -> Bars:
    """Select the requested symbols, warn about missing volume, align them."""
    names = list(series)
    if symbols is not None:
        requested = [symbols] if isinstance(symbols, str) else list(symbols)
        if not requested:
            raise ConfigError("symbols is empty; name at least one symbol or leave it out")
        unknown = [s for s in requested if s not in series]
        if unknown:
            raise DataError(
                f"{path}: symbol {unknown[0]!r} is not in the data; available: "
                f"{', '.join(names)}; choose among them"
            )
        if len(set(requested)) < len(requested):
            raise ConfigError(f"symbols lists a symbol twice, was {requested}; name each once")
        names = requested
    no_volume = dict.fromkeys(series[s].source for s in names if not series[s].has_volume)
    for source in no_volume:
        warnings.warn(
            f"{source}: no volume column; volume set to 0 (add a volume column to use volume)",
            stacklevel=3,
        )
    with_spread = [s for s in names if series[s].spread is not None]
    if with_spread and len(with_spread) < len(names):
        lacking = next(series[s].source for s in names if series[s].spread is None)
        raise DataError(
            f"{lacking}: no spread column, but {series[with_spread[0]].source} has one; "
            "add a spread column to every file or remove it from all"
        )
    bars, notes = _align(names, series)
    for note in notes:
        warnings.warn(f"{path}: {note}", stacklevel=3)
    return bars


def _long_table(bars: Bars, text_times: bool) -> pa.Table:
    """Bars as one row per (time, symbol); times as ISO text ending in Z if asked."""
    n, a = bars.n_bars, bars.n_assets
    times = pa.array(np.repeat(bars.times, a), pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    if text_times:
        if not (bars.times % 10**9).any():
            times = times.cast(pa.timestamp("s", tz="UTC"))
        times = pc.strftime(times, format="%Y-%m-%dT%H:%M:%SZ")
    symbols = pa.array(np.tile(np.array(bars.symbols, dtype=object), n), pa.string())
    columns = {"time": times, "symbol": symbols}
    columns.update({f: pa.array(getattr(bars, f).reshape(-1)) for f in FIELDS})
    if bars.spread is not None:
        columns["spread"] = pa.array(bars.spread.reshape(-1))
    return pa.table(columns)


def save_bars(bars: Bars, path: Path) -> None:
    """Write bars in the long format (time, symbol, open, high, low, close, volume, and
    spread when the bars have one) as Parquet (.parquet/.pq) or CSV (.csv) by extension,
    atomically (temporary file in the same folder, then os.replace). CSV times are ISO
    8601 in UTC ("2025-01-03T04:00:00Z")."""
    path = Path(path)
    kind = _kind(path)
    if kind is None or path.suffix.lower() in COMPRESSION_SUFFIXES:
        raise ConfigError(f"{path}: unknown extension; use .parquet or .csv")
    table = _long_table(bars, text_times=kind == "csv")
    if kind == "parquet":
        write_atomically(path, lambda sink: pq.write_table(table, sink))
    else:
        write_atomically(path, lambda sink: pa_csv.write_csv(table, sink))


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create `path` through `write(sink)` on a temporary file in the same folder, synced
    and renamed over it: readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
