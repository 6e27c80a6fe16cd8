"""Rule strategies: propose candidate entries and vote on any candidate.

A strategy computes, once per market context, three causal bars x assets arrays:
``entry`` (where it proposes an entry, with its direction), ``view`` (its direction at
every bar, -1/0/+1) and ``confidence`` in [0, 1]. Proposing and voting read those arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backtester.providers.base import Candidates, MarketContext, Similar, Votes


@dataclass(frozen=True, kw_only=True, slots=True)
class StrategyConfig:
    """Base of every strategy's config; ``name`` is the [strategies.<name>] table."""

    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Signals:
    """A strategy's causal view of the market, bars x assets."""

    entry: np.ndarray  # int8: +1/-1 where the strategy proposes an entry, else 0
    view: np.ndarray  # int8: the direction it would vote at each bar
    confidence: np.ndarray  # float64 in [0, 1]


def feature(context: MarketContext, name: str) -> np.ndarray:
    """One feature as a (n_bars, n_assets) array, by name (``rsi14``, ``sma50_4h``)."""
    return context.feature(name)


def crossed_below(x: np.ndarray, level: float) -> np.ndarray:
    """True where x[t] < level <= x[t-1] (column-wise; NaN never crosses)."""
    out = np.zeros(x.shape, dtype=bool)
    out[1:] = (x[1:] < level) & (x[:-1] >= level)
    return out


def crossed_above(x: np.ndarray, level: float) -> np.ndarray:
    """True where x[t] > level >= x[t-1] (column-wise; NaN never crosses)."""
    out = np.zeros(x.shape, dtype=bool)
    out[1:] = (x[1:] > level) & (x[:-1] <= level)
    return out


class Strategy(ABC):
    """A rule strategy; subclasses set ``name``, ``config_class`` and ``signals``."""

    name: ClassVar[str]
    config_class: ClassVar[type[StrategyConfig]]

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self._cache: tuple[MarketContext, Signals] | None = None

    @abstractmethod
    def signals(self, context: MarketContext) -> Signals:
        """Compute entry, view and confidence over the whole context (causally)."""

    def _signals(self, context: MarketContext) -> Signals:
        if self._cache is None or self._cache[0] is not context:
            self._cache = (context, self.signals(context))
        return self._cache[1]

    def propose(self, context: MarketContext, start: int, stop: int) -> np.ndarray:
        """Where this strategy proposes entries on bars [start, stop): bool (bars, assets)."""
        return self._signals(context).entry[start:stop] != 0

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Rules learn nothing before a chunk."""
        return {}

    def report(self) -> dict[str, float]:
        """Rules have no per-chunk counters."""
        return {}

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """This strategy's vote and confidence on each candidate."""
        s = self._signals(context)
        vote = s.view[candidates.bar, candidates.asset].astype(np.int8)
        confidence = np.where(vote != 0, s.confidence[candidates.bar, candidates.asset], 0.0)
        return Votes(vote, np.nan_to_num(confidence, nan=0.0))
