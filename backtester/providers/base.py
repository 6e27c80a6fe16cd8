"""The provider protocol: a batch of candidates in, one vote per candidate out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backtester.data.bars import Bars
from backtester.errors import ConfigError
from backtester.features import FEATURE_NAMES


@dataclass(frozen=True, slots=True)
class MarketContext:
    """Everything a provider may look at, over the whole loaded range.

    A provider deciding at bar t must read rows <= t only; features and regimes are
    causal, so row t of them depends on bars <= t alone. ``feature_names`` names the
    last axis of ``features``: the 12 FEATURE_NAMES, then with ``features.timeframes``
    12 per higher timeframe (``rsi14_4h``: the last closed 4h bar's RSI, timeframes.py).
    """

    bars: Bars
    features: np.ndarray  # (n_bars, n_assets, n_features) float64
    regimes: np.ndarray  # (n_bars, n_assets) int8
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def feature(self, name: str) -> np.ndarray:
        """One feature column by name, a (n_bars, n_assets) view of ``features``."""
        try:
            column = self.feature_names.index(name)
        except ValueError:
            raise ConfigError(f"unknown feature {name!r}; valid: "
                              f"{', '.join(self.feature_names)}") from None
        return self.features[:, :, column]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate entries: (bar, asset) pairs, bar being a global bar index."""

    bar: np.ndarray  # (k,) int64
    asset: np.ndarray  # (k,) int32

    def __len__(self) -> int:
        return int(self.bar.shape[0])

    @classmethod
    def from_mask(cls, mask: np.ndarray, bar_offset: int) -> Candidates:
        """Candidates where ``mask`` (bars x assets, bool) is set, in time then asset order."""
        bars, assets = np.nonzero(mask)
        return cls((bars + bar_offset).astype(np.int64), assets.astype(np.int32))


@dataclass(frozen=True, slots=True)
class Votes:
    """One provider's answer: vote in {-1, 0, +1} and confidence in [0, 1] per candidate.

    A vote of 0 is a "hold": an opinion, counted in the ensemble. ``abstained`` marks the
    candidates on which the provider has no opinion at all (a failed call, a malformed
    answer, a replay miss): those are left out of the ensemble's normalisation and
    learned as abstentions (see ensemble.py). None means it never abstains.
    """

    vote: np.ndarray  # (k,) int8
    confidence: np.ndarray  # (k,) float64
    reasoning: tuple[str, ...] | None = None
    abstained: np.ndarray | None = None  # (k,) bool

    def abstentions(self) -> np.ndarray:
        """(k,) bool: where this provider abstained (all False when it never does)."""
        if self.abstained is None:
            return np.zeros(len(self.vote), dtype=bool)
        return np.asarray(self.abstained, dtype=bool)


Similar = list[list[dict]]  # per candidate, the k nearest past situations with outcomes


class Provider(Protocol):
    """Anything with a name that votes on a batch of candidates.

    Per chunk the runner calls ``prepare`` once (a model trains here on bars before
    ``start`` only), then ``vote`` on the chunk's candidates, then ``report`` (counters
    and figures of the chunk, e.g. train accuracy or LLM requests, for the memory stats).
    """

    name: str
    uses_similar: bool  # optional, default False: whether vote() reads ``similar``

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]: ...

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes: ...

    def report(self) -> dict[str, float]: ...
