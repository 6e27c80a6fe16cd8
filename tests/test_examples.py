"""The examples/ folder runs as documented: the config with a user strategy and a user
scikit-learn provider through `bt run`, and the notebook-style script through the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.config import load_config
from backtester.features import compute_features
from backtester.market import load_market
from backtester.providers.base import MarketContext
from backtester.regime import compute_regimes
from strategies import STRATEGY_REGISTRY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHORT = ["--start", "2025-01-01", "--end", "2025-02-01", "--timeframe", "1h",
         "--chunk", "week"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One generated market for both examples."""
    return tmp_path_factory.mktemp("cache")


def _only_run(runs: Path) -> Path:
    folders = list(runs.iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def test_custom_config_runs_the_user_strategy_and_provider_from_bt_run(
        tmp_path, monkeypatch, cache_dir):
    # Arrange: run from an unrelated folder; the config names its classes by file path
    monkeypatch.chdir(tmp_path)
    args = ["run", "--config", str(EXAMPLES / "custom.toml"), *SHORT,
            "--out", str(tmp_path / "runs"), "--memory-dir", str(tmp_path / "memory"),
            "--set", f"data.cache_dir={cache_dir}", "--set", 'memory.embedder="hashing"',
            "--json"]

    # Act
    result = CliRunner().invoke(app, args)

    # Assert: both plugins took part, in the ensemble and in their own books
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path / "runs")
    summary = orjson.loads((run_dir / "metrics.json").read_bytes())
    providers = summary["providers"]
    assert list(providers) == ["momentum", "rsi_extremes", "logit"]
    assert providers["rsi_extremes"]["votes"] > 0
    assert providers["logit"]["votes"] > 0
    books = summary["books"]["overall"]
    assert books["rsi_extremes"]["trades"] > 0  # each plugin's own book traded its votes
    assert books["logit"]["trades"] > 0
    assert [c["label"] for c in summary["chunks"]][0] == "2025-W01"
    assert all(c["candidates"] > 0 for c in summary["chunks"])
    # the resolved config keeps the class keys and re-loads from its own folder
    text = (run_dir / "config.toml").read_text()
    assert f'class = "{EXAMPLES / "custom_strategy.py"}:RsiExtremes"' in text
    reloaded = load_config(run_dir / "config.toml")
    assert [s.name for s in reloaded.strategies] == ["momentum", "rsi_extremes"]
    assert type(reloaded.providers[0]).__name__ == "LogisticProviderConfig"
    # the user strategy proposes entries of its own on the run's market
    bars, first = load_market(reloaded)
    context = MarketContext(bars, compute_features(bars), compute_regimes(bars, reloaded.regime))
    strategy = STRATEGY_REGISTRY["rsi_extremes"](reloaded.strategies[1])
    assert strategy.propose(context, first, bars.n_bars).sum() > 0
    original = load_config(EXAMPLES / "custom.toml", {
        "data.timeframe": "1h", "data.cache_dir": str(cache_dir), "memory.embedder": "hashing"})
    assert reloaded.decision_hash() == original.decision_hash()


def test_notebook_script_runs_a_short_period_and_inspects_the_memory(tmp_path, cache_dir):
    # Arrange
    command = [sys.executable, str(EXAMPLES / "notebook.py"), *SHORT,
               "--out", str(tmp_path / "runs"), "--memory-dir", str(tmp_path / "memory"),
               "--embedder", "hashing", "--cache-dir", str(cache_dir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}

    # Act
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)

    # Assert
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "providers:  ['logit']" in out
    for book in ("learned", "equal_weight", "rsi_extremes", "logit", "buy_and_hold"):
        assert f"\n{book} " in out, out
    run_dir = _only_run(tmp_path / "runs")
    assert (run_dir / "report.html").stat().st_size > 10_000
    assert f"report: {run_dir / 'report.html'}" in out
    assert "'rsi_extremes':" in out and "'logit':" in out  # learned weights, from the memory
    assert " outcomes; columns: " in out
    assert "similarity" in out  # the memory search printed its table
