"""Combine provider votes into decisions, and learn the providers' weights between chunks.

Combination. For candidate k in regime r, with provider votes v_ik in {-1, 0, +1} and
confidences c_ik in [0, 1]:

    providers_k = sum_i w_ir * v_ik * c_ik / sum_i w_ir                  in [-1, 1]
    score_k     = (1 - beta) * providers_k + beta * memory_k              (beta = memory.vote_weight
                                                                           once the memory votes)

A candidate becomes a decision when |score_k| >= threshold, in the direction of the score.

Shadow scoring (after the chunk, whether or not the ensemble traded). Each non-zero vote is
scored against what the market did over the horizon H (ensemble.shadow_horizon, default
execution.max_holding_bars), truncated at the chunk's last bar so nothing beyond the
chunk is read: r_k = close[min(t + H, last)] / close[t] - 1; hit when v_ik * r_k > 0;
shadow pnl = v_ik * r_k. The gain of provider i over the n scored candidates of the
chunk is g_i = (hits_i - misses_i) / n in [-1, 1] (abstentions count 0).

Weight learning (ensemble.method), kept globally and per regime:
- mwu (default), the multiplicative-weights (Hedge) update, one round per chunk:
      w_i <- w_i * exp(eta * sqrt(n) * g_i),  then normalise and apply the floor.
  sqrt(n) scales the step with the evidence: g_i is a mean of n outcomes, so
  sqrt(n) * g_i is on the scale of a z-score; eta = ensemble.learning_rate.
- thompson: w_i proportional to a draw from Beta(hits_i + 1, misses_i + 1), drawn once per
  chunk from a generator seeded by (ensemble.seed, chunk number): deterministic.
- wilson: w_i proportional to the Wilson score lower bound (z = 1.96) of the hit rate.
- equal: 1 / P for every provider (no learning).
Floor: every weight is at least floor / P (ensemble.weight_floor), so no provider is
silenced for good; weights sum to one.
Per-regime weights use the same rule on the votes cast in that regime, and are shrunk
toward the global ones while the regime has few scored votes:
      w_ir_used = a * w_ir + (1 - a) * w_i,   a = n_r / (n_r + kappa)
with n_r the regime's scored votes so far and kappa = ensemble.regime_shrinkage.

Performance monitor: when the win rate of the last N closed trades falls below
monitor.min_win_rate, the next chunk trades monitor.size_multiplier x the position size;
every change is recorded with its reason in the memory's parameter history.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.config import EnsembleConfig, ExecutionConfig, MonitorConfig
from backtester.engine import Decisions
from backtester.providers.base import Candidates, Votes
from backtester.regime import REGIME_NAMES

COUNT_KEYS = ("votes", "hits", "shadow_pnl", "trades", "wins", "losses")


def equal_weights(n_providers: int) -> np.ndarray:
    """Equal weights summing to one."""
    return np.full(n_providers, 1.0 / n_providers)


def apply_floor(weights: np.ndarray, floor: float) -> np.ndarray:
    """Normalise to one with every weight >= floor / P (exactly, by water-filling)."""
    p = len(weights)
    w = np.clip(np.nan_to_num(weights, nan=0.0), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else equal_weights(p)
    minimum = floor / p
    if minimum <= 0:
        return w
    fixed = np.zeros(p, dtype=bool)
    for _ in range(p):  # raise the smallest to the floor, rescale the rest, repeat
        low = ~fixed & (w < minimum)
        if not low.any():
            break
        fixed |= low
        free = ~fixed
        w[fixed] = minimum
        w[free] *= (1.0 - minimum * fixed.sum()) / w[free].sum()
    return w


def provider_scores(votes: list[Votes], weights: np.ndarray) -> np.ndarray:
    """Weighted mean of vote x confidence per candidate; weights (P,) or (P, K)."""
    signed = np.stack([v.vote.astype(np.float64) * v.confidence for v in votes])
    if weights.ndim == 1:
        return weights @ signed / weights.sum()
    return (weights * signed).sum(axis=0) / weights.sum(axis=0)


# ---------------------------------------------------------------- learned weights


@dataclass(frozen=True, slots=True)
class Weights:
    """The weights used for one chunk: global, and per regime (already shrunk)."""

    names: tuple[str, ...]
    overall: np.ndarray  # (P,)
    by_regime: dict[int, np.ndarray]  # regime code -> (P,)

    def for_candidates(self, regimes: np.ndarray) -> np.ndarray:
        """(P, K) weights for candidates in the given regimes."""
        out = np.repeat(self.overall[:, None], len(regimes), axis=1)
        for code, weights in self.by_regime.items():
            out[:, regimes == code] = weights[:, None]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall": dict(zip(self.names, map(float, self.overall))),
            "by_regime": {REGIME_NAMES[c]: dict(zip(self.names, map(float, w)))
                          for c, w in sorted(self.by_regime.items())},
        }


def empty_stats() -> dict[str, Any]:
    """Learning state of a new memory: provider and regime tables."""
    return {"providers": {}, "regimes": {}}


def _counts(table: dict[str, Any], name: str) -> dict[str, Any]:
    return table.setdefault(name, {k: 0 for k in COUNT_KEYS} | {"weight": None})


def _rule_weights(method: str, rows: list[dict[str, Any]], stored: np.ndarray,
                  rng: np.random.Generator, floor: float) -> np.ndarray:
    hits = np.array([r["hits"] for r in rows], dtype=float)
    misses = np.array([r["votes"] - r["hits"] for r in rows], dtype=float)
    if method == "mwu":
        raw = stored
    elif method == "thompson":
        raw = rng.beta(hits + 1.0, misses + 1.0)
    elif method == "wilson":
        raw = np.array([wilson_lower_bound(h, h + m) for h, m in zip(hits, misses)])
    else:
        raw = np.ones(len(rows))
    return apply_floor(raw, floor)


def wilson_lower_bound(hits: float, n: float, z: float = 1.96) -> float:
    """Wilson score interval's lower bound of a hit rate (0 with no trials)."""
    if n <= 0:
        return 0.0
    p = hits / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def current_weights(names: list[str], stats: dict[str, Any], config: EnsembleConfig,
                    generation: int) -> Weights:
    """The weights to trade the next chunk with, from what earlier chunks learned."""
    rng = np.random.default_rng([config.seed, generation])
    p = len(names)
    providers = stats["providers"]
    rows = [providers.get(n, {k: 0 for k in COUNT_KEYS} | {"weight": None}) for n in names]
    stored = np.array([r["weight"] if r["weight"] is not None else 1.0 / p for r in rows])
    overall = _rule_weights(config.method, rows, stored, rng, config.weight_floor)
    by_regime = {}
    for regime_name, table in sorted(stats["regimes"].items()):
        code = next(c for c, n in REGIME_NAMES.items() if n == regime_name)
        r_rows = [table["providers"].get(n, {k: 0 for k in COUNT_KEYS} | {"weight": None})
                  for n in names]
        r_stored = np.array([r["weight"] if r["weight"] is not None else 1.0 / p
                             for r in r_rows])
        own = _rule_weights(config.method, r_rows, r_stored, rng, config.weight_floor)
        scored = table["scored"]
        a = scored / (scored + config.regime_shrinkage) if scored + config.regime_shrinkage else 1
        by_regime[code] = a * own + (1 - a) * overall
    return Weights(tuple(names), overall, by_regime)


@dataclass(frozen=True, slots=True)
class ShadowScores:
    """Every provider's votes of a chunk scored against the market (P x K arrays)."""

    voted: np.ndarray  # bool: a non-zero vote
    hit: np.ndarray  # bool: the vote's direction matched the move
    shadow_return: np.ndarray  # vote * forward return (0 where no vote or no horizon)
    scored: np.ndarray  # (K,) bool: the candidate had a horizon to score over


def shadow_scores(votes: list[Votes], candidates: Candidates, close: np.ndarray,
                  stop: int, horizon: int) -> ShadowScores:
    """Score every vote against close[min(t + horizon, stop - 1)] / close[t] - 1."""
    bar, asset = candidates.bar, candidates.asset
    end = np.minimum(bar + horizon, stop - 1)
    forward = close[end, asset] / close[bar, asset] - 1.0
    scored = end > bar
    stacked = np.stack([v.vote for v in votes]).astype(np.int8)
    voted = (stacked != 0) & scored
    signed = stacked * forward
    return ShadowScores(voted, voted & (signed > 0), np.where(voted, signed, 0.0), scored)


def learn(
    stats: dict[str, Any],
    names: list[str],
    scores: ShadowScores,
    candidate_regimes: np.ndarray,
    used: Weights,
    traded: list[tuple[dict[str, int], int, float]],
    config: EnsembleConfig,
    label: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold one chunk into the learning state; return (new stats, the chunk's counts).

    ``traded`` lists each closed trade as ({provider: vote}, direction, pnl): a provider
    that voted the trade's direction counts it in trades/wins/losses.
    """
    new = {"providers": {n: dict(v) for n, v in stats["providers"].items()},
           "regimes": {r: {"scored": t["scored"],
                           "providers": {n: dict(v) for n, v in t["providers"].items()}}
                       for r, t in stats["regimes"].items()}}
    chunk_counts: dict[str, Any] = {"providers": {}, "regimes": {}}

    def fold(table: dict[str, Any], mask: np.ndarray, weights: np.ndarray,
             counts_out: dict[str, Any]) -> int:
        n = int((scores.scored & mask).sum())
        gains = []
        for i, name in enumerate(names):
            voted = scores.voted[i] & mask
            row = _counts(table, name)
            delta = {"votes": int(voted.sum()), "hits": int((scores.hit[i] & mask).sum()),
                     "shadow_pnl": float(scores.shadow_return[i][mask].sum())}
            for key, value in delta.items():
                row[key] += value
            counts_out[name] = delta
            gains.append((2 * delta["hits"] - delta["votes"]) / n if n else 0.0)
        if config.method == "mwu":
            grown = weights * np.exp(config.learning_rate * math.sqrt(n) * np.array(gains))
            for name, w in zip(names, apply_floor(grown, config.weight_floor)):
                table[name]["weight"] = float(w)
        return n

    everything = np.ones(len(scores.scored), dtype=bool)
    fold(new["providers"], everything, used.overall, chunk_counts["providers"])
    for code in np.unique(candidate_regimes):
        if code not in REGIME_NAMES or code < 0:
            continue
        name = REGIME_NAMES[int(code)]
        table = new["regimes"].setdefault(name, {"scored": 0, "providers": {}})
        mask = candidate_regimes == code
        stored = [table["providers"].get(p, {}).get("weight") for p in names]
        own = np.array([1.0 / len(names) if w is None else w for w in stored])
        counts: dict[str, Any] = {}
        table["scored"] += fold(table["providers"], mask, own, counts)
        chunk_counts["regimes"][name] = counts

    for provider_votes, direction, pnl in traded:
        for name, vote in provider_votes.items():
            if vote == direction and name in new["providers"]:
                row = new["providers"][name]
                row["trades"] += 1
                row["wins" if pnl > 0 else "losses"] += 1

    for i, name in enumerate(names):
        row = new["providers"][name]
        final = row["weight"] if config.method == "mwu" else float(used.overall[i])
        row["weight"] = final
        row.setdefault("weight_history", []).append({"chunk": label,
                                                     "weight": float(used.overall[i])})
    return new, chunk_counts


def monitor_size(parameters: dict[str, Any], wins: list[bool], config: MonitorConfig,
                 label: str) -> dict[str, Any]:
    """Update the size multiplier from the last ``config.window`` trades' win rate."""
    recent = (parameters.get("recent_wins", []) + [bool(w) for w in wins])[-config.window:]
    multiplier = parameters.get("size_multiplier", 1.0)
    history = list(parameters.get("history", []))
    if config.enabled and len(recent) >= config.window:
        rate = sum(recent) / len(recent)
        wanted = config.size_multiplier if rate < config.min_win_rate else 1.0
        if wanted != multiplier:
            comparison = "below" if rate < config.min_win_rate else "back at or above"
            history.append({
                "chunk": label, "parameter": "size_multiplier", "old": multiplier,
                "new": wanted,
                "reason": f"win rate of the last {len(recent)} trades {rate:.1%} is "
                          f"{comparison} {config.min_win_rate:.0%}",
            })
            multiplier = wanted
    return {"size_multiplier": multiplier, "recent_wins": recent, "history": history}


# ---------------------------------------------------------------- decisions


def decision_ids(symbols: np.ndarray, times: np.ndarray, config_hash: str) -> np.ndarray:
    """Deterministic int64 ids from (symbol, bar time, config hash): a re-run gives the same."""
    out = np.empty(len(times), dtype=np.int64)
    salt = config_hash.encode()
    for k, (symbol, time) in enumerate(zip(symbols, times.tolist())):
        digest = hashlib.blake2b(f"{symbol}|{time}".encode(), digest_size=8, key=salt[:64])
        out[k] = int.from_bytes(digest.digest(), "little", signed=True)
    return out


def build_decisions(
    candidates: Candidates,
    scores: np.ndarray,
    ids: np.ndarray,
    *,
    start: int,
    stop: int,
    n_assets: int,
    ensemble: EnsembleConfig,
    execution: ExecutionConfig,
    size_multiplier: float = 1.0,
) -> Decisions:
    """Decisions arrays for bars [start, stop) from candidate scores."""
    decisions = Decisions.empty(stop - start, n_assets)
    direction = np.sign(scores).astype(np.int8)
    keep = np.abs(scores) >= ensemble.threshold
    if not execution.allow_short:
        keep &= direction > 0
    rows, cols = candidates.bar[keep] - start, candidates.asset[keep]
    decisions.direction[rows, cols] = direction[keep]
    decisions.size[rows, cols] = execution.position_size * size_multiplier
    decisions.stop_loss[rows, cols] = execution.stop_loss
    decisions.take_profit[rows, cols] = execution.take_profit
    decisions.decision_id[rows, cols] = ids[keep]
    return decisions
