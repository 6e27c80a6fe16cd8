"""Combine provider votes into decisions, and learn the providers' weights between chunks.

Combination. For candidate k in regime r, with provider votes v_ik in {-1, 0, +1},
confidences c_ik in [0, 1] and a_ik = 1 where provider i abstained on k (Votes.abstained:
a failed call, a malformed answer, a replay miss; no opinion at all):

    providers_k = sum_{i: a_ik = 0} w_ir * v_ik * c_ik / sum_{i: a_ik = 0} w_ir     in [-1, 1]
                  (0 when every provider abstained on k)
    score_k     = (1 - beta) * providers_k + beta * memory_k              (beta = memory.vote_weight
                                                                           once the memory votes)

A hold (v_ik = 0, not abstained) is an opinion: it stays in the denominator and pulls the
score toward 0. An abstention is none: it leaves the other providers' score exactly as it
is without the provider (a dead provider does not shrink every decision).
A candidate becomes a decision when |score_k| >= threshold, in the direction of the score.

Shadow scoring (after the chunk, whether or not the ensemble traded). Each non-zero vote
that is not an abstention is scored against what the market did over the horizon H
(ensemble.shadow_horizon, default execution.max_holding_bars), truncated at the chunk's
last bar so nothing beyond the chunk is read: r_k = close[min(t + H, last)] / close[t] - 1;
hit when v_ik * r_k > 0, miss otherwise; shadow pnl = v_ik * r_k. A candidate with no
bar after t before the chunk's end has no horizon and is not scored. Over the n scored
candidates of the chunk, with abstentions_i the scored candidates on which provider i
abstained and lambda = ensemble.abstention_penalty in [0, 1]:

    g_i = (hits_i - misses_i - lambda * abstentions_i) / n                in [-1, 1]

Holds count 0. At lambda = 1 a provider that always abstains gains -1, like one that is
always wrong; at lambda = 0 abstaining is neutral, like holding. Each provider's
abstention rate, abstentions_i / scored_i over every scored candidate it has seen, is kept
in the stats ("abstention_rate"; None before anything was scored).

Weight learning (ensemble.method), kept globally and per regime:
- mwu (default), the multiplicative-weights (Hedge) update, one round per chunk:
      w_i <- w_i * exp(eta * sqrt(n) * g_i),  then normalise and apply the floor.
  sqrt(n) scales the step with the evidence: g_i is a mean of n outcomes, so
  sqrt(n) * g_i is on the scale of a z-score; eta = ensemble.learning_rate.
- thompson: w_i proportional to a draw from Beta(hits_i + 1, m_i + 1), with
  m_i = misses_i + lambda * abstentions_i (an abstention is lambda of a miss), drawn once
  per chunk from a generator seeded by (ensemble.seed, chunk number): deterministic.
- wilson: w_i proportional to the Wilson score lower bound (z = 1.96) of
  hits_i / (hits_i + m_i), the same m_i.
- equal: 1 / P for every provider (no learning).
hits, misses and abstentions are cumulative over the chunks for thompson and wilson.
Floor: every weight is at least floor / P (ensemble.weight_floor), so no provider is
silenced for good; weights sum to one.
Per-regime weights use the same rule on the votes cast in that regime, and are shrunk
toward the global ones while the regime has few scored votes:
      w_ir_used = a * w_ir + (1 - a) * w_i,   a = n_r / (n_r + kappa)
with n_r the regime's scored candidates so far and kappa = ensemble.regime_shrinkage.

Trade credit. For each closed trade of direction d, provider i counts it as
- with (trades_with; also trades, and wins when pnl > 0 else losses): v_i = d, not abstained;
- against (trades_against): v_i = -d, not abstained;
- abstained (trades_abstained): abstained, or held (v_i = 0).
So a provider that only ever votes against the trades shows as such, not as "0 trades".
Stats from an older memory lack some counts: a missing count reads as 0, except
trades_with, which reads as trades (they counted the same thing).

The performance monitor, which adapts the size, threshold and volatility target between
chunks, is in ``backtester/monitor.py``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from backtester.config import EnsembleConfig, ExecutionConfig
from backtester.regime_config import REGIME_NAMES

if TYPE_CHECKING:  # at run time they are imported where used: `bt memory inspect` needs
    # provider_credit without the engine (numba) or pandas
    from backtester.engine import Decisions
    from backtester.providers.base import Candidates, Votes

COUNT_KEYS = ("votes", "hits", "shadow_pnl", "abstentions", "scored", "trades", "wins", "losses",
              "trades_with", "trades_against", "trades_abstained")


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
    """Weighted mean of vote x confidence per candidate over the providers that voted.

    Parameters
    ----------
    votes : list of Votes
        One per provider, each over the same K candidates. Abstentions
        (``Votes.abstentions()``) are left out of both sums; holds (vote 0) stay in.
    weights : np.ndarray
        (P,) global weights or (P, K) weights per candidate.

    Returns
    -------
    np.ndarray
        (K,) providers_k of the module docstring, 0 where every provider abstained.
        The sums run provider by provider, so a provider that abstains everywhere adds
        exact zeros: the scores are bit-for-bit those computed without it.
    """
    k = len(votes[0].vote)
    weights = np.asarray(weights, dtype=np.float64)
    per_candidate = np.broadcast_to(weights[:, None] if weights.ndim == 1 else weights,
                                    (len(votes), k))
    numerator, denominator = np.zeros(k), np.zeros(k)
    for v, w in zip(votes, per_candidate):
        present = ~v.abstentions()
        numerator += np.where(present, w * (v.vote.astype(np.float64) * v.confidence), 0.0)
        denominator += np.where(present, w, 0.0)
    return np.divide(numerator, denominator, out=np.zeros(k), where=denominator > 0)


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
    """The row of ``name`` in ``table``, created or completed with every count key (an
    older memory's rows lack the newer keys; trades_with counted the same as trades)."""
    row = table.setdefault(name, {"weight": None})
    row.setdefault("trades_with", row.get("trades", 0))
    for key in COUNT_KEYS:
        row.setdefault(key, 0)
    row.setdefault("weight", None)
    return row


def _rule_weights(method: str, rows: list[dict[str, Any]], stored: np.ndarray,
                  rng: np.random.Generator, floor: float, penalty: float) -> np.ndarray:
    hits = np.array([r.get("hits", 0) for r in rows], dtype=float)
    misses = np.array([r.get("votes", 0) - r.get("hits", 0) + penalty * r.get("abstentions", 0)
                       for r in rows], dtype=float)
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
    rows = [providers.get(n, {}) for n in names]
    stored = np.array([r["weight"] if r.get("weight") is not None else 1.0 / p for r in rows])
    overall = _rule_weights(config.method, rows, stored, rng, config.weight_floor,
                            config.abstention_penalty)
    by_regime = {}
    for regime_name, table in sorted(stats["regimes"].items()):
        code = next(c for c, n in REGIME_NAMES.items() if n == regime_name)
        r_rows = [table["providers"].get(n, {}) for n in names]
        r_stored = np.array([r["weight"] if r.get("weight") is not None else 1.0 / p
                             for r in r_rows])
        own = _rule_weights(config.method, r_rows, r_stored, rng, config.weight_floor,
                            config.abstention_penalty)
        scored = table["scored"]
        a = scored / (scored + config.regime_shrinkage) if scored + config.regime_shrinkage else 1
        by_regime[code] = a * own + (1 - a) * overall
    return Weights(tuple(names), overall, by_regime)


@dataclass(frozen=True, slots=True)
class ShadowScores:
    """Every provider's votes of a chunk scored against the market (P x K arrays)."""

    voted: np.ndarray  # bool: a non-zero vote, not an abstention, with a horizon
    hit: np.ndarray  # bool: the vote's direction matched the move
    shadow_return: np.ndarray  # vote * forward return (0 where no vote or no horizon)
    scored: np.ndarray  # (K,) bool: the candidate had a horizon to score over
    abstained: np.ndarray | None = None  # bool: no opinion (Votes.abstained); None = never

    def __post_init__(self) -> None:
        if self.abstained is None:
            object.__setattr__(self, "abstained", np.zeros(np.shape(self.voted), dtype=bool))


def shadow_scores(votes: list[Votes], candidates: Candidates, close: np.ndarray,
                  stop: int, horizon: int) -> ShadowScores:
    """Score every vote against close[min(t + horizon, stop - 1)] / close[t] - 1.

    ``abstained`` is each provider's ``Votes.abstentions()``, whether or not the candidate
    has a horizon; an abstention is never a vote, whatever its vote value.
    """
    bar, asset = candidates.bar, candidates.asset
    end = np.minimum(bar + horizon, stop - 1)
    forward = close[end, asset] / close[bar, asset] - 1.0
    scored = end > bar
    stacked = np.stack([v.vote for v in votes]).astype(np.int8)
    abstained = np.stack([v.abstentions() for v in votes])
    voted = (stacked != 0) & scored & ~abstained
    signed = stacked * forward
    return ShadowScores(voted, voted & (signed > 0), np.where(voted, signed, 0.0), scored,
                        abstained)


def learn(
    stats: dict[str, Any],
    names: list[str],
    scores: ShadowScores,
    candidate_regimes: np.ndarray,
    used: Weights,
    traded: list[tuple[dict[str, int | dict[str, Any]], int, float]],
    config: EnsembleConfig,
    label: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold one chunk into the learning state; return (new stats, the chunk's counts).

    Parameters
    ----------
    stats : dict
        The learning state so far (``empty_stats()`` shape); not modified. Rows of an
        older memory that lack newer count keys are completed (see the module docstring).
    names : list of str
        Provider names, in the order of the rows of ``scores`` and ``used``.
    scores : ShadowScores
        The chunk's votes scored against the market, with the abstentions.
    candidate_regimes : np.ndarray
        (K,) regime code per candidate.
    used : Weights
        The weights the chunk traded with (the mwu update starts from them).
    traded : list of tuple
        Each closed trade as (votes, direction, pnl). ``votes`` maps a provider's name to
        its vote, either an int or the outcome's vote dict {"vote": int, "abstained":
        bool, ...} (a missing "abstained" reads False), so an outcome's "votes" can be
        passed as is. Each provider counts the trade with, against or abstained (module
        docstring).
    config : EnsembleConfig
        method, learning_rate, weight_floor and abstention_penalty are read.
    label : str
        The chunk's label, for the weight history.

    Returns
    -------
    tuple of dict
        The new stats, and the chunk's counts: {"providers": {name: delta}, "regimes":
        {regime name: {name: delta}}}, delta holding votes, hits, shadow_pnl, abstentions
        and scored.
    """
    def copied(row: dict[str, Any]) -> dict[str, Any]:  # lists too: the history grows
        return {k: list(v) if isinstance(v, list) else v for k, v in row.items()}

    new = {"providers": {n: copied(v) for n, v in stats["providers"].items()},
           "regimes": {r: {"scored": t["scored"],
                           "providers": {n: copied(v) for n, v in t["providers"].items()}}
                       for r, t in stats["regimes"].items()}}
    chunk_counts: dict[str, Any] = {"providers": {}, "regimes": {}}

    penalty = config.abstention_penalty

    def fold(table: dict[str, Any], mask: np.ndarray, weights: np.ndarray,
             counts_out: dict[str, Any]) -> int:
        scored = scores.scored & mask
        n = int(scored.sum())
        gains = []
        for i, name in enumerate(names):
            voted = scores.voted[i] & mask
            row = _counts(table, name)
            delta = {"votes": int(voted.sum()), "hits": int((scores.hit[i] & mask).sum()),
                     "shadow_pnl": float(scores.shadow_return[i][mask].sum()),
                     "abstentions": int((scores.abstained[i] & scored).sum()), "scored": n}
            for key, value in delta.items():
                row[key] += value
            row["abstention_rate"] = row["abstentions"] / row["scored"] if row["scored"] else None
            counts_out[name] = delta
            misses = delta["votes"] - delta["hits"]
            gains.append((delta["hits"] - misses - penalty * delta["abstentions"]) / n
                         if n else 0.0)
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
        for name, answer in provider_votes.items():
            if name not in new["providers"]:
                continue
            row = new["providers"][name]
            if isinstance(answer, dict):
                vote, abstained = int(answer["vote"]), bool(answer.get("abstained", False))
            else:
                vote, abstained = int(answer), False
            if abstained or vote == 0:
                row["trades_abstained"] += 1
            elif vote == direction:
                row["trades_with"] += 1
                row["trades"] += 1
                row["wins" if pnl > 0 else "losses"] += 1
            else:
                row["trades_against"] += 1

    for i, name in enumerate(names):
        row = new["providers"][name]
        final = row["weight"] if config.method == "mwu" else float(used.overall[i])
        row["weight"] = final
        row.setdefault("weight_history", []).append({"chunk": label,
                                                     "weight": float(used.overall[i])})
    return new, chunk_counts


def provider_credit(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each provider is credited with, for display.

    Parameters
    ----------
    stats : dict
        The learning state (``learn``'s first return value), old memories included.

    Returns
    -------
    dict
        {provider: {votes, hit_rate (shadow hits / votes, over all its votes),
        abstentions, abstention_rate, trades_with, trades_against, trades_abstained,
        win_rate_with (wins / trades_with), weight}}; rates are None without a denominator.
    """
    out = {}
    for name, stored in stats.get("providers", {}).items():
        row = _counts({name: dict(stored)}, name)
        out[name] = {
            "votes": row["votes"],
            "hit_rate": row["hits"] / row["votes"] if row["votes"] else None,
            "abstentions": row["abstentions"],
            "abstention_rate": row["abstentions"] / row["scored"] if row["scored"] else None,
            "trades_with": row["trades_with"],
            "trades_against": row["trades_against"],
            "trades_abstained": row["trades_abstained"],
            "win_rate_with": row["wins"] / row["trades_with"] if row["trades_with"] else None,
            "weight": row["weight"],
        }
    return out


# ---------------------------------------------------------------- decisions


def decision_ids(symbols: np.ndarray, times: np.ndarray, config_hash: str) -> np.ndarray:
    """Deterministic int64 ids from (symbol, bar time, config hash): a re-run gives the same."""
    key = config_hash.encode()[:64]
    symbols = symbols.tolist() if isinstance(symbols, np.ndarray) else list(symbols)
    digests = b"".join(hashlib.blake2b(f"{symbol}|{time}".encode(), digest_size=8,
                                       key=key).digest()
                       for symbol, time in zip(symbols, times.tolist()))
    return np.frombuffer(digests, dtype="<i8").astype(np.int64)


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
    sizes: np.ndarray | None = None,
    threshold: float | None = None,
) -> Decisions:
    """Decisions arrays for bars [start, stop) from candidate scores.

    ``sizes`` is the fraction of equity per candidate (``sizing.Sizer``; a size of 0
    drops the decision); None sizes every decision at ``execution.position_size``.
    ``threshold`` replaces ``ensemble.threshold`` (the monitor may have raised it).
    """
    from backtester.engine import Decisions

    decisions = Decisions.empty(stop - start, n_assets)
    direction = np.sign(scores).astype(np.int8)
    keep = np.abs(scores) >= (ensemble.threshold if threshold is None else threshold)
    if sizes is None:
        sizes = np.full(len(scores), execution.position_size)
    keep &= sizes > 0
    if not execution.allow_short:
        keep &= direction > 0
    rows, cols = candidates.bar[keep] - start, candidates.asset[keep]
    decisions.direction[rows, cols] = direction[keep]
    decisions.size[rows, cols] = sizes[keep]
    decisions.stop_loss[rows, cols] = execution.stop_loss
    decisions.take_profit[rows, cols] = execution.take_profit
    decisions.decision_id[rows, cols] = ids[keep]
    return decisions
