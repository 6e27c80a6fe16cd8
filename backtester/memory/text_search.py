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

from backtester.errors import MemoryLockedError
from backtester.memory.embedders import Embedder
from backtester.memory.integrity import FILES_KEY, INDEX_NAME
from backtester.memory.io import FolderLock
from backtester.memory.store import MemoryStore


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
