"""`bt sweep` on the local engine: each trial gives exactly the figures of `bt run --set`
alone; the sweep folder holds spec.json, result.json per trial, results.parquet,
returns.parquet, summary.json and report.html; a killed sweep resumes without re-running
finished trials; a failing trial is recorded while the others finish."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.errors import ConfigError
from backtester.experiments.engines import LocalEngine
from backtester.experiments.spec import load_spec
from backtester.experiments.sweep import read_sweep_spec, run_sweep

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "configs" / "default.toml")


class CountingEngine(LocalEngine):
    """The local engine, recording the trials it runs."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def map(self, trials, sweep_dir, *, max_in_flight=None):
        for result in super().map(trials, sweep_dir, max_in_flight=max_in_flight):
            self.ran.append(result["trial_id"])
            yield result


def test_each_trial_gives_the_figures_of_bt_run_alone(local_sweep, grid_spec, short_set,
                                                      tmp_path):
    runner = CliRunner()
    for trial in grid_spec.trials:
        # Arrange: the trial's own parameters as bt run --set flags
        flags = [*short_set, *(f"{k}={v}" for k, v in grid_spec.params(trial).items()),
                 f'run.out_dir="{tmp_path / "runs"}"',
                 f'memory.dir="{tmp_path / "memory" / trial.trial_id}"']
        # Act
        outcome = runner.invoke(app, ["run", "-c", DEFAULT, "--run-id", trial.trial_id,
                                      *(a for f in flags for a in ("--set", f))])
        # Assert
        assert outcome.exit_code == 0, outcome.output
        alone = orjson.loads((tmp_path / "runs" / trial.trial_id / "metrics.json").read_bytes())
        swept = orjson.loads((local_sweep.sweep_dir / "trials" / trial.trial_id
                              / "result.json").read_bytes())
        assert swept["status"] == "ok"
        assert swept["overall"] == alone["overall"]


def test_the_sweep_folder_holds_one_row_per_trial_and_the_overfitting_figures(local_sweep,
                                                                             grid_spec):
    folder = local_sweep.sweep_dir
    frame = pd.read_parquet(folder / "results.parquet")
    returns = pd.read_parquet(folder / "returns.parquet")
    summary = orjson.loads((folder / "summary.json").read_bytes())

    assert list(frame["trial_id"]) == [t.trial_id for t in grid_spec.trials]
    assert list(frame["ensemble.learning_rate"]) == [0.05] * 3 + [0.1] * 3
    assert list(frame["ensemble.method"]) == ["mwu", "thompson", "equal"] * 2
    assert (frame["status"] == "ok").all()
    for column in ("sharpe", "total_return", "max_drawdown", "calmar", "wall_s",
                   "books.learned_minus_equal"):
        assert column in frame
    chunk_columns = [c for c in frame if c.startswith("chunk.")]
    assert any(c.endswith(".learned_minus_equal") for c in chunk_columns)
    assert any(c.endswith(".equal_weight") for c in chunk_columns)
    assert list(returns.columns) == list(frame["trial_id"])
    best = frame.loc[frame["sharpe"].idxmax()]
    assert summary["best"]["trial_id"] == best["trial_id"]
    assert summary["n_trials"] == 6
    assert 0.0 <= summary["deflated_sharpe"] <= 1.0
    assert summary["pbo"] is None or 0.0 <= summary["pbo"] <= 1.0
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "table class=\"numbers sortable\"" in html and "heatmap" in html
    assert "ensemble.learning_rate" in html and "<svg" in html


def test_the_deflated_sharpe_uses_the_per_period_sharpe_variance_of_the_trials(local_sweep):
    import numpy as np

    from backtester.evaluation import deflated_sharpe_ratio

    returns = pd.read_parquet(local_sweep.sweep_dir / "returns.parquet")
    sharpes = returns.mean() / returns.std(ddof=1)
    best = local_sweep.summary["best"]["trial_id"]

    expected = deflated_sharpe_ratio(returns[best].to_numpy(), 6, float(np.var(sharpes,
                                                                                 ddof=1)))

    assert local_sweep.summary["deflated_sharpe"] == pytest.approx(expected, rel=1e-12)


def test_a_resumed_sweep_reruns_only_the_unfinished_trials(grid_spec, local_sweep, tmp_path):
    # Arrange: a copy of the finished sweep that lost two results, a partial trial folder
    # and its results.parquet, as after kill -9
    import shutil

    folder = tmp_path / "grid"
    shutil.copytree(local_sweep.sweep_dir, folder)
    for trial_id in ("t0002", "t0005"):
        (folder / "trials" / trial_id / "result.json").unlink()
    (folder / "trials" / "t0005" / "partial.txt").write_text("left by a killed run")
    (folder / "results.parquet").unlink()
    kept = {t: (folder / "trials" / t / "result.json").stat().st_mtime_ns
            for t in ("t0001", "t0003", "t0004", "t0006")}
    engine = CountingEngine()
    # Act
    outcome = run_sweep(read_sweep_spec(folder), engine=engine, out=tmp_path, resume=True,
                        sweep_id="grid")
    # Assert
    assert sorted(engine.ran) == ["t0002", "t0005"]
    assert (outcome.ran, outcome.kept) == (2, 4)
    assert not (folder / "trials" / "t0005" / "partial.txt").exists()
    assert {t: (folder / "trials" / t / "result.json").stat().st_mtime_ns for t in kept} == kept
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "results.parquet").drop(columns="wall_s"),
        local_sweep.results.drop(columns="wall_s"))


def test_an_interrupted_sweep_keeps_what_finished_and_resumes_the_rest(grid_spec, tmp_path):
    # Arrange: stop after two trials, like Ctrl-C
    def stop_after_two(finished, total, result):
        if finished == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid_spec, engine=LocalEngine(), out=tmp_path, sweep_id="s",
                  progress=stop_after_two)
    assert sorted(p.parent.name for p in (tmp_path / "s" / "trials").glob("*/result.json")) \
        == ["t0001", "t0002"]
    engine = CountingEngine()
    # Act
    outcome = run_sweep(grid_spec, engine=engine, out=tmp_path, sweep_id="s", resume=True)
    # Assert
    assert engine.ran == ["t0003", "t0004", "t0005", "t0006"]
    assert len(outcome.results) == 6 and (outcome.results["status"] == "ok").all()


def test_a_new_sweep_over_an_existing_one_or_another_spec_is_refused(grid_spec, local_sweep,
                                                                    short_set):
    out = local_sweep.sweep_dir.parent
    with pytest.raises(ConfigError, match="already holds a sweep; pass --resume grid"):
        run_sweep(grid_spec, engine=LocalEngine(), out=out, sweep_id="grid")
    other = load_spec(None, [*short_set, "ensemble.learning_rate=0.3,0.4"], config_path=DEFAULT)
    with pytest.raises(ConfigError, match="started with other trials"):
        run_sweep(other, engine=LocalEngine(), out=out, sweep_id="grid", resume=True)


def test_a_failing_trial_is_recorded_in_one_line_and_the_others_finish(short_set, tmp_path):
    # Arrange: a bar length the config accepts but the market cannot be resampled to
    spec = load_spec(None, [*short_set, 'data.timeframe="1h","7x","4h"'], config_path=DEFAULT)
    # Act
    outcome = run_sweep(spec, engine=LocalEngine(), out=tmp_path, sweep_id="f")
    # Assert
    frame = outcome.results.set_index("trial_id")
    assert list(frame["status"]) == ["ok", "failed", "ok"]
    error = frame.loc["t0002", "error"]
    assert "timeframe" in error and "'7x'" in error and "\n" not in error
    assert frame.loc[["t0001", "t0003"], "sharpe"].notna().all()
    assert outcome.summary["failed"] == 1 and outcome.summary["n_trials"] == 2


def test_bt_sweep_prints_the_best_trials_and_the_paths(short_set, tmp_path):
    flags = [*short_set, "ensemble.learning_rate=0.05,0.1"]
    outcome = CliRunner().invoke(app, ["sweep", "--engine", "local", "--out", str(tmp_path),
                                       "--sweep-id", "cli", "-c", DEFAULT,
                                       *(a for f in flags for a in ("--set", f))])

    assert outcome.exit_code == 0, outcome.output
    assert "[2/2] t0002 sharpe" in outcome.output
    assert "best of 2 finished trials by sharpe" in outcome.output
    assert "deflated Sharpe ratio" in outcome.output
    assert f"report:  {tmp_path / 'cli' / 'report.html'}" in outcome.output.replace("\n", "")


def test_bt_sweep_with_a_typo_prints_one_red_line_and_runs_nothing(tmp_path):
    outcome = CliRunner().invoke(app, ["sweep", "--out", str(tmp_path), "--set",
                                       "ensemble.learnin_rate=0.05,0.1"])

    assert outcome.exit_code == 1, outcome.output
    assert "did you mean 'ensemble.learning_rate'" in outcome.output
    assert not any(tmp_path.iterdir())


def test_bt_sweep_exits_1_when_every_trial_failed(short_set, tmp_path):
    flags = [*short_set, "data.timeframe=7x,9x"]
    outcome = CliRunner().invoke(app, ["sweep", "--engine", "local", "--out", str(tmp_path),
                                       "-c", DEFAULT, *(a for f in flags for a in ("--set", f))])

    assert outcome.exit_code == 1, outcome.output
    assert "failed t0001: timeframe is not a bar length, was '7x'" in outcome.output
    assert "no trial finished" in outcome.output
