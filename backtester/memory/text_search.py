"""Searching the text index (`bt memory search`, ``Memory.search``), its catch-up kept.

A run never embeds text, so the text index (text.faiss, then the text segments searches
stored) covers the first rows only. A search embeds the rows it lacks from their outcome
files and, when it can take the folder's lock, keeps them: a text segment
(``vectors/text_<first>_<end>_<sha256>.f32``, named by its rows and content, written
first) that the manifest then records (written last: the commit point), so the next search
embeds nothing. A crash between the two leaves a file no manifest names (never read; the
same catch-up writes it again); a reader without the lock sees the manifest before or
after, each naming complete files. A folder a run holds (its lock) is searched in memory,
nothing written, as is one saved before the manifest recorded its vector files (`bt memory
doctor` stores its text index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backtester.errors import MemoryLockedError, MemoryStoreError
from backtester.memory.embedders import Embedder, encode_unique
from backtester.memory.integrity import FILES_KEY, INDEX_NAME, MANIFEST, VECTORS
from backtester.memory.io import FolderLock, read_json
from backtester.memory.store import MemoryStore

TEXT_INDEX_NAME = f"{VECTORS}/text.faiss"


@dataclass(frozen=True)
class TextSearch:
    """What a search found: ``hits`` (rows with "similarity", most similar first),
    ``embedded`` (rows the text index lacked, embedded for it) and ``stored`` (whether
    they were kept in the folder)."""

    hits: list[dict[str, Any]]
    embedded: int
    stored: bool


def search_text(folder: Path, text: str, k: int, embedder: Embedder) -> TextSearch:
    """The ``k`` past situations of the memory in ``folder`` whose texts are most similar
    to ``text``; the rows the text index lacks are embedded and, under the folder's lock,
    stored (see the module). Raises ``MemoryStoreError`` like ``VectorMemory.load``."""
    from backtester.memory.vector_save import text_segment
    from backtester.memory.vectors import VectorMemory

    folder = Path(folder)
    lock = FolderLock(folder, command=f"bt memory search {text!r}")
    try:
        if folder.is_dir():
            lock.acquire()
    except (MemoryLockedError, OSError):  # a run holds it, or a folder this user cannot write
        pass
    try:
        store = MemoryStore.open(folder, config_hash=None, create=False, read_only=True)
        files = store.manifest.get(FILES_KEY)
        vectors = VectorMemory.load(folder, committed_generation=store.generation,
                                    max_size=10**9, embedder=embedder, files=files)
        vectors.outcome_reader = store.outcomes_by_id
        embedded = vectors.catch_up_text()
        stored = False
        if embedded and lock.held and INDEX_NAME in (files or {}):
            store.record_files(text_segment(vectors, folder))
            stored = True
        return TextSearch(vectors.search_text(text, k), embedded, stored)
    finally:
        lock.release()


def text_vectors(folder: Path, generation: int, embedder: Embedder, rows: list[dict],
                 states: np.ndarray, texts: list[str]) -> np.ndarray:
    """The text vectors of ``texts`` (one per row) for a rebuilt index (`bt memory
    doctor`): a row's vector is kept from the folder's text index when every vector file
    matches the manifest's digest and the stored row has the same metadata and state;
    the rest are embedded. So the doctor re-embeds only what is missing or changed."""
    intact = _intact_text_vectors(folder, generation, embedder)
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    missing = []
    for i, row in enumerate(rows):
        kept = intact.get(row["decision_id"])
        if kept is not None and kept[0] == row and np.array_equal(kept[1], states[i]):
            vectors[i] = kept[2]
        else:
            missing.append(i)
    if missing:
        vectors[missing] = encode_unique(embedder, [texts[i] for i in missing])
    return vectors


def _intact_text_vectors(folder: Path, generation: int, embedder: Embedder
                         ) -> dict[Any, tuple[dict, np.ndarray, np.ndarray]]:
    """Decision id -> (row, state, text vector) of the rows the text index covers, read
    only when the manifest records the vector files (their digests) and they all match;
    {} when anything is missing, damaged or from another embedder."""
    from backtester.memory.vectors import VectorMemory

    try:
        files = read_json(Path(folder) / MANIFEST, folder=folder).get(FILES_KEY)
        if not isinstance(files, dict) or not {INDEX_NAME, TEXT_INDEX_NAME} <= files.keys():
            return {}
        vectors = VectorMemory.load(folder, committed_generation=generation, max_size=10**9,
                                    embedder=embedder, files=files)
    except (MemoryStoreError, OSError, AttributeError):
        return {}
    return {row["decision_id"]: (row, state, text)
            for row, state, text in vectors.embedded_rows()}
