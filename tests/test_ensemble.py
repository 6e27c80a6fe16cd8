"""Combining votes into decisions."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from backtester.config import EnsembleConfig, ExecutionConfig
from backtester.ensemble import (
    Weights,
    build_decisions,
    decision_ids,
    equal_weights,
    provider_scores,
)
from backtester.providers.base import Candidates, Votes


def test_scores_are_the_weighted_mean_of_vote_times_confidence():
    votes = [
        Votes(np.array([1, -1, 0], np.int8), np.array([0.9, 0.5, 0.0])),
        Votes(np.array([1, 1, 1], np.int8), np.array([0.3, 0.5, 1.0])),
        Votes(np.array([0, -1, -1], np.int8), np.array([0.0, 1.0, 0.4])),
    ]
    scores = provider_scores(votes, equal_weights(3))
    np.testing.assert_allclose(scores, [(0.9 + 0.3) / 3, (-0.5 + 0.5 - 1.0) / 3, (1.0 - 0.4) / 3])
    weighted = provider_scores(votes, np.array([2.0, 1.0, 1.0]))
    np.testing.assert_allclose(weighted[0], (2 * 0.9 + 0.3) / 4)


def test_scores_leave_out_abstentions_but_keep_holds_in_the_denominator():
    # Arrange: weights a 0.5, b 0.3, c 0.2
    votes = [
        Votes(np.array([1, -1, 1], np.int8), np.array([0.8, 0.5, 1.0]),
              abstained=np.array([False, True, True])),
        Votes(np.array([0, 1, -1], np.int8), np.array([0.0, 0.6, 0.2]),
              abstained=np.array([False, False, True])),
        Votes(np.array([1, -1, 0], np.int8), np.array([0.4, 0.5, 0.0]),
              abstained=np.array([True, False, True])),
    ]
    # Act
    scores = provider_scores(votes, np.array([0.5, 0.3, 0.2]))
    # Assert: candidate 0: a votes, b holds (in the denominator), c abstains;
    # candidate 1: a abstains (its -1 x 0.5 is ignored); candidate 2: everyone abstains
    np.testing.assert_allclose(scores, [0.5 * 0.8 / (0.5 + 0.3),
                                        (0.3 * 0.6 - 0.2 * 0.5) / (0.3 + 0.2), 0.0])
    per_candidate = np.array([[0.1, 0.5, 0.5], [0.6, 0.3, 0.3], [0.3, 0.2, 0.2]])
    np.testing.assert_allclose(provider_scores(votes, per_candidate),
                               [0.1 * 0.8 / 0.7, (0.3 * 0.6 - 0.2 * 0.5) / 0.5, 0.0])


def _dead_provider_case(seed: int = 7, k: int = 200):
    rng = np.random.default_rng(seed)
    live = [Votes(rng.integers(-1, 2, k).astype(np.int8), rng.uniform(0, 1, k),
                  abstained=rng.uniform(size=k) < 0.1) for _ in range(3)]
    # a dead provider's Votes may hold anything: every candidate is an abstention
    dead = Votes(rng.integers(-1, 2, k).astype(np.int8), rng.uniform(0, 1, k),
                 abstained=np.ones(k, dtype=bool))
    regimes = rng.integers(0, 3, k).astype(np.int8)
    overall = rng.uniform(0.05, 1.0, 4)
    by_regime = {c: rng.uniform(0.05, 1.0, 4) for c in (0, 1, 2)}
    return live, dead, regimes, overall, by_regime


@pytest.mark.parametrize("per_regime", [False, True], ids=["global", "per_regime"])
def test_a_provider_that_always_abstains_leaves_scores_and_decisions_exactly_unchanged(
        per_regime):
    # Arrange: the same three live providers with and without a dead one (second of four)
    live, dead, regimes, overall, by_regime = _dead_provider_case()
    keep = [0, 2, 3]
    with_dead = Weights(("a", "dead", "b", "c"), overall, by_regime)
    without = Weights(("a", "b", "c"), overall[keep], {c: w[keep] for c, w in by_regime.items()})
    if per_regime:
        weights_with, weights_without = with_dead.for_candidates(regimes), \
            without.for_candidates(regimes)
    else:
        weights_with, weights_without = with_dead.overall, without.overall
    # Act
    scores_with = provider_scores([live[0], dead, live[1], live[2]], weights_with)
    scores_without = provider_scores(live, weights_without)
    # Assert: bit for bit the same scores, hence the same decisions
    np.testing.assert_array_equal(scores_with, scores_without)
    assert np.count_nonzero(scores_without) > 150  # a real test: most candidates score
    k = len(scores_with)
    candidates = Candidates(np.arange(k, dtype=np.int64) // 2, (np.arange(k) % 2).astype(np.int32))
    ids = np.arange(k, dtype=np.int64)
    made = [build_decisions(candidates, s, ids, start=0, stop=k // 2, n_assets=2,
                            ensemble=EnsembleConfig(threshold=0.25), execution=ExecutionConfig())
            for s in (scores_with, scores_without)]
    for field in ("direction", "size", "stop_loss", "take_profit", "decision_id"):
        np.testing.assert_array_equal(getattr(made[0], field), getattr(made[1], field))
    assert np.count_nonzero(made[0].direction) > 20


def test_decisions_respect_threshold_and_short_permission():
    candidates = Candidates(np.array([10, 11, 12, 12]), np.array([0, 1, 0, 1], np.int32))
    scores = np.array([0.4, -0.3, 0.1, -0.6])
    ids = np.array([101, 102, 103, 104])
    execution = ExecutionConfig(position_size=0.2, stop_loss=0.01, take_profit=0.03)
    d = build_decisions(candidates, scores, ids, start=10, stop=13, n_assets=2,
                        ensemble=EnsembleConfig(threshold=0.25), execution=execution)
    assert d.direction.tolist() == [[1, 0], [0, -1], [0, -1]]
    assert d.decision_id.tolist() == [[101, -1], [-1, 102], [-1, 104]]
    assert d.size[0, 0] == 0.2 and d.stop_loss[1, 1] == 0.01 and d.take_profit[2, 1] == 0.03
    longs_only = build_decisions(candidates, scores, ids, start=10, stop=13, n_assets=2,
                                 ensemble=EnsembleConfig(threshold=0.25),
                                 execution=ExecutionConfig(allow_short=False))
    assert longs_only.direction.tolist() == [[1, 0], [0, 0], [0, 0]]


def test_decision_ids_are_deterministic_and_distinct():
    symbols = np.array(["BTCUSD", "ETHUSD", "BTCUSD"], dtype=object)
    times = np.array([1, 1, 2], dtype=np.int64)
    a = decision_ids(symbols, times, "a" * 64)
    assert a.tolist() == decision_ids(symbols, times, "a" * 64).tolist()
    assert len(set(a.tolist())) == 3
    assert not set(a.tolist()) & set(decision_ids(symbols, times, "b" * 64).tolist())


# ---------------------------------------------------------------- learning


from backtester.config import Config, MonitorConfig  # noqa: E402
from backtester.ensemble import (  # noqa: E402
    ShadowScores,
    apply_floor,
    current_weights,
    empty_stats,
    learn,
    provider_credit,
    shadow_scores,
    wilson_lower_bound,
)
from backtester.monitor import adapt  # noqa: E402
from backtester.regime import RANGING, TRENDING  # noqa: E402


def test_floor_keeps_every_weight_above_floor_over_p_and_sums_to_one():
    w = apply_floor(np.array([0.97, 0.01, 0.01, 0.01]), 0.4)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w[1:], 0.1)  # 0.4 / 4
    assert w[0] == pytest.approx(0.7)
    np.testing.assert_allclose(apply_floor(np.array([1.0, 3.0]), 0.0), [0.25, 0.75])


def test_wilson_lower_bound_matches_the_textbook_value():
    # 8 hits of 10 trials at z = 1.96: the Wilson interval is [0.4902, 0.9433]
    assert wilson_lower_bound(8, 10) == pytest.approx(0.4902, abs=1e-4)
    assert wilson_lower_bound(0, 0) == 0.0


def test_shadow_scores_use_the_horizon_truncated_at_the_chunk_end():
    close = np.array([[100.0], [101.0], [99.0], [103.0], [104.0]])
    candidates = Candidates(np.array([0, 2, 4]), np.zeros(3, np.int32))
    votes = [Votes(np.array([1, -1, 1], np.int8), np.ones(3)),
             Votes(np.array([-1, 0, -1], np.int8), np.ones(3))]
    s = shadow_scores(votes, candidates, close, stop=5, horizon=2)
    # bar 0 -> close[2]: 99/100 - 1 = -1%; bar 2 -> close[4]: 104/99 - 1; bar 4: no horizon
    np.testing.assert_array_equal(s.scored, [True, True, False])
    np.testing.assert_array_equal(s.voted, [[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(s.hit, [[False, False, False], [True, False, False]])
    np.testing.assert_allclose(s.shadow_return[0], [-0.01, -(104 / 99 - 1), 0.0])
    assert not s.abstained.any()


def test_shadow_scores_keep_abstentions_apart_from_votes():
    close = np.array([[100.0], [101.0], [99.0], [103.0], [104.0]])
    candidates = Candidates(np.array([0, 2, 4]), np.zeros(3, np.int32))
    abstained = np.array([True, False, True])
    votes = [Votes(np.array([1, 0, 0], np.int8), np.array([0.5, 0.0, 0.0]), abstained=abstained),
             Votes(np.array([-1, 0, -1], np.int8), np.ones(3))]
    s = shadow_scores(votes, candidates, close, stop=5, horizon=2)
    # an abstention is no vote, even with a non-zero vote value; the hold is neither
    np.testing.assert_array_equal(s.abstained, [abstained, [False, False, False]])
    np.testing.assert_array_equal(s.voted, [[False, False, False], [True, False, False]])
    np.testing.assert_array_equal(s.shadow_return[0], [0.0, 0.0, 0.0])


def _scores(hits_by_provider: list[list[int]]) -> ShadowScores:
    """Shadow scores where every provider votes on every candidate; 1 = hit, 0 = miss."""
    hit = np.array(hits_by_provider, dtype=bool)
    voted = np.ones_like(hit)
    return ShadowScores(voted, hit, np.where(hit, 0.01, -0.01), np.ones(hit.shape[1], bool))


def test_mwu_update_follows_the_documented_formula():
    config = EnsembleConfig(method="mwu", learning_rate=0.1, weight_floor=0.0)
    names = ["a", "b"]
    used = current_weights(names, empty_stats(), config, 0)
    np.testing.assert_allclose(used.overall, [0.5, 0.5])
    # a hits 3 of 4 (g = 0.5), b hits 1 of 4 (g = -0.5); n = 4
    stats, counts = learn(empty_stats(), names, _scores([[1, 1, 1, 0], [0, 0, 1, 0]]),
                          np.full(4, RANGING), used, [], config, "c1")
    ratio = math.exp(0.1 * 2 * 0.5) / math.exp(0.1 * 2 * -0.5)
    assert stats["providers"]["a"]["weight"] / stats["providers"]["b"]["weight"] == \
        pytest.approx(ratio)
    assert counts["providers"]["a"] == {"votes": 4, "hits": 3, "shadow_pnl": pytest.approx(0.02),
                                        "abstentions": 0, "scored": 4}
    assert stats["providers"]["a"]["abstention_rate"] == 0.0
    assert stats["providers"]["a"]["weight_history"] == [{"chunk": "c1", "weight": 0.5}]
    nxt = current_weights(names, stats, config, 1)
    assert nxt.overall[0] / nxt.overall[1] == pytest.approx(ratio)


def test_regime_weights_shrink_toward_global_with_few_samples():
    config = EnsembleConfig(method="wilson", regime_shrinkage=4.0, weight_floor=0.0)
    names = ["a", "b"]
    regimes = np.array([TRENDING] * 4 + [RANGING] * 4)
    # a is right in trends, b is right in ranges
    scores = _scores([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]])
    stats, _ = learn(empty_stats(), names, scores, regimes,
                     current_weights(names, empty_stats(), config, 0), [], config, "c1")
    w = current_weights(names, stats, config, 1)
    np.testing.assert_allclose(w.overall, [0.5, 0.5])  # 4 of 8 each
    trend = w.by_regime[TRENDING]
    own = np.array([wilson_lower_bound(4, 4), 0.0])
    own = own / own.sum()
    np.testing.assert_allclose(trend, 0.5 * own + 0.5 * w.overall)  # n_r = 4 = kappa
    assert w.for_candidates(np.array([TRENDING, RANGING]))[0].tolist() == \
        [trend[0], w.by_regime[RANGING][0]]


def test_thompson_is_deterministic_per_seed_and_chunk():
    config = EnsembleConfig(method="thompson", seed=3, weight_floor=0.0)
    stats, _ = learn(empty_stats(), ["a", "b"], _scores([[1] * 25 + [0] * 5, [1] * 5 + [0] * 25]),
                     np.full(30, RANGING), current_weights(["a", "b"], empty_stats(), config, 0),
                     [], config, "c1")
    one, two = current_weights(["a", "b"], stats, config, 1), current_weights(["a", "b"], stats,
                                                                                config, 1)
    np.testing.assert_array_equal(one.overall, two.overall)
    assert one.overall[0] > one.overall[1]
    assert not np.array_equal(one.overall, current_weights(["a", "b"], stats, config, 2).overall)


def _coded(rows: list[str]) -> ShadowScores:
    """Shadow scores from one string per provider: h hit, m miss, 0 hold, a abstained."""
    code = np.array([list(r) for r in rows])
    hit, voted = code == "h", np.isin(code, ["h", "m"])
    return ShadowScores(voted, hit, np.where(hit, 0.01, np.where(voted, -0.01, 0.0)),
                        np.ones(code.shape[1], bool), code == "a")


@pytest.mark.parametrize("penalty", [1.0, 0.5, 0.0])
def test_mwu_gain_charges_abstentions_times_the_penalty(penalty):
    # Arrange: n = 4 candidates, floor 0, equal weights used
    config = EnsembleConfig(method="mwu", learning_rate=0.1, weight_floor=0.0,
                            abstention_penalty=penalty)
    names = ["a", "b", "c"]
    scores = _coded(["hhhm", "hm0a", "aaaa"])
    used = current_weights(names, empty_stats(), config, 0)
    # Act
    stats, counts = learn(empty_stats(), names, scores, np.full(4, RANGING), used, [], config,
                          "c1")
    # Assert: g_a = (3 - 1) / 4; g_b = (1 - 1 - penalty) / 4 (the hold counts 0);
    # g_c = -4 penalty / 4
    gains = np.array([0.5, -penalty / 4, -penalty])
    expected = np.exp(0.1 * math.sqrt(4) * gains)
    expected /= expected.sum()
    got = [stats["providers"][n]["weight"] for n in names]
    np.testing.assert_allclose(got, expected)
    assert [counts["providers"][n]["abstentions"] for n in names] == [0, 1, 4]
    assert [stats["providers"][n]["abstention_rate"] for n in names] == [0.0, 0.25, 1.0]
    assert counts["regimes"]["RANGING"]["c"] == {"votes": 0, "hits": 0, "shadow_pnl": 0.0,
                                                 "abstentions": 4, "scored": 4}


def test_abstentions_without_a_horizon_are_not_counted():
    scores = ShadowScores(np.zeros((1, 3), bool), np.zeros((1, 3), bool), np.zeros((1, 3)),
                          np.array([True, True, False]), np.array([[True, False, True]]))
    stats, counts = learn(empty_stats(), ["a"], scores, np.full(3, RANGING),
                          current_weights(["a"], empty_stats(), EnsembleConfig(), 0), [],
                          EnsembleConfig(), "c1")
    assert counts["providers"]["a"]["abstentions"] == 1
    assert stats["providers"]["a"]["abstention_rate"] == 0.5


@pytest.mark.parametrize("penalty, floored", [(1.0, True), (0.0, False)])
def test_an_always_abstaining_provider_sinks_to_the_floor_only_when_penalised(penalty, floored):
    # Arrange: a and b are right half the time (gain 0), c abstains on every candidate
    config = EnsembleConfig(method="mwu", learning_rate=0.1, weight_floor=0.2,
                            abstention_penalty=penalty)
    names = ["a", "b", "c"]
    scores = _coded(["hm" * 50, "mh" * 50, "a" * 100])
    stats = empty_stats()
    # Act: three chunks of n = 100
    for chunk in range(3):
        used = current_weights(names, stats, config, chunk)
        stats, _ = learn(stats, names, scores, np.full(100, RANGING), used, [], config,
                         f"c{chunk}")
    weights = current_weights(names, stats, config, 3).overall
    # Assert: with penalty 1, c's weight is e^-1 of the others' after one chunk, e^-2 after
    # two: below the floor 0.2 / 3, where it stays; with penalty 0 nothing separates them
    if floored:
        np.testing.assert_allclose(weights, [(1 - 0.2 / 3) / 2] * 2 + [0.2 / 3])
    else:
        np.testing.assert_allclose(weights, [1 / 3] * 3)
    assert stats["providers"]["c"]["abstentions"] == 300
    assert stats["providers"]["c"]["abstention_rate"] == 1.0


@pytest.mark.parametrize("penalty", [1.0, 0.5, 0.0])
def test_wilson_counts_an_abstention_as_penalty_times_a_miss(penalty):
    # Arrange: a and b both hit 8 of 10 votes; a holds on 10 candidates, b abstains on them
    config = EnsembleConfig(method="wilson", weight_floor=0.0, abstention_penalty=penalty)
    names = ["a", "b"]
    scores = _coded(["h" * 8 + "mm" + "0" * 10, "h" * 8 + "mm" + "a" * 10])
    stats, _ = learn(empty_stats(), names, scores, np.full(20, RANGING),
                     current_weights(names, empty_stats(), config, 0), [], config, "c1")
    # Act
    weights = current_weights(names, stats, config, 1).overall
    # Assert
    raw = np.array([wilson_lower_bound(8, 10), wilson_lower_bound(8, 10 + 10 * penalty)])
    np.testing.assert_allclose(weights, raw / raw.sum())


def test_thompson_draws_from_beta_with_abstentions_as_penalty_times_a_miss():
    config = EnsembleConfig(method="thompson", seed=4, weight_floor=0.0, abstention_penalty=0.5)
    names = ["a", "b"]
    scores = _coded(["h" * 8 + "mm" + "0" * 10, "h" * 8 + "mm" + "a" * 10])
    stats, _ = learn(empty_stats(), names, scores, np.full(20, RANGING),
                     current_weights(names, empty_stats(), config, 0), [], config, "c1")
    weights = current_weights(names, stats, config, 1).overall
    draws = np.random.default_rng([4, 1]).beta([9.0, 9.0], [3.0, 3.0 + 5.0])
    np.testing.assert_allclose(weights, draws / draws.sum())


def _old_row(votes: int, hits: int, trades: int, wins: int, weight: float) -> dict:
    """A provider row as memories wrote it before abstentions were counted."""
    return {"votes": votes, "hits": hits, "shadow_pnl": 0.1, "trades": trades, "wins": wins,
            "losses": trades - wins, "weight": weight,
            "weight_history": [{"chunk": "old", "weight": 0.5}]}


@pytest.mark.parametrize("method", ["mwu", "thompson", "wilson", "equal"])
def test_stats_of_an_older_memory_without_abstention_counts_load_and_learn(method):
    # Arrange
    old = {"providers": {"a": _old_row(10, 7, 3, 2, 0.6), "b": _old_row(10, 4, 1, 0, 0.4)},
           "regimes": {"RANGING": {"scored": 10, "providers": {
               "a": _old_row(10, 7, 0, 0, 0.55), "b": _old_row(10, 4, 0, 0, 0.45)}}}}
    frozen = copy.deepcopy(old)
    config = EnsembleConfig(method=method, weight_floor=0.0)
    names = ["a", "b"]
    # Act
    used = current_weights(names, old, config, 1)
    stats, counts = learn(old, names, _coded(["hhaa", "hm0a"]), np.full(4, RANGING), used,
                          [({"a": 1, "b": 1}, 1, 2.0)], config, "c2")
    # Assert: the old stats are untouched; new counts start at 0, trades_with from trades
    assert old == frozen
    if method == "mwu":
        np.testing.assert_allclose(used.overall, [0.6, 0.4])
    a = stats["providers"]["a"]
    assert (a["votes"], a["hits"], a["abstentions"], a["scored"]) == (12, 9, 2, 4)
    assert a["abstention_rate"] == 0.5
    assert (a["trades"], a["trades_with"], a["wins"], a["trades_against"]) == (4, 4, 3, 0)
    assert stats["regimes"]["RANGING"]["providers"]["b"]["abstentions"] == 1
    assert stats["regimes"]["RANGING"]["scored"] == 14
    assert counts["providers"]["b"]["abstentions"] == 1


def test_traded_outcomes_credit_providers_with_against_or_abstained():
    # Arrange: votes as ints, or as the outcome's vote dicts (with or without "abstained")
    config = EnsembleConfig()
    names = ["a", "b", "c"]
    used = current_weights(names, empty_stats(), config, 0)
    traded = [
        ({"a": 1, "b": -1, "c": 0}, 1, 5.0),
        ({"a": 1, "b": 1, "c": {"vote": 0, "confidence": 0.0, "abstained": True}}, 1, -2.0),
        ({"a": {"vote": -1, "confidence": 0.7, "abstained": False},
          "b": {"vote": 1, "confidence": 0.9}, "c": {"vote": -1, "abstained": True}}, -1, 1.0),
        ({"a": 1, "gone": 1}, 1, 1.0),  # a provider no longer in the ensemble is skipped
    ]
    # Act
    stats, _ = learn(empty_stats(), names, _scores([[1], [0], [1]]), np.array([RANGING]), used,
                     traded, config, "c1")
    # Assert
    rows = stats["providers"]
    assert "gone" not in rows
    keys = ("trades", "wins", "losses", "trades_with", "trades_against", "trades_abstained")
    assert tuple(rows["a"][k] for k in keys) == (4, 3, 1, 4, 0, 0)
    assert tuple(rows["b"][k] for k in keys) == (1, 0, 1, 1, 2, 0)
    # c held once and abstained twice (once with a -1 that the abstention overrides)
    assert tuple(rows["c"][k] for k in keys) == (0, 0, 0, 0, 0, 3)


def test_provider_credit_shows_a_provider_that_only_votes_against_the_trades():
    stats = {"providers": {
        "contrarian": {"votes": 20, "hits": 12, "abstentions": 5, "scored": 25, "trades": 0,
                       "wins": 0, "losses": 0, "trades_with": 0, "trades_against": 6,
                       "trades_abstained": 1, "weight": 0.3},
        "old": _old_row(10, 7, 4, 3, 0.7),
    }, "regimes": {}}
    credit = provider_credit(stats)
    assert credit["contrarian"] == {
        "votes": 20, "hit_rate": 0.6, "abstentions": 5, "abstention_rate": 0.2,
        "trades_with": 0, "trades_against": 6, "trades_abstained": 1, "win_rate_with": None,
        "weight": 0.3}
    assert credit["old"]["trades_with"] == 4 and credit["old"]["win_rate_with"] == 0.75
    assert credit["old"]["abstention_rate"] is None


def test_monitor_scales_size_down_after_a_losing_streak_and_records_why():
    config = Config(monitor=MonitorConfig(window=4, min_win_rate=0.5, size_multiplier=0.5))
    params = adapt({}, [True, False, False, False], config, "c1")
    assert params["size_multiplier"] == 0.5
    assert params["history"][0]["reason"] == \
        "win rate of the last 4 trades 25.0% is below 50%"
    params = adapt(params, [True, True, True], config, "c2")  # last 4: F T T T
    assert params["size_multiplier"] == 1.0 and len(params["history"]) == 2
    assert adapt({}, [False], config, "c1")["size_multiplier"] == 1.0  # too few trades
