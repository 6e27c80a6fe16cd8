"""On-disk Parquet cache of the embedded market: one file per (symbol, calendar year).

A file is named ``embedded_<symbol>_<year>_<key12>.parquet``; the key (``cache_key``) is
a SHA-256 over everything that determines its contents, so a new generator version,
parameter or seed never reads an old file.

Where (``resolve_cache_dir``): ``data.cache_dir`` when set to anything but its default
"data/cache" (or empty); else ``BT_CACHE_DIR``; else the user cache directory
(platformdirs' ``user_cache_dir("bt")`` when installed, else ``$XDG_CACHE_HOME/bt`` or
``~/.cache/bt``), so running from any folder never creates ./data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backtester.data.bars import FIELDS, Bars
from backtester.data.generator import (
    DEFAULT_SYMBOLS,
    GENERATOR_EPOCH,
    GENERATOR_VERSION,
    MINUTE_NS,
    _generate_symbol,
    check_seed,
    check_symbols,
    generator_parameters,
    minute_range,
    minute_times,
)
from backtester.data.loaders import write_atomically

CACHE_UNIT = "calendar_year"
DEFAULT_CACHE_DIR = "data/cache"  # DataConfig.cache_dir's default: the user cache dir
CACHE_FILES = re.compile(r"^\.?embedded_.+\.parquet(\.[0-9a-f]+\.tmp)?$")
_METADATA_KEY = b"bt.cache_key"
_COLUMNS = ("time", *FIELDS)


def user_cache_dir() -> Path:
    """``BT_CACHE_DIR``, else the user cache directory of bt."""
    if os.environ.get("BT_CACHE_DIR"):
        return Path(os.environ["BT_CACHE_DIR"]).expanduser()
    try:
        from platformdirs import user_cache_dir as platform_cache_dir
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "bt"
    return Path(platform_cache_dir("bt"))


def resolve_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """The folder of the market cache: ``cache_dir`` unless empty or the default
    "data/cache", else ``user_cache_dir()``."""
    if cache_dir is None or str(cache_dir) in ("", DEFAULT_CACHE_DIR):
        return user_cache_dir()
    return Path(cache_dir).expanduser()


def cache_files(cache_dir: Path | str | None = None) -> list[tuple[Path, int]]:
    """(path, size in bytes) of each market cache file in the folder, by name."""
    folder = resolve_cache_dir(cache_dir)
    if not folder.is_dir():
        return []
    return [(p, p.stat().st_size) for p in sorted(folder.iterdir())
            if CACHE_FILES.match(p.name) and p.is_file() and not p.is_symlink()]


def clear_cache(cache_dir: Path | str | None = None) -> tuple[int, int]:
    """Delete the market cache files (embedded_*.parquet and their temporary files) found
    directly in the folder, nothing else; return (files, bytes) deleted."""
    deleted = freed = 0
    for path, size in cache_files(cache_dir):
        path.unlink(missing_ok=True)
        deleted, freed = deleted + 1, freed + size
    return deleted, freed


def cache_key(symbol: str, year: int, seed: int) -> str:
    """SHA-256 (hex) over generator version, generator parameters, seed, symbol and the
    cached unit (one calendar year)."""
    payload = {
        "generator_version": GENERATOR_VERSION,
        "parameters": generator_parameters(symbol),
        "seed": int(seed),
        "symbol": symbol,
        "unit": {"kind": CACHE_UNIT, "year": int(year)},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path | str, symbol: str, year: int, seed: int) -> Path:
    """Path of the cache file of one symbol and calendar year."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", symbol)
    return Path(cache_dir) / f"embedded_{safe}_{year}_{cache_key(symbol, year, seed)[:12]}.parquet"


def _year_minutes(year: int) -> tuple[int, int]:
    """[first, stop) minutes since the epoch of a calendar year."""
    bounds = [pd.Timestamp(year=y, month=1, day=1, tz="UTC") for y in (year, year + 1)]
    first, stop = ((b - GENERATOR_EPOCH).value // MINUTE_NS for b in bounds)
    return int(first), int(stop)


def _read_year(path: Path, key: str, times: np.ndarray) -> tuple[np.ndarray, ...]:
    """Read a cached year; raise ValueError when it is not exactly what was expected."""
    table = pq.read_table(path, memory_map=True)
    metadata = table.schema.metadata or {}
    if metadata.get(_METADATA_KEY) != key.encode():
        raise ValueError("its cache key does not match")
    if tuple(table.column_names) != _COLUMNS or table.num_rows != times.shape[0]:
        raise ValueError(f"it has columns {table.column_names} and {table.num_rows} rows")
    stored = _column(table, "time").view(np.int64)
    if not np.array_equal(stored, times):
        raise ValueError("its times are not the year's minutes")
    return tuple(_column(table, f).astype(np.float64, copy=False) for f in FIELDS)


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A column as numpy, without a copy when it is one chunk."""
    column = table.column(name)
    if column.null_count:
        raise ValueError(f"its column {name} has missing values")
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy(zero_copy_only=False)
    return column.to_numpy()


def _write_year(path: Path, key: str, times: np.ndarray, values: tuple[np.ndarray, ...]) -> None:
    """Write a year atomically (temporary file in the same folder, then os.replace)."""
    columns = [pa.array(times, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC"))]
    columns += [pa.array(v, type=pa.float64()) for v in values]
    table = pa.Table.from_arrays(columns, names=list(_COLUMNS)).replace_schema_metadata(
        {_METADATA_KEY: key.encode()}
    )
    write_atomically(
        path, lambda sink: pq.write_table(table, sink, compression="none", use_dictionary=False)
    )


def _load_year(
    cache_dir: Path, symbol: str, year: int, seed: int, notes: list[str]
) -> tuple[np.ndarray, ...]:
    """One symbol's calendar year (open, high, low, close, volume): from the cache when
    it holds a valid file, else generated and written to it."""
    key = cache_key(symbol, year, seed)
    path = cache_path(cache_dir, symbol, year, seed)
    first, stop = _year_minutes(year)
    times = minute_times(first, stop)
    if path.exists():
        try:
            return _read_year(path, key, times)
        except Exception as e:
            notes.append(f"{path}: cache file is unreadable or stale ({e}); regenerating it")
    values = _generate_symbol(symbol, first, stop, seed)[:5]
    try:
        _write_year(path, key, times, values)
    except OSError as e:
        notes.append(f"{path}: cannot write the cache ({e}); continuing without it")
    return values


def embedded_bars(
    start: pd.Timestamp,
    end: pd.Timestamp,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    seed: int = 7,
    cache_dir: Path | str | None = None,
) -> Bars:
    """Return ``generate_market(start, end, symbols, seed)``, cached as Parquet.

    Each (symbol, calendar year) touched by [start, end) is read from ``cache_dir`` when
    present and valid, else generated whole and written there (atomically). A corrupt or
    stale file is regenerated with a warning. ``cache_dir`` None, empty or "data/cache":
    the user cache directory (``resolve_cache_dir``).
    """
    folder = resolve_cache_dir(cache_dir)
    names = check_symbols(symbols)
    seed = check_seed(seed)
    first, stop = minute_range(start, end)
    first_year = (GENERATOR_EPOCH + pd.Timedelta(minutes=first)).year
    last_year = (GENERATOR_EPOCH + pd.Timedelta(minutes=stop - 1)).year
    out = tuple(np.empty((stop - first, len(names))) for _ in FIELDS)
    notes: list[str] = []
    for year in range(first_year, last_year + 1):
        year_first, year_stop = _year_minutes(year)
        lo, hi = max(first, year_first), min(stop, year_stop)
        for column, symbol in enumerate(names):
            values = _load_year(folder, symbol, year, seed, notes)
            for target, source in zip(out, values):
                target[lo - first : hi - first, column] = source[lo - year_first : hi - year_first]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return Bars(minute_times(first, stop), names, *out, timeframe="1min")
