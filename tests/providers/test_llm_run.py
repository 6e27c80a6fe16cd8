"""`bt run` with an LLM provider against a real local chat-completions server: record,
then replay offline with identical decisions and no request, then live; the run summary
counts the calls and their cost."""

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


def _deterministic_answer(body: dict, number: int):
    """The same prompt always gets the same answer (a stand-in for a model at temperature 0)."""
    digest = hashlib.sha256(body["messages"][-1]["content"].encode()).digest()
    action = ("buy", "sell", "hold")[digest[0] % 3]
    return llm_server.answer(action, 0.9, f"{action} because of pattern {digest[1]}",
                             prompt_tokens=100, completion_tokens=20)


@pytest.fixture()
def server():
    s = llm_server.LLMTestServer().start()
    s.script = _deterministic_answer
    yield s
    s.stop()


def _config(path: Path, server_url: str, mode: str, tmp: Path) -> Path:
    base = write_config(path, memory__embedder="hashing", data__cache_dir=str(tmp / "cache"),
                        memory__llm_cache_dir=str(tmp / "llm_cache"))
    base.write_text(base.read_text() + f"""
[providers.local_llm]
kind = "llm"
base_url = "{server_url}"
model = "test-model"
cache_mode = "{mode}"
timeout_s = 5.0
max_concurrency = 4
price_per_1k_prompt_tokens = 0.5
price_per_1k_completion_tokens = 1.5
""")
    return base


def _run(tmp: Path, config: Path, name: str):
    return runner.invoke(app, ["run", "--config", str(config), "--start", "2025-01-01",
                               "--end", "2025-02-01", "--chunk", "week", "--timeframe", "1h",
                               "--memory-dir", str(tmp / name), "--out", str(tmp / "runs" / name)])


def _results(tmp: Path, name: str) -> tuple[dict, pd.DataFrame]:
    """metrics.json with the run's LLM telemetry (llm_usage.json) as "llm", and the trades."""
    run_dir = next((tmp / "runs" / name).iterdir())
    summary = orjson.loads((run_dir / "metrics.json").read_bytes())
    assert "llm" not in summary  # telemetry is not a result
    summary["llm"] = orjson.loads((run_dir / "llm_usage.json").read_bytes())
    trades = pd.read_parquet(run_dir / "trades.parquet").drop(columns=["decision_id"])
    return summary, trades


def test_record_then_replay_then_live_give_the_same_decisions(server, tmp_path):
    # record: every candidate is asked once and the answers are stored
    record = _run(tmp_path, _config(tmp_path / "record.toml", server.base_url, "record",
                                    tmp_path), "record")
    assert record.exit_code == 0, record.output
    recorded_requests = server.request_count
    assert recorded_requests > 50
    summary, trades = _results(tmp_path, "record")
    usage = summary["llm"]["providers"]["local_llm"]
    # one more request: the preflight's, before the first chunk (not part of any chunk)
    assert usage["requests"] + 1 == recorded_requests == usage["cache_misses"] + 1
    assert usage["cost"] == pytest.approx((recorded_requests - 1) * (100 * 0.5 + 20 * 1.5)
                                          / 1000)
    assert summary["llm"]["cost_per_trade"] == pytest.approx(summary["llm"]["cost"] / len(trades))
    assert "LLM providers" in record.output and "LLM cost" in record.output
    # the LLM's votes are in the outcomes it traded on
    outcome = json.loads(next((tmp_path / "record").glob("outcome_*.json")).read_text())
    assert set(outcome["votes"]) == {"breakout", "mean_reversion", "momentum", "local_llm"}

    # replay: a fresh memory, the same recorded answers, and not one request
    replay = _run(tmp_path, _config(tmp_path / "replay.toml", server.base_url, "replay",
                                    tmp_path), "replay")
    assert replay.exit_code == 0, replay.output
    assert server.request_count == recorded_requests
    replayed, replay_trades = _results(tmp_path, "replay")
    pd.testing.assert_frame_equal(replay_trades, trades)
    assert replayed["overall"] == summary["overall"]
    assert replayed["llm"]["providers"]["local_llm"]["cache_hits"] == recorded_requests - 1
    assert replayed["llm"]["cost"] == 0.0

    # live: asks again (no cache), and the deterministic server gives the same decisions
    live = _run(tmp_path, _config(tmp_path / "live.toml", server.base_url, "live", tmp_path),
                "live")
    assert live.exit_code == 0, live.output
    assert server.request_count == 2 * recorded_requests
    _, live_trades = _results(tmp_path, "live")
    pd.testing.assert_frame_equal(live_trades, trades)


def test_an_unreachable_endpoint_stops_the_run_before_any_chunk_in_one_line(tmp_path):
    config = _config(tmp_path / "down.toml", "http://127.0.0.1:9/v1", "live", tmp_path)
    result = _run(tmp_path, config, "down")
    assert result.exit_code == 1, result.output
    assert "the server is not reachable at http://127.0.0.1:9/v1" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "down").glob("outcome_*.json"))


def test_an_unreachable_endpoint_abstains_when_the_policy_says_so(tmp_path):
    config = _config(tmp_path / "down.toml", "http://127.0.0.1:9/v1", "live", tmp_path)
    config.write_text(config.read_text() + 'on_failure = "abstain"\npreflight = false\n')
    result = _run(tmp_path, config, "down")
    assert result.exit_code == 0, result.output
    assert "127.0.0.1:9" in result.output  # warning lines naming the endpoint
    summary, _ = _results(tmp_path, "down")
    usage = summary["llm"]["providers"]["local_llm"]
    assert usage["abstentions_error"] + usage["abstentions_breaker"] > 0
    assert usage["calls_tried"] + usage["calls_skipped"] == usage["abstentions"]
    assert "Traceback" not in result.output
