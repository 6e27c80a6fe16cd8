"""Reading a vector memory from its folder (``VectorMemory.load``): the base files
(states.faiss, index.json, text.faiss), then the chunk segments appended since
(``states_<g>.f32`` / ``rows_<g>.json``, see vector_files.py), each checked against the
manifest's digests; rows of generations the manifest does not commit are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from backtester.errors import MemoryStoreError
from backtester.memory.embedders import Embedder
from backtester.memory.integrity import refuse_symlinks
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
    segment_generations,
    segment_names,
)


def load_vectors(cls: Any, folder: Path, *, committed_generation: int, max_size: int,
                 embedder: Embedder, state_names: tuple[str, ...] | None,
                 files: dict[str, Any] | None, text: bool) -> Any:
    """The body of ``VectorMemory.load`` (``cls``), which documents it."""

    vectors = Path(folder) / VECTORS_FOLDER
    memory = cls(max_size=max_size, embedder=embedder, state_names=state_names)
    if not text:
        memory._texts = None  # not read, also when there is nothing to read yet
    refuse_symlinks(folder, (VECTORS_FOLDER,))
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
    header, rows = _read_index_json(index_path, embedder, folder=folder, files=files)
    state_dim = header["state_dim"]
    recorded = _recorded_names(header)
    mismatch = rows and state_names is not None and state_names_mismatch(
        recorded, state_dim, tuple(state_names))
    if mismatch:
        raise MemoryStoreError(f"memory.dir {folder}: {mismatch}")
    if state_names is None:
        memory._state_names = recorded
    states = _read_faiss(vectors / STATES_FILE, metric=faiss.METRIC_L2, dim=state_dim,
                         count=len(rows), folder=folder, files=files)
    text_rows = header.get("text_rows", len(rows))
    if not _is_count(text_rows) or text_rows > len(rows):
        raise MemoryStoreError(f"{index_path}: text_rows must be an integer from 0 to "
                               f"{len(rows)}, was {text_rows!r}; {_doctor(folder)}")
    texts = None
    if text:
        texts = _read_faiss(vectors / TEXT_FILE, metric=faiss.METRIC_INNER_PRODUCT,
                            dim=embedder.dim, count=text_rows, folder=folder, files=files,
                            at_least="text_rows" in header)
    else:
        memory._text_digest = (files or {}).get(f"{VECTORS_FOLDER}/{TEXT_FILE}")
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
        raise MemoryStoreError(f"{index_path}: a row has an invalid generation, direction, "
                               f"return_pct or entry_time ({reason}); {_doctor(folder)}"
                               ) from None
    committed = generations <= committed_generation
    base_rows = len(rows)
    segments = segment_generations(folder, header["generation"], committed_generation,
                                   files)
    if segments:
        states, rows, times, directions, returns, generations, committed = _with_segments(
            folder, segments, files, state_dim if rows else None,
            (states, rows, times, directions, returns, generations, committed))
        state_dim = states.shape[1] if rows else state_dim
    if not committed.all():
        keep = np.flatnonzero(committed)
        text_rows = min(text_rows, int(np.argmin(committed)))  # the prefix before a drop
        states, times = states[keep], times[keep]
        directions, returns = directions[keep], returns[keep]
        rows = [rows[i] for i in keep]
    memory.generation = min(max([header["generation"], *segments]), committed_generation)
    memory._state_dim = state_dim
    memory._saved = len(rows)
    memory._appendable = base_rows > 0 and committed.all()
    memory._files = None if files is None else {
        name: record for name, record in files.items()
        if name.startswith(f"{VECTORS_FOLDER}/") and name != f"{VECTORS_FOLDER}/{TEXT_FILE}"}
    memory._segments = segments
    memory._states, memory._rows, memory._times = states, rows, times
    memory._texts = None if texts is None else texts[:text_rows]
    memory._text_rows = text_rows
    memory._signed_returns = directions * returns
    memory._refresh_search()
    return memory


def _with_segments(folder: Path, segments: list[int], files: dict[str, Any] | None,
                   state_dim: int | None, base: tuple) -> tuple:
    """The base's (states, rows, times, directions, returns, generations, committed)
    extended with the segments' rows."""
    states, rows, times, directions, returns, generations, committed = base
    blocks, new_rows = [], []
    for generation in segments:
        block, block_rows = read_segment(folder, generation, state_dim, files)
        state_dim = block.shape[1] if state_dim is None else state_dim
        blocks.append(block)
        new_rows.extend(block_rows)
    path = Path(folder) / segment_names(segments[-1])[1]
    try:
        new_directions = np.array([row["direction"] for row in new_rows], dtype=np.float64)
        new_returns = np.array([row["return_pct"] for row in new_rows], dtype=np.float64)
        new_times = _times_ns([row["entry_time"] for row in new_rows])
    except (TypeError, ValueError, OverflowError) as e:
        reason = " ".join(str(e).split())
        raise MemoryStoreError(f"{path}: a row has an invalid direction, return_pct or "
                               f"entry_time ({reason}); {_doctor(folder)}") from None
    new_generations = np.array([row["generation"] for row in new_rows], dtype=np.int64)
    if len(rows) == 0:
        states = np.zeros((0, state_dim), dtype=np.float32)
    states = np.concatenate([states, *blocks])
    rows = [*rows, *new_rows]
    ids = [row["decision_id"] for row in rows]
    if len(set(ids)) != len(ids):  # a run appends new decision ids only
        raise MemoryStoreError(f"{path}: repeats a decision id of an earlier row; "
                               f"{_doctor(folder)}")
    return (states, rows, np.concatenate([times, new_times]),
            np.concatenate([directions, new_directions]),
            np.concatenate([returns, new_returns]),
            np.concatenate([generations, new_generations]),
            np.concatenate([committed, np.ones(len(new_rows), dtype=bool)]))
