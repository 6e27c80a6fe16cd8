"""Structured output: the answer's JSON schema is asked for; a server refusing the form gets
the next one, once per run; answers are read tolerantly and the unusable ones are shown."""

from __future__ import annotations

import warnings

import pytest
from llm_kit import DEAD_URL, candidates, make_context, make_provider
from llm_server import LLMTestServer, Reply, answer, small_model  # tests/llm_server.py

from backtester.providers.answers import ANSWER_SCHEMA, SAMPLE_CHARS, next_form, response_format


@pytest.fixture
def server():
    s = LLMTestServer().start()
    yield s
    s.stop()


def _vote_quietly(provider, batch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        votes = provider.vote(make_context(), batch)
    return votes, [str(w.message) for w in caught]


FIVE = candidates((20, 0), (21, 1), (22, 2), (23, 0), (24, 1))


def test_default_request_asks_for_the_answer_schema_in_openai_json_schema_form(server, tmp_path):
    # Arrange
    provider = make_provider(server, tmp_path)
    # Act
    provider.vote(make_context(), candidates((20, 0)))
    # Assert
    form = server.requests[0].body["response_format"]
    assert form["type"] == "json_schema"
    schema = form["json_schema"]["schema"]
    assert schema["properties"]["action"]["enum"] == ["buy", "sell", "hold"]
    assert schema["properties"]["confidence"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert schema["required"] == ["action", "confidence", "reasoning"]
    assert provider.structured_output_used == "json_schema"


def test_response_format_forms_and_their_fallback_order():
    assert response_format("json_object") == {"type": "json_object", "schema": ANSWER_SCHEMA}
    assert response_format("none") is None
    assert [next_form(f) for f in ("json_schema", "json_object", "none")] == [
        "json_object", "none", "none"]


def test_llama_cpp_refusal_http_500_falls_back_once_without_retry_or_breaker(server, tmp_path):
    # Arrange: llama-cpp-python 0.3.36 answers json_schema with HTTP 500 and a body saying
    # "Input should be 'text' or 'json_object'"; retries and a breaker of 1 would show a
    # refusal mistaken for a server failure.
    server.accepts = ("json_object",)
    provider = make_provider(server, tmp_path, max_retries=2, breaker_failures=1)
    # Act
    votes, caught = _vote_quietly(provider, FIVE)
    # Assert: one refused request (the first goes alone), then five with json_object
    assert len(caught) == 1 and "\n" not in caught[0]
    assert "refused structured_output 'json_schema'" in caught[0]
    assert "Input should be 'text' or 'json_object'" in caught[0]
    assert "using 'json_object'" in caught[0]
    assert server.request_count == 6
    assert [r.body["response_format"]["type"] for r in server.requests] == (
        ["json_schema"] + ["json_object"] * 5)
    assert server.requests[1].body["response_format"]["schema"] == ANSWER_SCHEMA
    assert not votes.abstained.any()
    report = provider.report()
    assert (report["format_rejections"], report["requests"], report["retries"]) == (1, 6, 0)
    assert (report["breaker_open"], report["calls_failed"], report["calls_tried"]) == (0, 0, 5)
    assert provider.structured_output_used == report["structured_output_used"] == "json_object"
    assert provider.chunk_failure() is None


def test_fallback_holds_for_the_rest_of_the_run(server, tmp_path):
    server.accepts = ("json_object",)
    provider = make_provider(server, tmp_path)
    _vote_quietly(provider, FIVE)
    provider.prepare(make_context(), 0, 30)  # the next chunk
    votes, caught = _vote_quietly(provider, candidates((25, 0), (26, 1)))
    assert caught == [] and server.request_count == 8
    assert {r.body["response_format"]["type"] for r in server.requests[6:]} == {"json_object"}
    assert provider.report()["format_rejections"] == 0


def test_openai_style_400_refusals_fall_back_to_no_response_format(server, tmp_path):
    # Arrange: a server taking neither form, refusing with OpenAI's HTTP 400 body
    server.accepts = ()
    server.refuse_style = "openai"
    provider = make_provider(server, tmp_path, max_retries=2)
    # Act
    votes, caught = _vote_quietly(provider, FIVE)
    # Assert
    assert len(caught) == 2 and "'json_schema'" in caught[0] and "'json_object'" in caught[1]
    assert "HTTP 400 Bad Request: Invalid parameter: 'response_format'" in caught[0]
    assert provider.structured_output_used == "none"
    assert server.request_count == 7
    assert all("response_format" not in r.body for r in server.requests[2:])
    assert not votes.abstained.any() and provider.report()["format_rejections"] == 2


def test_replay_finds_answers_recorded_after_a_fallback_without_network(server, tmp_path):
    # Arrange: record with a server that refused json_schema
    server.accepts = ("json_object",)
    recorded, _ = _vote_quietly(make_provider(server, tmp_path, cache_mode="record"), FIVE)
    # Act: replay with the same configured form, no server
    replayer = make_provider(DEAD_URL, tmp_path, cache_mode="replay")
    replayed, caught = _vote_quietly(replayer, FIVE)
    # Assert
    assert caught == [] and replayer.report()["cache_hits"] == 5
    assert replayed.vote.tolist() == recorded.vote.tolist()
    # another configured form is another request: it misses
    other = make_provider(DEAD_URL, tmp_path, cache_mode="replay", structured_output="none")
    assert _vote_quietly(other, FIVE)[0].abstained.all()


def test_small_model_abstains_in_prose_without_structured_output_and_not_with_it(
        server, tmp_path):
    # Arrange: a small model answers in prose unless the form is constrained
    server.script = small_model
    batch = candidates(*[(10 + i, i % 3) for i in range(12)])
    # Act
    prose = make_provider(server, tmp_path, structured_output="none", name="plain")
    prose_votes, _ = _vote_quietly(prose, batch)
    structured = make_provider(server, tmp_path, name="structured")
    structured_votes, _ = _vote_quietly(structured, batch)
    # Assert: every prose answer abstains, three samples are kept; none with the schema
    assert prose_votes.abstained.all() and not structured_votes.abstained.any()
    report = prose.report()
    assert report["abstentions_malformed"] == report["abstentions"] == 12
    assert len(report["sample_malformed"]) == 3
    assert all(s.startswith("Looking at the indicators") for s in report["sample_malformed"])
    assert "sample_malformed" not in structured.report()
    assert structured.report()["abstentions"] == 0


def test_malformed_samples_are_one_line_and_cut_to_300_characters(server, tmp_path):
    server.enqueue(Reply(content="word " * 200 + "\nI'd buy"))
    provider = make_provider(server, tmp_path, structured_output="none")
    provider.vote(make_context(), candidates((20, 0)))
    (text,) = provider.report()["sample_malformed"]
    assert len(text) == SAMPLE_CHARS and text.endswith("...") and "\n" not in text
    provider.prepare(make_context(), 0, 30)
    assert "sample_malformed" not in provider.report()  # a new chunk starts without samples


def test_a_500_without_format_words_is_still_a_retried_server_failure(server, tmp_path):
    server.enqueue(Reply(status=500), answer("sell", 0.4))
    provider = make_provider(server, tmp_path, max_retries=1)
    votes = provider.vote(make_context(), candidates((25, 1)))
    assert votes.vote.tolist() == [-1]
    assert provider.report()["retries"] == 1 and provider.report()["format_rejections"] == 0
    assert provider.structured_output_used == "json_schema"
