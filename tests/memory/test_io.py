"""Atomic writes, JSON io and the folder lock of the memory folder."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest

from backtester.errors import MemoryLockedError, MemoryStoreError
from backtester.memory import io
from backtester.memory.io import (
    FolderLock,
    atomic_write_bytes,
    atomic_write_many,
    holds_lock,
    read_json,
    read_lock,
    write_json,
)


def _dead_pid() -> int:
    """The pid of a process that has surely exited (spawned, waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(folder: Path, **holder: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_bytes(orjson.dumps(holder))


# -- atomic writes ------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(b"old")

    atomic_write_bytes(target, b"new content")

    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_write_failing_replace_keeps_old_content_and_removes_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a file with old content, and a rename that fails (a crash before it)
    target = tmp_path / "stats.json"
    target.write_bytes(b'{"old": 1}')

    def failing_replace(source: object, destination: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", failing_replace)

    # Act
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_bytes(target, b'{"new": 2}')

    # Assert
    assert target.read_bytes() == b'{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]


def test_atomic_write_failing_fsync_removes_temporary_and_keeps_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.json"
    target.write_bytes(b"old")

    def failing_fsync(descriptor: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")

    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_many_writes_every_file_and_no_temporary(tmp_path: Path) -> None:
    items = [(tmp_path / f"outcome_{i}.json", f"{i}".encode() * (i + 1)) for i in range(40)]

    atomic_write_many(items)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p, _ in items)
    for path, data in items:
        assert path.read_bytes() == data


def test_atomic_write_many_failure_in_one_file_raises_and_cleans_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(source: str, destination: Path) -> None:
        if Path(destination).name == "b":
            raise OSError("no")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        atomic_write_many([(tmp_path / "a", b"1"), (tmp_path / "b", b"2"), (tmp_path / "c", b"3")])

    assert not any(io.is_temporary(p.name) for p in tmp_path.iterdir())
    assert not (tmp_path / "b").exists()


# -- JSON ---------------------------------------------------------------------------------


def test_write_json_sorts_keys_indents_and_writes_nan_and_numpy_as_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"

    write_json(path, {"b": float("nan"), "a": np.array([1.5, np.nan]), "c": np.int64(7)})

    text = path.read_text()
    assert text == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": null,\n  "c": 7\n}'
    assert read_json(path) == {"a": [1.5, None], "b": None, "c": 7}


def test_read_json_round_trips_floats_exactly(tmp_path: Path) -> None:
    values = [0.1, 1 / 3, -2.5e-300, 12345678.125, math.pi]
    write_json(tmp_path / "f.json", {"values": values})
    assert read_json(tmp_path / "f.json")["values"] == values


@pytest.mark.parametrize("content", [b'{"generation": 3, "provi', b"", b"\x00\x00garbage"])
def test_read_json_of_broken_file_names_file_and_doctor_in_one_line(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "provider_performance.json"
    path.write_bytes(content)

    with pytest.raises(MemoryStoreError) as caught:
        read_json(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: not valid JSON (")
    assert "`bt memory doctor --memory-dir " in message  # not the default folder: named
    assert "\n" not in message


def test_read_json_of_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "manifest.json")


# -- lock ---------------------------------------------------------------------------------


def test_lock_writes_holder_and_removes_file_on_exit(tmp_path: Path) -> None:
    folder = tmp_path / "memory"

    with FolderLock(folder, command="bt run --year 2025") as lock:
        holder = read_lock(folder)
        assert lock.held and holds_lock(folder)
        assert holder is not None
        assert holder["pid"] == os.getpid()
        assert holder["host"] == socket.gethostname()
        assert holder["command"] == "bt run --year 2025"
        assert holder["started"].endswith("+00:00")

    assert not (folder / ".lock").exists()
    assert not holds_lock(folder)


def test_second_acquisition_is_refused_with_holder_pid_in_message(tmp_path: Path) -> None:
    with FolderLock(tmp_path, command="bt run"):
        with pytest.raises(MemoryLockedError) as caught:
            FolderLock(tmp_path).acquire()
        message = str(caught.value)
        assert f"in use by pid {os.getpid()} on host {socket.gethostname()}" in message
        assert "(bt run)" in message
        assert "--memory-dir" in message
        assert "\n" not in message
    # the refused attempt did not remove the holder's lock; the holder released it
    assert not (tmp_path / ".lock").exists()


def test_lock_of_live_other_process_is_refused(tmp_path: Path) -> None:
    parent = os.getppid()  # alive: it runs pytest
    _write_lock(tmp_path, pid=parent, host=socket.gethostname(),
                started="2025-01-01T00:00:00+00:00", command="bt run --year 2024")

    with pytest.raises(MemoryLockedError, match=f"pid {parent} .* since 2025-01-01T00:00:00"):
        FolderLock(tmp_path).acquire()
    assert read_lock(tmp_path)["pid"] == parent


def test_stale_lock_of_dead_pid_is_taken_over_with_warning(tmp_path: Path) -> None:
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead, host=socket.gethostname(), started="x", command="bt run")

    with pytest.warns(UserWarning, match=f"stale lock of pid {dead}"):
        with FolderLock(tmp_path):
            assert read_lock(tmp_path)["pid"] == os.getpid()

    assert not (tmp_path / ".lock").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the stale file is not left aside


def test_dead_pid_on_another_host_is_not_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=_dead_pid(), host="some-other-host", started="t", command="c")

    with pytest.raises(MemoryLockedError, match="on host some-other-host"):
        FolderLock(tmp_path).acquire()


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"pid": "12", "host": "h"}', b"[1, 2]"])
def test_corrupt_lock_counts_as_stale(tmp_path: Path, content: bytes) -> None:
    (tmp_path / ".lock").write_bytes(content)

    with pytest.warns(UserWarning, match="unreadable lock file"):
        with FolderLock(tmp_path):
            assert holds_lock(tmp_path)


def test_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"):
        with FolderLock(tmp_path):
            raise ValueError("boom")

    assert not (tmp_path / ".lock").exists()
    with FolderLock(tmp_path):  # and can be taken again, without any warning
        pass


def test_release_leaves_a_lock_file_that_is_no_longer_ours(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lock = FolderLock(tmp_path)
        lock.acquire()
        (tmp_path / ".lock").write_bytes(b'{"pid": 1, "host": "elsewhere"}')
        lock.release()

    assert (tmp_path / ".lock").read_bytes() == b'{"pid": 1, "host": "elsewhere"}'
