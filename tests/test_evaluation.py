"""Tests of backtester.evaluation against published values, hand computations and
independent implementations (scipy moments and quadrature, pandas resampling, loops)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from backtester.engine.records import trade_dt
from backtester.evaluation import (
    BENCHMARK_KEYS,
    DIFFERENCE_KEYS,
    benchmark_relative,
    bootstrap_difference,
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    probabilistic_sharpe_ratio,
    probabilistic_sharpe_ratio_from_moments,
    significance_sentence,
    stationary_bootstrap_indices,
)
from backtester.returns import (
    DAY_NS,
    daily_returns,
    drawdown_periods,
    monthly_returns,
    rolling_sharpe,
)
from backtester.metrics import compute_metrics

HOUR_NS = 3600 * 10**9
T0 = 1_735_689_600 * 10**9  # 2025-01-01 00:00 UTC


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def psr_reference(returns: np.ndarray, benchmark: float) -> float:
    """Bailey and López de Prado (2012) eq. 11 written out with scipy's moments."""
    n = returns.size
    sharpe = returns.mean() / returns.std(ddof=1)
    skewness = stats.skew(returns, bias=True)
    kurtosis = stats.kurtosis(returns, fisher=False, bias=True)
    denominator = math.sqrt(1 - skewness * sharpe + (kurtosis - 1) / 4 * sharpe**2)
    return float(stats.norm.cdf((sharpe - benchmark) * math.sqrt(n - 1) / denominator))


def ar1(n: int, phi_: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, n)
    series = np.empty(n)
    series[0] = noise[0]
    for t in range(1, n):
        series[t] = phi_ * series[t - 1] + noise[t]
    return series


# --- probabilistic and deflated Sharpe ratio ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "benchmark"),
    [("normal", 0.0), ("normal", 0.05), ("lognormal", 0.0), ("student", 0.02)],
)
def test_psr_matches_the_formula_written_with_scipy_moments(kind: str, benchmark: float):
    # Arrange: skewed and fat-tailed samples exercise g3 and g4
    rng = np.random.default_rng(7)
    returns = {
        "normal": rng.normal(0.001, 0.01, 400),
        "lognormal": rng.lognormal(0.0, 0.5, 400) * 0.01 - 0.0105,
        "student": rng.standard_t(4, 400) * 0.01 + 0.002,
    }[kind]

    # Act
    psr = probabilistic_sharpe_ratio(returns, benchmark_sharpe=benchmark)

    # Assert
    assert psr == pytest.approx(psr_reference(returns, benchmark), rel=1e-10, abs=1e-14)


def test_psr_of_two_point_returns_is_phi_of_one_by_hand():
    # Arrange: 0.02 +- 0.03: skew 0, kurtosis 1, std(ddof=1) = sqrt(0.0012), SR = 1/sqrt(3)
    returns = np.array([0.05, -0.01, 0.05, -0.01])

    # Act / Assert: z = SR * sqrt(3) / sqrt(1 - 0 + 0) = 1
    assert probabilistic_sharpe_ratio(returns) == pytest.approx(phi(1.0), rel=1e-12)


def test_psr_of_three_point_returns_with_normal_moments_by_hand():
    # Arrange: mu + c * {-1, 0, 0, 0, 0, 1}: skew 0 and kurtosis (c^4/3) / (c^2/3)^2 = 3
    # exactly; std(ddof=1) = c * sqrt(2/5), so mu = 0.5 * c * sqrt(2/5) gives SR = 1/2 and
    # z = 0.5 * sqrt(5) / sqrt(1 + (3 - 1)/4 * 0.25) = sqrt(10) / 3
    c = 0.01
    returns = 0.5 * c * math.sqrt(0.4) + c * np.array([-1.0, 0, 0, 0, 0, 1])

    # Act / Assert
    expected = phi(math.sqrt(10) / 3)
    assert probabilistic_sharpe_ratio(returns) == pytest.approx(expected, rel=1e-12)


def test_psr_against_its_own_sharpe_is_one_half():
    returns = np.random.default_rng(3).normal(0.001, 0.01, 100)
    sharpe = returns.mean() / returns.std(ddof=1)

    assert probabilistic_sharpe_ratio(returns, benchmark_sharpe=sharpe) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "returns",
    [[0.01, 0.02], [0.01, 0.01, 0.01, 0.01], [0.01, np.nan, 0.02, 0.0], [0.01, np.inf, 0.0]],
    ids=["two returns", "zero variance", "nan", "inf"],
)
def test_psr_is_nan_where_undefined(returns: list[float]):
    assert math.isnan(probabilistic_sharpe_ratio(np.array(returns)))


def test_deflated_sharpe_matches_the_published_numerical_example():
    # Arrange: Bailey and López de Prado (2014), numerical example: N = 100 trials with an
    # annualised Sharpe variance of 1/2, T = 1250 daily returns (250 a year), annualised
    # SR 2.5, skewness -3, kurtosis 10; published E[max SR] = 0.1132 and DSR = 0.9004
    sharpe_variance = 0.5 / 250
    sharpe = 2.5 / math.sqrt(250)

    # Act
    benchmark = expected_maximum_sharpe(100, sharpe_variance)
    dsr = probabilistic_sharpe_ratio_from_moments(
        sharpe, observations=1250, skewness=-3.0, kurtosis=10.0, benchmark_sharpe=benchmark
    )

    # Assert
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


@pytest.mark.parametrize("n_trials", [10, 100, 1000])
def test_expected_maximum_sharpe_approximates_the_exact_maximum_of_normals(n_trials: int):
    # Arrange: E[max of N standard normals] = integral of x N phi(x) Phi(x)^(N-1)
    def density(x: float) -> float:
        return x * n_trials * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n_trials - 1)

    exact = integrate.quad(density, -12, 12, limit=200)[0]

    # Act / Assert: the closed form is an approximation good to a few percent; it scales
    # with the standard deviation of the trials' Sharpe ratios
    assert expected_maximum_sharpe(n_trials, 1.0) == pytest.approx(exact, rel=0.03)
    assert expected_maximum_sharpe(n_trials, 0.04) == pytest.approx(
        0.2 * expected_maximum_sharpe(n_trials, 1.0), rel=1e-12
    )


def test_deflated_sharpe_is_psr_against_the_expected_maximum_and_falls_with_trials():
    returns = np.random.default_rng(11).normal(0.002, 0.01, 500)
    variance = 0.002

    dsr = [deflated_sharpe_ratio(returns, n, variance) for n in (1, 10, 100)]

    assert dsr[0] == pytest.approx(psr_reference(returns, 0.0), rel=1e-10)
    assert dsr[2] == pytest.approx(
        psr_reference(returns, expected_maximum_sharpe(100, variance)), rel=1e-10
    )
    assert dsr[0] > dsr[1] > dsr[2]


@pytest.mark.parametrize(("n_trials", "variance"), [(0, 0.1), (2.5, 0.1), (10, -0.1)])
def test_expected_maximum_sharpe_rejects_bad_parameters(n_trials: float, variance: float):
    with pytest.raises(ValueError, match="n_trials|sharpe_variance"):
        expected_maximum_sharpe(n_trials, variance)  # type: ignore[arg-type]


# --- stationary bootstrap indices ------------------------------------------------------


def test_bootstrap_indices_have_the_shape_range_and_are_reproducible():
    first = stationary_bootstrap_indices(50, 4.0, 30, 123)
    again = stationary_bootstrap_indices(50, 4.0, 30, np.random.default_rng(123))
    other = stationary_bootstrap_indices(50, 4.0, 30, 124)

    assert first.shape == (30, 50)
    assert first.dtype == np.int64
    assert first.min() >= 0 and first.max() < 50
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bootstrap_block_lengths_are_geometric_with_the_mean_block():
    # Arrange: a block ends where the next index is not the current one + 1 (mod n); a new
    # block that happens to start there is invisible (probability 1/n), so the visible
    # lengths are geometric with p = (1 / mean_block) * (1 - 1/n)
    n, mean_block = 2000, 8.0
    indices = stationary_bootstrap_indices(n, mean_block, 50, 5)

    # Act: lengths of the blocks with a break on both sides (no truncation at the ends)
    lengths = []
    for row in indices:
        breaks = np.flatnonzero(row[1:] != (row[:-1] + 1) % n) + 1
        lengths.extend(np.diff(breaks))
    lengths = np.asarray(lengths)
    p = (1 / mean_block) * (1 - 1 / n)

    # Assert: about 12,000 blocks, so the mean's standard error is about 0.07
    assert lengths.size > 10_000
    assert lengths.mean() == pytest.approx(1 / p, abs=0.3)
    assert np.mean(lengths == 1) == pytest.approx(p, abs=0.01)
    assert np.mean(lengths == 2) == pytest.approx(p * (1 - p), abs=0.01)


def test_bootstrap_blocks_wrap_around_the_end():
    # Arrange: long blocks on a short series must run from the last index to the first
    n = 5
    indices = stationary_bootstrap_indices(n, 50.0, 200, 9)

    # Act
    steps = (indices[:, 1:] - indices[:, :-1]) % n

    # Assert: most steps continue the block (+1 mod n), among them last -> first
    wraps = (indices[:, :-1] == n - 1) & (indices[:, 1:] == 0)
    assert np.mean(steps == 1) > 0.95
    assert wraps.sum() > 100


def test_bootstrap_indices_are_uniform_over_the_series():
    # Stationarity: every position of the resample is uniform over 0..n-1
    indices = stationary_bootstrap_indices(10, 3.0, 20_000, 1)

    counts = np.bincount(indices[:, -1], minlength=10)

    assert counts.min() > 1800 and counts.max() < 2200


def test_bootstrap_with_mean_block_one_is_the_iid_bootstrap():
    indices = stationary_bootstrap_indices(100, 1.0, 200, 2)

    continued = np.mean(indices[:, 1:] == (indices[:, :-1] + 1) % 100)

    assert continued == pytest.approx(0.01, abs=0.005)


def test_bootstrap_variance_of_the_mean_matches_its_closed_form():
    # Arrange: given the data, the resample is a Markov chain with uniform marginals, and
    # Cov*(Y_t, Y_t+k) = q^k C(k), q = 1 - 1/mean_block, C the circular autocovariance,
    # so n Var*(mean*) = C(0) + 2 sum_k (1 - k/n) q^k C(k) (Politis and Romano 1994, Lemma 1)
    x = ar1(200, 0.5, 4)
    n, mean_block = x.size, 6.0
    q = 1 - 1 / mean_block
    centered = x - x.mean()
    circular = np.array([np.mean(centered * np.roll(centered, -k)) for k in range(n)])
    k = np.arange(1, n)
    expected = (circular[0] + 2 * np.sum((1 - k / n) * q**k * circular[1:])) / n

    # Act
    means = x[stationary_bootstrap_indices(n, mean_block, 20_000, 8)].mean(axis=1)

    # Assert: 20,000 resamples estimate a variance to about 1% (standard error)
    assert means.mean() == pytest.approx(x.mean(), abs=3 * math.sqrt(expected / 20_000))
    assert means.var() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(
    ("n", "mean_block", "resamples"), [(0, 2.0, 10), (10, 0.5, 10), (10, 2.0, 0), (10, np.nan, 1)]
)
def test_bootstrap_indices_reject_bad_parameters(n: int, mean_block: float, resamples: int):
    with pytest.raises(ValueError, match="must be"):
        stationary_bootstrap_indices(n, mean_block, resamples, 0)


# --- bootstrap_difference ----------------------------------------------------------------


def test_series_minus_itself_gives_a_degenerate_interval_at_zero():
    a = np.random.default_rng(0).normal(0.001, 0.01, 300)

    result = bootstrap_difference(a, a, periods_per_year=365.25)

    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)


def test_bootstrap_keeps_the_pairing_of_days():
    # Arrange: a is b plus 1 bp a day; resampled together, every resample's difference is
    # exactly 1 bp a day (unpaired resampling would spread it by the volatility)
    b = np.random.default_rng(1).normal(0.0, 0.02, 250)
    a = b + 0.0001

    result = bootstrap_difference(a, b, periods_per_year=252.0, resamples=200)

    assert result["difference"] == pytest.approx(0.0252, rel=1e-9)
    assert result["low"] == pytest.approx(0.0252, rel=1e-9)
    assert result["high"] == pytest.approx(0.0252, rel=1e-9)


@pytest.mark.parametrize("mean_block", [1.0, None])
def test_iid_interval_matches_the_normal_theory_interval(mean_block: float | None):
    # Arrange: iid daily differences; normal theory: mean * ppy +- 1.96 * s / sqrt(n) * ppy
    rng = np.random.default_rng(42)
    a = rng.normal(0.0008, 0.01, 1000)
    b = rng.normal(0.0002, 0.01, 1000)
    d = a - b
    ppy = 252.0
    half = stats.norm.ppf(0.975) * d.std(ddof=1) / math.sqrt(d.size) * ppy
    center = d.mean() * ppy

    # Act
    result = bootstrap_difference(a, b, periods_per_year=ppy, resamples=4000, mean_block=mean_block)

    # Assert: bounds within 10% of the half-width
    assert result["difference"] == pytest.approx(center, rel=1e-12)
    assert result["low"] == pytest.approx(center - half, abs=0.1 * half)
    assert result["high"] == pytest.approx(center + half, abs=0.1 * half)


def test_bootstrap_difference_is_reproducible_for_a_seed_and_reports_its_settings():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.001, 0.01, 125), rng.normal(0.0, 0.01, 125)

    first = bootstrap_difference(a, b, periods_per_year=252.0, seed=3)
    again = bootstrap_difference(a, b, periods_per_year=252.0, seed=3)
    other = bootstrap_difference(a, b, periods_per_year=252.0, seed=4)

    assert tuple(first) == DIFFERENCE_KEYS
    assert first == again
    assert (first["low"], first["high"]) != (other["low"], other["high"])
    assert first["mean_block"] == pytest.approx(125 ** (1 / 3))  # = 5, the n^(1/3) rule
    assert (first["resamples"], first["seed"], first["confidence"]) == (1000, 3, 0.95)


def test_wider_confidence_gives_a_wider_interval():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.001, 0.01, 200), rng.normal(0.0, 0.01, 200)

    narrow = bootstrap_difference(a, b, periods_per_year=252.0, confidence=0.8)
    wide = bootstrap_difference(a, b, periods_per_year=252.0, confidence=0.99)

    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


@pytest.mark.parametrize("a", [[0.01], [0.01, np.nan, 0.0]], ids=["one day", "nan"])
def test_bootstrap_difference_is_nan_without_enough_finite_returns(a: list[float]):
    result = bootstrap_difference(np.array(a), np.zeros(len(a)), periods_per_year=252.0)

    assert all(math.isnan(result[key]) for key in ("difference", "low", "high"))


def test_bootstrap_difference_rejects_unpaired_series_and_bad_confidence():
    with pytest.raises(ValueError, match="paired"):
        bootstrap_difference(np.zeros(3), np.zeros(4), periods_per_year=252.0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_difference(np.zeros(3), np.zeros(3), periods_per_year=252.0, confidence=1.0)


# --- significance_sentence ---------------------------------------------------------------


def interval(center: float, low: float, high: float, confidence: float = 0.95) -> dict:
    return {"difference": center, "low": low, "high": high, "confidence": confidence}


@pytest.mark.parametrize(
    ("difference", "sentence"),
    [
        (
            interval(0.021, -0.014, 0.056),
            "learning added +2.1%/yr, 95% CI -1.4 to +5.6: not distinguishable from equal weights",
        ),
        (
            interval(0.05, 0.01, 0.09),
            "learning added +5.0%/yr, 95% CI +1.0 to +9.0: better than equal weights",
        ),
        (
            interval(-0.031, -0.052, -0.0004, 0.9),
            "learning added -3.1%/yr, 90% CI -5.2 to -0.0: worse than equal weights",
        ),
        (interval(0.0, 0.0, 0.0), "learning added +0.0%/yr, 95% CI +0.0 to +0.0: "
         "not distinguishable from equal weights"),
        (interval(-0.0001, -0.0002, 0.0001), "learning added -0.0%/yr, 95% CI -0.0 to +0.0: "
         "not distinguishable from equal weights"),
        (interval(-0.0, -0.0, 0.0), "learning added +0.0%/yr, 95% CI +0.0 to +0.0: "
         "not distinguishable from equal weights"),
        (interval(math.nan, math.nan, math.nan), "learning against equal weights: "
         "not enough daily returns to judge"),
    ],
    ids=[
        "straddles zero", "above zero", "below zero", "degenerate", "rounds to zero",
        "negative zero", "nan",
    ],
)
def test_significance_sentence_says_what_the_interval_shows(difference: dict, sentence: str):
    assert significance_sentence(difference) == sentence


def test_significance_sentence_uses_the_given_names():
    difference = interval(0.05, 0.01, 0.09)

    sentence = significance_sentence(difference, learned="the ensemble", baseline="buy and hold")

    assert sentence == "the ensemble added +5.0%/yr, 95% CI +1.0 to +9.0: better than buy and hold"


# --- benchmark_relative -------------------------------------------------------------------


def test_benchmark_relative_of_a_levered_benchmark_plus_constant_by_hand():
    # Arrange: returns = 2 * bench + 0.001, so beta 2, daily alpha 0.001, correlation 1,
    # active = bench + 0.001
    bench = np.random.default_rng(0).normal(0.0005, 0.01, 250)
    returns = 2 * bench + 0.001
    ppy = 252.0

    # Act
    figures = benchmark_relative(returns, bench, periods_per_year=ppy)

    # Assert
    assert tuple(figures) == BENCHMARK_KEYS
    assert figures["beta"] == pytest.approx(2.0, rel=1e-12)
    assert figures["alpha"] == pytest.approx(0.001 * ppy, rel=1e-9)
    assert figures["correlation"] == pytest.approx(1.0, rel=1e-12)
    assert figures["tracking_error"] == pytest.approx(bench.std(ddof=1) * math.sqrt(ppy))
    assert figures["information_ratio"] == pytest.approx(
        (bench.mean() + 0.001) / bench.std(ddof=1) * math.sqrt(ppy)
    )


def test_benchmark_relative_matches_polyfit_corrcoef_and_a_loop():
    # Arrange
    rng = np.random.default_rng(1)
    bench = rng.normal(0.0003, 0.012, 300)
    returns = 0.7 * bench + rng.normal(0.0002, 0.006, 300)
    ppy = 365.25
    slope, intercept = np.polyfit(bench, returns, 1)
    active = [r - b for r, b in zip(returns, bench)]
    mean = sum(active) / len(active)
    std = math.sqrt(sum((x - mean) ** 2 for x in active) / (len(active) - 1))

    # Act
    figures = benchmark_relative(returns, bench, periods_per_year=ppy)

    # Assert
    assert figures["beta"] == pytest.approx(slope, rel=1e-9)
    assert figures["alpha"] == pytest.approx(intercept * ppy, rel=1e-9)
    assert figures["correlation"] == pytest.approx(np.corrcoef(returns, bench)[0, 1], rel=1e-12)
    assert figures["tracking_error"] == pytest.approx(std * math.sqrt(ppy), rel=1e-12)
    assert figures["information_ratio"] == pytest.approx(mean / std * math.sqrt(ppy), rel=1e-9)


def test_benchmark_relative_with_a_constant_benchmark_leaves_the_regression_undefined():
    returns = np.array([0.01, -0.02, 0.03, 0.0])
    bench = np.full(4, 0.001)

    figures = benchmark_relative(returns, bench, periods_per_year=252.0)

    assert math.isnan(figures["alpha"]) and math.isnan(figures["beta"])
    assert math.isnan(figures["correlation"])
    assert figures["tracking_error"] == pytest.approx(returns.std(ddof=1) * math.sqrt(252))


def test_benchmark_relative_of_the_benchmark_itself():
    bench = np.array([0.01, -0.02, 0.03, 0.0])

    figures = benchmark_relative(bench, bench, periods_per_year=252.0)

    assert figures["beta"] == pytest.approx(1.0) and figures["alpha"] == pytest.approx(0.0)
    assert figures["tracking_error"] == 0.0 and math.isnan(figures["information_ratio"])


def test_benchmark_relative_is_nan_below_two_periods_and_rejects_unequal_shapes():
    figures = benchmark_relative(np.array([0.01]), np.array([0.02]), periods_per_year=252.0)

    assert all(math.isnan(value) for value in figures.values())
    with pytest.raises(ValueError, match="paired"):
        benchmark_relative(np.zeros(3), np.zeros(2), periods_per_year=252.0)


# --- daily_returns and monthly_returns ------------------------------------------------------


def test_daily_returns_of_hourly_bars_by_hand():
    # Arrange: 3 bars on day 1, 2 on day 2, 1 on day 4 (day 3 has no bar)
    times = T0 + np.array([0, 5, 23, 24, 30, 72], dtype=np.int64) * HOUR_NS
    equity = np.array([101.0, 99.0, 102.0, 104.0, 100.0, 110.0])

    # Act
    days, returns = daily_returns(times, equity)
    _, from_initial = daily_returns(times, equity, initial_equity=100.0)

    # Assert: closes 102, 100, 110; the first day from the first bar's 101 or from 100
    np.testing.assert_array_equal(days, T0 + np.array([0, 1, 3]) * DAY_NS)
    np.testing.assert_allclose(returns, [102 / 101 - 1, 100 / 102 - 1, 110 / 100 - 1])
    np.testing.assert_allclose(from_initial, [0.02, 100 / 102 - 1, 0.1])


def test_daily_returns_match_pandas_resampling():
    # Arrange: a random walk of 4-hour bars over 60 days, with datetime64 times
    rng = np.random.default_rng(2)
    times = (T0 + np.arange(360, dtype=np.int64) * 4 * HOUR_NS).astype("datetime64[ns]")
    equity = 1000 * np.cumprod(1 + rng.normal(0, 0.01, 360))
    closes = pd.Series(equity, index=pd.DatetimeIndex(times)).resample("1D").last()
    expected = closes.pct_change().fillna(closes.iloc[0] / 1000 - 1)

    # Act
    days, returns = daily_returns(times, equity, initial_equity=1000.0)

    # Assert
    np.testing.assert_array_equal(days, closes.index.as_unit("ns").asi8)
    np.testing.assert_allclose(returns, expected.to_numpy(), rtol=1e-12)


def test_daily_returns_after_equity_at_zero_are_nan():
    times = T0 + np.arange(3, dtype=np.int64) * DAY_NS

    _, returns = daily_returns(times, np.array([50.0, 0.0, 10.0]), initial_equity=100.0)

    np.testing.assert_array_equal(returns[:2], [-0.5, -1.0])
    assert math.isnan(returns[2])


def test_daily_returns_reject_unsorted_times():
    with pytest.raises(ValueError, match="ascending"):
        daily_returns(np.array([2, 1], dtype=np.int64), np.array([1.0, 1.0]))


def test_monthly_returns_compound_across_months_and_years():
    # Arrange: daily bars from 2024-11-01 to 2025-02-28 with March missing; pandas month
    # ends as the independent answer
    rng = np.random.default_rng(3)
    index = pd.date_range("2024-11-01", "2025-02-28", freq="D", tz="UTC")
    index = index.append(pd.date_range("2025-04-01", "2025-04-10", freq="D", tz="UTC"))
    equity = 100 * np.cumprod(1 + rng.normal(0.001, 0.01, index.size))
    closes = pd.Series(equity, index=index).resample("ME").last().dropna()
    expected = closes / closes.shift(1, fill_value=100.0) - 1

    # Act
    table = monthly_returns(index.as_unit("ns").asi8, equity, 100.0)

    # Assert
    assert list(table.index) == [2024, 2025] and list(table.columns) == list(range(1, 13))
    for stamp, value in expected.items():
        assert table.loc[stamp.year, stamp.month] == pytest.approx(value, rel=1e-12)
    assert math.isnan(table.loc[2025, 3]) and math.isnan(table.loc[2024, 1])
    assert np.count_nonzero(~np.isnan(table.to_numpy())) == 5


def test_monthly_return_is_the_product_of_its_daily_returns():
    times = T0 + np.arange(31, dtype=np.int64) * DAY_NS  # January 2025
    equity = 100 * np.cumprod(1 + np.random.default_rng(4).normal(0, 0.01, 31))
    _, returns = daily_returns(times, equity, initial_equity=100.0)

    table = monthly_returns(times, equity, 100.0)

    assert table.loc[2025, 1] == pytest.approx(np.prod(1 + returns) - 1, rel=1e-12)


# --- rolling_sharpe --------------------------------------------------------------------


def rolling_sharpe_loop(returns: np.ndarray, window: int, ppy: float) -> np.ndarray:
    out = np.full(returns.size, np.nan)
    for i in range(window - 1, returns.size):
        chunk = returns[i - window + 1 : i + 1]
        std = np.std(chunk, ddof=1)
        if np.all(np.isfinite(chunk)) and std > 1e-12:
            out[i] = np.mean(chunk) / std * math.sqrt(ppy)
    return out


def test_rolling_sharpe_matches_a_loop_and_is_nan_until_the_window_is_full():
    # Arrange: a NaN return and a flat stretch
    returns = np.random.default_rng(5).normal(0.0005, 0.01, 120)
    returns[40] = np.nan
    returns[70:85] = 0.002

    # Act
    sharpe = rolling_sharpe(returns, 10, 252.0)

    # Assert
    assert np.all(np.isnan(sharpe[:9]))
    assert np.all(np.isnan(sharpe[40:50])) and np.all(np.isnan(sharpe[79:85]))
    np.testing.assert_allclose(sharpe, rolling_sharpe_loop(returns, 10, 252.0), rtol=1e-8)


def test_rolling_sharpe_rejects_a_window_below_two():
    with pytest.raises(ValueError, match="window"):
        rolling_sharpe(np.zeros(5), 1, 252.0)


# --- drawdown_periods ---------------------------------------------------------------------


def test_drawdown_periods_by_hand():
    # Arrange: peaks 110 (t0), 120 (t4), 125 (t7); troughs 99, 90, 115
    times = T0 + np.arange(9, dtype=np.int64) * HOUR_NS
    equity = np.array([110.0, 99, 105, 110, 120, 90, 100, 125, 115])

    # Act
    periods = drawdown_periods(times, equity, 100.0)

    # Assert: deepest first; the last drawdown has not recovered
    assert periods == [
        {"start": times[4], "trough": times[5], "recovery": times[7], "depth": -0.25},
        {"start": times[0], "trough": times[1], "recovery": times[3], "depth": pytest.approx(-0.1)},
        {"start": times[7], "trough": times[8], "recovery": None, "depth": pytest.approx(-0.08)},
    ]
    assert drawdown_periods(times, equity, 100.0, top=1) == periods[:1]


def test_drawdown_from_the_initial_equity_starts_at_the_first_bar():
    times = T0 + np.arange(3, dtype=np.int64) * HOUR_NS

    periods = drawdown_periods(times, np.array([95.0, 98.0, 100.0]), 100.0)

    assert periods == [
        {"start": times[0], "trough": times[0], "recovery": times[2], "depth": pytest.approx(-0.05)}
    ]


def test_drawdown_periods_agree_with_metrics_and_do_not_overlap():
    # Arrange: a random walk; metrics.compute_metrics gives the deepest drawdown
    rng = np.random.default_rng(6)
    equity = 100 * np.cumprod(1 + rng.normal(0.0002, 0.01, 2000))
    times = T0 + np.arange(2000, dtype=np.int64) * HOUR_NS
    metrics = compute_metrics(
        equity, np.zeros(2000), np.zeros(0, dtype=trade_dt), initial_equity=100.0,
        periods_per_year=8766.0,
    )

    # Act
    periods = drawdown_periods(times, equity, 100.0, top=1000)

    # Assert
    assert periods[0]["depth"] == pytest.approx(metrics["max_drawdown"], rel=1e-12)
    assert [p["depth"] for p in periods] == sorted(p["depth"] for p in periods)
    chronological = sorted(periods, key=lambda p: p["start"])
    for before, after in zip(chronological, chronological[1:]):
        assert before["start"] <= before["trough"] < before["recovery"] <= after["start"]
    assert len(drawdown_periods(times, equity, 100.0)) == 5


def test_a_rising_curve_has_no_drawdowns():
    times = T0 + np.arange(4, dtype=np.int64) * HOUR_NS

    assert drawdown_periods(times, np.array([100.0, 101, 101, 103]), 100.0) == []
