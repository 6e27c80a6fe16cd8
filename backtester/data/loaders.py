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
from backtester.data.duplicates import check_on_duplicate, describe, resolve_duplicates
from backtester.data.sniff import MAX_ROWS, check_size
from backtester.data.sniff import read_csv
from backtester.data.times import parse_times
from backtester.data.vendors import prepare_frame
from backtester.errors import ConfigError, DataError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zip", ".zst")
_FILL = "fill it in or drop that row"


@dataclass(frozen=True, slots=True)
class _Series:
    """One symbol's bars as read from one file, sorted oldest first."""

    source: str
    times: np.ndarray
    values: tuple[np.ndarray, ...]  # open, high, low, close, volume
    has_volume: bool
    spread: np.ndarray | None = None  # bid-ask spread in price units, when the file has it
    named_by_default: bool = False  # no symbol column: named after the file (or the caller)


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
        raise DataError(f"{path}: no such file; pass an existing CSV/Parquet file or folder")
    if path.is_file():
        if _kind(path) is None:
            raise DataError(f"{path}: not a .csv or .parquet file; convert it or rename it")
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: not a file or a folder (a device, pipe or socket); pass a "
                        "CSV/Parquet file or a folder of them")
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p) is not None)
    except OSError as e:
        raise DataError(f"{path}: cannot list the folder ({e.strerror}); check its "
                        "permissions") from None
    if not files:
        raise DataError(f"{path}: the folder has no .csv or .parquet files; add bar files")
    return files


def _read_table(path: Path, max_rows: int = MAX_ROWS) -> tuple[pd.DataFrame, list[str]]:
    """The file's table and the info lines about how it was read (see sniff.read_csv);
    a file of more than ``max_rows`` rows, or not text where text is expected, is refused
    before it is parsed."""
    check_size(path, max_rows)
    try:
        if _kind(path) == "parquet":
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()
            return frame, []
        return read_csv(path)
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


def _read_file(path: Path, tz: str, on_duplicate: str, max_rows: int = MAX_ROWS
               ) -> tuple[list[tuple[str, _Series]], list[str]]:
    """Read, validate and split one file into per-symbol series, oldest bar first; and
    the info lines about it."""
    frame, notes = _read_table(path, max_rows)
    series, more = _frame_series(frame, str(path), tz, _stem(path), on_duplicate)
    return series, [f"{path}: {n}" for n in notes] + more


def _frame_series(frame: pd.DataFrame, source: str, tz: str, default_symbol: str,
                  on_duplicate: str = "error") -> tuple[list[tuple[str, _Series]], list[str]]:
    """Validate and split one table (a file's, or a caller's DataFrame) into per-symbol
    series, oldest bar first; without a symbol column it holds ``default_symbol``.
    Returns the series and info lines (vendor columns, resolved duplicates)."""
    frame, vendor_notes = prepare_frame(frame)
    notes = [f"{source}: {n}" for n in vendor_notes]
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
    columns = [open_, high, low, close, volume]
    if "spread" in names:
        spread = to_float(frame[names["spread"]], source, names["spread"], times)
        check_spread(source, names["spread"], times, spread)
        columns.append(spread)
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
    result, resolved = [], {}
    for symbol, index in groups:
        label = symbol if "symbol" in names else None
        group_times, group_rows = times[index], rows[index]
        values = tuple(a[index] for a in columns)
        if on_duplicate != "error":
            keep, values, dropped = resolve_duplicates(group_times, values, on_duplicate)
            if dropped:
                group_times, group_rows = group_times[keep], group_rows[keep]
                resolved[symbol] = dropped
        if check_time_order(source, group_times, group_rows, names["time"], label):
            group_times, values = group_times[::-1], tuple(v[::-1] for v in values)
        values = tuple(np.ascontiguousarray(v) for v in values)
        result.append((symbol, _Series(source, np.ascontiguousarray(group_times), values[:5],
                                       "volume" in names,
                                       values[5] if len(values) > 5 else None,
                                       "symbol" not in names)))
    if resolved:
        counts = "" if "symbol" not in names else " (" + ", ".join(
            f"{s}: {k}" for s, k in resolved.items()) + ")"
        notes.append(f"{source}: resolved {sum(resolved.values())} duplicate times{counts} by "
                     f"{describe(on_duplicate)}")
    return result, notes


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
    on_duplicate: str = "error",
    max_rows: int = MAX_ROWS,
) -> Bars:
    """Load bars from a CSV or Parquet file, or a folder of them.

    Parameters
    ----------
    path : str or Path
        A file, or a folder whose .csv/.parquet files are read. Files without a symbol
        (or ticker) column hold one symbol named after the file (AAPL.csv -> AAPL).
    symbols : sequence of str, optional
        Keep only these symbols, in this order. One name for data holding one symbol
        named after its file (no symbol column) names that symbol (with a warning).
    tz : str, optional
        Time zone of naive timestamps (default UTC). Times are returned in UTC.
    on_duplicate : {"error", "first", "last", "mean"}
        Rows of one symbol at one time: refused, or one kept (the first or last in the
        file), or averaged field by field; resolving says how many, in one warning.
    max_rows : int
        A file of more rows is refused before it is parsed (``data.max_rows`` raises it);
        so is a file whose first block is not text (a sparse or binary file).

    CSV files are read as written (``backtester.data.sniff``): UTF-8 with or without BOM
    or Latin-1; ``,`` ``;`` tab or ``|`` delimiters, decimal commas; lines above the
    header skipped; headerless Binance klines and MetaTrader history. Vendor columns and
    dates are understood (``backtester.data.vendors``, ``backtester.data.times``).

    An optional spread column (spread, bid_ask_spread or ba_spread: the bid-ask spread in
    price units, >= 0) becomes ``Bars.spread``; it must be in every file or in none.

    Warns (UserWarning) about a missing volume column, trimmed leading bars and filled
    missing bars; raises DataError naming the file, row and column for invalid data.
    """
    path = Path(path)
    zone = _check_tz(tz)
    policy = check_on_duplicate(on_duplicate)
    series: dict[str, _Series] = {}
    notes: list[str] = []
    for file in _data_files(path):
        found, more = _read_file(file, zone, policy, max_rows)
        notes += more
        for symbol, data in found:
            if symbol in series:
                raise DataError(
                    f"{file}: symbol {symbol} is also in {series[symbol].source}; keep each "
                    "symbol in one file"
                )
            series[symbol] = data
    return _assemble(series, str(path), symbols, notes)


def bars_from_frame(
    frame: pd.DataFrame,
    *,
    symbols: Sequence[str] | None = None,
    tz: str | None = None,
    source: str = "DataFrame",
    default_symbol: str = "ASSET",
    on_duplicate: str = "error",
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
    on_duplicate : {"error", "first", "last", "mean"}
        As in ``load_bars``.

    Returns
    -------
    Bars
        The symbols aligned on one time axis, as ``load_bars`` returns them.
    """
    zone = _check_tz(tz)
    policy = check_on_duplicate(on_duplicate)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.rename_axis(frame.index.name or "time").reset_index()
    found, notes = _frame_series(frame, source, zone, default_symbol, policy)
    return _assemble(dict(found), source, symbols, notes)


def _assemble(series: dict[str, _Series], path: str, symbols: Sequence[str] | None,
              notes: Sequence[str] = ()) -> Bars:
    """Select the requested symbols, warn about how files were read, missing volume and
    alignment, align them."""
    notes = list(notes)
    names = list(series)
    if symbols is not None:
        requested = [symbols] if isinstance(symbols, str) else list(symbols)
        if not requested:
            raise ConfigError("symbols is empty; name at least one symbol or leave it out")
        data = next(iter(series.values())) if len(series) == 1 else None
        if (data is not None and data.named_by_default and len(requested) == 1
                and requested[0] not in series):
            wanted = requested[0]
            series = {wanted: data}
            names = [wanted]
            where = Path(data.source).name if data.source != "DataFrame" else data.source
            notes.append(f"{where} holds one symbol; named {wanted} as --symbols asks")
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
    for note in notes:
        warnings.warn(note, stacklevel=3)
    bars, aligned = _align(names, series)
    for note in aligned:
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
