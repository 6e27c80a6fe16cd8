"""`bt run` with an LLM as a user meets real servers: a record run and its replay leave
byte-identical memory folders and results; a server that fails mid-run stops the run
before the failing chunk is committed, and --resume completes it once the server is back,
ending exactly as an uninterrupted run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import llm_server  # tests/llm_server.py
import orjson
import pytest
from kit import write_config
from typer.testing import CliRunner

from backtester.cli import app

runner = CliRunner()
RESULTS = ("metrics.json", "trades.parquet", "equity.parquet", "books.parquet",
           "prices.parquet")


class Server(llm_server.LLMTestServer):
    """Answers each prompt the same way every time; ``down_days`` are candidate days
    (January 2025) on which it answers HTTP 503, as an overloaded server does."""

    down_days: set[int] = set()

    def reply(self, body: dict, number: int) -> llm_server.Reply:
        prompt = body["messages"][-1]["content"]
        day = re.search(r"2025-01-(\d\d) \d\d:\d\d UTC", prompt)
        if day and int(day.group(1)) in self.down_days:
            return llm_server.error_reply(503, "the model is overloaded, try again later")
        digest = hashlib.sha256(prompt.encode()).digest()
        action = ("buy", "sell", "hold")[digest[0] % 3]
        return llm_server.answer(action, 0.9, f"{action}: pattern {digest[1]}")


@pytest.fixture()
def server():
    s = Server().start()
    s.script = s.reply
    yield s
    s.stop()


def _config(tmp: Path, server_url: str, mode: str, cache: str) -> Path:
    base = write_config(tmp / f"{mode}-{cache}.toml", memory__embedder="hashing",
                        data__cache_dir=str(tmp / "cache"),
                        memory__llm_cache_dir=str(tmp / cache))
    base.write_text(base.read_text() + f"""
[llm_defaults]
base_url = "{server_url}"
cache_mode = "{mode}"
max_retries = 0
backoff_s = 0.0

[providers.local_llm]
kind = "llm"
model = "test-model"
""")
    return base


def _run(tmp: Path, config: Path, name: str, *extra: str):
    return runner.invoke(app, ["run", "--config", str(config), "--start", "2025-01-01",
                               "--end", "2025-02-01", "--chunk", "week", "--timeframe", "1h",
                               "--memory-dir", str(tmp / name / "memory"),
                               "--out", str(tmp / name / "runs"), "--run-id", "r1", *extra])


def _files(folder: Path, names: tuple[str, ...] | None = None) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock" and (names is None or p.name in names)}


def test_record_then_replay_leave_byte_identical_memory_folders_and_results(server, tmp_path):
    # Arrange: a record run asks the server and fills the cache
    record = _run(tmp_path, _config(tmp_path, server.base_url, "record", "llm"), "record")
    assert record.exit_code == 0, record.output
    asked = server.request_count
    # Act: a replay run of the same config, in a fresh memory folder
    replay = _run(tmp_path, _config(tmp_path, server.base_url, "replay", "llm"), "replay")
    # Assert
    assert replay.exit_code == 0, replay.output
    assert server.request_count == asked  # not one request
    memory = [_files(tmp_path / name / "memory") for name in ("record", "replay")]
    assert len(memory[0]) > 20 and memory[0] == memory[1]
    results = [_files(tmp_path / name / "runs", RESULTS) for name in ("record", "replay")]
    assert len(results[0]) == len(RESULTS) and results[0] == results[1]
    # only the telemetry says how the answers were obtained
    usage = [orjson.loads((tmp_path / name / "runs" / "r1" / "llm_usage.json").read_bytes())
             ["providers"]["local_llm"] for name in ("record", "replay")]
    assert usage[0]["cache_misses"] == usage[1]["cache_hits"] > 50
    assert usage[1]["requests"] == 0


def test_a_server_failing_mid_run_stops_before_the_chunk_and_resume_completes_it(server,
                                                                                 tmp_path):
    # Arrange: the reference, uninterrupted run
    whole = _run(tmp_path, _config(tmp_path, server.base_url, "record", "llm-whole"), "whole")
    assert whole.exit_code == 0, whole.output
    config = _config(tmp_path, server.base_url, "record", "llm-broken")
    # Act: the server fails on the third week's candidates
    server.down_days = set(range(13, 20))
    broken = _run(tmp_path, config, "broken")
    # Assert: one line, the chunk is not committed, the memory stays at the second week
    assert broken.exit_code == 1, broken.output
    message = broken.output.strip().splitlines()[-1]
    assert "HTTP 503" in message and "the model is overloaded" in message
    assert "2025-W03 was not committed" in message and "--resume" in message
    manifest = orjson.loads((tmp_path / "broken" / "memory" / "manifest.json").read_bytes())
    assert [c["label"] for c in manifest["chunks"]] == ["2025-W01", "2025-W02"]
    # Act: the server is back; resume
    server.down_days = set()
    before = server.request_count
    resumed = _run(tmp_path, config, "broken", "--resume")
    # Assert: the run ends exactly as the uninterrupted one, byte for byte
    assert resumed.exit_code == 0, resumed.output
    assert _files(tmp_path / "broken" / "memory") == _files(tmp_path / "whole" / "memory")
    assert _files(tmp_path / "broken" / "runs", RESULTS) == \
        _files(tmp_path / "whole" / "runs", RESULTS)
    # answers recorded before the failure were reused: resuming asked less than a whole run
    whole_requests = orjson.loads((tmp_path / "whole" / "runs" / "r1" / "llm_usage.json")
                                  .read_bytes())["providers"]["local_llm"]["requests"]
    assert server.request_count - before < whole_requests
