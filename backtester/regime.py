"""Market regime of every bar and asset: RANGING, TRENDING or VOLATILE (causal).

A bar is VOLATILE when its volatility (rolling std of log returns) ranks at or above
`volatile_percentile` among the trailing `percentile_window` volatility values, else
TRENDING when its Kaufman efficiency ratio reaches `trend_threshold`, else RANGING.

Warm-up that fits the data: until `percentile_window` volatilities exist (daily bars with
a few years of history, a file that starts shortly before the period), the percentile
ranks against all the volatilities so far, once there are at least
MIN_PERCENTILE_VALUES (50) of them; with a full window nothing changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtester.data.bars import Bars
from backtester.data.resample import parse_timeframe
from backtester.errors import ConfigError
from backtester.features import rolling_mean_std_1d_nb
from backtester.regime_config import (  # noqa: F401 - re-exported
    RANGING,
    REGIME_NAMES,
    TRENDING,
    UNKNOWN,
    VOLATILE,
    RegimeConfig,
    _duration,
)

MIN_PERCENTILE_VALUES = 50  # volatilities a shorter-than-wanted percentile window needs


def percentile_bars(config: RegimeConfig, timeframe: str | None = None) -> int:
    """`percentile_window` in bars: as given, or its duration over the bar length
    (rounded, at least 2); a duration needs ``timeframe``."""
    window = config.percentile_window
    if not isinstance(window, str):
        return int(window)
    if timeframe is None:
        raise ConfigError(f"percentile_window {window!r} is a duration; pass the bars' "
                          "timeframe to turn it into bars")
    return max(2, round(_duration(window) / parse_timeframe(timeframe)))


def regime_warmup(config: RegimeConfig, timeframe: str | None = None) -> int:
    """Return the bars until every window is full (the warm-up a run loads).

    The first volatility needs `volatility_window` returns (bar index volatility_window),
    the full percentile `percentile_window` volatilities, the efficiency ratio
    `trend_window` changes. Regimes are labelled earlier (``regime_first_bar``), with a
    shorter percentile window.
    """
    return max(config.volatility_window + percentile_bars(config, timeframe) - 1,
               config.trend_window)


def regime_first_bar(config: RegimeConfig, timeframe: str | None = None) -> int:
    """Return the first bar index with a regime: every window holds enough values (the
    percentile at least min(percentile_window, MIN_PERCENTILE_VALUES))."""
    least = min(percentile_bars(config, timeframe), MIN_PERCENTILE_VALUES)
    return max(config.volatility_window + least - 1, config.trend_window)


# Fenwick tree updates as int64 scalars: Numba compiles a function once per distinct
# literal int argument.
_ADD, _REMOVE = np.int64(1), np.int64(-1)


@njit(cache=True)
def _fenwick_add_nb(tree: np.ndarray, position: int, delta: int) -> None:
    while position < tree.shape[0]:
        tree[position] += delta
        position += position & -position


@njit(cache=True)
def _fenwick_prefix_nb(tree: np.ndarray, position: int) -> int:
    total = 0
    while position > 0:
        total += tree[position]
        position -= position & -position
    return total


def dense_rank_1d(a: np.ndarray) -> np.ndarray:
    """1-based dense rank (int64) of each valid value of `a`, equal values sharing one; 0 for NaN.

    NumPy sorts here: Numba's own sort would add about 2 s to a cold compile.
    """
    a = np.asarray(a, dtype=np.float64)
    rank = np.zeros(a.shape[0], dtype=np.int64)
    valid = ~np.isnan(a)
    rank[valid] = np.unique(a[valid], return_inverse=True)[1] + 1
    return rank


@njit(cache=True)
def rolling_percentile_1d_nb(
    a: np.ndarray, rank: np.ndarray, window: int, least: int = 0
) -> np.ndarray:
    """Fraction of the trailing `window` values (current included) that are <= the current one.

    ``rank`` is ``dense_rank_1d(a)``. NaN until the window holds `window` valid values (a
    window holding a NaN gives NaN); with ``least`` (0: off), while fewer than `window`
    values exist since the first valid one (all valid), the fraction is over all of them
    once there are ``least``. Causal: the count at bar t covers bars t - window + 1 .. t
    only (a rank only orders values, it carries nothing into a window); a Fenwick tree
    over the ranks counts the window's values <= the current one in O(log n), so a
    column costs O(n log n) whatever the window.
    """
    n = a.shape[0]
    out = np.empty(n)
    n_levels = 0
    for i in range(n):
        out[i] = np.nan
        n_levels = max(n_levels, rank[i])
    tree = np.zeros(n_levels + 1, dtype=np.int64)
    size = 0
    first = -1
    for i in range(n):
        valid = rank[i] > 0
        if first < 0 and valid:
            first = i
        if i >= window and rank[i - window] > 0:
            _fenwick_add_nb(tree, rank[i - window], _REMOVE)
            size -= 1
        if valid:
            _fenwick_add_nb(tree, rank[i], _ADD)
            size += 1
            if size == window:
                out[i] = _fenwick_prefix_nb(tree, rank[i]) / window
            elif 0 < least <= size and size == i - first + 1:
                out[i] = _fenwick_prefix_nb(tree, rank[i]) / size
    return out


def rolling_percentile_1d(a: np.ndarray, window: int, least: int = 0) -> np.ndarray:
    """``rolling_percentile_1d_nb`` of `a` (float64), ranking it first."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return rolling_percentile_1d_nb(a, dense_rank_1d(a), window, least)


@njit(cache=True)
def efficiency_ratio_1d_nb(close: np.ndarray, window: int) -> np.ndarray:
    """Kaufman efficiency ratio |c[t] - c[t-w]| / sum |c[i] - c[i-1]| over the last w changes.

    0 when the denominator is 0; NaN for the first `window` bars.
    """
    n = close.shape[0]
    abs_change = np.full(n, np.nan)
    for i in range(1, n):
        abs_change[i] = abs(close[i] - close[i - 1])
    mean_abs_change, _ = rolling_mean_std_1d_nb(abs_change, window)
    out = np.full(n, np.nan)
    for i in range(window, n):
        path = mean_abs_change[i] * window
        if path == 0.0:
            out[i] = 0.0
        elif not np.isnan(path):
            out[i] = min(abs(close[i] - close[i - window]) / path, 1.0)
    return out


@njit(cache=True)
def log_return_volatility_1d_nb(close: np.ndarray, window: int) -> np.ndarray:
    """Rolling population std (ddof=0) of log returns; NaN for the first `window` bars."""
    n = close.shape[0]
    log_return = np.full(n, np.nan)
    for i in range(1, n):
        log_return[i] = np.log(close[i] / close[i - 1])
    _, volatility = rolling_mean_std_1d_nb(log_return, window)
    return volatility


@njit(cache=True)
def label_regimes_1d_nb(
    volatility: np.ndarray,
    percentile: np.ndarray,
    efficiency: np.ndarray,
    volatile_percentile: float,
    trend_threshold: float,
) -> np.ndarray:
    """Regime code (int8) of every bar from its volatility, the volatility's percentile
    and the efficiency ratio; UNKNOWN where the percentile or the ratio is NaN.

    A bar whose volatility is exactly 0 (flat prices) is never VOLATILE, even where
    ties with other zero volatilities put it at the top percentile.
    """
    n = volatility.shape[0]
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        if np.isnan(percentile[i]) or np.isnan(efficiency[i]):
            out[i] = UNKNOWN
        elif percentile[i] >= volatile_percentile and volatility[i] > 0.0:
            out[i] = VOLATILE
        elif efficiency[i] >= trend_threshold:
            out[i] = TRENDING
        else:
            out[i] = RANGING
    return out


def regimes_1d(
    close: np.ndarray,
    trend_window: int,
    volatility_window: int,
    percentile_window: int,
    volatile_percentile: float,
    trend_threshold: float,
    least: int = 0,
) -> np.ndarray:
    """Regime code (int8) of every bar of one asset; UNKNOWN while a window is not full
    (the percentile's: until it holds ``least`` values, see rolling_percentile_1d_nb).

    Calls one kernel per step from Python: one kernel calling the others would compile
    them again into itself (seconds of a cold start, nothing at run time).
    """
    close = np.ascontiguousarray(close, dtype=np.float64)
    volatility = log_return_volatility_1d_nb(close, volatility_window)
    percentile = rolling_percentile_1d(volatility, percentile_window, least)
    efficiency = efficiency_ratio_1d_nb(close, trend_window)
    return label_regimes_1d_nb(
        volatility, percentile, efficiency, float(volatile_percentile), float(trend_threshold)
    )


def compute_regimes(bars: Bars, config: RegimeConfig = RegimeConfig()) -> np.ndarray:
    """Label every bar and asset RANGING, TRENDING or VOLATILE from closes up to that bar.

    Parameters
    ----------
    bars : Bars
        Bars of one or more assets.
    config : RegimeConfig, optional
        Windows and thresholds.

    Returns
    -------
    numpy.ndarray
        int8 of shape (n_bars, n_assets): RANGING, TRENDING, VOLATILE, or UNKNOWN for the
        first ``regime_first_bar(config, bars.timeframe)`` bars (the percentile ranks
        against fewer than `percentile_window` volatilities until ``regime_warmup``).
    """
    close = np.asarray(bars.close, dtype=np.float64)
    window = percentile_bars(config, bars.timeframe)
    out = np.empty(close.shape, dtype=np.int8)
    for j in range(close.shape[1]):
        out[:, j] = regimes_1d(
            close[:, j],
            int(config.trend_window),
            int(config.volatility_window),
            window,
            float(config.volatile_percentile),
            float(config.trend_threshold),
            min(window, MIN_PERCENTILE_VALUES),
        )
    return out
