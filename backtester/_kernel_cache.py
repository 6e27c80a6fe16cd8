"""Keep Numba's on-disk cache true to the source.

Numba invalidates a cached kernel only when the file that defines it changes; a kernel
that calls a ``_nb`` helper from another module (``engine/kernels.py`` calls
``engine/risk.py`` and ``engine/fills.py``; ``regime.py`` calls ``features.py``) keeps the
helper's old machine code after only the helper changed, silently. So on import, the
package compares a stamp of every source file's size and modification time with the one
written beside the cache; when they differ (an edit, a ``git pull``, an upgrade) every
cached kernel of the package is deleted and compiled afresh on first use. The check is a
few hundred ``stat`` calls (well under a millisecond warm).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STAMP_NAME = "numba-sources.stamp"  # in the package's top __pycache__


def _stamp(root: Path) -> str:
    digest = hashlib.sha256()
    for folder, folders, files in sorted(os.walk(root)):
        folders[:] = [f for f in folders if f != "__pycache__"]
        for name in sorted(files):
            if name.endswith(".py"):
                status = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}:{status.st_size}:{status.st_mtime_ns};".encode())
    return digest.hexdigest()


def _cache_folders(root: Path, cache_dir: str | None) -> list[Path]:
    """Where Numba keeps the cached kernels of the modules under ``root``: each package
    folder's ``__pycache__``, or with ``NUMBA_CACHE_DIR`` set, the folder Numba names
    ``<folder name>_<sha1 of the folder's absolute path>`` inside it."""
    folders = []
    for folder, names, _ in os.walk(root):
        names[:] = [n for n in names if n != "__pycache__"]
        if cache_dir:
            source = os.path.abspath(folder)
            digest = hashlib.sha1(source.encode()).hexdigest()
            folders.append(Path(cache_dir) / f"{os.path.basename(source)}_{digest}")
        else:
            folders.append(Path(folder) / "__pycache__")
    return folders


def refresh(root: Path = ROOT, cache_dir: str | None = None) -> None:
    """Delete the cached kernels of the modules under ``root`` when any source file
    changed since they were compiled; never raises (a read-only install keeps Numba's own
    checks). ``cache_dir`` is Numba's cache folder when one is set (default: the
    ``NUMBA_CACHE_DIR`` environment variable, as Numba reads it); the stamp lives beside
    the kernels it vouches for."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR") if cache_dir is None else cache_dir
    folders = _cache_folders(root, cache_dir)
    path = folders[0] / STAMP_NAME
    try:
        stamp = _stamp(root)
        if path.exists() and path.read_text() == stamp:
            return
        for folder in folders:
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.name.endswith((".nbi", ".nbc")):
                        os.remove(entry.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{STAMP_NAME}.{os.getpid()}.tmp")
        temporary.write_text(stamp)
        os.replace(temporary, path)
    except OSError:
        pass
