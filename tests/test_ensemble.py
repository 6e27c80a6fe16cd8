"""Combining votes into decisions."""

from __future__ import annotations

import numpy as np

from backtester.config import EnsembleConfig, ExecutionConfig
from backtester.ensemble import build_decisions, decision_ids, ensemble_scores, equal_weights
from backtester.providers.base import Candidates, Votes


def test_scores_are_the_weighted_mean_of_vote_times_confidence():
    votes = [
        Votes(np.array([1, -1, 0], np.int8), np.array([0.9, 0.5, 0.0])),
        Votes(np.array([1, 1, 1], np.int8), np.array([0.3, 0.5, 1.0])),
        Votes(np.array([0, -1, -1], np.int8), np.array([0.0, 1.0, 0.4])),
    ]
    scores = ensemble_scores(votes, equal_weights(3))
    np.testing.assert_allclose(scores, [(0.9 + 0.3) / 3, (-0.5 + 0.5 - 1.0) / 3, (1.0 - 0.4) / 3])
    weighted = ensemble_scores(votes, np.array([2.0, 1.0, 1.0]))
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
