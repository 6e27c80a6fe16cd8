"""`bt optimize`: spec checks, the ask/tell loop on a stub engine, and a real 20-trial search
that is stopped after 8 trials and resumed."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import optuna
import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.errors import ConfigError
from backtester.evaluation import deflated_sharpe_ratio
from backtester.experiments import engines
from backtester.experiments.optimize import (
    JOURNAL,
    STUDY_NAME,
    load_search_spec,
    objective_value,
    run_search,
)
from backtester.experiments.trial import Trial

SHORT = {"run.start": "2025-01-01", "run.end": "2025-02-01", "data.timeframe": "1h",
         "memory.embedder": "hashing", "run.chunk": "week"}
SEARCH = """
[search]
"ensemble.learning_rate" = {low = 0.01, high = 0.5, log = true}
"ensemble.threshold" = {low = 0.1, high = 0.5}
"strategies.breakout.lookback" = {low = 12, high = 96, type = "int"}
"ensemble.method" = {choices = ["mwu", "thompson"]}
"""


def _spec(tmp_path: Path, search: str = SEARCH, extra: str = "") -> Path:
    fixed = "\n".join(f'"{k}" = "{v}"' for k, v in SHORT.items())
    path = tmp_path / "spec.toml"
    path.write_text(f"{extra}\n[set]\n{fixed}\n{search}", encoding="utf-8")
    return path


class StubEngine:
    """Runs no backtest: a trial's Sharpe is a known function of its learning rate, and a
    Thompson trial fails. Pulls trials lazily like engines.DaskEngine."""

    name = "stub"

    def __init__(self, workers: int = 1, stop_after: int | None = None) -> None:
        self._workers, self.stop_after = workers, stop_after
        self.seen: list[Trial] = []
        self.most_in_flight = 0

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, trials, sweep_dir, *, max_in_flight=None):
        pending, running = iter(trials), []
        for trial in pending:
            running.append(trial)
            if len(running) == max_in_flight:
                break
        while running:
            self.most_in_flight = max(self.most_in_flight, len(running))
            for trial in running:  # the in-flight trials have started writing their folders
                (Path(sweep_dir) / "trials" / trial.trial_id).mkdir(parents=True, exist_ok=True)
            if self.stop_after is not None and len(self.seen) == self.stop_after:
                raise KeyboardInterrupt  # a kill with trials in flight
            trial = running.pop(0)
            self.seen.append(trial)
            yield self._result(trial)
            running.extend([t for t in [next(pending, None)] if t is not None])

    @staticmethod
    def _result(trial: Trial) -> dict:
        rate = trial.overrides["ensemble.learning_rate"]
        base = {"trial_id": trial.trial_id, "params": dict(trial.overrides), "wall_s": 0.0}
        if trial.overrides["ensemble.method"] == "thompson":
            return base | {"status": "failed", "error": "stub: thompson fails"}
        daily = np.random.default_rng(int(rate * 1e6)).normal(0.001, 0.01, 40)
        return base | {"status": "ok", "error": "", "overall": {"sharpe": -(rate - 0.1) ** 2},
                       "chunks": [], "books": {}, "daily_returns": daily.tolist()}


def _study(sweep_dir: str | Path) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(Path(sweep_dir) / JOURNAL)))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)


# --- The ask/tell loop, on the stub engine ----------------------------------------------------


def test_same_seed_makes_the_same_suggestions_and_another_seed_others(tmp_path):
    # Arrange
    spec = load_search_spec(_spec(tmp_path))

    # Act
    runs = [run_search(spec, trials=12, objective="sharpe", engine=StubEngine(),
                       out=tmp_path / name, seed=seed)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))]

    # Assert: twelve suggestions, past TPE's ten random start-up trials
    params = [[r["params"] for r in run["results"]] for run in runs]
    assert len(params[0]) == 12
    assert params[0] == params[1]
    assert params[0][0] != params[2][0]


def test_failed_trials_are_told_fail_with_their_error_and_the_search_goes_on(tmp_path):
    # Arrange
    spec = load_search_spec(_spec(tmp_path))

    # Act
    outcome = run_search(spec, trials=15, objective="sharpe", engine=StubEngine(),
                         out=tmp_path, seed=3)

    # Assert
    study = _study(outcome["sweep_dir"])
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and complete and len(failed) + len(complete) == 15
    assert {t.user_attrs["error"] for t in failed} == {"stub: thompson fails"}
    assert all(t.params["ensemble.method"] == "mwu" for t in complete)
    best = outcome["best"]
    assert best["value"] == max(t.value for t in complete) == study.best_value
    table = pd.read_parquet(Path(outcome["sweep_dir"]) / "results.parquet")
    assert len(table) == 15 and set(table["status"]) == {"ok", "failed"}


def test_at_most_the_engines_workers_run_at_once_and_no_trial_is_asked_beyond_n(tmp_path):
    # Arrange
    spec = load_search_spec(_spec(tmp_path))
    engine = StubEngine(workers=3)

    # Act
    outcome = run_search(spec, trials=7, objective="sharpe", engine=engine, out=tmp_path)

    # Assert
    assert engine.most_in_flight == 3
    assert len(engine.seen) == 7 and len(_study(outcome["sweep_dir"]).trials) == 7


def test_a_killed_search_resumes_and_replaces_the_trials_it_left_running(tmp_path):
    # Arrange: killed after 4 results with 2 trials in flight
    spec = load_search_spec(_spec(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run_search(spec, trials=10, objective="sharpe", engine=StubEngine(2, stop_after=4),
                   out=tmp_path)
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]

    # Act
    engine = StubEngine(2)
    outcome = run_search(spec, trials=10, objective="sharpe", engine=engine, out=tmp_path,
                         resume=sweep_dir.name)

    # Assert: 4 kept, 6 new; the 2 left running are failed without a status and not counted
    assert len(engine.seen) == 6 and outcome["ran"] == 6
    assert len(outcome["results"]) == 10
    study = _study(sweep_dir)
    assert len(study.trials) == 12
    assert sum("status" not in t.user_attrs for t in study.trials) == 2
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    folders = sorted(p.name for p in (sweep_dir / "trials").iterdir())
    assert folders == sorted(r["trial_id"] for r in outcome["results"])


def test_resume_with_another_objective_or_a_bad_id_is_refused(tmp_path):
    spec = load_search_spec(_spec(tmp_path))
    outcome = run_search(spec, trials=2, objective="sharpe", engine=StubEngine(), out=tmp_path)
    with pytest.raises(ConfigError, match="another spec or objective"):
        run_search(spec, trials=3, objective="calmar", engine=StubEngine(), out=tmp_path,
                   resume=outcome["sweep_id"])
    for bad in ("../x", "nope"):
        with pytest.raises(ConfigError, match="--resume"):
            run_search(spec, trials=3, objective="sharpe", engine=StubEngine(), out=tmp_path,
                       resume=bad)


def test_the_journal_is_json_lines_and_its_backend_keeps_no_pickled_snapshot(tmp_path):
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._base import BaseJournalSnapshot

    spec = load_search_spec(_spec(tmp_path))
    outcome = run_search(spec, trials=3, objective="sharpe", engine=StubEngine(), out=tmp_path)
    lines = (Path(outcome["sweep_dir"]) / JOURNAL).read_bytes().splitlines()
    assert lines and all(isinstance(orjson.loads(line), dict) for line in lines)
    assert not issubclass(JournalFileBackend, BaseJournalSnapshot)  # snapshots are pickles


# --- Objective and overfitting figures --------------------------------------------------------


def test_objective_value_reads_metrics_and_books_and_rejects_undefined_figures():
    result = {"status": "ok", "overall": {"sharpe": 1.5, "calmar": None},
              "books": {"learned_minus_equal": 0.02}}
    assert objective_value(result, "sharpe") == 1.5
    assert objective_value(result, "learned_minus_equal") == 0.02
    assert objective_value(result, "calmar") is None
    assert objective_value(result | {"status": "failed"}, "sharpe") is None


def test_the_summary_deflates_the_best_sharpe_by_the_finished_trials_and_their_variance(
        tmp_path):
    # Arrange
    spec = load_search_spec(_spec(tmp_path))

    # Act
    outcome = run_search(spec, trials=12, objective="sharpe", engine=StubEngine(),
                         out=tmp_path, seed=5)

    # Assert: recomputed from the stub's daily returns with the statistics module
    ok = [r for r in outcome["results"] if r["status"] == "ok"]
    sharpes = [statistics.mean(r["daily_returns"]) / statistics.stdev(r["daily_returns"])
               for r in ok]
    best = max(ok, key=lambda r: r["overall"]["sharpe"])
    summary = outcome["summary"]
    assert outcome["best"] == best
    assert summary["best"]["trial_id"] == best["trial_id"]
    assert summary["n_trials"] == len(ok) >= 2
    assert summary["sharpe_variance"] == pytest.approx(statistics.variance(sharpes))
    assert summary["deflated_sharpe"] == pytest.approx(deflated_sharpe_ratio(
        np.array(best["daily_returns"]), len(ok), statistics.variance(sharpes)))
    assert orjson.loads((Path(outcome["sweep_dir"]) / "summary.json").read_bytes())[
        "deflated_sharpe"] == pytest.approx(summary["deflated_sharpe"])


# --- Spec checks ------------------------------------------------------------------------------


def test_a_spec_reads_quoted_and_unquoted_dotted_keys_alike(tmp_path):
    # Arrange
    path = tmp_path / "spec.toml"
    path.write_text('config = "configs/default.toml"\n[set]\nrun.chunk = "week"\n'
                    '[search]\nensemble.threshold = {low = 0.1, high = 0.5}\n'
                    '"strategies.breakout.lookback" = {low = 12, high = 96, type = "int"}\n'
                    'ensemble.method = {choices = ["mwu", "thompson"]}\n', encoding="utf-8")

    # Act
    spec = load_search_spec(path)

    # Assert
    assert spec.config_path == "configs/default.toml"
    assert spec.fixed == {"run.chunk": "week"}
    space = spec.distributions()
    assert space["ensemble.threshold"] == optuna.distributions.FloatDistribution(0.1, 0.5)
    assert space["strategies.breakout.lookback"] == optuna.distributions.IntDistribution(12, 96)
    assert space["ensemble.method"] == optuna.distributions.CategoricalDistribution(
        ["mwu", "thompson"])


@pytest.mark.parametrize("search, extra, text", [
    ('"ensemble.learnig_rate" = {low = 0.01, high = 0.5}', "", "learning_rate"),
    ('"ensemble.threshold" = {low = 0.5, high = 0.1}', "", "low must be below high"),
    ('"ensemble.learning_rate" = {low = 0.0, high = 0.5, log = true}', "", "low > 0"),
    ('"strategies.breakout.lookback" = {low = 12.5, high = 96, type = "int"}', "",
     "must be an integer"),
    ('"ensemble.method" = {choices = []}', "", "non-empty list"),
    ('"ensemble.method" = {choices = ["mwu", "nope"]}', "", "= 'nope'"),
    ('"ensemble.threshold" = {low = 0.1, hi = 0.5}', "", "unknown field 'hi'"),
    ('"ensemble.threshold" = {low = 0.1, high = 5.0}', "", "ensemble.threshold"),
    ('"run.chunk" = {choices = ["week", "month"]}', "", "both in [set] and [search]"),
    ('"ensemble.threshold" = 0.2', "", "must be a table"),
    ("", "", "[search] is empty"),
    ('"ensemble.threshold" = {low = 0.1, high = 0.5}', "[grid]\nx = 1", "unknown key 'grid'"),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, search, extra, text):
    path = _spec(tmp_path, "[search]\n" + search, extra)
    with pytest.raises(ConfigError) as caught:
        load_search_spec(path)
    message = str(caught.value)
    assert text in message and str(path) in message and "\n" not in message


# --- The real thing: 20 trials of the short period, stopped after 8 and resumed ---------------


def test_bt_optimize_runs_8_trials_then_resumes_to_20_without_rerunning_them(
        tmp_path, monkeypatch):
    # Arrange: count the trials that really run
    calls: list[str] = []
    real = engines.run_trial

    def counting(trial, sweep_dir):
        calls.append(trial.trial_id)
        return real(trial, sweep_dir)

    monkeypatch.setattr(engines, "run_trial", counting)
    spec, out = _spec(tmp_path), tmp_path / "sweeps"
    runner = CliRunner()
    args = ["optimize", str(spec), "--engine", "local", "--out", str(out),
            "--objective", "total_return", "--seed", "0"]

    # Act: a search stopped after 8 trials, then resumed up to 20
    first = runner.invoke(app, [*args, "--trials", "8"])
    assert first.exit_code == 0, first.output
    (sweep_dir,) = list(out.iterdir())
    results = sweep_dir / "trials"
    stamps = {p.name: (p / "result.json").stat().st_mtime_ns for p in results.iterdir()}
    second = runner.invoke(app, [*args, "--trials", "20", "--resume", sweep_dir.name,
                                 "--select-on", "chunks"])

    # Assert
    assert second.exit_code == 0, second.output
    assert calls == [f"t{i:04d}" for i in range(20)]
    assert sorted(stamps) == calls[:8]
    assert all((results / t / "result.json").stat().st_mtime_ns == stamps[t] for t in stamps)
    study = _study(sweep_dir)
    assert len(study.trials) == 20
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    table = pd.read_parquet(sweep_dir / "results.parquet")
    assert len(table) == 20 and (table["status"] == "ok").all()
    assert table["ensemble.method"].isin(["mwu", "thompson"]).all()
    best = table.loc[table["total_return"].idxmax(), "trial_id"]
    assert f"best {best}: total_return" in second.output
    assert "deflated Sharpe ratio of the best" in second.output
    assert "in-sample best" in second.output and "out-of-sample" in second.output
    assert "12 trials run now" in second.output
    # the seeded start-up suggestions do not depend on results: a stub search with seed 0
    # makes the same first 8
    stub = run_search(load_search_spec(spec), trials=8, objective="total_return",
                      engine=StubEngine(), out=tmp_path / "stub", seed=0)
    real = sorted(orjson.loads((results / t / "result.json").read_bytes())["number"]
                  for t in stamps)
    assert real == list(range(8))
    assert [r["params"] for r in stub["results"]] == [
        orjson.loads((results / t / "result.json").read_bytes())["params"] for t in calls[:8]]


def test_bt_optimize_with_an_unknown_objective_exits_with_one_line(tmp_path):
    result = CliRunner().invoke(app, ["optimize", str(_spec(tmp_path)), "--objective",
                                      "sharp", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "did you mean 'sharpe'" in result.output
    assert not list(tmp_path.glob("*_optimize"))


def test_a_search_runs_on_a_dask_local_cluster_two_trials_at_a_time(tmp_path):
    # Arrange: a LocalCluster of two workers on 127.0.0.1, closed by the engine
    spec = load_search_spec(_spec(tmp_path))

    # Act
    with engines.DaskEngine(workers=2) as engine:
        outcome = run_search(spec, trials=4, objective="total_return", engine=engine,
                             out=tmp_path / "sweeps")

    # Assert: the same figures as running the best trial alone, in this process
    assert [r["status"] for r in outcome["results"]] == ["ok"] * 4
    best = outcome["best"]
    alone = engines.LocalEngine().map([Trial("alone", best["params"])], tmp_path / "alone")
    assert next(alone)["overall"]["total_return"] == pytest.approx(best["value"], abs=1e-12)
    assert len(_study(outcome["sweep_dir"]).trials) == 4


@pytest.mark.parametrize("args, text", [
    (["--select-on", "days"], "--select-on must be chunks"),
    (["--trials", "0", "--engine", "local"], "--trials must be at least 1"),
    (["--engine", "cloud"], "--engine must be one of local, dask"),
    (["--engine", "local", "--resume", "missing"], "no search in"),
])
def test_bt_optimize_refuses_bad_options_in_one_line(tmp_path, args, text):
    result = CliRunner().invoke(app, ["optimize", str(_spec(tmp_path)), "--out",
                                      str(tmp_path / "sweeps"), *args])
    assert result.exit_code == 1, result.output
    assert text in result.output and len(result.output.strip().splitlines()) == 1
