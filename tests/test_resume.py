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


def _memory_files(folder: Path) -> dict[str, object]:
    """Every file of a memory folder, JSON parsed with run ids removed, binary as bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or path.name == ".lock":
            continue
        key = str(path.relative_to(folder))
        if path.suffix == ".json":
            out[key] = _without_run_ids(orjson.loads(path.read_bytes()))
        else:
            out[key] = path.read_bytes()
    return out


def _without_run_ids(value):
    if isinstance(value, dict):
        return {k: _without_run_ids(v) for k, v in value.items() if k != "run_id"}
    if isinstance(value, list):
        return [_without_run_ids(v) for v in value]
    return value


def test_killed_run_resumes_to_the_same_memory_and_metrics(tmp_path):
    # Arrange: one config for both runs (hashing embedder: fast and deterministic)
    write_config(tmp_path / "config.toml", memory__embedder="hashing",
                 data__cache_dir=str(tmp_path / "cache"))
    whole = subprocess.run(_command(tmp_path, "whole"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert whole.returncode == 0, whole.stderr

    # Act: start the same run, kill it while chunk 3 is being traded
    process = subprocess.Popen(_command(tmp_path, "killed"), cwd=ROOT, env=_env(),
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

    # Assert: the same memory folder, file by file, and the same metrics
    assert _memory_files(tmp_path / "killed" / "memory") == \
        _memory_files(tmp_path / "whole" / "memory")
    metrics = [_without_run_ids(orjson.loads(next((tmp_path / name / "runs").iterdir())
                                             .joinpath("metrics.json").read_bytes()))
               for name in ("whole", "killed")]
    # the config hashes differ only because the two runs write to different folders
    assert metrics[0].pop("config_hash") != metrics[1].pop("config_hash")
    assert metrics[0] == metrics[1]
    assert len(metrics[0]["chunks"]) == 4
