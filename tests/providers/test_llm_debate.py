"""Debate mode: a bull and a bear argue, a judge votes; one "debate" vote in the ensemble,
recorded and replayed through the three providers' caches."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from llm_kit import DEAD_URL, candidates, make_context, make_provider
from llm_server import LLMTestServer, Reply, answer  # tests/llm_server.py

from backtester.config import EnsembleConfig, load_config
from backtester.errors import ConfigError
from backtester.providers import build_provider
from backtester.providers.debate import DebateProvider, assemble
from backtester.providers.llm import LLMProvider
from strategies import STRATEGY_REGISTRY

REPO = Path(__file__).resolve().parents[2]
DEBATE = EnsembleConfig(llm_mode="debate")
INDEPENDENT = EnsembleConfig()
TEMPLATES = {"bull": "configs/prompts/bull.txt", "bear": "configs/prompts/bear.txt",
             "judge": "configs/prompts/judge.txt"}


def debater(body: dict, number: int) -> Reply:
    """Bull and bear argue in prose; the judge buys when it read both cases, else sells."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "You are the bull" in system:
        return Reply(content="  Higher highs and rising volume:\nthe trend is up. ")
    if "You are the bear" in system:
        return Reply(content="RSI is stretched and the band is near its top.")
    read_both = "the trend is up" in user and "RSI is stretched" in user
    return answer("buy" if read_both else "sell", 0.8, "the bull's case is stronger")


@pytest.fixture
def server():
    s = LLMTestServer().start()
    s.script = debater
    yield s
    s.stop()


def trio(url, tmp_path: Path, **overrides) -> list[LLMProvider]:
    return [make_provider(url, tmp_path, name=role, role=role, prompt_template=TEMPLATES[role],
                          **overrides) for role in ("bull", "bear", "judge")]


def debate(url, tmp_path: Path, **overrides) -> DebateProvider:
    (provider,) = assemble(trio(url, tmp_path, **overrides), DEBATE)
    return provider


def _quietly(call, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(*args)
    return out, [str(w.message) for w in caught]


THREE = candidates((20, 0), (21, 1), (22, 2))


# --- assembling -------------------------------------------------------------------------------


def test_independent_mode_returns_the_providers_unchanged(tmp_path):
    providers = [make_provider(DEAD_URL, tmp_path, name=f"p{i}") for i in range(3)]
    assert assemble(providers, INDEPENDENT) == providers


def test_debate_mode_puts_one_debate_provider_in_the_judges_place(tmp_path):
    # Arrange: strategy, judge, other LLM, bull, bear
    bull, bear, judge = trio(DEAD_URL, tmp_path)
    other = make_provider(DEAD_URL, tmp_path, name="other")
    strategy = STRATEGY_REGISTRY["momentum"](STRATEGY_REGISTRY["momentum"].config_class())
    # Act
    out = assemble([strategy, judge, other, bull, bear], DEBATE)
    # Assert
    assert [p.name for p in out] == [strategy.name, "debate", "other"]
    assert (out[1].bull, out[1].bear, out[1].judge) == (bull, bear, judge)
    assert out[1].uses_similar and out[1].on_failure == "stop"


@pytest.mark.parametrize(("roles", "mode", "match"), [
    (("bull", "bear", ""), DEBATE, r"^ensemble.llm_mode is 'debate' but no LLM provider has "
                                   r"role = 'judge'; set role"),
    (("bull", "bull", "judge"), DEBATE, r"^providers.p1.role: 'bull' is already the role of "
                                        r"providers.p0"),
    (("", "", "judge"), INDEPENDENT, r"^providers.p2.role is 'judge' but ensemble.llm_mode is "
                                     r"'independent'"),
])
def test_missing_repeated_or_misplaced_roles_raise_one_line(tmp_path, roles, mode, match):
    providers = [make_provider(DEAD_URL, tmp_path, name=f"p{i}", role=role,
                               prompt_template=TEMPLATES.get(role, "configs/prompts/default.txt"))
                 for i, role in enumerate(roles)]
    with pytest.raises(ConfigError, match=match) as info:
        assemble(providers, mode)
    assert "\n" not in str(info.value)


def test_argument_roles_and_the_judge_need_their_templates(tmp_path):
    with pytest.raises(ConfigError, match=r"^prompt_template must be an argument template for "
                       r"role 'bull'.*configs/prompts/bull.txt"):
        make_provider(DEAD_URL, tmp_path, role="bull")
    with pytest.raises(ConfigError, match=r"a judge's template must show \{bull_argument\} and "
                       r"\{bear_argument\}"):
        make_provider(DEAD_URL, tmp_path, role="judge")


def test_debate_config_builds_three_role_providers_into_one_debate(tmp_path):
    config = load_config(REPO / "configs/debate.toml")
    built = [build_provider(c, cache_dir=tmp_path) for c in config.providers]
    (provider,) = assemble(built, config.ensemble)
    assert config.ensemble.llm_mode == "debate" and isinstance(provider, DebateProvider)
    assert {m.config.base_url for m in provider.members.values()} == {
        "http://127.0.0.1:11434/v1"}


# --- voting -------------------------------------------------------------------------------------


def test_judge_votes_after_reading_both_arguments_which_are_kept_as_reasoning(server, tmp_path):
    # Arrange
    provider = debate(server, tmp_path)
    provider.prepare(make_context(), 0, 30)
    # Act
    votes = provider.vote(make_context(), THREE)
    # Assert: the judge read both cases (it buys only then)
    assert votes.vote.tolist() == [1, 1, 1] and not votes.abstained.any()
    assert votes.confidence.tolist() == [0.8] * 3
    assert votes.reasoning[0] == ("bull: Higher highs and rising volume: the trend is up.\n"
                                  "bear: RSI is stretched and the band is near its top.\n"
                                  "judge: the bull's case is stronger")
    # arguments are free text; the judge's vote is structured
    by_role = {role: [r for r in server.requests if f"You are the {role}" in
                      r.body["messages"][0]["content"]] for role in ("bull", "bear", "judge")}
    assert [len(v) for v in by_role.values()] == [3, 3, 3]
    assert all("response_format" not in r.body for r in by_role["bull"] + by_role["bear"])
    assert by_role["judge"][0].body["response_format"]["type"] == "json_schema"
    report = provider.report()
    assert report["requests"] == 9 and report["abstentions"] == 0
    assert (report["bull_requests"], report["bear_requests"], report["judge_requests"]) == (3, 3, 3)


def test_debate_records_then_replays_identically_without_a_request(server, tmp_path):
    # Arrange
    context = make_context()
    recorded = debate(server, tmp_path, cache_mode="record").vote(context, THREE)
    # Act
    replayer = debate(DEAD_URL, tmp_path, cache_mode="replay")
    replayed, caught = _quietly(replayer.vote, context, THREE)
    # Assert
    assert caught == [] and server.request_count == 9
    assert replayed.vote.tolist() == recorded.vote.tolist()
    assert replayed.reasoning == recorded.reasoning
    assert replayer.report()["cache_hits"] == 9
    assert sorted(p.name for p in (tmp_path / "llm_cache").iterdir()) == [
        "bear.jsonl", "bull.jsonl", "judge.jsonl"]
    assert replayer.preflight() == {}


def test_plan_counts_the_three_roles_calls_and_what_is_cached(server, tmp_path):
    context = make_context()
    fresh = debate(server, tmp_path, cache_mode="record")
    assert fresh.plan(context, THREE) == {"candidates": 3, "calls": 9, "cached": 0, "missing": 0,
                                          "bull_calls": 3, "bear_calls": 3, "judge_calls": 3}
    fresh.vote(context, THREE)
    again = debate(server, tmp_path, cache_mode="record")
    assert again.plan(context, THREE)["calls"] == 0
    assert again.plan(context, THREE)["cached"] == 9 and server.request_count == 9


def test_a_failed_argument_leaves_its_candidate_unjudged_and_abstaining(server, tmp_path):
    # Arrange: the bull's call about ETHUSD fails
    def script(body: dict, number: int) -> Reply:
        if ("You are the bull" in body["messages"][0]["content"]
                and "Asset: ETHUSD" in body["messages"][-1]["content"]):
            return Reply(status=400)
        return debater(body, number)
    server.script = script
    provider = debate(server, tmp_path)
    # Act
    votes, _ = _quietly(provider.vote, make_context(), THREE)
    # Assert
    assert votes.abstained.tolist() == [False, True, False]
    assert votes.reasoning[1].startswith("bull: (none)\nbear: RSI is stretched")
    report = provider.report()
    assert report["abstentions_argument"] == 1 and report["abstentions"] == 1
    assert report["judge_requests"] == 2
    reason = provider.chunk_failure()
    assert reason.startswith("debate bull: LLM provider 'bull'") and "1 of 3 candidates" in reason


def test_debate_preflight_checks_every_role(server, tmp_path):
    result = debate(server, tmp_path).preflight(make_context())
    assert set(result["roles"]) == {"bull", "bear", "judge"}
    assert result["answer_ok"] and result["structured_output_used"] == "json_schema"
    assert result["latency_s"] == pytest.approx(sum(r["latency_s"]
                                                    for r in result["roles"].values()))
    judge_prompt = server.requests[-1].body["messages"][-1]["content"]
    assert "The bull's case:\nThe close sits above" in judge_prompt
