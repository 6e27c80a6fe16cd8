"""Performance statistics of one equity curve and its closed trades.

Definitions (``n`` bars, ``equity[t]`` the equity at bar t's close, ``ppy`` bars per year):

- bar returns ``r_t = equity_t / equity_{t-1} - 1`` with ``equity_{-1} = initial_equity``
- ``total_return = equity[-1] / initial_equity - 1``
- ``cagr = (equity[-1] / initial_equity) ** (1 / years) - 1`` with ``years = n / ppy``
- ``volatility = std(r, ddof=1) * sqrt(ppy)`` (annualised)
- ``sharpe = mean(r) / std(r, ddof=1) * sqrt(ppy)`` (risk-free rate 0)
- ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(ppy)`` (mean over all bars)
- ``max_drawdown = min_t(equity_t / peak_t - 1)`` (<= 0), ``peak_t`` the running maximum of
  ``initial_equity, equity_0, ..., equity_t``
- ``max_drawdown_bars``: the longest run of consecutive bars closing below the running
  peak (the bar that regains the peak is not counted); ``max_drawdown_duration_days`` is
  that times ``bar_seconds / 86400``
- ``calmar = cagr / abs(max_drawdown)``
- ``trades``: number of closed trades; ``win_rate``: share with ``pnl > 0``;
  ``profit_factor``: sum of positive pnl / abs(sum of negative pnl); ``expectancy = mean(pnl)``
  (currency); ``average_trade_return = mean(return_pct)``; ``best_trade`` /
  ``worst_trade``: max / min ``return_pct``; ``sqn = sqrt(N) * mean(pnl) / std(pnl, ddof=1)``
  (Van Tharp's system quality number)
- ``exposure``: share of bars with ``open_positions > 0``; ``final_equity = equity[-1]``

A value that is undefined is ``nan``, never an exception, ``0`` or ``inf``:

- with no trades, every trade statistic but ``trades`` (``0``) is ``nan``;
- sharpe and sqn are ``nan`` when the standard deviation is zero (below 1e-12, rounding
  noise) or fewer than 2 values exist; volatility is ``nan`` below 2 bars but a flat
  curve has volatility ``0.0``;
- sortino is ``nan`` with no losing bar; profit_factor is ``nan`` with no losing trade
  (``0.0`` with losing trades only);
- calmar is ``nan`` with no drawdown (``max_drawdown == 0.0``, ``max_drawdown_bars == 0``);
- ``max_drawdown_duration_days`` is ``nan`` when ``bar_seconds`` is not given;
- once the equity has reached zero or below, bar returns are undefined, so volatility,
  sharpe and sortino are ``nan``; cagr is ``-1.0`` at zero final equity and ``nan`` below;
- cagr is ``nan`` when it overflows a float (a large return over a tiny span).

Every value is a plain Python ``float``, but the counts (`COUNT_NAMES`: ``trades`` and
``max_drawdown_bars``) are plain ``int``, so the dict serialises as it is (``"trades": 2107``,
not ``2107.0``); orjson writes ``nan`` as ``null``.
"""

from __future__ import annotations

import math

import numpy as np

YEAR_NS = int(365.25 * 24 * 3600 * 1_000_000_000)
"""Nanoseconds in a Julian year (365.25 days)."""

METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_bars",
    "max_drawdown_duration_days",
    "calmar",
    "trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "average_trade_return",
    "best_trade",
    "worst_trade",
    "sqn",
    "exposure",
    "final_equity",
)
"""Keys of the dict returned by `compute_metrics`, in display order."""

COUNT_NAMES: frozenset[str] = frozenset({"trades", "max_drawdown_bars"})
"""The metrics that count something: plain ints, never floats."""

_ZERO_STD = 1e-12
_NAN = float("nan")
_TRADE_STATISTICS = (
    "win_rate",
    "profit_factor",
    "expectancy",
    "average_trade_return",
    "best_trade",
    "worst_trade",
    "sqn",
)


def periods_per_year(times: np.ndarray) -> float:
    """Return the number of bars per year implied by the observed bar density.

    Computed as ``(n - 1) / ((times[-1] - times[0]) / YEAR_NS)``, so it fits 24/7 crypto bars
    and session-only stock bars alike.

    Parameters
    ----------
    times : np.ndarray
        Bar times, int64 nanoseconds since the epoch (UTC) or ``datetime64``, ascending.

    Returns
    -------
    float
        Bars per year.

    Raises
    ------
    ValueError
        With fewer than 2 bars or a span that is not positive.
    """
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        times = times.astype("datetime64[ns]").astype(np.int64)
    if times.ndim != 1 or times.size < 2:
        raise ValueError(
            f"times needs at least 2 bars to estimate bars per year, was shape {times.shape}; "
            "pass the bar times of a longer period"
        )
    span_ns = int(times[-1]) - int(times[0])
    if span_ns <= 0:
        raise ValueError(
            f"times must span a positive time, was {span_ns} ns from first to last bar; "
            "pass ascending bar times"
        )
    return float((times.size - 1) / (span_ns / YEAR_NS))


def compute_metrics(
    equity: np.ndarray,
    open_positions: np.ndarray,
    trades: np.ndarray,
    *,
    initial_equity: float,
    periods_per_year: float,
    bar_seconds: float | None = None,
) -> dict[str, float]:
    """Compute the performance statistics of one run or one chunk.

    See the module docstring for every definition and for when a value is ``nan``.

    Parameters
    ----------
    equity : np.ndarray
        Equity at each bar's close, shape (n_bars,), n_bars >= 1.
    open_positions : np.ndarray
        Number of open positions at each bar, shape (n_bars,).
    trades : np.ndarray
        Closed trades, a structured array with the fields ``pnl`` and ``return_pct``
        (``backtester.engine.records.trade_dt``); may be empty.
    initial_equity : float
        Equity before the first bar, > 0.
    periods_per_year : float
        Bars per year, > 0 (see `periods_per_year`).
    bar_seconds : float | None
        Length of one bar in seconds; without it ``max_drawdown_duration_days`` is ``nan``.

    Returns
    -------
    dict[str, float]
        One plain float per name of `METRIC_NAMES`, in that order (an int for the counts
        of `COUNT_NAMES`).

    Raises
    ------
    ValueError
        When the arrays or parameters are malformed (the caller's bug, not a market outcome).
    """
    equity = _as_float_1d(equity, "equity")
    bars = equity.size
    if bars == 0:
        raise ValueError("equity is empty, was shape (0,); compute metrics over at least 1 bar")
    open_positions = np.asarray(open_positions)
    if open_positions.shape != equity.shape:
        raise ValueError(
            f"open_positions must have the shape of equity {equity.shape}, "
            f"was {open_positions.shape}; pass one count per bar"
        )
    trades = np.asarray(trades)
    names = trades.dtype.names or ()
    if "pnl" not in names or "return_pct" not in names:
        raise ValueError(
            f"trades must be a structured array with fields pnl and return_pct, "
            f"was dtype {trades.dtype}; pass the engine's trade_dt records"
        )
    _check_positive("initial_equity", initial_equity)
    _check_positive("periods_per_year", periods_per_year)
    if bar_seconds is not None:
        _check_positive("bar_seconds", bar_seconds)

    growth = float(equity[-1]) / initial_equity
    years = bars / periods_per_year
    max_drawdown, drawdown_bars = _drawdown(equity, initial_equity)
    cagr = _cagr(growth, years)
    metrics = {
        "total_return": growth - 1.0,
        "cagr": cagr,
        **_return_metrics(equity, initial_equity, periods_per_year),
        "max_drawdown": max_drawdown,
        "max_drawdown_bars": drawdown_bars,
        "max_drawdown_duration_days": (
            drawdown_bars * bar_seconds / 86400.0 if bar_seconds is not None else _NAN
        ),
        "calmar": cagr / abs(max_drawdown) if max_drawdown < 0.0 else _NAN,
        **_trade_metrics(trades),
        "exposure": float(np.count_nonzero(open_positions > 0)) / bars,
        "final_equity": float(equity[-1]),
    }
    return {name: int(metrics[name]) if name in COUNT_NAMES else float(metrics[name])
            for name in METRIC_NAMES}


def _as_float_1d(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per bar), was shape {array.shape}")
    return array


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, was {value!r}")


def _cagr(growth: float, years: float) -> float:
    if growth < 0.0 or math.isnan(growth):
        return _NAN
    try:
        return growth ** (1.0 / years) - 1.0
    except OverflowError:
        return _NAN


def _return_metrics(equity: np.ndarray, initial_equity: float, ppy: float) -> dict[str, float]:
    previous = np.concatenate(([initial_equity], equity[:-1]))
    undefined = {"volatility": _NAN, "sharpe": _NAN, "sortino": _NAN}
    if np.any(previous <= 0.0):
        return undefined
    returns = equity / previous - 1.0
    mean = float(np.mean(returns))
    annualiser = math.sqrt(ppy)
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    sortino = mean / downside * annualiser if downside > _ZERO_STD else _NAN
    if returns.size < 2:
        return {**undefined, "sortino": sortino}
    std = float(np.std(returns, ddof=1))
    return {
        "volatility": std * annualiser,
        "sharpe": mean / std * annualiser if std > _ZERO_STD else _NAN,
        "sortino": sortino,
    }


def _drawdown(equity: np.ndarray, initial_equity: float) -> tuple[float, int]:
    """Return (max drawdown, longest run of bars below the running peak)."""
    peak = np.maximum.accumulate(np.concatenate(([initial_equity], equity)))[1:]
    max_drawdown = float(np.min(equity / peak - 1.0))
    below = np.concatenate(([0], (equity < peak).astype(np.int8), [0]))
    edges = np.diff(below)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    longest = int(np.max(stops - starts)) if starts.size else 0
    return max_drawdown, longest


def _trade_metrics(trades: np.ndarray) -> dict[str, float]:
    count = trades.size
    if count == 0:
        return {"trades": 0, **dict.fromkeys(_TRADE_STATISTICS, _NAN)}
    pnl = np.asarray(trades["pnl"], dtype=np.float64)
    return_pct = np.asarray(trades["return_pct"], dtype=np.float64)
    gross_profit = float(np.sum(pnl[pnl > 0.0]))
    gross_loss = float(np.sum(pnl[pnl < 0.0]))
    expectancy = float(np.mean(pnl))
    std = float(np.std(pnl, ddof=1)) if count >= 2 else 0.0
    return {
        "trades": int(count),
        "win_rate": float(np.count_nonzero(pnl > 0.0)) / count,
        "profit_factor": gross_profit / -gross_loss if gross_loss < 0.0 else _NAN,
        "expectancy": expectancy,
        "average_trade_return": float(np.mean(return_pct)),
        "best_trade": float(np.max(return_pct)),
        "worst_trade": float(np.min(return_pct)),
        "sqn": math.sqrt(count) * expectancy / std if std > _ZERO_STD else _NAN,
    }
