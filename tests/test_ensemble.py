"""Combining votes into decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backtester.config import EnsembleConfig, ExecutionConfig
from backtester.ensemble import build_decisions, decision_ids, provider_scores, equal_weights
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


from backtester.config import MonitorConfig  # noqa: E402
from backtester.ensemble import (  # noqa: E402
    ShadowScores,
    apply_floor,
    current_weights,
    empty_stats,
    learn,
    monitor_size,
    shadow_scores,
    wilson_lower_bound,
)
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
    assert counts["providers"]["a"] == {"votes": 4, "hits": 3, "shadow_pnl": pytest.approx(0.02)}
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


def test_traded_outcomes_count_for_providers_that_voted_their_direction():
    config = EnsembleConfig()
    names = ["a", "b"]
    used = current_weights(names, empty_stats(), config, 0)
    traded = [({"a": 1, "b": -1}, 1, 5.0), ({"a": 1, "b": 1}, 1, -2.0)]
    stats, _ = learn(empty_stats(), names, _scores([[1], [0]]), np.array([RANGING]), used,
                     traded, config, "c1")
    a, b = stats["providers"]["a"], stats["providers"]["b"]
    assert (a["trades"], a["wins"], a["losses"]) == (2, 1, 1)
    assert (b["trades"], b["wins"], b["losses"]) == (1, 0, 1)


def test_monitor_scales_size_down_after_a_losing_streak_and_records_why():
    config = MonitorConfig(window=4, min_win_rate=0.5, size_multiplier=0.5)
    params = monitor_size({}, [True, False, False, False], config, "c1")
    assert params["size_multiplier"] == 0.5
    assert params["history"][0]["reason"] == \
        "win rate of the last 4 trades 25.0% is below 50%"
    params = monitor_size(params, [True, True, True], config, "c2")  # last 4: F T T T
    assert params["size_multiplier"] == 1.0 and len(params["history"]) == 2
    assert monitor_size({}, [False], config, "c1")["size_multiplier"] == 1.0  # too few trades
