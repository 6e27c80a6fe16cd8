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


def refresh(root: Path = ROOT) -> None:
    """Delete the cached kernels under ``root`` when any source file changed since they
    were compiled; never raises (a read-only install keeps Numba's own checks)."""
    path = root / "__pycache__" / STAMP_NAME
    try:
        stamp = _stamp(root)
        if path.exists() and path.read_text() == stamp:
            return
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith((".nbi", ".nbc")):
                    os.remove(os.path.join(folder, name))
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_name(f"{STAMP_NAME}.{os.getpid()}.tmp")
        temporary.write_text(stamp)
        os.replace(temporary, path)
    except OSError:
        pass
