"""The probability of backtest overfitting (CSCV) against a brute-force loop written from
the paper's steps, and on trials whose truth is known: no skill anywhere, one real edge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from backtester.evaluation import PBO_KEYS, probability_of_backtest_overfitting


def brute_force_pbo(returns: np.ndarray, n_splits: int, metric: str = "sharpe") -> list[float]:
    """Bailey et al. (2017) section 2, step by step: one loop per combination, the rows
    concatenated, scipy's average ranks. Returns the logits in combination order."""
    periods, n_trials = returns.shape
    size, extra = divmod(periods, n_splits)
    edges = [i * size + min(i, extra) for i in range(n_splits + 1)]
    rows = [list(range(edges[i], edges[i + 1])) for i in range(n_splits)]

    def score(part: np.ndarray) -> np.ndarray:
        if metric == "mean":
            return part.mean(axis=0)
        std = part.std(axis=0, ddof=1)
        return np.array([m / s if s > 1e-12 else -np.inf for m, s in zip(part.mean(axis=0), std)])

    logits = []
    from itertools import combinations

    for train in combinations(range(n_splits), n_splits // 2):
        test = [b for b in range(n_splits) if b not in train]
        r_in = score(returns[[i for b in train for i in rows[b]]])
        r_out = score(returns[[i for b in test for i in rows[b]]])
        best = int(np.argmax(r_in))
        omega = stats.rankdata(r_out, method="average")[best] / (n_trials + 1)
        logits.append(math.log(omega / (1 - omega)))
    return logits


@pytest.mark.parametrize("periods, n_trials, n_splits, metric", [
    (240, 6, 8, "sharpe"), (101, 5, 6, "sharpe"), (64, 7, 4, "mean"), (50, 3, 10, "sharpe"),
])
def test_pbo_matches_a_brute_force_loop(periods, n_trials, n_splits, metric):
    # Arrange: trials with a little skill each, some correlated
    rng = np.random.default_rng(periods + n_trials)
    common = rng.normal(0, 0.01, (periods, 1))
    returns = 0.5 * common + rng.normal(rng.normal(0, 0.002, n_trials), 0.01,
                                        (periods, n_trials))
    # Act
    result = probability_of_backtest_overfitting(returns, n_splits, metric=metric)
    expected = brute_force_pbo(returns, n_splits, metric)
    # Assert
    assert tuple(result) == PBO_KEYS
    np.testing.assert_allclose(result["logits"], expected, rtol=1e-9, atol=1e-12)
    assert result["pbo"] == pytest.approx(np.mean(np.array(expected) <= 0))
    assert result["combinations"] == math.comb(n_splits, n_splits // 2)
    assert (result["n_splits"], result["n_trials"]) == (n_splits, n_trials)


@pytest.mark.parametrize("n_splits", [2, 4, 8, 12, 16])
def test_combination_count_is_s_choose_s_over_2(n_splits):
    returns = np.random.default_rng(n_splits).normal(0, 0.01, (200, 4))
    result = probability_of_backtest_overfitting(returns, n_splits)
    assert result["combinations"] == math.comb(n_splits, n_splits // 2)
    assert len(result["logits"]) == result["combinations"]


def test_trials_of_identical_skill_overfit_half_the_time():
    # Arrange: 10 iid noise trials (N even: rank <= N/2 <=> lambda < 0, so P = 1/2 exactly)
    pbos = [probability_of_backtest_overfitting(
        np.random.default_rng(seed).normal(0, 0.01, (400, 10)), 8)["pbo"] for seed in range(60)]
    # Assert: 60 x 70 correlated combinations; the mean's spread is well below 0.05
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.06)


def test_one_trial_with_a_strong_edge_does_not_overfit():
    # Arrange: trial 3 earns 0.5 standard deviations a period, the others nothing
    returns = np.random.default_rng(7).normal(0, 0.01, (400, 10))
    returns[:, 3] += 0.005
    # Act
    result = probability_of_backtest_overfitting(returns, 8)
    # Assert: it is chosen in every combination and ranks first out-of-sample
    assert result["pbo"] == 0.0
    assert np.allclose(result["logits"], math.log(10 / 11 / (1 - 10 / 11)))


def test_pbo_is_nan_with_one_trial_fewer_rows_than_blocks_or_a_missing_return():
    rng = np.random.default_rng(1)
    assert math.isnan(probability_of_backtest_overfitting(rng.normal(size=(100, 1)))["pbo"])
    assert math.isnan(probability_of_backtest_overfitting(rng.normal(size=(7, 5)), 8)["pbo"])
    returns = rng.normal(size=(100, 5))
    returns[3, 2] = np.nan
    result = probability_of_backtest_overfitting(returns)
    assert math.isnan(result["pbo"]) and result["logits"] == [] and result["combinations"] == 0


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.zeros(10),), {}, "returns must be 2-D"),
    ((np.zeros((10, 3)), 5), {}, "n_splits must be even, was 5"),
    ((np.zeros((10, 3)), 0), {}, "n_splits must be an integer >= 2"),
    ((np.zeros((10, 3)),), {"metric": "calmar"}, "metric must be one of sharpe, mean"),
])
def test_pbo_rejects_malformed_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        probability_of_backtest_overfitting(*args, **kwargs)
