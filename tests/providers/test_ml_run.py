"""`bt run --config configs/ml.toml`: both ML providers retrain before every chunk on bars
before it, vote, and report their accuracy into metrics.json and the memory."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from backtester.cli import app
from backtester.config import dump_toml, load_config

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_ml_config_trains_both_models_walk_forward(tmp_path):
    # configs/ml.toml, made small enough for a test: less history, one LSTM epoch
    config = load_config(ROOT / "configs" / "ml.toml", {
        "providers.gbm.train_bars": 3000, "providers.lstm.train_bars": 3000,
        "providers.lstm.epochs": 1, "memory.embedder": "hashing",
        "data.cache_dir": str(tmp_path / "cache"),
    })
    path = tmp_path / "ml.toml"
    path.write_text(dump_toml(config.to_dict()))
    result = runner.invoke(app, ["run", "--config", str(path), "--start", "2025-01-01", "--end",
                                 "2025-03-01", "--chunk", "month", "--timeframe", "1h",
                                 "--memory-dir", str(tmp_path / "memory"), "--out",
                                 str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(next((tmp_path / "runs").iterdir()).joinpath("metrics.json")
                           .read_bytes())
    for chunk in summary["chunks"]:
        reports = chunk["learning"]["provider_reports"]
        for name in ("gbm", "lstm"):
            assert reports[name]["trained"] == 1
            assert reports[name]["train_samples"] > 1000
            assert 0.0 <= reports[name]["validation_accuracy"] <= 1.0
    # the models voted (their votes are in the outcomes) and their stats learned weights
    memory = tmp_path / "memory"
    stats = orjson.loads((memory / "provider_performance.json").read_bytes())
    providers = stats["provider_stats"]["providers"]
    for name in ("gbm", "lstm"):
        assert providers[name]["votes"] > 0
        assert [r["chunk"] for r in providers[name]["reports"]] == ["2025-01", "2025-02"]
