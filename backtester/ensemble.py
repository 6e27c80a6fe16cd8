"""Combine provider votes into trading decisions.

score_k = sum_i w_i * vote_ik * confidence_ik / sum_i w_i, in [-1, 1], over providers i
voting on candidate k. A candidate becomes a decision when |score| >= threshold, in the
direction of the score; shorts are dropped when the config disallows them. Weights are
equal for now; learning them between chunks belongs here too (one place for the idea).
"""

from __future__ import annotations

import hashlib

import numpy as np

from backtester.config import EnsembleConfig, ExecutionConfig
from backtester.engine import Decisions
from backtester.providers.base import Candidates, Votes


def equal_weights(n_providers: int) -> np.ndarray:
    """Equal weights summing to one."""
    return np.full(n_providers, 1.0 / n_providers)


def ensemble_scores(votes: list[Votes], weights: np.ndarray) -> np.ndarray:
    """Weighted mean of vote * confidence per candidate (see the module docstring)."""
    signed = np.stack([v.vote.astype(np.float64) * v.confidence for v in votes])
    return weights @ signed / weights.sum()


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
) -> Decisions:
    """Decisions arrays for bars [start, stop) from candidate scores."""
    decisions = Decisions.empty(stop - start, n_assets)
    direction = np.sign(scores).astype(np.int8)
    keep = np.abs(scores) >= ensemble.threshold
    if not execution.allow_short:
        keep &= direction > 0
    rows, cols = candidates.bar[keep] - start, candidates.asset[keep]
    decisions.direction[rows, cols] = direction[keep]
    decisions.size[rows, cols] = execution.position_size
    decisions.stop_loss[rows, cols] = execution.stop_loss
    decisions.take_profit[rows, cols] = execution.take_profit
    decisions.decision_id[rows, cols] = ids[keep]
    return decisions
