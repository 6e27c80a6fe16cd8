"""A user provider wrapping a scikit-learn model, trained walk-forward before each chunk.

Use it from a config (the path is relative to the config file's folder)::

    [providers.logit]
    class = "custom_provider.py:LogisticProvider"
    horizon = 8              # the other keys are LogisticProviderConfig's fields

The provider protocol
---------------------
A provider has

* ``config_class`` (or ``CONFIG_CLASS``): a frozen, keyword-only dataclass of its
  parameters with a ``name`` field (bt sets it to the table name); bt checks the table's
  keys against its fields ("did you mean" included) and ``__post_init__`` checks ranges
  by raising ``ConfigError``. Fields named ``train_bars`` and ``horizon`` make bt load
  that much history before the period, so the first chunk has bars to train on;
* a constructor taking that config (add a ``cache_dir`` keyword to get a cache folder)
  and a ``name`` equal to ``config.name``;
* ``prepare(context, start, stop) -> dict``: called once before each chunk of bars
  [start, stop); a model trains here on what was known before ``start`` only: a label
  that reads ``horizon`` bars ahead allows training rows t < start - horizon. Returns
  figures of the chunk (train accuracy, samples) kept in the memory's stats;
* ``vote(context, candidates, similar=None) -> Votes``: one vote in {-1, 0, +1} and one
  confidence in [0, 1] per candidate (``candidates.bar``, ``candidates.asset``), reading
  rows <= each candidate's bar; ``abstained`` marks candidates it has no opinion on. bt
  checks the shape and values and names the provider in one line when they are wrong;
* ``report() -> dict``: the chunk's figures (here: those of the last prepare);
* optional: ``uses_similar = True`` to receive the memory's nearest past situations in
  ``similar``, and ``propose(context, start, stop)`` to propose candidates of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.errors import ConfigError
from backtester.providers.base import Candidates, MarketContext, Similar, Votes


@dataclass(frozen=True, kw_only=True, slots=True)
class LogisticProviderConfig:
    """A logistic regression of the direction ``horizon`` bars ahead on bt's features.

    Parameters
    ----------
    name : str, default "logit"
        The provider's name: the [providers.<name>] table.
    horizon : int, default 8
        Bars ahead the label looks (the sign of close[t + horizon] - close[t]), >= 1.
    train_bars : int, default 4000
        Most recent bars per asset the model trains on before each chunk, >= 100.
    regularisation : float, default 1.0
        Inverse regularisation strength (scikit-learn's ``C``), > 0.
    margin : float, default 0.02
        |P(up) - 0.5| below which the provider votes 0 (hold), in [0, 0.5).
    min_samples : int, default 200
        Fewer training samples than this and the provider abstains, >= 10.
    """

    name: str = "logit"
    horizon: int = 8
    train_bars: int = 4000
    regularisation: float = 1.0
    margin: float = 0.02
    min_samples: int = 200

    def __post_init__(self) -> None:
        for field, low in (("horizon", 1), ("train_bars", 100), ("min_samples", 10)):
            if getattr(self, field) < low:
                raise ConfigError(f"{field} must be >= {low}, was {getattr(self, field)!r}")
        if not self.regularisation > 0:
            raise ConfigError(f"regularisation must be > 0, was {self.regularisation!r}")
        if not 0 <= self.margin < 0.5:
            raise ConfigError(f"margin must be in [0, 0.5), was {self.margin!r}")


class LogisticProvider:
    """Votes the direction a logistic regression predicts; retrained before every chunk."""

    config_class = LogisticProviderConfig

    def __init__(self, config: LogisticProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.model: Any = None
        self._report: dict[str, float] = {}

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Fit on rows t with t + horizon < start: every label is known before the chunk."""
        from sklearn.linear_model import LogisticRegression  # imported when first used
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        c = self.config
        last = start - c.horizon  # exclusive: label of row t reads close[t + horizon]
        rows = np.arange(max(0, last - c.train_bars), max(0, last))
        close = context.bars.close
        x = context.features[rows].reshape(-1, context.features.shape[2])
        future = (close[rows + c.horizon] - close[rows]).reshape(-1)
        keep = np.isfinite(x).all(axis=1) & np.isfinite(future) & (future != 0)
        x, y = x[keep], (future[keep] > 0).astype(np.int8)
        self.model = None
        if len(y) >= c.min_samples and len(np.unique(y)) == 2:
            self.model = make_pipeline(StandardScaler(),
                                       LogisticRegression(C=c.regularisation, max_iter=200))
            self.model.fit(x, y)
        accuracy = float(self.model.score(x, y)) if self.model is not None else float("nan")
        self._report = {"train_samples": float(len(y)), "train_accuracy": accuracy}
        return dict(self._report)

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """+1 when P(up) > 0.5 + margin, -1 when below 0.5 - margin, else 0."""
        n = len(candidates)
        if self.model is None:  # too little history: no opinion at all
            return Votes(np.zeros(n, np.int8), np.zeros(n), abstained=np.ones(n, bool))
        x = context.features[candidates.bar, candidates.asset]
        known = np.isfinite(x).all(axis=1)
        up = np.full(n, 0.5)
        if known.any():
            up[known] = self.model.predict_proba(x[known])[:, 1]
        edge = up - 0.5
        vote = np.where(np.abs(edge) > self.config.margin, np.sign(edge), 0).astype(np.int8)
        confidence = np.where(vote != 0, np.clip(2 * np.abs(edge), 0.0, 1.0), 0.0)
        return Votes(vote, confidence, abstained=~known)

    def report(self) -> dict[str, float]:
        """The last prepare's figures."""
        return dict(self._report)
