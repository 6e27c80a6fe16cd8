"""Equity curves by the calendar: daily and monthly returns, rolling Sharpe ratio, the
worst drawdowns. Pure functions over numpy arrays (UTC int64 nanosecond times), used by
the books and the report; the definitions are those of ``backtester.metrics``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backtester.checks import check_integer
from backtester.features import rolling_mean_std_1d_nb
from backtester.metrics import _ZERO_STD, _as_float_1d, _check_positive

DAY_NS = 86_400 * 1_000_000_000
"""Nanoseconds in a UTC day."""


def daily_returns(
    times_ns: np.ndarray, equity: np.ndarray, *, initial_equity: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a bar-level equity curve to daily closes and their simple returns.

    A bar belongs to the UTC day of its timestamp (bars are labelled by their open time,
    so the last bar of a day closes at the next midnight); the day's close is the equity
    of its last bar. Days without bars are absent, not zero: the return of the next day
    with bars spans the gap. The first day's return is measured from `initial_equity`
    when it is given, else from the first bar's equity (which leaves out the first bar's
    own return). A return after a close at or below zero is ``nan``.

    Parameters
    ----------
    times_ns, equity : np.ndarray
        Bar times (int64 nanoseconds since the epoch, UTC, or ``datetime64``; ascending)
        and the equity at each bar's close, shape (n_bars,) each.
    initial_equity : float | None
        Equity before the first bar, > 0.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        The days (int64 ns of each UTC midnight) and their returns (float64), one per day
        with at least one bar; both empty for an empty curve.

    Raises
    ------
    ValueError
        When the arrays are malformed or `initial_equity` is not positive.
    """
    times, equity = _curve(times_ns, equity)
    if initial_equity is not None:
        _check_positive("initial_equity", initial_equity)
    if equity.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    days = times // DAY_NS
    last = _last_of_each(days)
    start = float(equity[0]) if initial_equity is None else float(initial_equity)
    return days[last] * DAY_NS, _simple_returns(equity[last], start)

def monthly_returns(
    times_ns: np.ndarray, equity: np.ndarray, initial_equity: float
) -> pd.DataFrame:
    """Tabulate the compounded return of every calendar month (UTC), year by month.

    Each month's return is its last bar's equity over the previous month's last bar's
    equity, minus 1; the first month is measured from `initial_equity`. A month without
    bars is ``nan`` (the next month with bars spans it).

    Parameters
    ----------
    times_ns, equity : np.ndarray
        Bar times (int64 nanoseconds since the epoch, UTC, or ``datetime64``; ascending)
        and the equity at each bar's close, shape (n_bars,) each.
    initial_equity : float
        Equity before the first bar, > 0.

    Returns
    -------
    pd.DataFrame
        Index ``year`` (int), columns ``month`` 1 to 12, values the returns as fractions;
        no rows for an empty curve.

    Raises
    ------
    ValueError
        When the arrays are malformed or `initial_equity` is not positive.
    """
    times, equity = _curve(times_ns, equity)
    _check_positive("initial_equity", initial_equity)
    months = times.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    last = _last_of_each(months)
    returns = _simple_returns(equity[last], float(initial_equity))
    years = 1970 + months[last] // 12
    table = pd.DataFrame(
        np.nan,
        index=pd.Index(np.unique(years), name="year"),
        columns=pd.Index(range(1, 13), name="month"),
    )
    for year, month, value in zip(years, months[last] % 12 + 1, returns, strict=True):
        table.loc[int(year), int(month)] = value
    return table

def rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """Compute the annualised Sharpe ratio over each trailing `window` of returns.

    Parameters
    ----------
    returns : np.ndarray
        Per-period simple returns, shape (n,).
    window : int
        Returns per window, >= 2.
    periods_per_year : float
        Periods per year, > 0.

    Returns
    -------
    np.ndarray
        ``mean / std(ddof=1) * sqrt(periods_per_year)`` of ``returns[i - window + 1 : i + 1]``
        at ``i``, shape (n,); ``nan`` until the window is full, for windows holding a
        non-finite return and for windows with zero standard deviation.

    Raises
    ------
    ValueError
        When `window` is below 2 or `periods_per_year` is not positive.
    """
    returns = _as_float_1d(returns, "returns")
    check_integer("window", window, 2)
    _check_positive("periods_per_year", periods_per_year)
    finite = np.where(np.isfinite(returns), returns, np.nan)
    mean, population_std = rolling_mean_std_1d_nb(np.ascontiguousarray(finite), int(window))
    std = population_std * math.sqrt(window / (window - 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpe = mean / std * math.sqrt(periods_per_year)
    return np.where(std > _ZERO_STD, sharpe, np.nan)

def drawdown_periods(
    times_ns: np.ndarray, equity: np.ndarray, initial_equity: float, top: int = 5
) -> list[dict[str, int | float | None]]:
    """List the worst `top` drawdowns of an equity curve, deepest first.

    A drawdown is a maximal run of bars closing below the running peak (module docstring);
    runs never overlap. The bar that regains the peak ends the run and is its recovery.

    Parameters
    ----------
    times_ns, equity : np.ndarray
        Bar times (int64 nanoseconds since the epoch, UTC, or ``datetime64``; ascending)
        and the equity at each bar's close, shape (n_bars,) each.
    initial_equity : float
        Equity before the first bar, > 0.
    top : int, default 5
        Most drawdowns returned, >= 0.

    Returns
    -------
    list[dict[str, int | float | None]]
        One dict per drawdown: ``start`` (time of the bar that set the peak; the first
        bar's time when the peak is `initial_equity`), ``trough`` (time of the lowest
        close), ``recovery`` (time of the bar back at the peak, ``None`` if not
        recovered) and ``depth`` (the drawdown at the trough, a negative fraction). Sorted
        by depth, ties by start; times are int ns.

    Raises
    ------
    ValueError
        When the arrays are malformed, `initial_equity` is not positive or `top` < 0.
    """
    times, equity = _curve(times_ns, equity)
    _check_positive("initial_equity", initial_equity)
    check_integer("top", top, 0)
    peak = np.maximum.accumulate(np.concatenate(([float(initial_equity)], equity)))[1:]
    edges = np.diff(np.concatenate(([0], (equity < peak).astype(np.int8), [0])))
    periods = []
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        drawdown = equity[first:stop] / peak[first:stop] - 1.0
        trough = first + int(np.argmin(drawdown))
        recovery = int(times[stop]) if stop < equity.size else None
        start, depth = int(times[max(first - 1, 0)]), float(drawdown[trough - first])
        periods.append(
            {"start": start, "trough": int(times[trough]), "recovery": recovery, "depth": depth}
        )
    periods.sort(key=lambda period: (period["depth"], period["start"]))
    return periods[: int(top)]

def _curve(times_ns: np.ndarray, equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times_ns)
    if np.issubdtype(times.dtype, np.datetime64):
        times = times.astype("datetime64[ns]").astype(np.int64)
    if times.ndim != 1 or not (np.issubdtype(times.dtype, np.integer) or times.size == 0):
        raise ValueError(
            f"times_ns must be 1-D int64 nanoseconds or datetime64, was shape {times.shape} "
            f"dtype {times.dtype}"
        )
    times = times.astype(np.int64)
    equity = _as_float_1d(equity, "equity")
    if equity.shape != times.shape:
        raise ValueError(
            f"equity must have the shape of times_ns {times.shape}, was {equity.shape}; "
            "pass one equity per bar"
        )
    if np.any(np.diff(times) < 0):
        raise ValueError("times_ns must be ascending; sort the bars by time")
    return times, equity

def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """Return the index of the last element of each run of equal, ascending `keys`."""
    if keys.size == 0:
        return np.empty(0, dtype=np.int64)
    return np.append(np.flatnonzero(np.diff(keys) != 0), keys.size - 1).astype(np.int64)

def _simple_returns(closes: np.ndarray, start: float) -> np.ndarray:
    previous = np.concatenate(([start], closes))[:-1]
    returns = np.full(closes.size, np.nan)
    np.divide(closes, previous, out=returns, where=previous > 0.0)
    return returns - 1.0
