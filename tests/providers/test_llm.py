"""LLM providers against a real HTTP server on 127.0.0.1: votes, failures, cache, secrecy."""

from __future__ import annotations

import json
import re
import socket
import threading
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from llm_kit import SYMBOLS, by_symbol, candidates, make_context, make_provider
from llm_server import LLMTestServer, Reply, answer  # tests/llm_server.py

from backtester.config import load_config
from backtester.errors import BtError, ConfigError
from backtester.providers.cache import ResponseCache, cache_key
from backtester.providers.http import ChatClient, RateLimiter
from backtester.providers.llm import (
    CONFIG_CLASS,
    KIND,
    LLMProviderConfig,
    PromptTemplate,
    parse_answer,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    s = LLMTestServer().start()
    yield s
    s.stop()


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", 2.5), ("max_tokens", 0), ("timeout_s", 0.0), ("max_retries", -1),
    ("max_concurrency", 0), ("requests_per_minute", -1.0), ("breaker_failures", 0),
    ("cache_mode", "offline"), ("replay_miss", "skip"), ("name", "a/b"),
    ("base_url", "ftp://x"), ("api_key_env", "sk-abc-123"), ("k_similar", -1),
    ("price_per_1k_prompt_tokens", -0.1), ("anonymize", 1), ("max_tokens", True),
    ("structured_output", "yaml"), ("on_failure", "retry"), ("max_failure_rate", 1.5),
    ("preflight", 1), ("role", "referee"),
])
def test_config_out_of_range_value_raises_config_error_naming_the_field(field, value):
    # Arrange
    settings = dict(name="x", base_url="http://127.0.0.1:1/v1", model="m")
    settings[field] = value
    # Act / Assert
    with pytest.raises(ConfigError, match=rf"^{field} must be .*, was "):
        LLMProviderConfig(**settings)


@pytest.mark.parametrize(("path", "expected"), [
    ("configs/ollama.toml", 3), ("configs/openai.toml", 1), ("configs/debate.toml", 3)])
def test_shipped_configs_load_with_llm_defaults_into_provider_configs(path, expected):
    # Arrange / Act
    assert CONFIG_CLASS is LLMProviderConfig and KIND == "llm"
    config = load_config(REPO / path)
    data = tomllib.loads((REPO / path).read_text())
    # Assert: the LLM tables hold kind, model and what differs; the rest is [llm_defaults]
    llms = [p for p in config.providers if isinstance(p, LLMProviderConfig)]
    assert len(llms) == expected
    assert "llm_defaults" in data and "base_url" in data["llm_defaults"]
    for table in data["providers"].values():
        assert len(table) <= 5 and {"kind", "model"} <= set(table), path
    for provider in llms:
        assert (REPO / provider.prompt_template).is_file()
        assert provider.structured_output == "json_schema" and provider.on_failure == "stop"
    assert {"run", "data", "execution", "regime", "ensemble", "memory",
            "strategies"} <= set(data), path


def test_openai_config_reads_its_key_from_openai_api_key():
    config = load_config(REPO / "configs/openai.toml")
    assert [p.api_key_env for p in config.providers] == ["OPENAI_API_KEY"]


def test_missing_api_key_variable_raises_one_line_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("BT_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="BT_TEST_MISSING_KEY is not set") as info:
        make_provider("http://127.0.0.1:9/v1", tmp_path, api_key_env="BT_TEST_MISSING_KEY")
    assert "\n" not in str(info.value)


def test_replay_mode_needs_no_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("BT_TEST_MISSING_KEY", raising=False)
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path, api_key_env="BT_TEST_MISSING_KEY",
                             cache_mode="replay")
    assert provider.name == "test_llm"


# --- answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    '{"action": "buy", "confidence": 0.7, "reasoning": "up"}',
    '```json\n{"action": "buy", "confidence": 0.7, "reasoning": "up"}\n```',
    'Sure, here is my view:\n{"action": "BUY", "confidence": 0.7, "reasoning": "up"} ok',
    '{"Action": " Sell ", "confidence": "0.7", "reasoning": "up"}',
    '{"action": "hold", "confidence": "70%", "reasoning": "up"}',
    '{"action": "Buy", "confidence": 70, "reasoning": "up"}',
    "```\n{'action': 'buy', 'confidence': 0.7, 'reasoning': 'single quotes'}\n```",
])
def test_parse_answer_accepts_plain_fenced_prefixed_and_loose_json(content):
    # action in any case and with spaces; confidence as 0.7, "0.7", "70%" or 70 (percent)
    vote, confidence, reasoning = parse_answer(content)
    assert vote in (-1, 0, 1) and confidence == pytest.approx(0.7)
    assert reasoning in ("up", "")


@pytest.mark.parametrize("content", [
    "I would buy.", '{"action": "buy", "confidence": 0.7', '{"action": "short", "confidence": 0.5}',
    '{"action": "sell", "confidence": 150}', '{"action": "sell", "confidence": -0.1}',
    '{"action": "sell", "confidence": "high"}', '{"action": "sell", "confidence": NaN}',
    '{"action": "sell", "confidence": true}', '{"action": "sell"}', '["buy", 0.5]', "",
    "Action: buy with high confidence",
])
def test_parse_answer_rejects_malformed_answers(content):
    assert parse_answer(content) is None


def test_parse_answer_maps_sell_to_minus_one_and_hold_to_zero():
    assert parse_answer('{"action": "sell", "confidence": 1}') == (-1, 1.0, "")
    assert parse_answer('{"action": "hold", "confidence": 0, "reasoning": " x "}') == (0, 0.0, "x")


# --- provider against the server ---------------------------------------------------------


def test_vote_with_normal_answers_maps_actions_confidence_and_reasoning(server, tmp_path):
    # Arrange
    server.script = by_symbol({"BTCUSD": answer("buy", 0.8, "trend up"),
                               "ETHUSD": answer("sell", 0.6, "overbought"),
                               "SOLUSD": answer("hold", 0.3, "mixed")})
    provider = make_provider(server, tmp_path, temperature=0.1, max_tokens=77)
    # Act
    votes = provider.vote(make_context(), candidates((20, 0), (21, 1), (22, 2)))
    # Assert
    assert votes.vote.tolist() == [1, -1, 0] and votes.vote.dtype == np.int8
    assert votes.confidence.tolist() == [0.8, 0.6, 0.3]
    assert votes.reasoning == ("trend up", "overbought", "mixed")
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions"
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("test-model", 0.1, 77)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "authorization" not in server.requests[0].headers
    report = provider.report()
    assert report["requests"] == 3 and server.request_count == 3
    assert report["prompt_tokens"] == 30 and report["completion_tokens"] == 15
    assert report["abstentions_malformed"] == report["abstentions_error"] == 0


def test_malformed_answer_abstains_and_is_counted(server, tmp_path):
    server.enqueue(Reply(content="I think it goes up"), answer("buy", 0.9, "fine"))
    provider = make_provider(server, tmp_path, max_concurrency=1)
    votes = provider.vote(make_context(), candidates((20, 0), (21, 0)))
    assert votes.vote.tolist() == [0, 1]
    assert votes.confidence.tolist() == [0.0, 0.9]
    assert votes.reasoning == ("", "fine")
    assert provider.report()["abstentions_malformed"] == 1


def test_server_error_then_success_is_retried(server, tmp_path):
    server.enqueue(Reply(status=500), answer("sell", 0.4))
    provider = make_provider(server, tmp_path, max_retries=2)
    votes = provider.vote(make_context(), candidates((25, 1)))
    assert votes.vote.tolist() == [-1]
    report = provider.report()
    assert server.request_count == 2
    assert (report["requests"], report["retries"], report["abstentions_error"]) == (2, 1, 0)


def test_rate_limited_answer_with_retry_after_zero_is_retried_and_counted(server, tmp_path):
    server.enqueue(Reply(status=429, headers={"Retry-After": "0"}), answer("buy", 0.5))
    provider = make_provider(server, tmp_path, max_retries=1)
    votes = provider.vote(make_context(), candidates((25, 1)))
    assert votes.vote.tolist() == [1]
    assert provider.report()["rate_limited"] == 1 and provider.report()["retries"] == 1


def test_timeout_abstains_counts_and_warns_naming_the_url(server, tmp_path):
    server.enqueue(Reply(hold=True))  # answers only when the fixture stops the server
    provider = make_provider(server, tmp_path, timeout_s=0.2)
    with pytest.warns(RuntimeWarning, match=re.escape(server.base_url)):
        votes = provider.vote(make_context(), candidates((25, 1)))
    assert votes.vote.tolist() == [0] and votes.confidence.tolist() == [0.0]
    report = provider.report()
    assert (report["timeouts"], report["abstentions_error"]) == (1, 1)


def test_unreachable_endpoint_abstains_with_a_single_warning_line(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    provider = make_provider(url, tmp_path, breaker_failures=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        votes = provider.vote(make_context(), candidates((20, 0), (21, 1), (22, 2)))
    assert votes.vote.tolist() == [0, 0, 0]
    assert provider.report()["abstentions_error"] == 3
    assert len(caught) == 1 and url in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


def test_breaker_opens_after_n_failures_and_later_candidates_make_no_request(server, tmp_path):
    # Arrange: every request fails; one at a time so "consecutive" is the arrival order
    server.script = lambda body, n: Reply(status=500)
    provider = make_provider(server, tmp_path, max_concurrency=1, breaker_failures=3)
    context = make_context()
    provider.prepare(context, 0, 30)
    # Act
    with pytest.warns(RuntimeWarning, match="circuit breaker"):
        votes = provider.vote(context, candidates(*[(20 + i, 0) for i in range(8)]))
    # Assert
    assert server.request_count == 3
    assert votes.vote.tolist() == [0] * 8
    report = provider.report()
    assert report["breaker_open"] == 1
    assert (report["abstentions_error"], report["abstentions_breaker"]) == (3, 5)
    # A new chunk closes the breaker and calls again.
    server.script = None
    provider.prepare(context, 0, 30)
    provider.vote(context, candidates((28, 1)))
    assert server.request_count == 4 and provider.report()["breaker_open"] == 0


def test_concurrency_never_exceeds_max_concurrency(tmp_path):
    # The server holds each request until 4 are in flight at once (or 2 s pass), then
    # 50 ms more, so a client sending more than 4 at once would show more in flight.
    # No structured output: its first request of a run goes alone (a probe for the form).
    with LLMTestServer(gate=4, latency_s=0.05) as server:
        provider = make_provider(server, tmp_path, max_concurrency=4, structured_output="none")
        votes = provider.vote(make_context(), candidates(*[(20 + i, i % 3) for i in range(9)]
                                                         + [(29, 0), (29, 1), (29, 2)]))
    assert server.request_count == 12 and server.max_in_flight == 4
    assert votes.reasoning == ("default answer",) * 12


def test_server_with_n_slots_serves_at_most_n_of_the_requests_in_flight(tmp_path):
    # Eight requests are held until all are in flight; two slots then serve them in turns.
    with LLMTestServer(gate=8, latency_s=0.02, slots=2) as server:
        provider = make_provider(server, tmp_path, max_concurrency=8, structured_output="none")
        votes = provider.vote(make_context(), candidates(*[(20 + i, 0) for i in range(8)]))
    assert server.max_in_flight == 8 and server.max_serving == 2
    assert not votes.abstained.any()


def test_cost_is_tokens_times_prices_and_cache_hits_cost_nothing(server, tmp_path):
    server.default = answer("buy", 0.5, prompt_tokens=100, completion_tokens=20)
    provider = make_provider(server, tmp_path, cache_mode="record",
                             price_per_1k_prompt_tokens=0.5, price_per_1k_completion_tokens=1.5)
    context = make_context()
    provider.vote(context, candidates((20, 0), (21, 1), (22, 2)))
    # 300 prompt tokens at 0.5 per 1k + 60 completion tokens at 1.5 per 1k
    assert provider.report()["cost"] == pytest.approx(0.15 + 0.09)
    provider.prepare(context, 0, 30)
    provider.vote(context, candidates((20, 0), (21, 1), (22, 2)))
    assert provider.report()["cost"] == 0.0 and provider.report()["cache_hits"] == 3


# --- cache: record and replay ----------------------------------------------------------


def test_record_then_replay_gives_identical_votes_with_zero_requests(server, tmp_path):
    # Arrange
    server.script = by_symbol({"BTCUSD": answer("buy", 0.8, "a"), "ETHUSD": answer("sell", 0.6),
                               "SOLUSD": Reply(content="no idea")})
    context = make_context()
    batch = candidates((20, 0), (21, 1), (22, 2), (20, 0))  # the last repeats the first
    recorder = make_provider(server, tmp_path, cache_mode="record")
    # Act
    recorded = recorder.vote(context, batch)
    requests_recording = server.request_count
    replayer = make_provider("http://127.0.0.1:9/v1", tmp_path, cache_mode="replay")
    replayed = replayer.vote(context, batch)
    # Assert
    assert requests_recording == 3  # the repeated prompt is asked once
    assert server.request_count == 3  # replay sent nothing
    assert replayed.vote.tolist() == recorded.vote.tolist() == [1, -1, 0, 1]
    assert replayed.confidence.tolist() == recorded.confidence.tolist()
    assert replayed.reasoning == recorded.reasoning
    report = replayer.report()
    assert (report["cache_hits"], report["requests"], report["abstentions_malformed"]) == (4, 0, 1)
    lines = (tmp_path / "llm_cache" / "test_llm.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert set(json.loads(lines[0])) == {"key", "provider", "model", "response", "usage",
                                         "created"}


def test_replay_miss_abstains_and_is_counted(tmp_path):
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path, cache_mode="replay")
    with pytest.warns(RuntimeWarning, match="2 of 2 candidates not in the cache .*empty"):
        votes = provider.vote(make_context(), candidates((20, 0), (21, 1)))
    assert votes.vote.tolist() == [0, 0] and votes.abstained.tolist() == [True, True]
    report = provider.report()
    assert (report["cache_misses"], report["abstentions_replay_miss"], report["requests"]) == (
        2, 2, 0)


def test_replay_miss_in_error_mode_raises_naming_the_candidate(tmp_path):
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path, cache_mode="replay",
                             replay_miss="error")
    with pytest.raises(BtError, match=r"ETHUSD at 1987-10-19 14:45 UTC.*cache_mode = 'record'"):
        provider.vote(make_context(), candidates((21, 1)))


def test_live_mode_writes_no_cache(server, tmp_path):
    provider = make_provider(server, tmp_path, cache_mode="live")
    provider.vote(make_context(), candidates((20, 0)))
    provider.vote(make_context(), candidates((20, 0)))
    assert server.request_count == 2
    assert not (tmp_path / "llm_cache").exists()


def test_changing_prompt_parameters_misses_the_cache(server, tmp_path):
    context = make_context()
    make_provider(server, tmp_path, cache_mode="record").vote(context, candidates((20, 0)))
    make_provider(server, tmp_path, cache_mode="record", temperature=0.7).vote(
        context, candidates((20, 0)))
    make_provider(server, tmp_path, cache_mode="record", k_similar=0).vote(
        context, candidates((20, 0)), similar=[[{"description": "d", "direction": 1,
                                                 "return_pct": 1.0, "exit_reason": 1,
                                                 "regime": 1}]])
    make_provider(server, tmp_path, cache_mode="record").vote(context, candidates((20, 0)))
    assert server.request_count == 2  # temperature changed the key; k_similar=0 did not


def test_truncated_last_cache_line_is_skipped_with_a_warning_and_appends_still_work(
        server, tmp_path):
    # Arrange: record two answers, then cut the file inside its last line
    context = make_context()
    make_provider(server, tmp_path, cache_mode="record").vote(context, candidates((20, 0),
                                                                                  (21, 1)))
    path = tmp_path / "llm_cache" / "test_llm.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    # Act
    provider = make_provider(server, tmp_path, cache_mode="record")
    with pytest.warns(UserWarning, match="truncated"):
        provider.vote(context, candidates((20, 0), (21, 1)))
    # Assert: one hit, one re-request, and a fresh load sees both again
    assert provider.report()["cache_hits"] == 1 and server.request_count == 3
    with pytest.warns(UserWarning, match="line 2"):  # now a middle line, still skipped
        assert len(ResponseCache(path)) == 2


def test_cache_key_depends_on_every_part_of_the_request():
    messages = [{"role": "user", "content": "p"}]
    base = cache_key("a", "m", messages, 0.0, 10)
    assert base == cache_key("a", "m", [{"content": "p", "role": "user"}], 0.0, 10)
    others = {cache_key("b", "m", messages, 0.0, 10), cache_key("a", "n", messages, 0.0, 10),
              cache_key("a", "m", [{"role": "user", "content": "q"}], 0.0, 10),
              cache_key("a", "m", messages, 0.5, 10), cache_key("a", "m", messages, 0.0, 11),
              cache_key("a", "m", messages, 0.0, 10, structured_output="json_schema"),
              cache_key("a", "m", messages, 0.0, 10, structured_output="json_object")}
    assert base not in others and len(others) == 7
    assert base == cache_key("a", "m", messages, 0.0, 10, structured_output="none")


# --- secrecy and prompts ----------------------------------------------------------------


def test_api_key_is_sent_but_never_stored_or_shown(server, tmp_path, monkeypatch):
    # Arrange: a unique key; the model even echoes it back in its reasoning
    key = "sk-test-5f1c9e0b7d2a4c8e"
    monkeypatch.setenv("BT_TEST_API_KEY", key)
    server.enqueue(answer("buy", 0.9, f"my key is {key}"), Reply(status=401))
    provider = make_provider(server, tmp_path, cache_mode="record", api_key_env="BT_TEST_API_KEY",
                             max_concurrency=1)
    # Act
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        votes = provider.vote(make_context(), candidates((20, 0), (21, 1)))
    # Assert
    assert server.requests[0].headers["authorization"] == f"Bearer {key}"
    assert votes.vote.tolist() == [1, 0]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(key.encode() not in p.read_bytes() for p in files)
    shown = [repr(provider), str(provider), repr(provider.config), repr(provider._client),
             str(provider.report()), *votes.reasoning, *(str(w.message) for w in caught)]
    assert all(key not in text for text in shown)


def test_anonymised_prompt_hides_symbol_year_and_price_levels(tmp_path):
    # Arrange
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path, anonymize=True)
    context = make_context()
    similar = [{"description": "BTCUSD long on 1987-10-12 at 30123.4", "direction": 1,
                "return_pct": 2.5, "exit_reason": 1, "regime": 1}]
    # Act
    text = "\n".join(m["content"] for m in provider.messages(context, 25, 1, similar))
    # Assert
    assert "ASSET_1" in text and "bar t" in text
    for secret in (*SYMBOLS, "1987", "10-19", "09:30", "31"):  # prices here all start 31...
        assert secret not in text, secret
    # Ten closes, bars 16..25 of asset 1, rebased to 100 at the first (31197.44):
    assert "t-9: 100.00" in text
    assert "t-4: 100.20" in text  # 31259.14 / 31197.44 * 100 = 100.198
    assert "t: 100.36" in text  # 31308.50 / 31197.44 * 100 = 100.356
    assert "+2.50%" in text and "take_profit" in text


def test_prompt_shows_recent_closes_up_to_the_candidate_bar_only(tmp_path):
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path)
    prompt = provider.messages(make_context(), 25, 0)[1]["content"]
    shown = [f"{30000 + 12.34 * t:.6g}" for t in range(16, 26)]
    assert all(f"t-{25 - t}: {c}" in prompt for t, c in zip(range(16, 25), shown[:-1]))
    assert f"t: {shown[-1]}" in prompt
    assert f"{30000 + 12.34 * 15:.6g}" not in prompt and f"{30000 + 12.34 * 26:.6g}" not in prompt
    assert "Asset: BTCUSD" in prompt and "1987-10-19 15:45 UTC" in prompt
    assert "rsi14: 61" in prompt and "TRENDING" in prompt


def test_prompt_lists_at_most_k_similar_situations_with_outcomes(tmp_path):
    provider = make_provider("http://127.0.0.1:9/v1", tmp_path, k_similar=2)
    similar = [{"description": f"case {i}", "direction": -1, "return_pct": -1.25,
                "exit_reason": 0, "regime": "VOLATILE"} for i in range(4)]
    prompt = provider.messages(make_context(), 25, 0, similar)[1]["content"]
    assert "1. short, return -1.25%, exit stop_loss, regime VOLATILE: case 0" in prompt
    assert "case 1" in prompt and "case 2" not in prompt
    assert "none available" in provider.messages(make_context(), 25, 0, [])[1]["content"]


def test_template_with_unknown_field_or_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown field \{price\}"):
        PromptTemplate.parse("[user]\nPrice: {price}", source="t.txt")
    default_system = PromptTemplate.parse("[user]\n{symbol}").render({"symbol": "X"})[0]
    assert '{"action": "buy" | "sell" | "hold"' in default_system["content"]
    with pytest.raises(ConfigError, match="no \\[user\\] line"):
        PromptTemplate.parse("[system]\nhello", source="t.txt")
    with pytest.raises(ConfigError, match="file not found"):
        make_provider("http://127.0.0.1:9/v1", tmp_path, prompt_template=str(tmp_path / "x.txt"))


# --- client pieces ------------------------------------------------------------------------


def test_rate_limiter_spaces_requests_on_an_injected_clock():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], sleep=lambda s: None)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 1.0, 2.0]
    now[0] = 10.0  # the bucket refills to its burst of 1 only
    assert [limiter.acquire() for _ in range(2)] == [0.0, 1.0]
    assert RateLimiter(0).acquire() == 0.0


def test_rate_limiter_gives_each_thread_its_own_slot():
    limiter = RateLimiter(120, clock=lambda: 0.0, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            wait = limiter.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [0.5 * i for i in range(100)]


def test_client_backs_off_exponentially_unless_retry_after_is_given(server):
    waits: list[float] = []
    client = ChatClient(server.base_url, "m", max_retries=2, backoff_s=5.0, sleep=waits.append)
    server.enqueue(Reply(status=503), Reply(status=502), answer("buy", 1))
    assert client.complete([], temperature=0, max_tokens=1).ok
    server.enqueue(Reply(status=429, headers={"Retry-After": "0"}), answer("buy", 1))
    result = client.complete([], temperature=0, max_tokens=1)
    assert result.ok and result.rate_limited == 1
    assert waits == [5.0, 10.0]  # Retry-After: 0 replaced the 5 s backoff


def test_client_does_not_retry_a_client_error(server):
    server.enqueue(Reply(status=404), answer("buy", 1))
    result = ChatClient(server.base_url, "m", max_retries=3, backoff_s=0).complete(
        [], temperature=0, max_tokens=1)
    assert not result.ok and result.attempts == 1 and "HTTP 404" in result.error


def test_empty_batch_sends_nothing_and_mismatched_similar_is_refused(server, tmp_path):
    provider = make_provider(server, tmp_path, cache_mode="record")
    votes = provider.vote(make_context(), candidates())
    assert votes.vote.shape == (0,) and votes.reasoning == ()
    assert server.request_count == 0 and not (tmp_path / "llm_cache").exists()
    with pytest.raises(BtError, match="similar has 2 lists, was expected one per candidate"):
        provider.vote(make_context(), candidates((20, 0)), similar=[[], []])
