"""What a user meets with a real server: its own error text, a preflight that stops a
misconfigured endpoint in one line, a failure policy per chunk, replay misses explained, and
a plan of the calls before any is made."""

from __future__ import annotations

import socket
import warnings

import pytest
from llm_kit import DEAD_URL, candidates, make_context, make_provider
from llm_server import (  # tests/llm_server.py
    LLMTestServer,
    Reply,
    answer,
    context_overflow,
    model_not_found,
)

from backtester.errors import ProviderError
from backtester.providers.http import server_message


@pytest.fixture
def server():
    s = LLMTestServer().start()
    yield s
    s.stop()


def _free_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def _quietly(call, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(*args)
    return out, [str(w.message) for w in caught]


# --- the server's own words -------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"error": {"message": "maximum context length is 512 tokens", "type": "x"}}',
     "maximum context length is 512 tokens"),
    (b'{"error": "model \\"llama3\\" not found, try pulling it first"}',
     'model "llama3" not found, try pulling it first'),
    (b'{"detail": [{"loc": ["body", "response_format", "type"], "msg": "Input should be '
     b"'text' or 'json_object'\"}]}",
     "body.response_format.type: Input should be 'text' or 'json_object'"),
    (b'{"detail": "Not Found"}', "Not Found"),
    (b"<html>\n<body>Bad   Gateway</body></html>", "<html> <body>Bad Gateway</body></html>"),
    (b"", ""),
])
def test_server_message_reads_the_error_bodies_servers_send(body, expected):
    assert server_message(body) == expected


def test_server_message_is_cut_to_about_200_characters():
    text = server_message(b"x" * 5000)
    assert len(text) == 200 and text.endswith("...")


def test_http_error_line_keeps_the_servers_reason(server, tmp_path):
    # Arrange
    server.enqueue(context_overflow(479, 512, 200))
    provider = make_provider(server, tmp_path)
    # Act
    _, caught = _quietly(provider.vote, make_context(), candidates((20, 0)))
    # Assert
    assert len(caught) == 1
    assert ("HTTP 400 Bad Request: This model's maximum context length is 512 tokens. However, "
            "you requested 679 tokens") in caught[0]


# --- preflight ----------------------------------------------------------------------------


def test_preflight_lists_models_and_sends_one_real_structured_request(server, tmp_path):
    # Arrange
    provider = make_provider(server, tmp_path, k_similar=3)
    # Act
    result = provider.preflight(make_context())
    # Assert
    assert result["models"] == ["test-model"] and result["latency_s"] >= 0
    assert result["structured_output_used"] == "json_schema" and result["answer_ok"] is True
    assert server.listings == 1 and [r.path for r in server.requests] == ["/v1/chat/completions"]
    body = server.requests[0].body
    assert body["response_format"]["type"] == "json_schema" and body["max_tokens"] == 200
    prompt = body["messages"][-1]["content"]
    assert "Asset: BTCUSD" in prompt and "3. short" in prompt and "4. " not in prompt


def test_preflight_settles_the_structured_output_fallback_before_the_first_chunk(
        server, tmp_path):
    server.accepts = ("json_object",)
    provider = make_provider(server, tmp_path)
    with pytest.warns(RuntimeWarning, match="refused structured_output 'json_schema'"):
        assert provider.preflight()["structured_output_used"] == "json_object"
    provider.prepare(make_context(), 0, 30)
    # the refused request, the accepted one, and one more timed in the form in use
    assert server.request_count == 3
    _, caught = _quietly(provider.vote, make_context(), candidates((20, 0), (21, 1)))
    assert caught == [] and server.request_count == 5
    assert provider.report()["format_rejections"] == 0


def test_preflight_without_a_models_path_skips_the_list(server, tmp_path):
    server.models = None  # GET /v1/models answers 404
    result = make_provider(server, tmp_path).preflight()
    assert result["models"] == [] and server.request_count == 1


def test_preflight_model_not_served_names_the_models_the_server_lists(server, tmp_path):
    server.models = ["llama3.1:8b", "qwen2.5:7b"]
    provider = make_provider(server, tmp_path, model="mistral:7b")
    with pytest.raises(ProviderError) as info:
        provider.preflight()
    message = str(info.value)
    assert "\n" not in message and "LLM provider 'test_llm'" in message
    assert server.base_url in message and "'mistral:7b'" in message
    assert "it lists: llama3.1:8b, qwen2.5:7b" in message
    assert server.listings == 1 and server.request_count == 0  # stopped before any chat


def test_preflight_accepts_an_ollama_latest_tag(server, tmp_path):
    server.models = ["llama3.1:latest"]
    assert make_provider(server, tmp_path, model="llama3.1").preflight()["answer_ok"]


def test_preflight_wrong_key_says_which_variable_to_check(server, tmp_path, monkeypatch):
    # Arrange
    server.api_key = "sk-right-0000"
    monkeypatch.setenv("BT_TEST_KEY", "sk-wrong-1234")
    provider = make_provider(server, tmp_path, api_key_env="BT_TEST_KEY")
    # Act
    with pytest.raises(ProviderError) as info:
        provider.preflight()
    # Assert
    message = str(info.value)
    assert "HTTP 401 Unauthorized: Incorrect API key provided" in message
    assert message.endswith("check the key in BT_TEST_KEY") and "sk-wrong-1234" not in message


def test_preflight_unreachable_server_says_how_to_start_or_point_it(tmp_path):
    url = _free_url()
    with pytest.raises(ProviderError) as info:
        make_provider(url, tmp_path).preflight()
    message = str(info.value)
    assert "\n" not in message and f"the server is not reachable at {url}" in message
    assert "llama_cpp.server" in message and "base_url" in message


def test_preflight_context_overflow_gives_the_prompt_tokens_and_the_limit(server, tmp_path):
    # Arrange: a 300-token context; the real prompt (about 350 tokens) does not fit
    server.context_limit = 300
    provider = make_provider(server, tmp_path, max_tokens=100)
    # Act
    with pytest.raises(ProviderError) as info:
        provider.preflight(make_context())
    # Assert
    message = str(info.value)
    assert "\n" not in message and "maximum context length is 300 tokens" in message
    assert "the prompt does not fit the model's context (prompt " in message
    assert "tokens + max_tokens 100" in message and "the model's context is 300 tokens" in message


def test_preflight_model_not_found_on_the_request_keeps_the_servers_text(server, tmp_path):
    server.models = None
    server.enqueue(model_not_found("gpt-9"))
    with pytest.raises(ProviderError, match=r"HTTP 404 Not Found: The model `gpt-9` does not "
                       r"exist.*model or path not found"):
        make_provider(server, tmp_path, model="gpt-9").preflight()


def test_preflight_does_nothing_in_replay_or_when_turned_off(server, tmp_path):
    assert make_provider(DEAD_URL, tmp_path, cache_mode="replay").preflight() == {}
    assert make_provider(server, tmp_path, preflight=False).preflight() == {}
    assert server.request_count == 0


# --- failure policy -------------------------------------------------------------------------


def test_breaker_counts_say_tried_failed_and_skipped(server, tmp_path):
    # Arrange: every request fails; one at a time, so the breaker opens after 3
    server.script = lambda body, n: Reply(status=503)
    provider = make_provider(server, tmp_path, max_concurrency=1, breaker_failures=3,
                             structured_output="none")
    # Act
    _, caught = _quietly(provider.vote, make_context(),
                         candidates(*[(20 + i, 0) for i in range(8)]))
    # Assert
    report = provider.report()
    assert (report["calls_tried"], report["calls_failed"], report["calls_skipped"]) == (3, 3, 5)
    assert caught == [f"LLM provider 'test_llm': 3 of 3 calls to {server.base_url} failed (last "
                      "error: HTTP 503 Service Unavailable: scripted 503); the circuit breaker "
                      "opened and skipped 5 more; those candidates abstain"]
    reason = provider.chunk_failure()
    assert "\n" not in reason and "the circuit breaker opened after 3 failed calls" in reason
    assert "3 calls tried, 3 failed, 5 skipped by the circuit breaker" in reason
    assert "HTTP 503" in reason and "see its log" in reason


@pytest.mark.parametrize(("failing", "rate", "fails"), [
    (1, 0.1, False), (2, 0.1, True), (2, 0.2, False), (1, 0.0, True), (0, 0.0, False)])
def test_chunk_failure_applies_max_failure_rate_to_candidates_needing_a_call(
        server, tmp_path, failing, rate, fails):
    # Arrange: ten candidates, one request each in order; the first `failing` fail
    server.script = lambda body, n: Reply(status=400) if n < failing else answer("buy", 0.5)
    provider = make_provider(server, tmp_path, max_concurrency=1, structured_output="none",
                             max_failure_rate=rate, on_failure="abstain")
    # Act
    _quietly(provider.vote, make_context(), candidates(*[(10 + i, 0) for i in range(10)]))
    # Assert: whatever on_failure says, the reason is given; the runner applies the policy
    reason = provider.chunk_failure()
    assert (reason is not None) == fails
    if fails:
        assert f"{failing} of 10 candidates that needed a call failed" in reason
    assert provider.on_failure == "abstain"


def test_answers_of_a_failing_chunk_are_recorded_and_a_resume_asks_only_the_rest(
        server, tmp_path):
    # Arrange: in record mode, the server fails every other request
    server.script = lambda body, n: Reply(status=500) if n % 2 else answer("buy", 0.7)
    context, batch = make_context(), candidates(*[(10 + i, i % 3) for i in range(6)])
    first = make_provider(server, tmp_path, cache_mode="record", max_concurrency=1,
                          structured_output="none")
    votes, _ = _quietly(first.vote, context, batch)
    assert first.chunk_failure() is not None and int(votes.abstained.sum()) == 3
    lines = (tmp_path / "llm_cache" / "test_llm.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the answers that succeeded are already on disk
    # Act: the server is back; a new run (--resume) of the same chunk
    server.script = None
    resumed = make_provider(server, tmp_path, cache_mode="record", structured_output="none")
    votes, _ = _quietly(resumed.vote, context, batch)
    # Assert
    assert server.request_count == 6 + 3
    assert resumed.report()["cache_hits"] == 3 and not votes.abstained.any()
    assert resumed.chunk_failure() is None


# --- replay misses and planning ---------------------------------------------------------------


def test_replay_miss_warns_once_per_chunk_with_the_count_and_the_likely_reason(server, tmp_path):
    # Arrange: record two candidates
    context = make_context()
    make_provider(server, tmp_path, cache_mode="record").vote(context, candidates((20, 0),
                                                                                  (21, 1)))
    # Act: replay them with a third one the record run never saw
    replayer = make_provider(DEAD_URL, tmp_path, cache_mode="replay")
    votes, caught = _quietly(replayer.vote, context, candidates((20, 0), (21, 1), (22, 2)))
    # Assert
    assert votes.abstained.tolist() == [False, False, True]
    assert len(caught) == 1 and "\n" not in caught[0]
    assert caught[0].startswith("LLM provider 'test_llm': 1 of 3 candidates not in the cache ")
    assert "test_llm.jsonl: the prompts differ from the recorded ones" in caught[0]
    other_model = make_provider(DEAD_URL, tmp_path, cache_mode="replay", model="other")
    _, caught = _quietly(other_model.vote, context, candidates((20, 0)))
    assert "it holds no answers of model 'other' (recorded: test-model)" in caught[0]


def test_plan_counts_calls_and_cached_answers_without_a_request(server, tmp_path):
    # Arrange: two candidates recorded; then six asked, one a repeat of a new one
    context = make_context()
    make_provider(server, tmp_path, cache_mode="record").vote(context, candidates((20, 0),
                                                                                  (21, 1)))
    batch = candidates((20, 0), (21, 1), (22, 2), (23, 0), (24, 1), (24, 1))
    recorder = make_provider(server, tmp_path, cache_mode="record")
    replayer = make_provider(DEAD_URL, tmp_path, cache_mode="replay")
    live = make_provider(server, tmp_path, cache_mode="live")
    # Act / Assert
    assert recorder.plan(context, batch) == {"candidates": 6, "calls": 3, "cached": 2,
                                             "missing": 0}
    assert replayer.plan(context, batch) == {"candidates": 6, "calls": 0, "cached": 2,
                                             "missing": 4}
    assert live.plan(context, batch)["calls"] == 5
    assert server.request_count == 2 and recorder.report()["cache_hits"] == 0
