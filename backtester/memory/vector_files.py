"""The vector index's files under ``<memory>/vectors/``: their names, reading them back
checked, and writing them atomically.

``states.faiss`` and ``text.faiss`` are FAISS flat indexes in FAISS's own binary format;
``index.json`` holds the schema version, generation, both embedders and one metadata row
per vector. A reader verifies each file's bytes against the manifest's digest (when it
records one), then its shape, and raises one ``MemoryStoreError`` line naming the file
and the repair (``bt memory doctor``, with ``--memory-dir`` unless the default folder).
``backtester.memory.vectors`` (the in-memory index) re-exports these names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson
import pandas as pd

from backtester.errors import MemoryStoreError
from backtester.memory.embedders import Embedder
from backtester.memory.integrity import (  # noqa: F401 (re-exported: the file layout)
    PART_NEWEST,
    PART_ROWS,
    SEGMENT_NAME,
    TEXT_SEGMENT_NAME,
    digest,
    doctor_hint,
    verify,
)
from backtester.memory.io import atomic_write_bytes, atomic_write_many
from backtester.memory.texts import STATE_NAMES

SCHEMA_VERSION = 1
STATE_EMBEDDER_NAME = "features-v1"  # state vectors of STATE_NAMES, no names recorded
NAMED_STATE_EMBEDDER = "features-v2"  # state vectors whose names index.json records
VECTORS_FOLDER = "vectors"
STATES_FILE = "states.faiss"
TEXT_FILE = "text.faiss"
INDEX_FILE = "index.json"
ROW_FIELDS = ("decision_id", "symbol", "direction", "return_pct", "pnl", "exit_reason",
              "regime", "entry_time", "generation", "description")


def _doctor(folder: Path | str, flags: str = "") -> str:
    """The repair hint for ``folder`` (``--memory-dir`` unless it is the default)."""
    hint = doctor_hint(folder)
    if flags:
        hint = hint[:-1] + f" {flags}`"
    return f"{hint} to rebuild the vector index from the outcome files"


def _kind(embedder: Embedder) -> str:
    """The ``--embedder`` value that selects ``embedder``."""
    return "hashing" if embedder.name.startswith("hashing") else "sentence"


def write_files(folder: Path | str, files: list[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """Write the files (``encode_files``' [(path relative to ``folder``, bytes)],
    index.json last), each atomically; returns their digests for the manifest."""
    (Path(folder) / VECTORS_FOLDER).mkdir(parents=True, exist_ok=True)
    atomic_write_many([(Path(folder) / name, data) for name, data in files[:-1]])
    atomic_write_bytes(Path(folder) / files[-1][0], files[-1][1])
    return {name: digest(data) for name, data in files}


def _read_index_json(path: Path, embedder: Embedder, *, folder: Path | None = None,
                     files: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict]]:
    folder = path.parent.parent if folder is None else folder
    _DOCTOR = _doctor(folder)  # noqa: N806 (the module-wide hint, for this folder)
    try:
        data = path.read_bytes()
        verify(folder, f"{VECTORS_FOLDER}/{INDEX_FILE}", data, files)
        header = orjson.loads(data)
    except OSError as e:
        raise MemoryStoreError(f"{path}: cannot be read ({e.strerror}); {_DOCTOR}") from None
    except orjson.JSONDecodeError as e:
        reason = " ".join(str(e).split())
        raise MemoryStoreError(f"{path}: not valid JSON ({reason}); {_DOCTOR}") from None
    if not isinstance(header, dict):
        raise MemoryStoreError(f"{path}: must hold a JSON object, was "
                               f"{type(header).__name__}; {_DOCTOR}")
    version = header.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise MemoryStoreError(
            f"{path}: written by a newer bt (schema_version was {version}, this bt reads "
            f"{SCHEMA_VERSION}); upgrade bt, or {_DOCTOR} in this version's format"
        )
    if version != SCHEMA_VERSION:
        raise MemoryStoreError(f"{path}: schema_version must be {SCHEMA_VERSION}, was "
                               f"{version!r}; {_DOCTOR}")
    text = header.get("text_embedder")
    state = header.get("state_embedder")
    rows = header.get("rows")
    state_dim = header.get("state_dim")
    problem = None
    if not _is_count(header.get("generation")):
        problem = f"generation must be an integer >= 0, was {header.get('generation')!r}"
    elif not _is_count(state_dim):
        problem = f"state_dim must be an integer >= 0, was {state_dim!r}"
    elif not (isinstance(text, dict) and isinstance(text.get("name"), str)
              and _is_count(text.get("dim"))):
        problem = f"text_embedder must be {{name, dim}}, was {text!r}"
    elif not (isinstance(state, dict) and state.get("dim") == state_dim
              and (state.get("name") == STATE_EMBEDDER_NAME
                   or state.get("name") == NAMED_STATE_EMBEDDER and _names_fit(state, state_dim))):
        problem = (f"state_embedder must be {{name: {STATE_EMBEDDER_NAME!r}, dim: "
                   f"{state_dim!r}}} or {{name: {NAMED_STATE_EMBEDDER!r}, dim: {state_dim!r}, "
                   f"names: [{state_dim!r} names] or null}}, was {state!r}")
    elif not isinstance(rows, list):
        problem = f"rows must be a list, was {type(rows).__name__}"
    else:
        required = frozenset(ROW_FIELDS)
        bad = next((i for i, row in enumerate(rows)
                    if not (isinstance(row, dict) and required <= row.keys())), None)
        if bad is not None:
            lacking = [field for field in ROW_FIELDS
                       if not isinstance(rows[bad], dict) or field not in rows[bad]]
            problem = (f"rows[{bad}] must hold {', '.join(ROW_FIELDS)}, was without "
                       f"{', '.join(lacking)}")
    if problem:
        raise MemoryStoreError(f"{path}: {problem}; {_DOCTOR}")
    if (text["name"], text["dim"]) != (embedder.name, embedder.dim):
        raise MemoryStoreError(
            f"{path}: the text index was built by embedder {text['name']!r} "
            f"({text['dim']}-d), was opened with {embedder.name!r} ({embedder.dim}-d); indexes "
            f"of different embedders are never mixed: "
            f"{_doctor(folder, f'--embedder {_kind(embedder)}')} to re-embed it with "
            f"{embedder.name!r}, or use --memory-dir for a separate memory"
        )
    return header, rows


def _names_fit(state: dict[str, Any], state_dim: int) -> bool:
    names = state.get("names")
    return names is None or (isinstance(names, list) and len(names) == state_dim
                             and all(isinstance(name, str) for name in names))


def _recorded_names(header: dict[str, Any]) -> tuple[str, ...] | None:
    """What index.json says the state vectors are made of; None when it does not know."""
    state = header["state_embedder"]
    if state["name"] == STATE_EMBEDDER_NAME:  # also every index written before v2 existed
        return STATE_NAMES if header["state_dim"] in (0, len(STATE_NAMES)) else None
    names = state.get("names")
    return None if names is None else tuple(names)


def _previous_names(path: Path, embedder: Embedder) -> tuple[str, ...] | None:
    """The state names an existing index.json records, or None (no file, unreadable)."""
    try:
        return _recorded_names(_read_index_json(path, embedder)[0])
    except MemoryStoreError:
        return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_faiss(path: Path, *, metric: int, dim: int, count: int, folder: Path | None = None,
                files: dict[str, Any] | None = None, at_least: bool = False) -> np.ndarray:
    """The vectors (count, dim) float32 of a flat FAISS index file, checked (against the
    manifest's digest too, when ``files`` holds one); ``at_least``: the file may hold more
    rows (a text index whose last rows a run dropped), the first ``count`` are returned."""
    kind = "IndexFlatL2" if metric == faiss.METRIC_L2 else "IndexFlatIP"
    folder = path.parent.parent if folder is None else folder
    _DOCTOR = _doctor(folder)  # noqa: N806
    try:
        data = path.read_bytes()
        verify(folder, f"{VECTORS_FOLDER}/{path.name}", data, files)
    except FileNotFoundError:
        raise MemoryStoreError(f"{path}: file is missing; {_DOCTOR}") from None
    except OSError as e:
        raise MemoryStoreError(f"{path}: cannot be read ({e.strerror}); {_DOCTOR}") from None
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except Exception as e:  # FAISS raises RuntimeError with a long C++ message
        reason = ("truncated" if "read error" in str(e) else
                  "unknown index type" if "not recognized" in str(e) else "unparsable")
        raise MemoryStoreError(f"{path}: not a readable FAISS index, was {reason} "
                               f"({len(data)} bytes); {_DOCTOR}") from None
    if not isinstance(index, faiss.IndexFlat) or index.metric_type != metric:
        raise MemoryStoreError(f"{path}: must be a FAISS {kind}, was "
                               f"{type(index).__name__}; {_DOCTOR}")
    if index.d != dim:
        raise MemoryStoreError(f"{path}: vectors must have {dim} dimensions as index.json "
                               f"says, was {index.d}; {_DOCTOR}")
    if index.ntotal != count and not (at_least and index.ntotal > count):
        raise MemoryStoreError(f"{path}: holds {index.ntotal} rows, was {count} rows in "
                               f"index.json; {_DOCTOR}")
    if not count or not dim:
        return np.zeros((count, dim), dtype=np.float32)
    flat = faiss.rev_swig_ptr(index.get_xb(), count * dim)
    return np.array(flat, dtype=np.float32).reshape(count, dim)


# ---------------------------------------------------------------------- rows

_INPUT_FIELDS = tuple(field for field in ROW_FIELDS if field != "generation")


def _generation_of(outcome: dict[str, Any]) -> int:
    value = outcome.get("generation")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MemoryStoreError(f"outcome {outcome.get('decision_id')!r}: field 'generation' "
                               f"must be an integer, was {value!r}")
    return int(value)


def _clean_row(row: dict[str, Any], generation: int) -> dict[str, Any]:
    """The row's metadata as JSON-ready Python values, with its generation."""
    missing = [field for field in _INPUT_FIELDS if field not in row]
    if missing:
        raise MemoryStoreError(f"vector memory: row {row.get('decision_id')!r} lacks "
                               f"{', '.join(missing)}; each row needs {', '.join(_INPUT_FIELDS)}")
    clean = {field: _plain(row[field]) for field in _INPUT_FIELDS}
    clean["generation"] = int(generation)
    for field in ("direction", "return_pct"):
        value = clean[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not np.isfinite(value):
            raise MemoryStoreError(f"vector memory: row {clean['decision_id']!r} field "
                                   f"{field!r} must be a finite number, was {value!r}")
    clean["entry_time"] = _plain_time(clean["entry_time"])
    return clean


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain_time(value: Any) -> int | str:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    if isinstance(value, (dt.datetime, np.datetime64, pd.Timestamp)):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.isoformat()
    raise MemoryStoreError(f"vector memory: entry_time must be ns since the epoch (UTC) or an "
                           f"ISO-8601 time, was {value!r}")


def _times_ns(values: list[Any]) -> np.ndarray:
    """Entry times (ints in ns UTC, or ISO-8601 strings; naive = UTC) as int64 ns."""
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(value, str) for value in values):
        return pd.to_datetime(values, utc=True, format="ISO8601").as_unit("ns").asi8.copy()
    return np.array([value if isinstance(value, int) else _timestamp_ns(value)
                     for value in values], dtype=np.int64)


def _timestamp_ns(value: Any) -> int:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


# ---------------------------------------------------------------------- chunk segments
# A run appends each chunk's rows as two files of its own, never rewriting the others:
# states_<generation>.f32 (the chunk's state vectors, float32 little-endian, row-major)
# and rows_<generation>.json ({schema_version, generation, state_dim, rows}). They extend
# the base (states.faiss, index.json) with the generations above index.json's.



def segment_names(generation: int) -> tuple[str, str]:
    """(states file, rows file) of one chunk's segment, relative to the memory folder."""
    return (f"{VECTORS_FOLDER}/states_{generation}.f32",
            f"{VECTORS_FOLDER}/rows_{generation}.json")


def segment_generations(folder: Path, above: int, upto: int,
                        files: dict[str, Any] | None) -> list[int]:
    """The generations of the segments in force: above the base's, up to the committed
    one; with digests recorded, exactly those the manifest commits (the folder is not
    listed: one that is missing raises when it is read)."""
    if files is not None and any(name.startswith(f"{VECTORS_FOLDER}/") for name in files):
        recorded = {int(match.group(1)) for match in
                    (SEGMENT_NAME.fullmatch(name[len(VECTORS_FOLDER) + 1:]) for name in files)
                    if match}
        return sorted(g for g in recorded if above < g <= upto)
    vectors = Path(folder) / VECTORS_FOLDER
    found = {int(match.group(1)) for match in map(SEGMENT_NAME.fullmatch, os.listdir(vectors))
             if match}
    return sorted(g for g in found if above < g <= upto)


def encode_text_segment(first: int, vectors: np.ndarray) -> tuple[str, bytes]:
    """Text vectors of rows [first, first + n) as a text segment: (path relative to the
    memory folder, bytes: float32 little-endian, row-major), named by rows and content."""
    data = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    name = (f"text_{first}_{first + len(vectors)}_"
            f"{hashlib.sha256(data).hexdigest()[:16]}.f32")
    return f"{VECTORS_FOLDER}/{name}", data


def read_text_segments(folder: Path, files: dict[str, Any] | None, first: int, dim: int,
                       upto: int) -> np.ndarray:
    """(n, dim) float32: the text vectors of the text segments the manifest records,
    chained from row ``first`` (text.faiss's end) up to row ``upto`` at most, each checked
    against its digest; a segment no manifest records is never read (a search that
    crashed before its manifest)."""
    chain = {}
    for name in files or {}:
        match = TEXT_SEGMENT_NAME.fullmatch(name[len(VECTORS_FOLDER) + 1:])
        if match and name.startswith(f"{VECTORS_FOLDER}/"):
            chain[int(match[1])] = (name, int(match[2]))
    blocks, covered = [], first
    while covered in chain and covered < chain[covered][1] <= upto:
        name, end = chain[covered]
        path = Path(folder) / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MemoryStoreError(f"{path}: file is missing, the manifest commits it; "
                                   f"{_doctor(folder)}") from None
        verify(folder, name, data, files)
        if len(data) != (end - covered) * dim * 4:
            raise MemoryStoreError(f"{path}: must hold {end - covered} rows of {dim} float32 "
                                   f"({(end - covered) * dim * 4} bytes), was {len(data)} "
                                   f"bytes; {_doctor(folder)}")
        block = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(end - covered, dim)
        if not np.isfinite(block).all():
            raise MemoryStoreError(f"{path}: holds NaN or infinite values; {_doctor(folder)}")
        blocks.append(block)
        covered = end
    return np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)


def part_record(record: dict[str, Any], times: np.ndarray) -> dict[str, Any]:
    """A rows file's digest ``record`` with its row count and newest entry time (ns)."""
    return {**record, PART_ROWS: len(times),
            PART_NEWEST: int(times.max()) if len(times) else None}


def read_segment(folder: Path, generation: int, state_dim: int | None,
                 files: dict[str, Any] | None) -> tuple[np.ndarray, list[dict]]:
    """One chunk's (states (n, dim) float32, rows), checked against the manifest's digests
    and each other; ``state_dim`` None: any (the base holds no rows)."""
    folder = Path(folder)
    _DOCTOR = _doctor(folder)  # noqa: N806
    states_name, rows_name = segment_names(generation)
    data = {}
    for name in (rows_name, states_name):
        try:
            data[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            raise MemoryStoreError(f"{folder / name}: file is missing; {_DOCTOR}") from None
        except OSError as e:
            raise MemoryStoreError(f"{folder / name}: cannot be read ({e.strerror}); "
                                   f"{_DOCTOR}") from None
        verify(folder, name, data[name], files)
    path = folder / rows_name
    try:
        document = orjson.loads(data[rows_name])
    except orjson.JSONDecodeError as e:
        reason = " ".join(str(e).split())
        raise MemoryStoreError(f"{path}: not valid JSON ({reason}); {_DOCTOR}") from None
    problem = None
    if not isinstance(document, dict):
        problem = f"must hold a JSON object, was {type(document).__name__}"
    elif document.get("schema_version") != SCHEMA_VERSION:
        problem = (f"schema_version must be {SCHEMA_VERSION}, was "
                   f"{document.get('schema_version')!r}")
    elif document.get("generation") != generation:
        problem = f"generation must be {generation}, was {document.get('generation')!r}"
    elif not _is_count(document.get("state_dim")) or (
            state_dim is not None and document["state_dim"] != state_dim):
        problem = (f"state_dim must be {state_dim if state_dim is not None else 'a count'}, "
                   f"was {document.get('state_dim')!r}")
    elif not isinstance(document.get("rows"), list):
        problem = f"rows must be a list, was {type(document.get('rows')).__name__}"
    else:
        rows = document["rows"]
        required = frozenset(ROW_FIELDS)
        bad = next((i for i, row in enumerate(rows)
                    if not (isinstance(row, dict) and required <= row.keys()
                            and row["generation"] == generation)), None)
        if bad is not None:
            problem = (f"rows[{bad}] must hold {', '.join(ROW_FIELDS)} and generation "
                       f"{generation}")
    if problem:
        raise MemoryStoreError(f"{path}: {problem}; {_DOCTOR}")
    dim, rows = document["state_dim"], document["rows"]
    raw = data[states_name]
    if len(raw) != len(rows) * dim * 4:
        raise MemoryStoreError(f"{folder / states_name}: must hold {len(rows)} rows of {dim} "
                               f"float32 as {rows_name} says ({len(rows) * dim * 4} bytes), "
                               f"was {len(raw)} bytes; {_DOCTOR}")
    states = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(len(rows), dim)
    if not np.isfinite(states).all():
        raise MemoryStoreError(f"{folder / states_name}: holds NaN or infinite values; "
                               f"{_DOCTOR}")
    return states, rows


def encode_segment(generation: int, states: np.ndarray, rows: list[dict],
                   state_dim: int) -> list[tuple[str, bytes]]:
    """One chunk's segment as [(path relative to the folder, bytes)], the rows file last."""
    states_name, rows_name = segment_names(generation)
    document = {"schema_version": SCHEMA_VERSION, "generation": generation,
                "state_dim": state_dim, "rows": rows}
    return [(states_name, np.ascontiguousarray(states, dtype="<f4").tobytes()),
            (rows_name, orjson.dumps(document))]
