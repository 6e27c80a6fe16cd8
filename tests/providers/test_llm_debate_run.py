"""`bt run` in debate mode against the local test server: bull, bear and judge on one
server through [llm_defaults]; recorded, then replayed offline with the same decisions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import llm_server  # tests/llm_server.py
import orjson
import pandas as pd
import pytest
from kit import write_config
from typer.testing import CliRunner

from backtester.cli import app

runner = CliRunner()


def _debater(body: dict, number: int):
    """Deterministic debaters: arguments in prose, a structured vote from the judge."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    digest = hashlib.sha256(user.encode()).digest()
    if "You are the bull" in system:
        return llm_server.Reply(content=f"Momentum case number {digest[0]}.")
    if "You are the bear" in system:
        return llm_server.Reply(content=f"Reversal case number {digest[1]}.")
    action = ("buy", "sell", "hold")[digest[2] % 3]
    return llm_server.answer(action, 0.9, f"{action} after the debate")


@pytest.fixture()
def server():
    s = llm_server.LLMTestServer().start()
    s.script = _debater
    yield s
    s.stop()


def _config(path: Path, url: str, mode: str, tmp: Path) -> Path:
    base = write_config(path, memory__embedder="hashing", data__cache_dir=str(tmp / "cache"),
                        memory__llm_cache_dir=str(tmp / "llm_cache"),
                        ensemble__llm_mode="debate")
    roles = "\n".join(f"""
[providers.{role}]
kind = "llm"
model = "test-model"
role = "{role}"
prompt_template = "configs/prompts/{role}.txt"
""" for role in ("bull", "bear", "judge"))
    base.write_text(base.read_text() + f"""
[llm_defaults]
base_url = "{url}"
cache_mode = "{mode}"
timeout_s = 5.0
max_concurrency = 4
{roles}""")
    return base


def _run(tmp: Path, config: Path, name: str):
    return runner.invoke(app, ["run", "--config", str(config), "--start", "2025-01-01",
                               "--end", "2025-01-15", "--chunk", "week", "--timeframe", "1h",
                               "--memory-dir", str(tmp / name), "--out", str(tmp / "runs" / name)])


def _trades(tmp: Path, name: str) -> tuple[dict, pd.DataFrame]:
    run_dir = next((tmp / "runs" / name).iterdir())
    summary = orjson.loads((run_dir / "metrics.json").read_bytes())
    return summary, pd.read_parquet(run_dir / "trades.parquet")


def test_debate_records_then_replays_the_same_run_without_a_request(server, tmp_path):
    # Arrange / Act: record
    record = _run(tmp_path, _config(tmp_path / "record.toml", server.base_url, "record",
                                    tmp_path), "record")
    # Assert: three calls per candidate, one "debate" vote in the outcomes
    assert record.exit_code == 0, record.output
    recorded = server.request_count
    assert recorded > 30
    summary, trades = _trades(tmp_path, "record")
    outcome = json.loads(next((tmp_path / "record").glob("outcome_*.json")).read_text())
    assert "debate" in outcome["votes"] and not {"bull", "bear", "judge"} & set(outcome["votes"])
    assert sorted(p.name for p in (tmp_path / "llm_cache").iterdir()) == [
        "bear.jsonl", "bull.jsonl", "judge.jsonl"]
    # Act: replay offline into a fresh memory
    replay = _run(tmp_path, _config(tmp_path / "replay.toml", "http://127.0.0.1:9/v1", "replay",
                                    tmp_path), "replay")
    # Assert
    assert replay.exit_code == 0, replay.output
    assert server.request_count == recorded
    replayed, replay_trades = _trades(tmp_path, "replay")
    pd.testing.assert_frame_equal(replay_trades, trades)
    assert replayed["overall"] == summary["overall"]
