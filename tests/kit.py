"""Shared test data and stub providers (importable as `kit` from any test)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from backtester.config import Config, load_config
from backtester.data.bars import Bars
from backtester.providers.base import Candidates, MarketContext, Votes


def random_bars(n: int, seed: int = 11, n_assets: int = 3,
                start: str = "2024-12-01") -> Bars:
    """A seeded random walk with volatility and drift spells, 15-minute bars."""
    rng = np.random.default_rng(seed)
    vol = np.repeat(rng.choice([0.002, 0.004, 0.01], size=(n // 500 + 1, n_assets)), 500,
                    axis=0)[:n]
    drift = np.repeat(rng.normal(0, 0.0004, size=(n // 700 + 1, n_assets)), 700, axis=0)[:n]
    log_close = np.log(100.0) + np.cumsum(drift + vol * rng.standard_normal((n, n_assets)),
                                          axis=0)
    close = np.exp(log_close)
    open_ = np.vstack([close[:1], close[:-1]])
    spread = np.abs(rng.normal(0, 1, (n, n_assets))) * vol * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(3, 0.5, (n, n_assets))
    times = (pd.Timestamp(start, tz="UTC").as_unit("ns").value
             + np.arange(n, dtype=np.int64) * 15 * 60 * 10**9)
    return Bars(times, tuple(f"S{i}" for i in range(n_assets)), open_, high, low, close, volume,
                timeframe="15min")


def first_bar_of(bars: Bars, when: str) -> int:
    """Index of the first bar at or after ``when`` (UTC)."""
    return int(np.searchsorted(bars.times, pd.Timestamp(when, tz="UTC").value))


def make_config(tmp_path: Path, *, learning: bool = True, **overrides) -> Config:
    """The default config writing under tmp_path; hashing embedder for speed."""
    config = load_config(None, {
        "run.out_dir": str(tmp_path / "runs"), "memory.dir": str(tmp_path / "memory"),
        "memory.mode": "learn" if learning else "off", "memory.embedder": "hashing", "data.cache_dir":
        str(tmp_path / "cache"), **overrides,
    })
    return config


def with_run(config: Config, **run) -> Config:
    return replace(config, run=replace(config.run, **run))


class OracleProvider:
    """A test-only provider of known skill: it peeks at the move over the next
    ``horizon`` bars and votes it right with probability ``skill`` (seeded per candidate).
    It also proposes a candidate every ``every`` bars on every asset."""

    def __init__(self, name: str, skill: float, horizon: int, every: int = 8,
                 seed: int = 0) -> None:
        self.name, self.skill, self.horizon, self.every, self.seed = (name, skill, horizon,
                                                                      every, seed)

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        return {}

    def report(self) -> dict[str, float]:
        return {}

    def propose(self, context: MarketContext, start: int, stop: int) -> np.ndarray:
        mask = np.zeros((stop - start, context.bars.n_assets), dtype=bool)
        mask[(np.arange(start, stop) % self.every) == 0] = True
        return mask

    def vote(self, context: MarketContext, candidates: Candidates, similar=None) -> Votes:
        close = context.bars.close
        ahead = np.minimum(candidates.bar + self.horizon, len(close) - 1)
        truth = np.sign(close[ahead, candidates.asset] - close[candidates.bar, candidates.asset])
        # a deterministic coin per (bar, asset, provider seed)
        coin = np.random.default_rng([self.seed, 7]).random(len(close) * 64)
        u = coin[(candidates.bar * 7 + candidates.asset) % len(coin)]
        vote = np.where(u < self.skill, truth, -truth).astype(np.int8)
        return Votes(vote, np.ones(len(candidates)))


def write_config(path: Path, **changes) -> Path:
    """configs/default.toml with dotted-key ``changes`` (e.g. memory__embedder="hashing"),
    written to ``path``; keys use ``__`` for the dot."""
    from backtester.config import dump_toml

    overrides = {key.replace("__", "."): value for key, value in changes.items()}
    config = load_config(None, overrides)
    path.write_text(dump_toml(config.to_dict()))
    return path
