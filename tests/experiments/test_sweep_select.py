"""`bt sweep --select-on chunks`: each chunk traded by the trial chosen on earlier chunks."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from backtester.cli import app
from backtester.experiments.selection import select_in_sweep

runner = CliRunner()
SHORT = ["--set", "run.start=2025-01-01", "--set", "run.end=2025-01-22", "--set",
         "run.chunk=week", "--set", "data.timeframe=1h", "--set", "memory.embedder=hashing"]


def test_sweep_select_on_chunks_writes_the_out_of_sample_selection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", *SHORT, "--set", "ensemble.threshold=0.2,0.35",
                                 "--engine", "local", "--sweep-id", "s1", "--out",
                                 str(tmp_path / "sweeps"), "--select-on", "chunks",
                                 "--objective", "total_return"])
    assert result.exit_code == 0, result.output
    written = orjson.loads((tmp_path / "sweeps" / "s1" / "selection.json").read_bytes())
    expected = select_in_sweep(tmp_path / "sweeps" / "s1", "total_return")
    assert [c["chosen"] for c in written["chunks"]] == [c["chosen"] for c in expected["chunks"]]
    assert len(written["chunks"]) == 4 and written["chunks"][0]["chosen"] == "t0001"
    assert "walk-forward selection" in result.output


def test_sweep_select_on_anything_else_is_one_line(tmp_path):
    result = runner.invoke(app, ["sweep", *SHORT, "--select-on", "weeks"])
    assert result.exit_code == 1
    assert "--select-on must be chunks, was 'weeks'" in result.output
