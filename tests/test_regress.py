"""`bt regress`: the committed baseline passes; a changed strategy parameter drifts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.config import dump_toml, load_config
from backtester.regress import compare, measure

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "configs" / "ci.toml"
runner = CliRunner()


@pytest.fixture()
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the baseline path in configs/ci.toml is relative to the repo


def _variant(tmp_path: Path, baseline: Path, **overrides) -> Path:
    config = load_config(CI, {"regress.baseline": str(baseline), **overrides})
    path = tmp_path / "variant.toml"
    path.write_text(dump_toml(config.to_dict()))
    return path


def test_regress_passes_against_the_committed_baseline(at_root):
    result = runner.invoke(app, ["regress"])
    assert result.exit_code == 0, result.output
    assert "ok: 0 of" in result.output


def test_a_changed_strategy_parameter_fails_with_a_readable_diff(tmp_path, at_root):
    # Arrange: the same regression config with one strategy parameter changed
    changed = _variant(tmp_path, ROOT / "tests" / "baselines" / "ci.json",
                       **{"strategies.breakout.lookback": 24})
    # Act
    result = runner.invoke(app, ["regress", "--config", str(changed)])
    # Assert
    assert result.exit_code == 1, result.output
    assert "DRIFT" in result.output and "drift" in result.output
    assert "the config changed since the baseline" in result.output
    machine = runner.invoke(app, ["regress", "--config", str(changed), "--json"])
    report = orjson.loads(machine.output)
    drifted = {(r["scope"], r["metric"]) for r in report["rows"] if not r["passed"]}
    assert ("overall", "trades") in drifted or ("overall", "final_equity") in drifted
    assert report["drifted"] == len(drifted) > 0 and report["config_changed"]


def test_update_writes_the_baseline_and_then_passes(tmp_path):
    baseline = tmp_path / "base.json"
    config = _variant(tmp_path, baseline)
    missing = runner.invoke(app, ["regress", "--config", str(config)])
    assert missing.exit_code == 2 and "bt regress --update" in missing.output
    created = runner.invoke(app, ["regress", "--config", str(config), "--update"])
    assert created.exit_code == 0 and "created" in created.output, created.output
    again = runner.invoke(app, ["regress", "--config", str(config)])
    assert again.exit_code == 0, again.output
    # a different market (seed) drifts; --update shows what changed and re-baselines
    other = _variant(tmp_path, baseline, **{"data.seed": 8})
    assert runner.invoke(app, ["regress", "--config", str(other)]).exit_code == 1
    updated = runner.invoke(app, ["regress", "--config", str(other), "--update"])
    assert updated.exit_code == 0 and "figures changed" in updated.output
    assert runner.invoke(app, ["regress", "--config", str(other)]).exit_code == 0


def test_two_runs_give_identical_figures_and_tolerances_apply():
    config = load_config(CI)
    first, second = measure(config), measure(config)
    assert first == second
    nudged = orjson.loads(orjson.dumps(first))
    nudged["overall"]["sharpe"] *= 1 + 1e-7  # inside rel 1e-6
    nudged["overall"]["trades"] += 1  # outside
    rows = {(r.scope, r.metric): r for r in compare(nudged, first, config)}
    assert rows[("overall", "sharpe")].passed
    assert not rows[("overall", "trades")].passed
    assert rows[("overall", "trades")].delta == -1


def test_update_replaces_a_baseline_of_an_older_version(tmp_path):
    baseline = tmp_path / "base.json"
    baseline.write_bytes(orjson.dumps({"version": 1, "overall": {"trades": 1.0}}))
    config = _variant(tmp_path, baseline)
    refused = runner.invoke(app, ["regress", "--config", str(config)])
    assert refused.exit_code == 2 and "baseline version 1" in refused.output
    updated = runner.invoke(app, ["regress", "--config", str(config), "--update"])
    assert updated.exit_code == 0 and "replacing it" in updated.output, updated.output
    assert runner.invoke(app, ["regress", "--config", str(config)]).exit_code == 0


def test_the_books_are_compared_per_chunk_and_overall():
    now = measure(load_config(CI))
    assert set(now["books"]) == {"overall", *now["chunks"]}
    overall = now["books"]["overall"]
    assert {"learned_minus_equal", "regret", "overall.buy_and_hold.total_return",
            "significance.bootstrap.low", "benchmark.beta"} <= set(overall)
    changed = dict(now, books={**now["books"], "overall": {
        **overall, "learned_minus_equal": overall["learned_minus_equal"] + 0.01}})
    rows = compare(now, changed, load_config(CI))
    assert [(r.scope, r.metric) for r in rows if not r.passed] == \
        [("books overall", "learned_minus_equal")]
