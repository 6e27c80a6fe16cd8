"""Crash consistency of `bt run`: a real learning run (SIGKILLed at 10 seeded random points
of its CPU time, each resumed run killed again, then resumed to the end; and once right
after its last commit) ends with the same memory folder and the same results, byte for
byte, as an uninterrupted run.

Kill points are CPU time of the child (utime + stime from /proc/<pid>/stat), not wall
time, so they land at the same place on a loaded machine. A kill leaves the lock and, at
worst, a temporary file of an atomic write behind: those are the only files left out of
the comparison (the next run takes the stale lock over; the store ignores temporaries)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from kit import write_config

from backtester.memory.io import is_temporary

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
OUTPUTS = ("metrics.json", "trades.parquet", "equity.parquet", "books.parquet",
           "prices.parquet")
# Runs the CLI with the run folder's writing replaced by a SIGKILL of the process itself:
# the kill lands after the last chunk's commit, before any result is written.
KILL_AFTER_LAST_COMMIT = (
    "import os, signal, sys\n"
    "import backtester.finish as finish\n"
    "finish.write_run = lambda result: os.kill(os.getpid(), signal.SIGKILL)\n"
    "sys.argv = ['bt', *sys.argv[1:]]\n"
    "from backtester.cli import main\n"
    "main()\n")


def _args(tmp: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--start", "2025-01-01", "--end", "2025-03-01", "--chunk", "week",
            "--config", str(tmp / "config.toml"), "--memory-dir", str(tmp / name / "memory"),
            "--out", str(tmp / name / "runs"), "--run-id", "r1", "--symbols", "BTCUSD,ETHUSD",
            "--quiet", *extra]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)


def _run(tmp: Path, args: list[str], *, code: str | None = None) -> subprocess.CompletedProcess:
    prefix = [sys.executable, "-c", code] if code else [sys.executable, "-m", "backtester"]
    return subprocess.run([*prefix, *args], cwd=tmp, env=_env(), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def _cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _kill_at(tmp: Path, args: list[str], point: float) -> bool:
    """Start a run; SIGKILL it once its CPU time passes ``point`` s. True when killed."""
    process = subprocess.Popen([sys.executable, "-m", "backtester", *args], cwd=tmp,
                               env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        while process.poll() is None:
            try:
                if _cpu(process.pid) >= point:
                    process.send_signal(signal.SIGKILL)
                    break
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass  # exiting: poll() tells
            try:  # wait on the child, a few milliseconds at a time
                process.wait(timeout=0.002)
            except subprocess.TimeoutExpired:
                pass
    finally:
        process.wait()
    return process.returncode == -signal.SIGKILL


def _state(tmp: Path, name: str) -> str:
    """"fresh" (nothing committed), "active" (an unfinished run recorded) or "done"."""
    manifest = tmp / name / "memory" / "manifest.json"
    if not manifest.exists():
        return "fresh"
    data = orjson.loads(manifest.read_bytes())
    if data["active_run"] is not None:
        return "active"
    return "done" if data["generation"] else "fresh"


def _continue(tmp: Path, name: str) -> subprocess.CompletedProcess | None:
    """What a user does after a kill: --resume an unfinished run, re-run a fresh one."""
    state = _state(tmp, name)
    if state == "done" and (tmp / name / "runs" / "r1" / "metrics.json").exists():
        return None
    extra = ("--resume",) if state == "active" else ()
    return _run(tmp, _args(tmp, name, *extra))


def _memory(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock" and not is_temporary(p.name)}


def _outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def _same_as_whole(tmp: Path, name: str) -> None:
    assert _memory(tmp / name / "memory") == _memory(tmp / "whole" / "memory")
    assert _outputs(tmp / name / "runs" / "r1") == _outputs(tmp / "whole" / "runs" / "r1")
    assert not (tmp / name / "runs" / "r1" / "chunks").exists()
    assert [p.name for p in (tmp / name / "runs" / "r1").iterdir() if is_temporary(p.name)] == []


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> tuple[Path, float]:
    """The folder holding the config, the data cache and the uninterrupted run "whole",
    and the CPU seconds that run took (measured after a warm-up run that fills the data
    and kernel caches, so that it is what a killed run would take)."""
    tmp = tmp_path_factory.mktemp("crash")
    write_config(tmp / "config.toml", memory__embedder="hashing",
                 data__cache_dir=str(tmp / "cache"))
    warm = _run(tmp, _args(tmp, "warm"))
    assert warm.returncode == 0, warm.stderr
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = _run(tmp, _args(tmp, "whole"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert run.returncode == 0, run.stderr
    return tmp, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def test_runs_killed_at_random_points_end_as_an_uninterrupted_run(whole):
    # Arrange: 10 kill points over the CPU time of a whole run
    tmp, total = whole
    points = np.random.default_rng(20250101).uniform(0.3 * total, 1.05 * total, size=10)

    # Act: kill at each point; the next point kills the resumed run, and so on; a run
    # that ends before its point is checked and the next point starts another one
    kills, names = 0, ["crash0"]
    for point in points:
        state = _state(tmp, names[-1])
        if state == "done":
            names.append(f"crash{len(names)}")
            state = "fresh"
        extra = ("--resume",) if state == "active" else ()
        kills += _kill_at(tmp, _args(tmp, names[-1], *extra), float(point))
    finished = _continue(tmp, names[-1])

    # Assert: every run ends as the uninterrupted one
    assert kills >= 8, f"only {kills} of 10 runs were killed (CPU {total:.2f} s)"
    assert finished is None or finished.returncode == 0, finished.stderr
    for name in names:
        _same_as_whole(tmp, name)


def test_run_killed_right_after_its_last_commit_is_finished_by_resume(whole):
    tmp, _ = whole
    # Act: the process dies between the last commit and the run folder
    killed = _run(tmp, _args(tmp, "last"), code=KILL_AFTER_LAST_COMMIT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    manifest = orjson.loads((tmp / "last" / "memory" / "manifest.json").read_bytes())
    assert manifest["active_run"]["outputs_pending"] is True
    plain = _run(tmp, _args(tmp, "last"))
    resumed = _run(tmp, _args(tmp, "last", "--resume"))
    # Assert: a plain run names --resume; --resume finishes without trading again
    assert plain.returncode == 1 and "finish it with --resume" in plain.stderr, plain.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert "already committed" in resumed.stderr
    _same_as_whole(tmp, "last")
