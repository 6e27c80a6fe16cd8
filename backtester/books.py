"""Counterfactual books: what other ways of combining the same votes would have traded.

Every chunk, from the candidates and votes the run already has, each book turns its own
score into decisions with the same threshold, sizing and risk rules as the run, and the
same engine simulates it with the book's own state carried across chunks:

- ``learned``: what the run traded (learned weights, memory vote); not simulated again;
- ``equal_weight``: the same providers with equal weights, no memory vote;
- ``learned_without_memory_vote``: the learned weights, no memory vote;
- one book per provider: its own vote x confidence as the score;
- ``buy_and_hold``: equal capital in every symbol, decided at the first bar's close
  (filled at the next open, like every decision), held to the end, with the same costs.

Every book sizes with the run's [sizing] method from its own score; the learned book
trades the monitor's adapted parameters (size multiplier, threshold, volatility target)
and so does its memory-less twin; the others trade the configured ones. Figures per book and chunk come from
``metrics.compute_metrics``; hit rate is the share of the book's closed trades that won.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backtester.config import Config
from backtester.engine import Decisions, EngineState
from backtester.engine.records import trade_dt
from backtester.ensemble import build_decisions, equal_weights, provider_scores
from backtester.metrics import compute_metrics
from backtester.providers.base import Candidates, Votes
from backtester.regime import REGIME_NAMES

LEARNED = "learned"
EQUAL_WEIGHT = "equal_weight"
WITHOUT_MEMORY = "learned_without_memory_vote"
BUY_AND_HOLD = "buy_and_hold"
RESERVED = (LEARNED, EQUAL_WEIGHT, WITHOUT_MEMORY, BUY_AND_HOLD)
CHUNK_FIGURES = ("total_return", "sharpe", "max_drawdown", "trades", "hit_rate")


def book_names(providers: list[str]) -> list[str]:
    """Display order: learned, equal weight, without memory vote, each provider, buy and hold."""
    return [LEARNED, EQUAL_WEIGHT, WITHOUT_MEMORY, *providers, BUY_AND_HOLD]


@dataclass(frozen=True, slots=True)
class BookChunk:
    """One book's chunk: equity and open positions per bar, closed trades."""

    equity: np.ndarray
    open_positions: np.ndarray
    trades: np.ndarray


@dataclass
class Books:
    """The counterfactual books of one run and their engine states.

    Parameters
    ----------
    config : Config
        The run's config (execution, ensemble threshold, initial cash).
    providers : list[str]
        Provider names in vote order.
    trading : portfolio.Trading
        The run's rules, per-bar inputs and sizer.
    """

    config: Config
    providers: list[str]
    trading: Any
    states: dict[str, EngineState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = sorted(set(self.providers) & set(RESERVED))
        if clash:
            from backtester.errors import ConfigError

            raise ConfigError(f"provider name {clash[0]!r} is reserved for a counterfactual "
                              f"book; rename the provider")
        self.n_assets = self.trading.bars.n_assets
        if not self.states:
            self.states = {name: self.trading.initial_state(hold=name == BUY_AND_HOLD)
                           for name in self.simulated}

    @property
    def names(self) -> list[str]:
        return book_names(self.providers)

    @property
    def simulated(self) -> list[str]:
        """The books simulated here (all but ``learned``, which is the run itself)."""
        return [n for n in self.names if n != LEARNED]

    def states_json(self) -> dict[str, Any]:
        """Every simulated book's engine state, for the resume record."""
        return {name: state.to_json() for name, state in self.states.items()}

    @classmethod
    def from_json(cls, config: Config, providers: list[str], trading: Any,
                  states: dict[str, Any]) -> Books:
        """Books continuing from ``states_json`` output."""
        return cls(config, providers, trading,
                   {name: EngineState.from_json(s) for name, s in states.items()})

    def trade(self, *, start: int, stop: int, candidates: Candidates, votes: list[Votes],
              without_memory: np.ndarray, ids: np.ndarray, regimes: np.ndarray,
              parameters: dict[str, Any], first_chunk: bool, last_chunk: bool
              ) -> dict[str, BookChunk]:
        """Simulate every book but ``learned`` over the chunk's bars [start, stop);
        ``parameters`` are the monitor's, in force for the learned book."""
        scores: dict[str, np.ndarray] = {}
        if len(candidates):
            scores[EQUAL_WEIGHT] = provider_scores(votes, equal_weights(len(votes)))
            scores[WITHOUT_MEMORY] = without_memory
            for name, v in zip(self.providers, votes):
                scores[name] = np.where(v.abstentions(), 0.0,
                                        v.vote.astype(np.float64) * v.confidence)
        out = {}
        for name in self.simulated:
            if name == BUY_AND_HOLD:
                decisions = self._buy_and_hold(stop - start, first_chunk)
            elif name in scores:
                adapted = parameters if name == WITHOUT_MEMORY else {
                    "kelly": parameters.get("kelly", {})}  # the tallies are shared data
                sizes, _ = self.trading.size(candidates, scores[name], votes, self.providers,
                                             regimes, adapted)
                decisions = build_decisions(
                    candidates, scores[name], ids, start=start, stop=stop,
                    n_assets=self.n_assets, ensemble=self.config.ensemble,
                    execution=self.config.execution, sizes=sizes,
                    threshold=adapted.get("threshold"))
            else:
                decisions = Decisions.empty(stop - start, self.n_assets)
            sim = self.trading.simulate(decisions, self.states[name], start, stop,
                                        last=last_chunk, hold=name == BUY_AND_HOLD)
            self.states[name] = sim.state
            out[name] = BookChunk(sim.equity, sim.open_positions, sim.trades)
        return out

    def _buy_and_hold(self, n_bars: int, first_chunk: bool) -> Decisions:
        decisions = Decisions.empty(n_bars, self.n_assets)
        if first_chunk:
            decisions.direction[0, :] = 1
            decisions.size[0, :] = 1.0 / self.n_assets
        return decisions


def chunk_figures(book: BookChunk, *, initial_equity: float, periods_per_year: float,
                  bar_seconds: float | None) -> dict[str, float]:
    """Return, Sharpe, max drawdown, trades and hit rate of one book over one chunk."""
    return book_figures(compute_metrics(book.equity, book.open_positions, book.trades,
                                        initial_equity=initial_equity,
                                        periods_per_year=periods_per_year,
                                        bar_seconds=bar_seconds))


def book_figures(metrics: dict[str, float]) -> dict[str, float]:
    """A book's chunk figures from its ``compute_metrics`` (hit rate: the win rate)."""
    return {"total_return": metrics["total_return"], "sharpe": metrics["sharpe"],
            "max_drawdown": metrics["max_drawdown"], "trades": metrics["trades"],
            "hit_rate": metrics["win_rate"]}


def attribution(figures: dict[str, dict[str, float]], providers: list[str]) -> dict[str, Any]:
    """learned - equal_weight, the best single provider in hindsight, and the regret to it."""
    def ret(name: str) -> float:
        return float(figures[name]["total_return"])

    best = max(providers, key=ret) if providers else None
    return {
        "learned_minus_equal": ret(LEARNED) - ret(EQUAL_WEIGHT),
        "best_single": best,
        "regret": (ret(best) - ret(LEARNED)) if best is not None else None,
    }


def regime_at_entry(trades: np.ndarray, regimes: np.ndarray) -> np.ndarray:
    """The regime code at each trade's decision bar (entry bar - 1: fills are next-open)."""
    if not len(trades):
        return np.zeros(0, dtype=np.int8)
    return regimes[np.maximum(trades["entry_bar"] - 1, 0), trades["asset"]]


def regime_breakdown(trades: np.ndarray, regimes: np.ndarray,
                     initial_cash: float) -> dict[str, dict[str, float]]:
    """Per regime at entry: trades, win rate, pnl and return contribution (pnl / cash)."""
    codes = regime_at_entry(trades, regimes)
    out = {}
    for code in sorted({int(c) for c in codes}):
        mask = codes == code
        pnl = trades["pnl"][mask]
        out[REGIME_NAMES.get(code, "UNKNOWN")] = {
            "trades": int(mask.sum()), "win_rate": float((pnl > 0).mean()),
            "pnl": float(pnl.sum()), "return_contribution": float(pnl.sum() / initial_cash)}
    return out


def empty_trades() -> np.ndarray:
    return np.zeros(0, dtype=trade_dt)


def summarise(parts: dict[str, list[BookChunk]], chunks: list[tuple[str, dict[str, Any]]],
              names: list[str], providers: list[str], *, times: np.ndarray,
              regimes: np.ndarray, config: Config, periods_per_year: float,
              bar_seconds: float | None, learned_metrics: dict[str, float]
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The books over the whole run: (metrics.json "books" section, equity per book).

    Overall figures per book, learned - equal weight and the regret to the best single
    provider, the regime breakdown of every book's trades, whether learning beat equal
    weights by more than noise (probabilistic Sharpe ratio of ``learned``, stationary
    block bootstrap of the daily return difference: evaluation.py), and ``learned``
    against ``buy_and_hold`` (alpha, beta, information ratio, correlation).
    ``learned_metrics`` are the run's own overall metrics (the learned book's).
    """
    from backtester.evaluation import (
        benchmark_relative,
        bootstrap_difference,
        probabilistic_sharpe_ratio,
        significance_sentence,
    )
    from backtester.returns import daily_returns

    cash = config.run.initial_cash
    equity, overall, by_regime = {}, {}, {}
    for name in names:
        curve = np.concatenate([p.equity for p in parts[name]])
        trades = np.concatenate([p.trades for p in parts[name]])
        m = learned_metrics if name == LEARNED else compute_metrics(
            curve, np.concatenate([p.open_positions for p in parts[name]]), trades,
            initial_equity=cash, periods_per_year=periods_per_year, bar_seconds=bar_seconds)
        equity[name] = curve
        overall[name] = {k: m[k] for k in ("total_return", "cagr", "sharpe", "max_drawdown",
                                           "trades", "win_rate")} | {"hit_rate": m["win_rate"]}
        by_regime[name] = regime_breakdown(trades, regimes, cash)
    daily = {n: daily_returns(times, equity[n], initial_equity=cash) for n in
             (LEARNED, EQUAL_WEIGHT, BUY_AND_HOLD)}
    days = daily[LEARNED][0]
    span_days = (days[-1] - days[0]) / 86_400e9 + 1 if len(days) else 0  # int64 ns
    # daily periods per year of this market: 365 for crypto, about 252 for stocks
    per_year = len(days) / span_days * 365.25 if span_days else 365.25
    difference = bootstrap_difference(daily[LEARNED][1], daily[EQUAL_WEIGHT][1],
                                      periods_per_year=per_year, resamples=1000,
                                      seed=config.ensemble.seed)
    return {
        "names": names,
        "providers": providers,
        "chunks": [{"label": label, **figures} for label, figures in chunks],
        "overall": overall,
        **attribution(overall, providers),
        "significance": {
            "psr": probabilistic_sharpe_ratio(daily[LEARNED][1]),
            "daily_periods_per_year": per_year,
            "bootstrap": difference,
            "sentence": significance_sentence(difference),
        },
        "benchmark": benchmark_relative(daily[LEARNED][1], daily[BUY_AND_HOLD][1],
                                        periods_per_year=per_year),
        "regimes": by_regime,
    }, equity
