"""Moving a memory folder aside: ``bt memory reset`` and ``bt run --fresh``.

The folder is renamed (never copied, never deleted) to a timestamped backup beside it,
under its lock; the LLM response cache is copied back so recorded answers still replay.
``backtester.memory.store`` re-exports ``reset`` and ``backup_aside``.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from backtester.errors import MemoryStoreError
from backtester.memory.integrity import LLM_CACHE
from backtester.memory.io import LOCK_NAME, FolderLock, fsync_directory


def reset(folder: Path | str) -> Path | None:
    """Move the memory folder aside to ``<folder>.bak-<YYYYmmdd_HHMMSS>`` (UTC; ``-1``,
    ``-2``, ... if taken), keeping every file; the LLM response cache is copied back, so
    recorded answers can still be replayed.

    Returns
    -------
    Path or None
        The backup folder, or None when there was nothing to move (no folder, or an
        empty one).

    Raises
    ------
    MemoryLockedError
        A run holds the folder.
    """
    return _move_aside(folder, command="bt memory reset")


def backup_aside(folder: Path | str) -> Path | None:
    """Move the memory folder aside before a fresh run (``bt run --fresh``); see
    ``reset``."""
    return _move_aside(folder, command="bt run --fresh")


def _move_aside(folder: Path | str, *, command: str) -> Path | None:
    folder = Path(folder).resolve()
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise MemoryStoreError(f"{folder}: not a folder, was a file; pass a memory folder")
    if all(entry.name == LOCK_NAME for entry in folder.iterdir()):
        return None
    with FolderLock(folder, command=command) as lock:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        backup = folder.with_name(f"{folder.name}.bak-{stamp}")
        suffix = 1
        while backup.exists():
            backup = folder.with_name(f"{folder.name}.bak-{stamp}-{suffix}")
            suffix += 1
        os.rename(folder, backup)
        lock._moved_to(backup)  # release removes our lock file from the backup
    fsync_directory(backup.parent)
    if (backup / LLM_CACHE).is_dir():  # recorded answers are not learning: keep replaying them
        shutil.copytree(backup / LLM_CACHE, folder / LLM_CACHE)
    return backup
