"""Is a result more than noise: Sharpe-ratio tests, a paired bootstrap, benchmark figures
(calendar returns, rolling Sharpe and drawdowns are in ``backtester.returns``).

Pure functions over numpy arrays, used by the runner and the report. ``r`` is a series of
``n`` per-period simple returns, ``ppy`` periods per year; a value that is undefined is
``nan``, never an exception (exceptions are for malformed arrays and parameters).

Formulas, each with its reference:

- Probabilistic Sharpe ratio (Bailey and López de Prado 2012, "The Sharpe Ratio Efficient
  Frontier", Journal of Risk 15(2), eq. 11):
  ``PSR(SR*) = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR**2))``
  with the per-period ``SR = mean(r) / std(r, ddof=1)`` (not annualised), the sample
  skewness ``g3 = m3 / m2**1.5`` and the sample (non-excess) kurtosis ``g4 = m4 / m2**2``,
  ``mk`` the k-th central moment with divisor ``n``.
- Expected maximum Sharpe ratio of ``N`` independent trials with zero true Sharpe, and the
  deflated Sharpe ratio ``DSR = PSR(SR0)`` (Bailey and López de Prado 2014, "The Deflated
  Sharpe Ratio", Journal of Portfolio Management 40(5), eq. 2):
  ``SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))``,
  ``V`` the variance of the trials' per-period Sharpe ratios, ``gamma`` the
  Euler–Mascheroni constant; ``SR0 = 0`` for ``N = 1``.
- Stationary bootstrap (Politis and Romano 1994, "The Stationary Bootstrap", JASA 89(428)):
  blocks start at uniform random indices, their lengths are geometric with mean
  ``mean_block`` (each next index continues the block with probability
  ``1 - 1/mean_block``), and a block running past the end wraps around to the start.
- Default mean block length ``max(1, n ** (1/3))``: the ``n^(1/3)`` rate of the optimal
  block length for variance estimation (Hall, Horowitz and Jing 1995, "On Blocking Rules
  for the Bootstrap with Dependent Data", Biometrika 82(3)), with constant 1. It is not
  the data-dependent Politis and White (2004) choice.
- Bootstrap interval: the percentile interval (Efron and Tibshirani 1993, "An Introduction
  to the Bootstrap", ch. 13) of the resampled ``mean(a - b) * ppy``, quantiles by linear
  interpolation; the annualisation is arithmetic (mean daily difference times ``ppy``),
  not compounded.
- Alpha and beta (Jensen 1968, "The Performance of Mutual Funds", Journal of Finance
  23(2)): the OLS fit ``r = alpha_d + beta * b``, reported ``alpha = alpha_d * ppy``.
- Active return ``r - b``, tracking error ``std(r - b, ddof=1) * sqrt(ppy)`` and
  information ratio ``mean(r - b) / std(r - b, ddof=1) * sqrt(ppy)`` (Grinold and Kahn
  2000, "Active Portfolio Management", ch. 5).
- Probability of backtest overfitting by combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado and Zhu 2017, "The Probability of Backtest
  Overfitting", Journal of Computational Finance 20(4), section 2): the ``T x N`` returns
  of ``N`` trials are cut into ``S`` (even) row blocks; for each of the ``C(S, S/2)``
  choices of ``S/2`` in-sample blocks (the rest out-of-sample), ``n*`` is the trial with
  the best in-sample metric, ``w = rank(n*) / (N + 1)`` its relative out-of-sample rank
  (1 = worst, ties averaged), ``lambda = ln(w / (1 - w))``, and
  ``PBO = #{lambda <= 0} / C(S, S/2)``.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np

from backtester.checks import check_integer
from backtester.metrics import _ZERO_STD, _as_float_1d, _check_positive

DIFFERENCE_KEYS: tuple[str, ...] = (
    "difference", "low", "high", "resamples", "mean_block", "seed", "confidence"
)
"""Keys of the dict returned by `bootstrap_difference`."""

BENCHMARK_KEYS: tuple[str, ...] = (
    "alpha", "beta", "information_ratio", "tracking_error", "correlation"
)
"""Keys of the dict returned by `benchmark_relative`."""

PBO_KEYS: tuple[str, ...] = ("pbo", "logits", "n_splits", "n_trials", "combinations")
"""Keys of the dict returned by `probability_of_backtest_overfitting`."""

PBO_METRICS: tuple[str, ...] = ("sharpe", "mean")
"""Metrics `probability_of_backtest_overfitting` ranks trials by."""

_NAN = float("nan")
_STANDARD_NORMAL = NormalDist()


# --- Sharpe-ratio tests ---------------------------------------------------------------------


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark_sharpe: float = 0.0) -> float:
    """Return the probability that the true Sharpe ratio exceeds `benchmark_sharpe`.

    Parameters
    ----------
    returns : np.ndarray
        Per-period simple returns, shape (n,).
    benchmark_sharpe : float, default 0.0
        The per-period (not annualised) Sharpe ratio ``SR*`` to beat.

    Returns
    -------
    float
        PSR in [0, 1] (module docstring); ``nan`` with fewer than 3 returns, a zero
        standard deviation or a non-finite return.
    """
    returns = _as_float_1d(returns, "returns")
    if returns.size < 3 or not np.all(np.isfinite(returns)):
        return _NAN
    std = float(np.std(returns, ddof=1))
    if std <= _ZERO_STD:
        return _NAN
    deviations = returns - np.mean(returns)
    m2 = float(np.mean(deviations**2))
    return probabilistic_sharpe_ratio_from_moments(
        float(np.mean(returns)) / std,
        observations=returns.size,
        skewness=float(np.mean(deviations**3)) / m2**1.5,
        kurtosis=float(np.mean(deviations**4)) / m2**2,
        benchmark_sharpe=benchmark_sharpe,
    )


def probabilistic_sharpe_ratio_from_moments(
    sharpe: float,
    *,
    observations: int,
    skewness: float,
    kurtosis: float,
    benchmark_sharpe: float = 0.0,
) -> float:
    """Return the PSR of a Sharpe ratio estimated from `observations` returns.

    Parameters
    ----------
    sharpe : float
        Observed per-period Sharpe ratio ``SR``.
    observations : int
        Number of returns ``n`` it was estimated from.
    skewness : float
        Sample skewness ``g3`` of the returns.
    kurtosis : float
        Sample kurtosis ``g4`` of the returns, non-excess (3 for a normal distribution).
    benchmark_sharpe : float, default 0.0
        The per-period Sharpe ratio ``SR*`` to beat.

    Returns
    -------
    float
        PSR in [0, 1]; ``nan`` below 2 observations, for a non-finite input or when the
        variance term ``1 - g3 * SR + (g4 - 1) / 4 * SR**2`` is not positive.
    """
    values = (sharpe, skewness, kurtosis, benchmark_sharpe)
    if observations < 2 or not all(math.isfinite(value) for value in values):
        return _NAN
    variance = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0.0:
        return _NAN
    z = (sharpe - benchmark_sharpe) * math.sqrt(observations - 1) / math.sqrt(variance)
    return float(_STANDARD_NORMAL.cdf(z))


def expected_maximum_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Return the expected maximum per-period Sharpe ratio of `n_trials` skill-less trials.

    Parameters
    ----------
    n_trials : int
        Number of independent trials ``N``, >= 1.
    sharpe_variance : float
        Variance ``V`` of the trials' per-period Sharpe ratios, >= 0.

    Returns
    -------
    float
        ``SR0`` of the module docstring (an approximation, good to a few percent from
        ``N = 10``); ``0.0`` for one trial.

    Raises
    ------
    ValueError
        When `n_trials` is below 1 or `sharpe_variance` negative or not finite.
    """
    check_integer("n_trials", n_trials, 1)
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0.0):
        raise ValueError(f"sharpe_variance must be a finite number >= 0, was {sharpe_variance!r}")
    if n_trials == 1:
        return 0.0
    gamma, inverse = float(np.euler_gamma), _STANDARD_NORMAL.inv_cdf
    maximum = (1.0 - gamma) * inverse(1.0 - 1.0 / n_trials)
    maximum += gamma * inverse(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * maximum


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_variance: float) -> float:
    """Return the PSR of `returns` against the expected maximum Sharpe of `n_trials` trials.

    Parameters
    ----------
    returns : np.ndarray
        Per-period simple returns of the selected trial, shape (n,).
    n_trials : int
        Number of independent trials the selection was made from, >= 1.
    sharpe_variance : float
        Variance of the trials' per-period Sharpe ratios, >= 0.

    Returns
    -------
    float
        DSR in [0, 1]; ``nan`` where `probabilistic_sharpe_ratio` is.
    """
    benchmark = expected_maximum_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(returns, benchmark_sharpe=benchmark)


# --- Paired stationary bootstrap -------------------------------------------------------------


def stationary_bootstrap_indices(
    n: int, mean_block: float, resamples: int, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Draw `resamples` stationary-bootstrap index series of length `n`.

    Parameters
    ----------
    n : int
        Length of the series resampled, >= 1.
    mean_block : float
        Mean block length, >= 1 (1 is the iid bootstrap).
    resamples : int
        Number of index series, >= 1.
    rng : np.random.Generator | int | None
        The random generator, or a seed for ``np.random.default_rng``.

    Returns
    -------
    np.ndarray
        int64 indices into the series, shape (resamples, n), each in [0, n).

    Raises
    ------
    ValueError
        When a size is below 1 or `mean_block` below 1 or not finite.
    """
    check_integer("n", n, 1)
    _check_bootstrap(mean_block, resamples)
    generator = np.random.default_rng(rng)
    n, resamples = int(n), int(resamples)
    starts = generator.integers(0, n, size=(resamples, n), dtype=np.int64)
    new_block = generator.random((resamples, n)) < 1.0 / mean_block
    new_block[:, 0] = True
    positions = np.arange(n, dtype=np.int64)
    block_start = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    first_index = np.take_along_axis(starts, block_start, axis=1)
    return (first_index + (positions - block_start)) % n


def bootstrap_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    periods_per_year: float,
    resamples: int = 1000,
    mean_block: float | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Estimate the annualised return difference of two paired return series, with its CI.

    Both series are resampled with the same stationary-bootstrap indices, so the pairing
    of day ``t`` in `a` with day ``t`` in `b` is kept. The difference is arithmetic:
    ``mean(a - b) * periods_per_year``.

    Parameters
    ----------
    a, b : np.ndarray
        Paired per-period (daily) simple returns, shape (n,) each.
    periods_per_year : float
        Periods per year of the returns, > 0 (365.25 for calendar days).
    resamples : int, default 1000
        Bootstrap resamples, >= 1.
    mean_block : float | None
        Mean block length, >= 1; default ``max(1, n ** (1/3))``.
    seed : int, default 0
        Seed of ``np.random.default_rng``; the same seed gives the same interval.
    confidence : float, default 0.95
        Coverage of the percentile interval, in (0, 1).

    Returns
    -------
    dict[str, float | int]
        `DIFFERENCE_KEYS`: ``difference``, its interval ``low`` and ``high`` (fractions
        per year), and the ``resamples``, ``mean_block``, ``seed`` and ``confidence`` used.
        ``difference``, ``low`` and ``high`` are ``nan`` below 2 returns or with a
        non-finite return.

    Raises
    ------
    ValueError
        When the arrays differ in shape or a parameter is out of range.
    """
    a, b = _paired(a, b, ("a", "b"))
    _check_positive("periods_per_year", periods_per_year)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), was {confidence!r}")
    block = max(1.0, a.size ** (1.0 / 3.0)) if mean_block is None else float(mean_block)
    _check_bootstrap(block, resamples)
    settings = (int(resamples), block, int(seed), float(confidence))
    result: dict[str, float | int] = dict(zip(DIFFERENCE_KEYS, (_NAN,) * 3 + settings))
    active = a - b
    if active.size < 2 or not np.all(np.isfinite(active)):
        return result
    indices = stationary_bootstrap_indices(active.size, block, resamples, seed)
    means = np.mean(active[indices], axis=1) * periods_per_year
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    result.update(difference=float(np.mean(active)) * periods_per_year, low=low, high=high)
    return {key: value if isinstance(value, int) else float(value) for key, value in result.items()}


def significance_sentence(
    difference: dict[str, float | int],
    *,
    learned: str = "learning",
    baseline: str = "equal weights",
) -> str:
    """Say in words what `bootstrap_difference` found.

    Parameters
    ----------
    difference : dict[str, float | int]
        A result of `bootstrap_difference`.
    learned : str, default "learning"
        Name of the book measured (`a`).
    baseline : str, default "equal weights"
        Name of the book it is compared with (`b`).

    Returns
    -------
    str
        For example ``"learning added +2.1%/yr, 95% CI -1.4 to +5.6: not distinguishable
        from equal weights"``; "better than" when the interval lies above 0, "worse than"
        when below, and ``"learning against equal weights: not enough daily returns to
        judge"`` when a figure is ``nan``.
    """
    center, low, high = (float(difference[key]) for key in ("difference", "low", "high"))
    if not all(math.isfinite(value) for value in (center, low, high)):
        return f"{learned} against {baseline}: not enough daily returns to judge"
    if low > 0.0:
        verdict = f"better than {baseline}"
    elif high < 0.0:
        verdict = f"worse than {baseline}"
    else:
        verdict = f"not distinguishable from {baseline}"
    level = f"{round(float(difference['confidence']) * 100.0, 6):g}%"
    return (
        f"{learned} added {_percent(center)}%/yr, {level} CI {_percent(low)} "
        f"to {_percent(high)}: {verdict}"
    )


def _percent(fraction: float) -> str:
    """Signed percent, one decimal; a negative value keeps its sign even when it rounds to 0."""
    return f"{fraction * 100.0 + 0.0:+.1f}"


# --- Benchmark-relative figures ----------------------------------------------------------------


def benchmark_relative(
    returns: np.ndarray, benchmark: np.ndarray, *, periods_per_year: float
) -> dict[str, float]:
    """Compute alpha, beta, information ratio, tracking error and correlation to a benchmark.

    Parameters
    ----------
    returns : np.ndarray
        Per-period simple returns of the book, shape (n,).
    benchmark : np.ndarray
        Per-period simple returns of the benchmark over the same periods, shape (n,).
    periods_per_year : float
        Periods per year, > 0.

    Returns
    -------
    dict[str, float]
        `BENCHMARK_KEYS` (module docstring). Everything is ``nan`` below 2 periods or with
        a non-finite return; alpha, beta and correlation are ``nan`` for a constant
        benchmark, correlation also for constant `returns`, and the information ratio
        when the tracking error is 0.

    Raises
    ------
    ValueError
        When the arrays differ in shape or `periods_per_year` is not positive.
    """
    returns, benchmark = _paired(returns, benchmark, ("returns", "benchmark"))
    _check_positive("periods_per_year", periods_per_year)
    result = dict.fromkeys(BENCHMARK_KEYS, _NAN)
    if returns.size < 2 or not np.all(np.isfinite(returns - benchmark)):
        return result
    annualiser = math.sqrt(periods_per_year)
    active = returns - benchmark
    tracking = float(np.std(active, ddof=1))
    result["tracking_error"] = tracking * annualiser
    if tracking > _ZERO_STD:
        result["information_ratio"] = float(np.mean(active)) / tracking * annualiser
    covariance = np.cov(returns, benchmark, ddof=1)
    returns_std, benchmark_std = np.sqrt(np.diag(covariance))
    if benchmark_std > _ZERO_STD:
        beta = float(covariance[0, 1] / covariance[1, 1])
        result["beta"] = beta
        result["alpha"] = float(np.mean(returns) - beta * np.mean(benchmark)) * periods_per_year
        if returns_std > _ZERO_STD:
            correlation = float(covariance[0, 1] / (returns_std * benchmark_std))
            result["correlation"] = min(1.0, max(-1.0, correlation))
    return result


# --- Probability of backtest overfitting ---------------------------------------------------------


def probability_of_backtest_overfitting(
    returns: np.ndarray, n_splits: int = 8, *, metric: str = "sharpe"
) -> dict:
    """Estimate the probability that the best trial in-sample is below median out-of-sample.

    Parameters
    ----------
    returns : np.ndarray
        Per-period returns of ``N`` trials over the same ``T`` periods, shape (T, N).
    n_splits : int, default 8
        Number ``S`` of row blocks, even and >= 2; blocks are contiguous and their sizes
        differ by at most one row (the first ``T mod S`` blocks are one row longer).
    metric : {"sharpe", "mean"}, default "sharpe"
        What ranks the trials on a set of blocks: the per-period Sharpe ratio
        ``mean / std(ddof=1)`` (a trial with zero standard deviation ranks below every
        other), or the mean return.

    Returns
    -------
    dict
        `PBO_KEYS`: ``pbo`` (module docstring; ``nan`` with fewer than 2 trials, fewer
        rows than blocks or a non-finite return), ``logits`` (the ``lambda`` of each
        combination, in ``itertools.combinations`` order), ``n_splits``, ``n_trials``,
        ``combinations`` (``C(S, S/2)``, 0 when nothing was computed).

    Raises
    ------
    ValueError
        When `returns` is not 2-D, `n_splits` is not an even integer >= 2 or `metric` is
        unknown.
    """
    array = np.asarray(returns, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"returns must be 2-D (periods x trials), was shape {array.shape}")
    check_integer("n_splits", n_splits, 2)
    if n_splits % 2:
        raise ValueError(f"n_splits must be even, was {n_splits}")
    if metric not in PBO_METRICS:
        raise ValueError(f"metric must be one of {', '.join(PBO_METRICS)}, was {metric!r}")
    periods, n_trials = array.shape
    undefined = {"pbo": _NAN, "logits": [], "n_splits": int(n_splits), "n_trials": n_trials,
                 "combinations": 0}
    if n_trials < 2 or periods < n_splits or not np.all(np.isfinite(array)):
        return undefined
    # per block sums of the returns less each trial's mean (variance without cancellation)
    centre = array.mean(axis=0)
    deviations = array - centre
    blocks = np.array_split(np.arange(periods), n_splits)
    counts = np.array([b.size for b in blocks], dtype=np.float64)
    sums = np.stack([deviations[b].sum(axis=0) for b in blocks])
    squares = np.stack([(deviations[b] ** 2).sum(axis=0) for b in blocks])
    chosen = np.array(list(itertools.combinations(range(n_splits), n_splits // 2)))
    in_sample = np.zeros((chosen.shape[0], n_splits))
    np.put_along_axis(in_sample, chosen, 1.0, axis=1)
    score_in = _block_metric(in_sample, counts, sums, squares, centre, metric)
    score_out = _block_metric(1.0 - in_sample, counts, sums, squares, centre, metric)
    best = np.argmax(score_in, axis=1)
    best_out = np.take_along_axis(score_out, best[:, None], axis=1)
    rank = (score_out < best_out).sum(axis=1) + ((score_out == best_out).sum(axis=1) + 1) / 2
    relative = rank / (n_trials + 1)
    logits = np.log(relative / (1.0 - relative))
    return {**undefined, "pbo": float(np.mean(logits <= 0.0)), "logits": logits.tolist(),
            "combinations": int(chosen.shape[0])}


def _block_metric(mask: np.ndarray, counts: np.ndarray, sums: np.ndarray, squares: np.ndarray,
                  centre: np.ndarray, metric: str) -> np.ndarray:
    """The metric of every trial on the blocks each row of ``mask`` selects, (K, N)."""
    n = (mask @ counts)[:, None]
    shifted_mean = (mask @ sums) / n
    mean = centre + shifted_mean
    if metric == "mean":
        return mean
    variance = ((mask @ squares) - n * shifted_mean**2) / np.maximum(n - 1.0, 1.0)
    std = np.sqrt(np.maximum(variance, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = mean / std
    return np.where((std > _ZERO_STD) & (n > 1), sharpe, -np.inf)


# --- Calendar views of an equity curve -----------------------------------------------------------


def _check_bootstrap(mean_block: float, resamples: int) -> None:
    check_integer("resamples", resamples, 1)
    if not (math.isfinite(mean_block) and mean_block >= 1.0):
        raise ValueError(f"mean_block must be a finite number >= 1, was {mean_block!r}")


def _paired(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    a, b = _as_float_1d(a, names[0]), _as_float_1d(b, names[1])
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired (the same shape), was {a.shape} and "
            f"{b.shape}; pass returns over the same periods"
        )
    return a, b

