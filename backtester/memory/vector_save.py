"""Writing a vector memory to its folder (``VectorMemory.save``): the whole index (base
files: states.faiss, text.faiss, index.json) or, when a run only added rows since the last
save, those rows as a segment of their own (``states_<g>.f32``, ``rows_<g>.json``), so a
commit costs what the chunk adds; and the text index's catch-up as a text segment
(``text_segment``). Each rows file's digest carries its row count and newest entry time
(``part_record``) for the next open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backtester.memory.integrity import digest
from backtester.memory.io import atomic_write_bytes, atomic_write_many
from backtester.memory.vector_files import (
    INDEX_FILE,
    PART_NEWEST,
    PART_ROWS,
    STATES_FILE,
    TEXT_FILE,
    VECTORS_FOLDER,
    encode_segment,
    encode_text_segment,
    part_record,
    segment_names,
    write_files,
)

TEXT_NAME = f"{VECTORS_FOLDER}/{TEXT_FILE}"


def save_vectors(memory: Any, folder: Path, generation: int) -> dict[str, dict[str, Any]]:
    """The body of ``VectorMemory.save`` (``memory``), which documents it."""
    memory.commit_staged()
    memory.generation = generation
    if memory._texts is not None and memory._pending_texts and all(
            row["decision_id"] in memory._pending_texts
            for row in memory._rows[memory._text_rows:]):
        memory.catch_up_text()  # texts given to add, with the text index read: store them
    text_path = folder / TEXT_NAME
    if memory._texts is not None or not text_path.exists():
        run_view = memory._texts is None
        if run_view:
            memory._texts, memory._text_rows = memory._empty_texts(), 0
        written = _saved_all(memory, write_files(folder, memory.encode_files()))
        if run_view:  # still not read: the next save appends
            memory._texts = None
            memory._text_digest = written[TEXT_NAME]
        return written
    kept = memory._text_digest
    if kept is None:  # a folder saved before digests: this file is now recorded
        kept = digest(text_path.read_bytes())
    if memory._appendable and (folder / VECTORS_FOLDER / INDEX_FILE).exists():
        return {**_append(memory, folder, generation), TEXT_NAME: kept}
    written = _saved_all(memory, write_files(folder, memory.encode_files(with_text=False)))
    return {**written, TEXT_NAME: kept}


def _saved_all(memory: Any, written: dict[str, Any]) -> dict[str, Any]:
    """After a full write: every row is in the base files, which the next save may extend
    with segments (text segments are left behind: text.faiss covers what it can). Returns
    ``written`` with index.json's row record."""
    memory._saved, memory._appendable, memory._segments = (len(memory._rows),
                                                           bool(memory._rows), [])
    index = f"{VECTORS_FOLDER}/{INDEX_FILE}"
    written = {**written, index: part_record(written[index], memory._times)}
    memory._parts = [(index, len(memory._rows), written[index][PART_NEWEST])]
    memory._files = {name: record for name, record in written.items() if name != TEXT_NAME}
    memory._persisted_text = memory._text_rows if memory._texts is not None else 0
    return written


def _append(memory: Any, folder: Path, generation: int) -> dict[str, Any]:
    """Write the rows added since the last save as segment ``generation`` (its own two
    files; no other file is rewritten nor re-hashed); returns the digests of every vector
    file in force but text.faiss (base, segments, text segments), for the manifest."""
    if memory._files is None:  # a folder saved before digests: record what it holds
        names = [f"{VECTORS_FOLDER}/{STATES_FILE}", f"{VECTORS_FOLDER}/{INDEX_FILE}",
                 *(name for g in memory._segments for name in segment_names(g))]
        memory._files = {name: digest((folder / name).read_bytes()) for name in names}
    files = dict(memory._files)
    for name, rows, newest in memory._parts:  # a folder from before: recorded now
        files[name] = {**files[name], PART_ROWS: rows, PART_NEWEST: newest}
    saved = memory._saved
    if len(memory._rows) > saved:
        segment = encode_segment(generation, memory._states[saved:], memory._rows[saved:],
                                 memory._state_dim)
        atomic_write_many([(folder / segment[0][0], segment[0][1])])
        atomic_write_bytes(folder / segment[1][0], segment[1][1])
        files.update((name, digest(data)) for name, data in segment)
        rows_name = segment[1][0]
        files[rows_name] = part_record(files[rows_name], memory._times[saved:])
        memory._parts = [*memory._parts, (rows_name, len(memory._rows) - saved,
                                          files[rows_name][PART_NEWEST])]
        memory._segments = [*memory._segments, generation]
    memory._saved, memory._files = len(memory._rows), files
    return files


def text_segment(memory: Any, folder: Path) -> dict[str, dict[str, Any]]:
    """Write the text vectors embedded since the text index was read (rows
    ``[persisted, text_rows)``) as a text segment of their own, named by its rows and
    content; returns its digest for the manifest ({} when there is nothing new). The
    caller records it in the manifest (the commit point) under the folder's lock."""
    first, end = memory._persisted_text, memory._text_rows
    if memory._texts is None or end <= first:
        return {}
    name, data = encode_text_segment(first, memory._texts[first:end])
    atomic_write_bytes(folder / name, data)
    memory._persisted_text = end
    return {name: digest(data)}
