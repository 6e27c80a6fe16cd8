"""Reading a vector memory from its folder (``VectorMemory.load``): the base files
(states.faiss, index.json, text.faiss), then the chunk segments appended since
(``states_<g>.f32`` / ``rows_<g>.json``, see vector_files.py), each checked against the
manifest's digests; rows of generations the manifest does not commit are dropped.

A run (``text=False``) reads only the parts that can hold the newest ``max_size`` rows:
the manifest records each rows file's row count and newest entry time, so the parts read
are the newest ones until ``max_size`` rows, then any older one whose newest entry time
reaches the ``max_size``-th newest of those (a trade held across chunks). The others are
read when something needs every row (``VectorMemory._load_rest``). Folders saved before
these records are read whole (their next commit records them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from backtester.errors import MemoryStoreError
from backtester.memory.embedders import Embedder
from backtester.memory.integrity import INDEX_NAME, part_counts, refuse_symlinks
from backtester.memory.texts import state_names_mismatch
from backtester.memory.vector_files import (
    INDEX_FILE,
    STATES_FILE,
    TEXT_FILE,
    VECTORS_FOLDER,
    _doctor,
    _is_count,
    _read_faiss,
    _read_index_json,
    _recorded_names,
    _times_ns,
    read_segment,
    read_text_segments,
    segment_generations,
    segment_names,
)

Columns = tuple[np.ndarray, list[dict], np.ndarray, np.ndarray]  # states, rows, times, signed


def load_vectors(cls: Any, folder: Path, *, committed_generation: int, max_size: int,
                 embedder: Embedder, state_names: tuple[str, ...] | None,
                 files: dict[str, Any] | None, text: bool) -> Any:
    """The body of ``VectorMemory.load`` (``cls``), which documents it."""

    vectors = Path(folder) / VECTORS_FOLDER
    memory = cls(max_size=max_size, embedder=embedder, state_names=state_names)
    if not text:
        memory._texts = None  # not read, also when there is nothing to read yet
    refuse_symlinks(folder, (VECTORS_FOLDER,), names=(VECTORS_FOLDER,))
    recorded = any(name.startswith(f"{VECTORS_FOLDER}/") for name in files or {})
    if vectors.exists() and not vectors.is_dir():
        raise MemoryStoreError(f"{vectors}: is a file, a folder was expected; "
                               f"{_doctor(folder)}")
    if not vectors.is_dir():
        if recorded:  # never start over with only the new rows: the old ones are lost
            raise MemoryStoreError(f"{vectors}: is missing, the manifest commits it; "
                                   f"{_doctor(folder)}")
        return memory
    index_path = vectors / INDEX_FILE
    if not index_path.exists() and recorded:
        raise MemoryStoreError(f"{index_path}: file is missing; {_doctor(folder)}")
    if not index_path.exists():
        leftovers = [vectors / name for name in (STATES_FILE, TEXT_FILE)
                     if (vectors / name).exists()]
        if not leftovers or committed_generation < 1:
            return memory  # nothing saved, or a first save that crashed: nothing committed
        raise MemoryStoreError(f"{index_path}: file is missing beside {leftovers[0].name}; "
                               f"{_doctor(folder)}")
    header, base_rows = _read_index_json(index_path, embedder, folder=folder, files=files)
    state_dim = header["state_dim"]
    recorded = _recorded_names(header)
    mismatch = base_rows and state_names is not None and state_names_mismatch(
        recorded, state_dim, tuple(state_names))
    if mismatch:
        raise MemoryStoreError(f"memory.dir {folder}: {mismatch}")
    if state_names is None:
        memory._state_names = recorded
    segments = segment_generations(folder, header["generation"], committed_generation, files)
    parts = [INDEX_NAME, *(segment_names(g)[1] for g in segments)]
    records = [part_counts((files or {}).get(name)) for name in parts]
    reader = _Reader(folder, files, header, base_rows, segments, state_dim)
    if (not text and header["generation"] <= committed_generation
            and all(record is not None for record in records)
            and records[0][0] == len(base_rows)):
        _load_newest(memory, reader, records, max_size)
    else:
        _load_all(memory, reader, committed_generation)
    text_rows = header.get("text_rows", len(base_rows))
    if not _is_count(text_rows) or text_rows > len(base_rows):
        raise MemoryStoreError(f"{index_path}: text_rows must be an integer from 0 to "
                               f"{len(base_rows)}, was {text_rows!r}; {_doctor(folder)}")
    cap, memory._text_rows = memory._text_rows, min(text_rows, memory._text_rows)
    memory.generation = min(max([header["generation"], *segments]), committed_generation)
    memory._segments = segments
    memory._files = None if files is None else {
        name: record for name, record in files.items()
        if name.startswith(f"{VECTORS_FOLDER}/") and name != f"{VECTORS_FOLDER}/{TEXT_FILE}"}
    if text:
        texts = _read_faiss(vectors / TEXT_FILE, metric=faiss.METRIC_INNER_PRODUCT,
                            dim=embedder.dim, count=text_rows, folder=folder, files=files,
                            at_least="text_rows" in header)
        texts = texts[:memory._text_rows]
        if memory._text_rows == text_rows:  # what searches embedded since, stored
            texts = np.concatenate([texts, read_text_segments(
                folder, files, text_rows, embedder.dim, cap)])
        memory._texts = np.ascontiguousarray(texts)
        memory._text_rows = memory._persisted_text = len(texts)
    else:
        memory._text_digest = (files or {}).get(f"{VECTORS_FOLDER}/{TEXT_FILE}")
    memory._refresh_search()
    return memory


class _Reader:
    """Reads the parts in force (0: the base, i: the i-th segment) as checked columns."""

    def __init__(self, folder: Path, files: dict[str, Any] | None, header: dict[str, Any],
                 base_rows: list[dict], segments: list[int], state_dim: int) -> None:
        self.folder, self.files, self.header = folder, files, header
        self.base_rows, self.segments = base_rows, segments
        self.state_dim = state_dim if base_rows else None  # None: any (no base row yet)
        self.ids: set[Any] = set()  # decision ids read so far: a run appends new ones only

    def read(self, first: int, end: int) -> tuple[Columns, np.ndarray, list[int]]:
        """Parts [first, end): (states, rows, times, signed returns), the rows'
        generations and each part's row count."""
        blocks, rows, counts = [], [], []
        for part in range(first, end):
            if part == 0:
                block = _read_faiss(self.folder / VECTORS_FOLDER / STATES_FILE,
                                    metric=faiss.METRIC_L2, dim=self.header["state_dim"],
                                    count=len(self.base_rows), folder=self.folder,
                                    files=self.files)
                block_rows = self.base_rows
            else:
                block, block_rows = read_segment(self.folder, self.segments[part - 1],
                                                 self.state_dim, self.files)
                self.state_dim = block.shape[1] if self.state_dim is None else self.state_dim
            blocks.append(block)
            rows.extend(block_rows)
            counts.append(len(block_rows))
        last = INDEX_NAME if end <= 1 else segment_names(self.segments[end - 2])[1]
        path = Path(self.folder) / last
        try:
            generations = np.fromiter((row["generation"] for row in rows), dtype=np.int64,
                                      count=len(rows))
            directions = np.fromiter((row["direction"] for row in rows), dtype=np.float64,
                                     count=len(rows))
            returns = np.fromiter((row["return_pct"] for row in rows), dtype=np.float64,
                                  count=len(rows))
            times = _times_ns([row["entry_time"] for row in rows])
        except (TypeError, ValueError, OverflowError) as e:
            reason = " ".join(str(e).split())
            raise MemoryStoreError(f"{path}: a row has an invalid generation, direction, "
                                   f"return_pct or entry_time ({reason}); "
                                   f"{_doctor(self.folder)}") from None
        ids = [row["decision_id"] for row in rows]
        if len(set(ids)) != len(ids) or not self.ids.isdisjoint(ids):
            raise MemoryStoreError(f"{path}: repeats a decision id of an earlier row; "
                                   f"{_doctor(self.folder)}")
        self.ids.update(ids)
        blocks = [block for block in blocks if len(block)]
        dim = self.state_dim if self.state_dim is not None else self.header["state_dim"]
        states = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        return (states, rows, times, directions * returns), generations, counts


def _load_all(memory: Any, reader: _Reader, committed_generation: int) -> None:
    """Every part; rows of generations the manifest does not commit are dropped (and the
    text index's rows from the first of them)."""
    (states, rows, times, signed), generations, counts = reader.read(0, len(reader.segments) + 1)
    committed = generations <= committed_generation
    if not committed.all():
        keep = np.flatnonzero(committed)
        states, times, signed = states[keep], times[keep], signed[keep]
        rows = [rows[i] for i in keep]
    memory._appendable = len(reader.base_rows) > 0 and committed.all()
    if memory._appendable:
        bounds = np.cumsum([0, *counts])
        memory._parts = [(name, int(end - start), _newest(times[start:end]))
                         for name, start, end in zip(_part_names(reader), bounds, bounds[1:])]
    _set_columns(memory, (states, rows, times, signed), reader.header["state_dim"])
    if not committed.all():
        memory._text_rows = int(np.argmin(committed))  # the prefix before a drop


def _load_newest(memory: Any, reader: _Reader, records: list[tuple[int, int | None]],
                 max_size: int) -> None:
    """The newest parts until ``max_size`` rows, and older parts that reach into them."""
    first, count = len(records), 0
    while first > 0 and count < max_size:
        first -= 1
        count += records[first][0]
    columns, _, counts = reader.read(first, len(records))
    if count >= max_size and first > 0:
        times = columns[2]
        threshold = np.partition(times, len(times) - max_size)[len(times) - max_size]
        older = [i for i in range(first) if records[i][1] is not None
                 and records[i][1] >= threshold]
        if older:
            more, _, more_counts = reader.read(older[0], first)
            columns = tuple(_join(a, b) for a, b in zip(more, columns))
            counts, first = [*more_counts, *counts], older[0]
    for (name, (rows, newest)), read in zip(zip(_part_names(reader)[first:], records[first:]),
                                           counts):
        if read != rows:
            raise MemoryStoreError(f"{reader.folder / name}: holds {read} rows, the manifest "
                                   f"records {rows}; {_doctor(reader.folder)}")
    unread = records[:first]
    memory._appendable = True
    memory._parts = [(name, rows, newest) for name, (rows, newest)
                     in zip(_part_names(reader), records)]
    memory._unloaded = sum(rows for rows, _ in unread)
    memory._unloaded_newest = max((newest for _, newest in unread if newest is not None),
                                  default=None)
    memory._rest = _rest(reader, first) if first else None
    _set_columns(memory, columns, reader.header["state_dim"])


def _rest(reader: _Reader, first: int) -> Callable[[], Columns]:
    """Reads the parts before ``first`` (those a run's open left unread)."""
    return lambda: reader.read(0, first)[0]


def _set_columns(memory: Any, columns: Columns, state_dim: int) -> None:
    states, rows, times, signed = columns
    memory._state_dim = states.shape[1] if rows else state_dim
    memory._saved = len(rows)
    memory._text_rows = memory._unloaded + len(rows)  # at most; index.json says how many
    memory._states, memory._rows, memory._times, memory._signed_returns = columns


def _part_names(reader: _Reader) -> list[str]:
    return [INDEX_NAME, *(segment_names(g)[1] for g in reader.segments)]


def _newest(times: np.ndarray) -> int | None:
    return int(times.max()) if len(times) else None


def _join(older: Any, newer: Any) -> Any:
    return [*older, *newer] if isinstance(older, list) else np.concatenate([older, newer])
