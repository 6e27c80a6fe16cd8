"""Read a CSV file the way its vendor wrote it: the encoding (UTF-8 with or without BOM,
else Latin-1), the delimiter (, ; tab |), a decimal comma, banner or title lines above the
header, and headerless layouts (Binance klines, MetaTrader history, plain OHLCV).

Only the first lines are inspected (``SNIFF_BYTES``); pandas then reads the whole file
with what was found. A row with more fields than the header is refused by row, never
read as an index or shifted into the next column.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from backtester.data.validate import COLUMN_ALIASES, normalize_header
from backtester.errors import DataError

SNIFF_BYTES = 65_536
MAX_ROWS = 50_000_000  # rows per file unless data.max_rows says more (95 years of minutes)
MIN_ROW_BYTES = 12  # the shortest plausible bar row ("1,1,1,1,1,1\n")
SNIFF_LINES = 30
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_DECIMAL_COMMA = re.compile(r"^-?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_THOUSANDS_DOT = re.compile(r"^-?\d{1,3}(\.\d{3})+(,\d+)?$")
_NUMBER = re.compile(r"^-?\d+([.,]\d+)?([eE][-+]?\d+)?$")
_TIME_LIKE = re.compile(r"^\d{4}[-./]?\d{2}[-./]?\d{2}|^\d{2}\.\d{2}\.\d{4}|^\d{9,}$")
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_EXTRA_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")

# Headerless layouts, by field count (the first field a time, the rest numbers).
BINANCE_KLINES = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                  "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume",
                  "ignore")
_HEADERLESS = {
    12: ("Binance klines", BINANCE_KLINES),
    7: ("MetaTrader history", ("date", "clock", "open", "high", "low", "close", "volume")),
    6: ("time, open, high, low, close, volume", ("time", "open", "high", "low", "close",
                                                 "volume")),
    5: ("time, open, high, low, close", ("time", "open", "high", "low", "close")),
}
_TIME_HEADERS = set(COLUMN_ALIASES["time"]) | {"date", "unix", "unix_timestamp", "gmt_time",
                                               "local_time"}
_PRICE_HEADERS = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How one CSV file is written: what pandas needs to read it, and what to tell the user."""

    encoding: str = "utf-8"
    skip: int = 0  # lines above the header (or above the first row of a headerless file)
    delimiter: str = ","
    decimal: str = "."
    thousands: str | None = None
    names: tuple[str, ...] | None = None  # a headerless file's column names
    notes: tuple[str, ...] = ()


def _head(path: Path) -> bytes:
    """The first SNIFF_BYTES of the file's content (decompressed); b"" when unknown."""
    suffix = path.suffix.lower()
    openers = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    try:
        if suffix in openers:
            with openers[suffix](path, "rb") as f:
                return f.read(SNIFF_BYTES)
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                return archive.open(names[0]).read(SNIFF_BYTES) if names else b""
        if suffix == ".zst":
            return b""  # pandas decompresses it; read as a plain comma-separated file
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError):
        return b""


def check_size(path: Path, max_rows: int = MAX_ROWS) -> None:
    """Refuse, before parsing, a file that cannot be bars: a text file whose first block
    holds NUL bytes (a sparse or binary file), one mostly made of holes, or one of more
    than ``max_rows`` rows (counted from Parquet metadata, or bounded by its size for
    text: a CSV row takes at least 12 bytes, so larger files are counted line by line)."""
    try:
        status = path.stat()
    except OSError:
        return  # the reader says what is wrong
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - an unreadable file is the reader's to word
            return
        if rows > max_rows:
            raise _too_many(path, rows, max_rows)
        return
    compressed = path.suffix.lower() in (".gz", ".bz2", ".xz", ".zip", ".zst")
    if not compressed:
        if b"\x00" in _head(path):
            raise DataError(f"{path}: the file holds NUL bytes where text was expected (a "
                            "sparse, binary or damaged file); pass a CSV text or Parquet file")
        allocated = getattr(status, "st_blocks", None)
        if allocated is not None and status.st_size > 64 * 2**20 \
                and allocated * 512 < status.st_size // 8:
            raise DataError(f"{path}: {status.st_size:,} bytes but mostly holes (a sparse "
                            "file); pass the real data file")
        if status.st_size > max_rows * MIN_ROW_BYTES:
            rows = _count_lines(path, max_rows + 1) - 1  # less the header line
            if rows > max_rows:
                raise _too_many(path, rows, max_rows, at_least=True)


def _count_lines(path: Path, limit: int) -> int:
    """Lines in the file, counting stops a line past ``limit``."""
    count = 0
    with open(path, "rb") as f:
        while block := f.read(2**22):
            count += block.count(b"\n")
            if count > limit:
                return count
    return count


def _too_many(path: Path, rows: int, limit: int, at_least: bool = False) -> DataError:
    count = f"more than {limit:,}" if at_least else f"{rows:,}"
    return DataError(f"{path}: {count} rows, over the limit of {limit:,} rows per file; "
                     "raise data.max_rows (--set data.max_rows=N) if the file is meant to be "
                     "that large, or split it")


def _decode(head: bytes) -> tuple[str, str]:
    """(encoding, text) of the head: utf-8-sig with a BOM, utf-8, else latin-1."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", head[3:].decode("utf-8", errors="ignore")
    try:
        return "utf-8", head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3 and len(head) == SNIFF_BYTES:  # a character cut in two
            return "utf-8", head[: e.start].decode("utf-8")
        return "latin-1", head.decode("latin-1")


def _fields(line: str, delimiter: str) -> list[str]:
    return [f.strip().strip('"').strip("'").strip() for f in line.split(delimiter)]


def _is_header(fields: list[str]) -> bool:
    keys = [normalize_header(f) for f in fields]
    if not all(p in keys or p[0] in keys for p in _PRICE_HEADERS):
        return False
    return any(k in _TIME_HEADERS for k in keys) or fields[0] == ""


def _headerless(line: str, delimiter: str) -> tuple[str, tuple[str, ...]] | None:
    fields = _fields(line, delimiter)
    layout = _HEADERLESS.get(len(fields))
    if layout is None or not _TIME_LIKE.match(fields[0]):
        return None
    numbers = fields[2:] if layout[0] == "MetaTrader history" else fields[1:]
    if layout[0] == "MetaTrader history" and not _CLOCK.match(fields[1]):
        return None
    if not all(_NUMBER.match(f) for f in numbers if f):
        return None
    return layout


def _quote(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:57] + "...")


def sniff_csv(path: Path) -> CsvLayout:
    """Find the encoding, delimiter, decimal mark, header line and headerless layout."""
    encoding, text = _decode(_head(path))
    lines = text.splitlines()
    if len(text.encode(encoding if encoding != "utf-8-sig" else "utf-8")) >= SNIFF_BYTES - 3:
        lines = lines[:-1]  # the last line may be cut
    lines = lines[:SNIFF_LINES]
    notes = [] if encoding != "latin-1" else ["not UTF-8; read as Latin-1"]
    found = None
    for i, line in enumerate(lines):
        candidates = [d for d in DELIMITERS if d in line and _is_header(_fields(line, d))]
        if candidates:
            found = (i, max(candidates, key=lambda d: len(_fields(line, d))), None)
            break
        layouts = [(d, layout) for d in DELIMITERS if (layout := _headerless(line, d))]
        if layouts and i == 0:  # a headerless file starts with its first bar
            found = (i, layouts[0][0], layouts[0][1])
            break
    if found is None:
        return CsvLayout(encoding=encoding, notes=tuple(notes))
    skip, delimiter, headerless = found
    if skip:
        dropped = "; ".join(_quote(line) for line in lines[:skip] if line.strip()) or "blank"
        plural = "s" if skip > 1 else ""
        notes.append(f"skipped {skip} line{plural} above the header ({dropped})")
    names = None
    if headerless is not None:
        notes.append(f"no header; read the {len(headerless[1])} columns as {headerless[0]}")
        names = headerless[1]
    data = lines[skip + (headerless is None):][:10]
    values = [f for line in data for f in _fields(line, delimiter)]
    decimal, thousands = ".", None
    if delimiter != "," and any(_DECIMAL_COMMA.match(v) for v in values):
        decimal = ","
        if any(_THOUSANDS_DOT.match(v) for v in values):
            thousands = "."
    if delimiter != "," or decimal != ".":
        mark = " with decimal commas" if decimal == "," else ""
        notes.append(f"read as {_DELIMITER_NAMES[delimiter]}-separated{mark}")
    return CsvLayout(encoding, skip, delimiter, decimal, thousands, names, tuple(notes))


def _read(path: Path, layout: CsvLayout) -> pd.DataFrame:
    kwargs = dict(sep=layout.delimiter, skiprows=layout.skip, decimal=layout.decimal,
                  thousands=layout.thousands, encoding=layout.encoding, index_col=False,
                  skipinitialspace=True)
    if layout.names is not None:
        kwargs.update(header=None, names=list(layout.names))
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, **kwargs)
        except pd.errors.ParserWarning:
            pass
    first = _first_data_line(path, layout)
    if first.rstrip().endswith(layout.delimiter):  # every row ends with the delimiter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(path, **kwargs)
    raise _extra_fields(path, 1)


def _first_data_line(path: Path, layout: CsvLayout) -> str:
    encoding, text = _decode(_head(path))
    lines = text.splitlines()
    index = layout.skip + (layout.names is None)
    return lines[index] if index < len(lines) else ""


def _extra_fields(path: Path, row: int, saw: int | None = None, expected: int | None = None
                  ) -> DataError:
    counts = f" ({saw} fields, the header has {expected})" if saw is not None else ""
    return DataError(
        f"{path}: row {row}: the row has more fields than the header{counts}; quote the value "
        "that holds the delimiter (\"1,5\") or remove the extra field"
    )


def read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV file as its layout says; return the table and the info lines for the user.

    Raises UnicodeDecodeError, pandas' errors and DataError (extra fields, by row) for the
    caller to word.
    """
    layout = sniff_csv(path)
    try:
        frame = _read(path, layout)
    except UnicodeDecodeError:
        if layout.encoding == "latin-1":
            raise
        layout = CsvLayout(encoding="latin-1", skip=layout.skip, delimiter=layout.delimiter,
                           decimal=layout.decimal, thousands=layout.thousands,
                           names=layout.names,
                           notes=(*layout.notes, "not UTF-8; read as Latin-1"))
        frame = _read(path, layout)
    except pd.errors.ParserError as e:
        match = _EXTRA_FIELDS.search(str(e))
        if match is None:
            raise
        expected, line, saw = (int(g) for g in match.groups())
        row = line - layout.skip - (layout.names is None)
        raise _extra_fields(path, row, saw, expected) from None
    return frame, list(layout.notes)

