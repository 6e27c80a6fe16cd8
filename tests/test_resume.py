"""A killed `bt run` resumes from its last committed chunk and ends exactly as an
uninterrupted run would (a real subprocess, killed with SIGKILL mid-chunk)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from kit import write_config

ROOT = Path(__file__).resolve().parents[1]


def _command(tmp: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "backtester", "run", "--start", "2025-01-01", "--end",
            "2025-05-01", "--chunk", "month", "--timeframe", "1h", "--config",
            str(tmp / "config.toml"), "--memory-dir", str(tmp / name / "memory"), "--out",
            str(tmp / name / "runs"), *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below a folder (the lock aside), as bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_killed_run_resumes_to_the_same_memory_and_metrics(tmp_path):
    # Arrange: one config for both runs (hashing embedder: fast and deterministic)
    write_config(tmp_path / "config.toml", memory__embedder="hashing",
                 data__cache_dir=str(tmp_path / "cache"))
    whole = subprocess.run(_command(tmp_path, "whole", "--run-id", "r1"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert whole.returncode == 0, whole.stderr

    # Act: start the same run, kill it while chunk 3 is being traded
    process = subprocess.Popen(_command(tmp_path, "killed", "--run-id", "r1"), cwd=ROOT, env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL)
    seen = []
    for line in process.stdout:
        seen.append(line.strip())
        if line.strip() == "2025-03: votes":
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, seen
    manifest = orjson.loads((tmp_path / "killed" / "memory" / "manifest.json").read_bytes())
    assert [c["label"] for c in manifest["chunks"]] == ["2025-01", "2025-02"]
    assert manifest["active_run"]["chunks_done"] == 2

    # a plain re-run is refused, naming --resume
    again = subprocess.run(_command(tmp_path, "killed"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 1 and "--resume" in again.stderr, again.stderr
    resumed = subprocess.run(_command(tmp_path, "killed", "--resume"), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    assert "2025-01: prepare" not in resumed.stdout  # committed chunks are not redone
    assert "2025-03: prepare" in resumed.stdout

    # Assert: the same memory folder and the same run outputs, byte for byte
    assert _files(tmp_path / "killed" / "memory") == _files(tmp_path / "whole" / "memory")
    # (config.toml, and the report that shows it, differ by the folders the runs wrote to)
    runs = [{name: data.replace(str(tmp_path / which).encode(), b"<tmp>")
             for name, data in _files(tmp_path / which / "runs").items()}
            for which in ("killed", "whole")]
    assert runs[0] == runs[1]
    metrics = [orjson.loads((tmp_path / name / "runs" / "r1" / "metrics.json").read_bytes())
               for name in ("whole", "killed")]
    assert len(metrics[0]["chunks"]) == 4
