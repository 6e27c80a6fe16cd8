"""A `bt sweep` process killed with SIGKILL mid-sweep resumes without re-running the
trials it had finished (a real subprocess, as a user's terminal or a cluster job dies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "configs" / "default.toml")
SHORT = ['run.start="2025-01-01"', 'run.end="2025-02-01"', "data.timeframe=1h",
         "memory.embedder=hashing", "run.chunk=week"]


def _command(tmp: Path, *extra: str) -> list[str]:
    flags = [f for s in [*SHORT, f'data.cache_dir="{tmp / "cache"}"',
                         "ensemble.learning_rate=0.05,0.1,0.2"] for f in ("--set", s)]
    return [sys.executable, "-m", "backtester", "sweep", *flags, "--config", DEFAULT,
            "--engine", "local", "--out", str(tmp / "sweeps"), *extra]


def test_a_killed_sweep_resumes_keeping_its_finished_trials(tmp_path):
    # Act: kill the sweep as soon as its first trial has finished
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    process = subprocess.Popen(_command(tmp_path, "--sweep-id", "s1"), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL)
    seen = []
    for line in process.stdout:
        seen.append(line.strip())
        if line.startswith("[1/3]"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL, seen
    trials = tmp_path / "sweeps" / "s1" / "trials"
    finished = sorted(p.parent.name for p in trials.glob("*/result.json"))
    assert finished and len(finished) < 3
    stamps = {name: (trials / name / "result.json").stat().st_mtime_ns for name in finished}
    # Act: resume
    resumed = subprocess.run(_command(tmp_path, "--resume", "s1"), cwd=ROOT, env=env,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    # Assert: the finished trials were kept as they were, the rest ran
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(finished)} kept from before" in resumed.stdout
    assert {n: (trials / n / "result.json").stat().st_mtime_ns for n in finished} == stamps
    results = pd.read_parquet(tmp_path / "sweeps" / "s1" / "results.parquet")
    assert list(results["trial_id"]) == ["t0001", "t0002", "t0003"]
    assert set(results["status"]) == {"ok"}
