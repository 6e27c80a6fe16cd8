"""A real full disk: the memory folder, then the run folder, on a small tmpfs. `bt run` says
so in one line naming the folder and what was kept; once there is room, `--resume` gives
the uninterrupted run's results byte for byte. (Simulated ENOSPC at every write site is in
tests/test_hardening_run.py; this is the same through the kernel's own error.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backtester.cli import app

OUTPUTS = ("metrics.json", "trades.parquet", "equity.parquet", "books.parquet",
           "prices.parquet")
ARGS = ["run", "--start", "2025-01-01", "--end", "2025-01-29", "--chunk", "week",
        "--symbols", "BTCUSD", "--run-id", "r1", "--set", 'memory.embedder="hashing"']


def _mount(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); tests/test_hardening_run.py "
                    "covers the same paths with a simulated ENOSPC")


def _grow(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)


@pytest.fixture()
def tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        _mount(folder, size)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _run(workdir: Path, memory: Path, out: Path, *more: str):
    return CliRunner().invoke(app, [*ARGS, "--memory-dir", str(memory), "--out", str(out),
                                    *more], catch_exceptions=False)


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("whole")
    result = _run(tmp, tmp / "memory", tmp / "runs")
    assert result.exit_code == 0, result.output
    return {name: (tmp / "runs" / "r1" / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize("full", ["memory", "runs"])
def test_a_full_disk_is_one_line_and_resume_finishes_the_run(whole, tmp_path, tmpfs, full):
    # Arrange: one folder on a tmpfs too small for the run
    memory, out = tmp_path / "memory", tmp_path / "runs"
    tmpfs(memory if full == "memory" else out, "96k")
    # Act
    stopped = _run(tmp_path, memory, out)
    # Assert: one line naming the folder, what is kept and the way on
    assert stopped.exit_code == 1
    lines = [line for line in stopped.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stopped.output
    assert "No space left on device" in lines[0] and "--resume" in lines[0]
    assert str(memory if full == "memory" else out) in lines[0]
    assert "Traceback" not in stopped.output
    # ... and with room again, --resume gives the uninterrupted run's results
    _grow(memory if full == "memory" else out)
    resumed = _run(tmp_path, memory, out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    for name in OUTPUTS:
        assert (out / "r1" / name).read_bytes() == whole[name], name
