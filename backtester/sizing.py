"""Position sizing: the fraction of equity each decision asks for, before the risk manager.

Methods (``[sizing] method``):

- ``fixed_fraction``: ``execution.position_size`` (bt's behaviour before [sizing]).
- ``volatility_target``: ``volatility_target / sigma_day``, where ``sigma_day`` is the
  asset's causal volatility per bar (std of log returns, or the mean true range over the
  close) times sqrt(bars per session day): a position whose expected daily move is the
  target fraction of equity.
- ``kelly``: ``kelly_fraction * f*`` with the two-outcome Kelly criterion
  ``f* = p / l - (1 - p) / w`` (the notional fraction maximising the expected log growth
  ``p log(1 + f w) + (1 - p) log(1 - f l)``; Kelly 1956, Thorp 2006 section 3), where
  ``p`` is the win rate, ``w`` the mean winning return and ``l`` the mean losing return
  of earlier chunks' closed trades. The estimate is that of the decision's provider mix
  (the providers voting its direction) in its regime once that holds
  ``kelly_min_trades`` trades, else the regime's, else all trades', else
  ``execution.position_size``. ``f* <= 0`` sizes 0: the decision is dropped.

``confidence_scaling`` multiplies by |ensemble score|; the monitor's size multiplier
applies last; no size exceeds ``max_fraction``. The tallies live in the memory's
parameters ("kelly") and are updated from each chunk's closed trades after it traded,
so a chunk sizes from earlier chunks only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from backtester.regime import log_return_volatility_1d_nb

ALL = "all"  # the key of every closed trade's tally


@njit(cache=True)
def true_range_fraction_1d_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray,
                              window: int) -> np.ndarray:
    """Rolling mean of true range / close over ``window`` bars; NaN until the window is
    full (the first bar has no previous close). Causal: row t reads bars <= t."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    total = 0.0
    ranges = np.zeros(n)
    for i in range(1, n):
        previous = close[i - 1]
        tr = max(high[i] - low[i], abs(high[i] - previous), abs(low[i] - previous))
        ranges[i] = tr / close[i]
        total += ranges[i]
        if i > window:
            total -= ranges[i - window]
        if i >= window:
            out[i] = total / window
    return out


def bar_volatility(bars: Any, measure: str, window: int) -> np.ndarray:
    """(n_bars, n_assets) volatility per bar, causal."""
    if measure == "atr":
        columns = [true_range_fraction_1d_nb(bars.high[:, j], bars.low[:, j], bars.close[:, j],
                                             window) for j in range(bars.n_assets)]
    else:
        columns = [log_return_volatility_1d_nb(np.ascontiguousarray(bars.close[:, j]), window)
                   for j in range(bars.n_assets)]
    return np.column_stack(columns)


def bars_per_day(days: np.ndarray) -> float:
    """Median bars per session day (``portfolio.session_days`` ids): 96 for 15-minute
    crypto bars, 26 for 15-minute bars of a 6.5-hour stock session."""
    _, counts = np.unique(days, return_counts=True)
    return float(np.median(counts)) if counts.size else 1.0


def mix_keys(names: list[str], votes: list[Any], score: np.ndarray,
             regimes: list[str]) -> list[str]:
    """"<regime>|<providers voting the score's direction>" per candidate."""
    direction = np.sign(score)
    agrees = [(v.vote == direction) & (direction != 0) & ~v.abstentions() for v in votes]
    return [f"{regimes[k]}|{'+'.join(n for n, a in zip(names, agrees) if a[k]) or '-'}"
            for k in range(len(score))]


def kelly_size(tally: dict[str, float] | None, kelly_fraction: float) -> float:
    """``kelly_fraction * f*`` from one tally; NaN when it lacks a win or a loss."""
    if not tally or not tally.get("wins") or tally["wins"] >= tally["trades"]:
        return float("nan")
    p = tally["wins"] / tally["trades"]
    w = tally["win_return"] / tally["wins"]
    loss = tally["loss_return"] / (tally["trades"] - tally["wins"])
    if w <= 0 or loss <= 0:
        return float("nan")
    return kelly_fraction * (p / loss - (1.0 - p) / w)


class Sizer:
    """Sizes decisions for one run: the volatility per bar is computed once."""

    def __init__(self, config: Any, bars: Any, days: np.ndarray | None) -> None:
        """``days``: the bars' ``portfolio.session_days``, needed by the volatility target
        only (None otherwise)."""
        self.config = config
        sizing = config.sizing
        targets = sizing.method == "volatility_target"
        self.volatility = (bar_volatility(bars, sizing.volatility_measure,
                                          sizing.volatility_window) if targets else None)
        self.bars_per_day = bars_per_day(days) if targets else None

    def fractions(self, candidates: Any, score: np.ndarray, keys: list[str],
                  parameters: dict[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
        """The fraction of equity per candidate, and how many sizes came from where."""
        sizing, base = self.config.sizing, self.config.execution.position_size
        k = len(score)
        counts: dict[str, int] = {}
        if sizing.method == "volatility_target":
            target = parameters.get("volatility_target", sizing.volatility_target)
            sigma = self.volatility[candidates.bar, candidates.asset] * np.sqrt(
                self.bars_per_day)
            known = np.isfinite(sigma) & (sigma > 0)
            sizes = np.where(known, target / np.where(known, sigma, 1.0), base)
            counts["fixed_fraction_fallback"] = int(k - known.sum())
        elif sizing.method == "kelly":
            sizes = np.empty(k)
            tallies = parameters.get("kelly", {})
            for i, key in enumerate(keys):
                regime = key.split("|", 1)[0]
                for level, name in ((key, "mix"), (regime, "regime"), (ALL, "all")):
                    tally = tallies.get(level)
                    if tally and tally["trades"] >= sizing.kelly_min_trades:
                        size = kelly_size(tally, sizing.kelly_fraction)
                        if np.isfinite(size):
                            sizes[i] = max(size, 0.0)
                            counts[f"kelly_{name}"] = counts.get(f"kelly_{name}", 0) + 1
                            break
                else:
                    sizes[i] = base
                    counts["fixed_fraction_fallback"] = counts.get(
                        "fixed_fraction_fallback", 0) + 1
            counts["kelly_zero"] = int(np.count_nonzero(sizes == 0.0))
        else:
            sizes = np.full(k, base)
        if sizing.confidence_scaling:
            sizes = sizes * np.abs(score)
        sizes = sizes * parameters.get("size_multiplier", 1.0)
        return np.minimum(sizes, sizing.max_fraction), counts


def learn_kelly(parameters: dict[str, Any], outcomes: list[dict[str, Any]],
                names: list[str]) -> dict[str, Any]:
    """Parameters with the chunk's closed trades added to the Kelly tallies (by provider
    mix and regime, by regime, and all)."""
    tallies = {key: dict(row) for key, row in parameters.get("kelly", {}).items()}
    for o in outcomes:
        agree = [n for n in names if not o["votes"].get(n, {}).get("abstained")
                 and o["votes"].get(n, {}).get("vote") == o["direction"]]
        r = float(o["return_pct"])
        mix = f"{o['regime']}|{'+'.join(agree) or '-'}"
        for key in (mix, o["regime"], ALL):
            row = tallies.setdefault(key, {"trades": 0, "wins": 0, "win_return": 0.0,
                                           "loss_return": 0.0})
            row["trades"] += 1
            if r > 0:
                row["wins"] += 1
                row["win_return"] += r
            else:
                row["loss_return"] += -r
    return {**parameters, "kelly": dict(sorted(tallies.items()))}
