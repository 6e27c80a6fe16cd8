"""The memory folder: what chunks and runs learn, kept crash-safe on disk.

``MemoryStore`` (store.py) holds outcomes, stats, snapshots and the manifest; what a
folder may hold (names, shapes, digests, containment) is in integrity.py, its census and
trade tallies in census.py, moving it aside (reset, --fresh) in backup.py;
``doctor.doctor`` checks and repairs a memory folder (`bt memory doctor`);
``FolderLock`` and the atomic JSON io live in io.py; the vector index is in vectors.py and
its files in vector_files.py (imported on their own: they load FAISS).
"""

from backtester.memory.io import FolderLock, atomic_write_bytes, read_json, write_json
from backtester.memory.store import (
    SCHEMA_VERSION,
    MemoryStore,
    backup_aside,
    outcome_tallies,
    reset,
)

__all__ = [
    "SCHEMA_VERSION",
    "FolderLock",
    "MemoryStore",
    "atomic_write_bytes",
    "backup_aside",
    "outcome_tallies",
    "read_json",
    "reset",
    "write_json",
]
