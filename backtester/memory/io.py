"""Crash-safe file io for the memory folder: atomic writes, JSON, and the run lock.

A write goes to a temporary file in the same folder, is flushed and fsynced, replaces
the target with ``os.replace`` and then the folder itself is fsynced: a reader (or a
crash) sees the old file or the new one, never half of one. JSON goes through orjson;
nothing is ever pickled, so a memory folder from someone else cannot run code.
"""

from __future__ import annotations

import errno
import os
import secrets
import shlex
import socket
import sys
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from backtester.errors import MemoryLockedError, MemoryStoreError

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
LOCK_NAME = ".lock"
TEMPORARY_SUFFIX = ".tmp"
# fsync is the cost of a small write (about 2 ms here); a few threads overlap them.
_WRITE_WORKERS = 8


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    A temporary file in the same folder is written, flushed and fsynced, then moved over
    ``path`` with ``os.replace``, then the folder is fsynced. On any failure the
    temporary file is removed and the old content of ``path`` is left as it was.
    """
    path = Path(path)
    _write_replace(path, data)
    fsync_directory(path.parent)


def atomic_write_many(items: Iterable[tuple[Path, bytes]]) -> None:
    """Write many files atomically (each as ``atomic_write_bytes``), fsyncing each folder
    once at the end and overlapping the per-file fsyncs in a few threads."""
    items = [(Path(path), data) for path, data in items]
    if not items:
        return
    if len(items) == 1:
        _write_replace(*items[0])
    else:
        with ThreadPoolExecutor(max_workers=min(_WRITE_WORKERS, len(items))) as pool:
            for future in [pool.submit(_write_replace, path, data) for path, data in items]:
                future.result()
    for folder in {path.parent for path, _ in items}:
        fsync_directory(folder)


def write_many_synced_once(items: Iterable[tuple[Path, bytes]]) -> None:
    """Write many files atomically with one filesystem sync instead of one fsync each.

    Every file goes to its temporary name unsynced; one ``syncfs`` (``os.sync`` where it
    is missing) makes all their bytes durable; only then are they renamed into place and
    each folder fsynced once. A crash before the sync leaves only temporary files (removed
    when the lock is next taken); after it, each target is the old file or the complete
    new one, as with ``atomic_write_bytes``. The cost is one sync, not one per file.
    """
    items = [(Path(path), data) for path, data in items]
    if len(items) <= 1:
        atomic_write_many(items)
        return
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            staged.append((_write_temporary(path, data, sync=False), path))
        sync_filesystem(items[0][0].parent)
        for temporary, path in staged:
            os.replace(temporary, path)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for folder in {path.parent for _, path in staged}:
        fsync_directory(folder)


def sync_filesystem(folder: Path | str) -> None:
    """Flush every written byte of the filesystem holding ``folder`` to disk: Linux's
    ``syncfs`` on it, else ``os.sync()``."""
    global _syncfs
    if _syncfs is None:
        try:
            import ctypes

            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            if _syncfs(descriptor) == 0:
                return
        finally:
            os.close(descriptor)
    os.sync()


_syncfs: Any = None  # libc's syncfs, False where there is none, None before the first use


def _write_replace(path: Path, data: bytes) -> None:
    temporary = _write_temporary(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_temporary(path: Path, data: bytes, *, sync: bool = True) -> Path:
    """``data`` written (and fsynced, unless ``sync`` is False) to a new temporary file
    beside ``path``; removed again when the write fails (a full disk)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            if sync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def replace_all(items: Iterable[tuple[Path, bytes]],
                before_swap: Callable[[], None] | None = None) -> None:
    """Write every file to a temporary name first; only when all are written (and
    fsynced) run ``before_swap`` and move them into place, in order (put the commit
    point last). A failed write (a full disk, a kill) leaves every target as it was."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            staged.append((_write_temporary(Path(path), data), Path(path)))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    if before_swap is not None:
        before_swap()
    for temporary, path in staged:
        os.replace(temporary, path)
    for folder in {path.parent for _, path in staged}:
        fsync_directory(folder)


def remove_temporaries(folder: Path | str, subfolders: Iterable[str] = ("vectors",)) -> list[str]:
    """Remove the temporary files an interrupted write left in ``folder`` and its named
    subfolders (never part of a commit); returns their names. Call under the lock."""
    removed = []
    folder = Path(folder)
    for where in (folder, *(folder / name for name in subfolders)):
        try:
            entries = [e for e in os.scandir(where) if is_temporary(e.name)
                       and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(os.path.relpath(entry.path, folder))
    return sorted(removed)


def fsync_directory(folder: Path | str) -> None:
    """Make the renames inside ``folder`` durable (a no-op where folders cannot be
    fsynced)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(descriptor)


def dumps_json(obj: Any) -> bytes:
    """``obj`` as the memory folder's JSON: indented, sorted keys, numpy allowed, NaN as
    null."""
    return orjson.dumps(obj, option=JSON_OPTIONS)


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, dumps_json(obj))


def read_json(path: Path | str, *, folder: Path | str | None = None) -> Any:
    """Read a JSON file.

    ``folder`` is the memory folder the file belongs to, named in the repair hint
    (default: the file's own folder).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (callers decide what a missing file means).
    MemoryStoreError
        If the file is not valid JSON (truncated, empty, garbage, not UTF-8), or is a
        folder or otherwise unreadable.
    """
    return read_json_bytes(path, folder=folder)[0]


def read_json_bytes(path: Path | str, *, folder: Path | str | None = None) -> tuple[Any, bytes]:
    """``read_json``, also returning the bytes read (to check them against a digest)."""
    from backtester.memory.integrity import doctor_hint

    path = Path(path)
    hint = doctor_hint(path.parent if folder is None else folder, "to quarantine it and rebuild")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise MemoryStoreError(f"{path}: is a folder, a file was expected; {hint}") from None
    except OSError as error:
        raise MemoryStoreError(f"{path}: cannot be read ({error.strerror}); {hint}") from None
    try:
        return orjson.loads(data), data
    except orjson.JSONDecodeError as error:
        reason = " ".join(str(error).split())
        raise MemoryStoreError(f"{path}: not valid JSON ({reason}); {hint}") from None


def is_temporary(name: str) -> bool:
    """Whether a file name is one of ``atomic_write_bytes``'s temporary files."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


class FolderLock:
    """The run lock of a memory folder: ``folder/.lock``, created exclusively.

    Use as a context manager. The lock file holds the owner's pid, host, start time (ISO
    UTC) and command. A lock left by a dead process on this host (or an unreadable lock
    file) is stale: it is taken over with a warning. Any other existing lock raises
    ``MemoryLockedError``. The lock is released (its file removed) on exit, also when
    the block raises.

    Parameters
    ----------
    folder
        The memory folder; created if missing.
    command
        What holds the lock, shown to a second run; defaults to this process's command
        line.
    """

    def __init__(self, folder: Path | str, *, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command if command is not None else _command_line()
        self._content: bytes | None = None
        self.removed_temporaries: list[str] = []  # left by a killed write, removed at acquire

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._content is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``MemoryLockedError`` if a live run holds it."""
        if self.held:
            raise MemoryLockedError(f"{self.folder}: this lock object already holds the lock")
        self.folder.mkdir(parents=True, exist_ok=True)
        content = orjson.dumps(
            {
                "command": self.command,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            option=JSON_OPTIONS,
        )
        for _ in range(3):
            if self._create(content):
                self._content = content
                self.removed_temporaries = remove_temporaries(self.folder)
                return
            self._take_over_if_stale()
        raise MemoryLockedError(
            f"{self.folder}: could not take the lock {self.path} (other runs keep taking "
            "it); wait for them to finish, or use --memory-dir for another folder"
        )

    def release(self) -> None:
        """Remove the lock file if it is still this object's (idempotent)."""
        if self._content is None:
            return
        try:
            if self.path.read_bytes() == self._content:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._content = None

    def _moved_to(self, folder: Path) -> None:
        """Follow the folder after it was renamed while locked (``reset``)."""
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME

    def _create(self, content: bytes) -> bool:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(descriptor, content)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return True

    def _take_over_if_stale(self) -> None:
        try:
            existing = self.path.read_bytes()
        except FileNotFoundError:
            return  # released meanwhile: try to create it again
        holder = _parse_lock(existing)
        if holder is None:
            reason = "an unreadable lock file"
        elif holder["host"] == socket.gethostname() and not pid_alive(holder["pid"]):
            reason = f"a stale lock of pid {holder['pid']} (no longer running)"
        else:
            raise MemoryLockedError(
                f"{self.folder} is in use by pid {holder['pid']} on host {holder['host']} "
                f"since {holder['started']} ({holder['command']}); wait for it to finish, "
                "or use --memory-dir for another folder"
            )
        # Move the stale file aside and check that it is still the one judged stale:
        # another run may have taken it over in between.
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_bytes() != existing:
            try:
                os.link(aside, self.path)  # put the other run's fresh lock back
            except FileExistsError:
                pass
        aside.unlink()
        warnings.warn(f"{self.folder}: took over {reason}", stacklevel=4)


def read_lock(folder: Path | str) -> dict | None:
    """The holder of ``folder``'s lock ({pid, host, started, command}), or None when the
    folder is not locked or its lock file is unreadable."""
    try:
        return _parse_lock((Path(folder) / LOCK_NAME).read_bytes())
    except FileNotFoundError:
        return None


def break_lock(folder: Path | str, expected: dict | None) -> bool:
    """Remove ``folder``'s lock file if it still names ``expected`` (what ``read_lock``
    showed; None: an unreadable lock file); True when removed. For `bt memory unlock
    --force`: a lock of another host, whose process bt cannot check."""
    path = Path(folder) / LOCK_NAME
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return False
    if _parse_lock(content) != expected:
        return False  # taken over meanwhile: leave the new holder's lock
    path.unlink(missing_ok=True)
    fsync_directory(folder)
    return True


def holds_lock(folder: Path | str) -> bool:
    """Whether this process holds ``folder``'s lock."""
    holder = read_lock(folder)
    return (
        holder is not None
        and holder["pid"] == os.getpid()
        and holder["host"] == socket.gethostname()
    )


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _parse_lock(content: bytes) -> dict | None:
    try:
        holder = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(holder, dict):
        return None
    pid = holder.get("pid")
    if type(pid) is not int or not isinstance(holder.get("host"), str):
        return None
    return {
        "pid": pid,
        "host": holder["host"],
        "started": str(holder.get("started", "an unknown time")),
        "command": str(holder.get("command", "an unknown command")),
    }


def _command_line() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return shlex.join(argv)
