"""The learning step of a chunk: what each decision's outcome file needs, the closed
trades as outcomes, the hit rates with and without the memory vote, and the commit of
what the chunk taught to the memory folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.config import Config
from backtester.engine import Decisions
from backtester.engine.records import EXIT_REASON_NAMES
from backtester.ensemble import (
    ShadowScores,
    Weights,
    learn,
    shadow_scores,
)
from backtester.monitor import adapt
from backtester.providers.base import Candidates, Votes
from backtester.regime import REGIME_NAMES
from backtester.sizing import learn_kelly


@dataclass(frozen=True, slots=True)
class Decided:
    """One chunk's decision step: candidates, votes, scores and the decisions array."""

    candidates: Candidates
    regimes: np.ndarray  # (K,) regime code at each candidate
    states: np.ndarray  # (K, d) state vectors (empty when the memory is off)
    votes: list[Votes]
    weights: Weights
    score: np.ndarray  # ensemble score, memory vote included
    without_memory: np.ndarray  # the providers' score alone
    memory_vote: np.ndarray
    ids: np.ndarray  # decision id per candidate
    decisions: Decisions
    size_multiplier: float
    parameters: dict[str, Any]  # the monitor's and the sizing's, in force for this chunk
    sizing: dict[str, int]  # where the sizes came from (sizing.Sizer.fractions)


def remember_decisions(open_decisions: dict[str, dict[str, Any]], names: list[str],
                       decided: Decided, chunk_start: int, volatility: np.ndarray) -> None:
    """Keep what each decision's outcome file will need once its trade closes."""
    candidates, decisions, votes = decided.candidates, decided.decisions, decided.votes
    if not len(candidates):
        return
    rows, cols = candidates.bar - chunk_start, candidates.asset
    taken = np.flatnonzero(decisions.direction[rows, cols] != 0)
    if not len(taken):
        return
    # Whole columns at once (tolist gives the same Python values as float()/int() each).
    ids = decisions.decision_id[rows, cols][taken].tolist()
    regimes = [REGIME_NAMES[code] for code in decided.regimes[taken].astype(int).tolist()]
    vol = np.nan_to_num(volatility[candidates.bar[taken], candidates.asset[taken]]).tolist()
    columns = [(name, v.vote[taken].tolist(), v.confidence[taken].tolist(),
                np.asarray(v.abstentions(), dtype=bool)[taken].tolist(),
                v.reasoning) for name, v in zip(names, votes)]
    scores = decided.score[taken].tolist()
    memory_votes = decided.memory_vote[taken].tolist()
    states = decided.states[taken].tolist()
    for j, k in enumerate(taken.tolist()):
        open_decisions[str(ids[j])] = {
            "regime": regimes[j],
            "volatility": float(vol[j]),
            "votes": {name: {"vote": int(vote[j]), "confidence": float(confidence[j]),
                             **({"abstained": True} if abstained[j] else {})}
                      for name, vote, confidence, abstained, _ in columns},
            "reasoning": " ".join(reasoning[k] for *_, reasoning in columns
                                  if reasoning and reasoning[k]),
            "ensemble_score": scores[j],
            "memory_vote": memory_votes[j],
            "state": states[j],
        }


def outcomes(open_decisions: dict[str, dict[str, Any]], trades: np.ndarray,
             symbols: np.ndarray, time: Any, label: str, generation: int,
             feature_names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Outcome dicts for the trades closed in this chunk; ``time(bar)`` gives a timestamp;
    ``feature_names`` (the context's) lets the description name higher timeframes."""
    from backtester.memory.store import SCHEMA_VERSION
    from backtester.memory.texts import STATE_NAMES, describe, state_names

    names = STATE_NAMES if feature_names is None else state_names(feature_names)

    out = []
    fields = trades.dtype.names
    symbol_names = [str(s) for s in symbols]
    for values in trades.tolist():  # Python scalars: the same values as int()/float() each
        trade = dict(zip(fields, values))
        info = open_decisions.pop(str(trade["decision_id"]), None)
        if info is None:  # opened under another config; cannot be described
            continue
        outcome = {
            "schema_version": SCHEMA_VERSION,
            "decision_id": trade["decision_id"],
            "symbol": symbol_names[trade["asset"]],
            "direction": trade["direction"],
            "entry_time": time(trade["entry_bar"]).isoformat(),
            "exit_time": time(trade["exit_bar"]).isoformat(),
            "bars_held": trade["exit_bar"] - trade["entry_bar"],
            "entry_price": trade["entry_price"],
            "exit_price": trade["exit_price"],
            "size": trade["size"],
            "pnl": trade["pnl"],
            "return_pct": trade["return_pct"],
            "fees": trade["fees"],
            **({"funding": trade["funding"]} if trade["funding"] else {}),
            "exit_reason": EXIT_REASON_NAMES[trade["exit_reason"]],
            "generation": generation,
            "chunk": label,
            **info,
        }
        outcome["description"] = describe(outcome, names)
        out.append(outcome)
    return out


def hit_rates(decided: Decided, close: np.ndarray, stop: int, horizon: int,
              threshold: float) -> dict[str, Any]:
    """Hit rates of the ensemble's decisions with and without the memory vote."""
    if not len(decided.candidates):
        return {}
    rows = [Votes(np.where(np.abs(s) >= threshold, np.sign(s), 0).astype(np.int8),
                  np.ones(len(s))) for s in (decided.score, decided.without_memory)]
    rows.append(Votes(np.sign(decided.memory_vote).astype(np.int8),
                      np.abs(decided.memory_vote)))
    scored = shadow_scores(rows, decided.candidates, close, stop, horizon)
    figures = {}
    for i, name in enumerate(("ensemble", "ensemble_without_memory", "memory_vote")):
        n = int(scored.voted[i].sum())
        figures[name] = {"votes": n, "hits": int(scored.hit[i].sum()),
                         "hit_rate": float(scored.hit[i].sum() / n) if n else None,
                         "shadow_pnl": float(scored.shadow_return[i].sum())}
    return figures


def learn_chunk(stats: dict[str, Any], parameters: dict[str, Any], names: list[str],
                decided: Decided, chunk_outcomes: list[dict[str, Any]], close: np.ndarray,
                stop: int, horizon: int, config: Config, label: str,
                reports: dict[str, dict[str, Any]]
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Fold the chunk into the learning state: (stats, parameters, the chunk's counts)."""
    if len(decided.candidates):
        scores = shadow_scores(decided.votes, decided.candidates, close, stop, horizon)
    else:
        empty = np.zeros((len(names), 0), dtype=bool)
        scores = ShadowScores(empty, empty, np.zeros(empty.shape), np.zeros(0, dtype=bool),
                              empty)
    traded = [(o["votes"], o["direction"], o["pnl"]) for o in chunk_outcomes]
    stats, counts = learn(stats, names, scores, decided.regimes, decided.weights, traded,
                          config.ensemble, label)
    for name, report in reports.items():
        if report:
            stats["providers"][name].setdefault("reports", []).append({"chunk": label,
                                                                      **report})
    parameters = adapt(parameters, [o["pnl"] > 0 for o in chunk_outcomes], config, label)
    if config.sizing.method == "kelly":
        parameters = learn_kelly(parameters, chunk_outcomes, names)
    return stats, parameters, counts


def snapshot(label: str, run_id: str, pnl: float, metrics: dict[str, float],
             candidates: int, decisions: int, weights: dict[str, Any],
             learning: dict[str, Any], books: dict[str, Any],
             counts: dict[str, Any]) -> dict[str, Any]:
    """The chunk's snapshot file: its figures, the weights it used, what it learned."""
    return {
        "chunk": label, "run_id": run_id, "pnl": float(pnl),
        "return": metrics["total_return"], "sharpe": metrics["sharpe"],
        "win_rate": metrics["win_rate"], "trades": metrics["trades"],
        "max_drawdown": metrics["max_drawdown"],
        "candidates": candidates, "decisions": decisions,
        "weights": weights, "size_multiplier": learning["size_multiplier"],
        "learning": {k: v for k, v in learning.items() if k != "size_multiplier"},
        "books": books,
        "chunk_provider_counts": counts["providers"],
        "chunk_regime_counts": counts["regimes"],
    }

