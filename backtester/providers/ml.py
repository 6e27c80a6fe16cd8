"""Machine-learning providers trained walk-forward on a reversal label.

Shared by the gradient-boosting provider (here) and the LSTM provider (``lstm.py``): the
label, the rows a chunk may train on, the time-ordered validation split, the mapping
from P(reversal) to a vote, and `ReversalProvider`, the base class that trains, votes and
reports with them; each provider adds only its model.

Label (horizon N, lookback M, ``min_move``): the prior move at bar t is
``d = sign(close[t] - close[t-M])``; bar t is a *reversal* (label 1) when
``close[t+N] - close[t]`` has the sign of ``-d`` and a size above ``min_move * close[t]``,
else 0. The label of bar t reads bars up to t+N, so a chunk starting at ``start`` trains
on bars ``t <= start - N - 1`` only (`training_rows`).

scikit-learn (and torch, in ``lstm.py``) are imported on first training, not when this
module is imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.checks import is_integer, is_real
from backtester.errors import ConfigError, EngineError
from backtester.providers.base import Candidates, MarketContext, Similar, Votes

KIND = "gbm"
# Fewer pooled training samples than this (or a single class) and a provider abstains.
MIN_TRAIN_SAMPLES = 200
UNDEFINED_LABEL = -1  # bars whose label needs bars outside the data (or NaN prices)
Samples = tuple[np.ndarray, np.ndarray, np.ndarray]  # (bar, asset, label), `pooled_samples`


# --- label and windows ----------------------------------------------------------------


def prior_direction(close: np.ndarray, trend_lookback: int) -> np.ndarray:
    """Sign of the move over the last ``trend_lookback`` bars, int8 (n_bars, n_assets).

    ``sign(close[t] - close[t - trend_lookback])``; 0 for the first ``trend_lookback``
    bars and where either close is NaN. Causal: row t reads bars <= t.
    """
    close = np.asarray(close, dtype=np.float64)
    out = np.zeros(close.shape, dtype=np.int8)
    if close.shape[0] > trend_lookback:
        move = close[trend_lookback:] - close[:-trend_lookback]
        out[trend_lookback:] = np.sign(np.nan_to_num(move, nan=0.0)).astype(np.int8)
    return out


def prior_direction_at(context: MarketContext, candidates: Candidates,
                       trend_lookback: int) -> np.ndarray:
    """`prior_direction` at each candidate (bar, asset), int8; 0 before ``trend_lookback``."""
    close = context.bars.close
    bar, asset = candidates.bar, candidates.asset
    past = bar - trend_lookback
    has_past = past >= 0
    move = close[bar, asset] - close[np.where(has_past, past, 0), asset]
    move = np.where(has_past, np.nan_to_num(move, nan=0.0), 0.0)
    return np.sign(move).astype(np.int8)


def reversal_labels(close: np.ndarray, horizon: int, trend_lookback: int,
                    min_move: float) -> np.ndarray:
    """Reversal label of every bar: 1, 0 or UNDEFINED_LABEL (-1), int8 (n_bars, n_assets).

    This operation looks ahead: row t reads close[t + horizon]. Label 1 when
    ``close[t+horizon] - close[t]`` has the opposite sign of the prior move
    `prior_direction` and a size above ``min_move * close[t]``; 0 otherwise (a flat prior
    move gives 0). -1 for the first ``trend_lookback`` bars, the last ``horizon`` bars
    and where a close involved is NaN.
    """
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    labels = np.full(close.shape, UNDEFINED_LABEL, dtype=np.int8)
    if n <= horizon + trend_lookback:
        return labels
    direction = prior_direction(close, trend_lookback)
    now = close[trend_lookback : n - horizon]
    past = close[: n - horizon - trend_lookback]
    future = close[trend_lookback + horizon :] - now
    reversal = (np.sign(future) == -direction[trend_lookback : n - horizon]) & (
        np.abs(future) > min_move * now
    ) & (direction[trend_lookback : n - horizon] != 0)
    defined = np.isfinite(now) & np.isfinite(past) & np.isfinite(future)
    labels[trend_lookback : n - horizon] = np.where(defined, reversal, UNDEFINED_LABEL)
    return labels


def training_rows(start: int, horizon: int, train_bars: int, first_valid: int) -> np.ndarray:
    """Bars a chunk starting at ``start`` may train on, oldest first, int64.

    A sample at bar t is labelled from bars up to t + horizon, so it is allowed only when
    ``t + horizon < start``. Returns the most recent ``train_bars`` allowed bars, none
    before ``first_valid`` (the first bar whose label and inputs can be defined).
    """
    stop = start - horizon  # exclusive: the last allowed bar is start - horizon - 1
    first = max(first_valid, stop - train_bars, 0)
    return np.arange(first, max(stop, first), dtype=np.int64)


def split_rows(rows: np.ndarray, validation_fraction: float,
               horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Split time-ordered bars into (train, validation); the validation set is the latest.

    The last ``validation_fraction`` of ``rows`` (rounded) is validation. Training bars
    whose label window reaches a validation bar (``t + horizon >= first validation bar``)
    are dropped, so no validation bar's price informs a training label.
    """
    n_validation = int(round(len(rows) * validation_fraction))
    if n_validation == 0:
        return rows, rows[:0]
    validation = rows[len(rows) - n_validation :]
    train = rows[: len(rows) - n_validation]
    return train[train + horizon < validation[0]], validation


def pooled_samples(features: np.ndarray, labels: np.ndarray,
                   rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bar, asset, label) of every usable sample at ``rows``, all assets pooled.

    A (bar, asset) pair is usable when its label is defined and no feature is NaN. Order:
    bar, then asset (time order).
    """
    usable = (labels[rows] != UNDEFINED_LABEL) & np.isfinite(features[rows]).all(axis=2)
    row_index, asset = np.nonzero(usable)
    bar = rows[row_index]
    return bar.astype(np.int64), asset.astype(np.int32), labels[bar, asset].astype(np.int8)


def votes_from_probability(probability: np.ndarray, direction: np.ndarray, margin: float,
                           confidence_gain: float) -> tuple[np.ndarray, np.ndarray]:
    """(vote int8, confidence float64) from P(reversal) and the prior move's direction.

    ``p >= 0.5 + margin``: vote against the prior move (``-direction``);
    ``p <= 0.5 - margin``: vote with it (``direction``); confidence
    ``min(1, |p - 0.5| * 2 * confidence_gain)``. Otherwise, for a flat prior move or a
    NaN probability, vote 0 with confidence 0.
    """
    p = np.asarray(probability, dtype=np.float64)
    direction = np.asarray(direction, dtype=np.int8)
    reverse = p >= 0.5 + margin
    follow = p <= 0.5 - margin
    vote = np.where(reverse, -direction, np.where(follow, direction, 0)).astype(np.int8)
    strength = np.minimum(1.0, np.abs(np.nan_to_num(p, nan=0.5) - 0.5) * 2.0 * confidence_gain)
    confidence = np.where(vote != 0, strength, 0.0)
    return vote, confidence


def accuracy(labels: np.ndarray, probability: np.ndarray) -> float:
    """Share of samples where ``probability >= 0.5`` matches the label; NaN when empty."""
    if len(labels) == 0:
        return math.nan
    return float(np.mean((probability >= 0.5) == (labels == 1)))


def majority_rate(labels: np.ndarray) -> float:
    """Accuracy of always answering the commoner class; NaN when empty."""
    if len(labels) == 0:
        return math.nan
    positive = float(np.mean(labels == 1))
    return max(positive, 1.0 - positive)


def reasoning_texts(kind: str, probability: np.ndarray, direction: np.ndarray,
                    trend_lookback: int) -> tuple[str, ...]:
    """One short line per candidate: the model's P(reversal) and the prior move."""
    moves = {1: "an up", -1: "a down", 0: "no"}
    return tuple(
        f"{kind}: no model or inputs missing" if not np.isfinite(p) else
        f"{kind}: P(reversal)={p:.2f} after {moves[int(d)]} move over {trend_lookback} bars"
        for p, d in zip(probability, direction)
    )


def check_start(context: MarketContext, start: int, stop: int) -> None:
    """Raise EngineError unless 0 <= start <= stop <= n_bars."""
    if not 0 <= start <= stop <= context.bars.n_bars:
        raise EngineError(f"prepare() needs 0 <= start <= stop <= {context.bars.n_bars} bars, "
                          f"was start={start}, stop={stop}; pass the chunk's global bar range")


# --- configuration ----------------------------------------------------------------------



def _default(config: Any, field: str) -> Any:
    return next(f.default for f in dataclasses.fields(config) if f.name == field)


def check_integer(config: Any, field: str, minimum: int) -> None:
    """Raise ConfigError unless ``config.field`` is an integer >= minimum."""
    value = getattr(config, field)
    if not (is_integer(value) and value >= minimum):
        raise ConfigError(f"providers.{config.name}.{field} must be an integer >= {minimum}, "
                          f"was {value!r}; set it to a whole number such as "
                          f"{_default(config, field)!r}")


def check_real(config: Any, field: str, low: float, high: float, *, low_open: bool = False,
               high_open: bool = True) -> None:
    """Raise ConfigError unless ``config.field`` is a finite number in the given interval."""
    value = getattr(config, field)
    ok = is_real(value) and math.isfinite(value)
    if ok:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        ok = above and below
    if not ok:
        if math.isinf(high):
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"providers.{config.name}.{field} must be a number {interval}, "
                          f"was {value!r}; set it to a value such as "
                          f"{_default(config, field)!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReversalModelConfig:
    """Label, training window and voting fields shared by the ML providers.

    Parameters
    ----------
    name : str
        The provider's name, the ``[providers.<name>]`` table.
    horizon : int, default 16
        Bars ahead the label looks (N), at least 1.
    trend_lookback : int, default 16
        Bars of the prior move (M), at least 1.
    min_move : float, default 0.002
        Smallest reversal counted, as a fraction of the close, in [0, 1).
    train_bars : int, default 20000
        Most recent allowed bars per asset to train on (assets are pooled).
    validation_fraction : float, default 0.2
        Latest share of the training bars held out for validation, in [0, 1).
    margin : float, default 0.05
        The model votes only when |P(reversal) - 0.5| >= margin, in [0, 0.5).
    confidence_gain : float, default 2.0
        confidence = min(1, |P - 0.5| * 2 * confidence_gain), > 0.
    seed : int, default 0
        Seed of the model's random numbers.
    """

    name: str = ""
    horizon: int = 16
    trend_lookback: int = 16
    min_move: float = 0.002
    train_bars: int = 20_000
    validation_fraction: float = 0.2
    margin: float = 0.05
    confidence_gain: float = 2.0
    seed: int = 0

    def check_label_fields(self) -> None:
        """Raise ConfigError on the first out-of-range shared field."""
        if not (isinstance(self.name, str) and self.name):
            raise ConfigError(f"a provider's name must be a non-empty string, was {self.name!r}; "
                              "it is the <name> of its [providers.<name>] table")
        for field in ("horizon", "trend_lookback", "train_bars"):
            check_integer(self, field, 1)
        check_integer(self, "seed", 0)
        check_real(self, "min_move", 0.0, 1.0)
        check_real(self, "validation_fraction", 0.0, 1.0)
        check_real(self, "margin", 0.0, 0.5)
        check_real(self, "confidence_gain", 0.0, math.inf, low_open=True)


# --- gradient boosting ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class GradientBoostingProviderConfig(ReversalModelConfig):
    """Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier) on the features.

    Parameters
    ----------
    max_iter : int, default 200
        Boosting rounds, at least 1.
    learning_rate : float, default 0.05
        Shrinkage, in (0, 1].
    max_depth : int, default 3
        Depth of each tree, at least 1.
    min_samples_leaf : int, default 100
        Fewest samples in a leaf, at least 1.
    threads : int, default 1
        OpenMP threads scikit-learn may use to fit and predict, at least 1. One thread
        fits the default window in about a second; more threads help little at this size
        and, on a machine busy with other work, slow the fit down many times over.

    The shared fields are those of `ReversalModelConfig`.
    """

    name: str = KIND
    max_iter: int = 200
    learning_rate: float = 0.05
    max_depth: int = 3
    min_samples_leaf: int = 100
    threads: int = 1

    def __post_init__(self) -> None:
        self.check_label_fields()
        for field in ("max_iter", "max_depth", "min_samples_leaf", "threads"):
            check_integer(self, field, 1)
        check_real(self, "learning_rate", 0.0, 1.0, low_open=True, high_open=False)


CONFIG_CLASS = GradientBoostingProviderConfig


class ReversalProvider(ABC):
    """What both ML providers share: walk-forward training on the reversal label, the vote
    and the report.

    ``prepare`` pools the samples of every asset at `training_rows`, holds out the latest
    ``validation_fraction`` (`split_rows`) and, with enough samples of both classes, calls
    `_train`; otherwise the provider abstains (no model, P(reversal) NaN, no votes). A
    subclass gives its config and model: `_train` and `reversal_probability`, and where it
    needs them `_first_valid`, `_samples` and `_empty_report`.
    """

    def __init__(self, config: ReversalModelConfig) -> None:
        self.config = config
        self.name = config.name
        self._model: Any = None
        self._report = self._empty_report()

    def _empty_report(self) -> dict[str, float]:
        """The figures of a provider that has not trained."""
        return {
            "trained": 0.0,
            "train_accuracy": math.nan,
            "validation_accuracy": math.nan,
            "validation_majority_rate": math.nan,
            "train_samples": 0.0,
            "validation_samples": 0.0,
            "train_seconds": 0.0,
        }

    def _first_valid(self) -> int:
        """The first bar whose label and model inputs can be defined."""
        return self.config.trend_lookback

    def _samples(self, features: np.ndarray, labels: np.ndarray,
                 rows: np.ndarray) -> tuple[Samples, Samples]:
        """(train, validation) samples at ``rows``, each `pooled_samples`."""
        train_rows, validation_rows = split_rows(rows, self.config.validation_fraction,
                                                 self.config.horizon)
        return (pooled_samples(features, labels, train_rows),
                pooled_samples(features, labels, validation_rows))

    @abstractmethod
    def _train(self, features: np.ndarray, rows: np.ndarray, train: Samples,
               validation: Samples) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Fit ``self._model``; return P(reversal) at train and validation, and extra figures.

        ``features`` are those of the bars before the chunk; ``rows`` the training rows.
        """

    @abstractmethod
    def reversal_probability(self, context: MarketContext, candidates: Candidates) -> np.ndarray:
        """P(reversal) at each candidate; NaN without a model or inputs."""

    def prepare(self, context: MarketContext, start: int, stop: int) -> dict[str, float]:
        """Fit on bars before ``start`` (labels included); return the fit's figures."""
        check_start(context, start, stop)
        began = time.perf_counter()
        c = self.config
        features = context.features[:start]
        labels = reversal_labels(context.bars.close[:start], c.horizon, c.trend_lookback,
                                 c.min_move)
        rows = training_rows(start, c.horizon, c.train_bars, first_valid=self._first_valid())
        train, validation = self._samples(features, labels, rows)
        self._model, self._report = None, self._empty_report()
        y_train = train[2]
        if len(y_train) < MIN_TRAIN_SAMPLES or np.unique(y_train).size < 2:
            self._report.update(train_samples=float(len(y_train)),
                                validation_samples=float(len(validation[2])),
                                train_seconds=time.perf_counter() - began)
            return dict(self._report)
        p_train, p_validation, extra = self._train(features, rows, train, validation)
        self._report = {
            "trained": 1.0,
            "train_accuracy": accuracy(y_train, p_train),
            "validation_accuracy": accuracy(validation[2], p_validation),
            "validation_majority_rate": majority_rate(validation[2]),
            "train_samples": float(len(y_train)),
            "validation_samples": float(len(validation[2])),
            "train_seconds": time.perf_counter() - began,
            **extra,
        }
        return dict(self._report)

    def vote(self, context: MarketContext, candidates: Candidates,
             similar: Similar | None = None) -> Votes:
        """Vote against the prior move when a reversal is likely, with it when unlikely."""
        c = self.config
        probability = self.reversal_probability(context, candidates)
        direction = prior_direction_at(context, candidates, c.trend_lookback)
        vote, confidence = votes_from_probability(probability, direction, c.margin,
                                                  c.confidence_gain)
        return Votes(vote, confidence,
                     reasoning_texts(self.name, probability, direction, c.trend_lookback))

    def report(self) -> dict[str, float]:
        """The last prepare's figures."""
        return dict(self._report)


class GradientBoostingProvider(ReversalProvider):
    """Votes on reversals with gradient-boosted trees retrained before every chunk.

    ``prepare`` fits on the pooled samples of every asset at `training_rows` (the older
    part; the latest ``validation_fraction`` scores the fit) and the fitted model votes
    for the chunk. The model is deterministic for a given seed and data.
    """

    config: GradientBoostingProviderConfig

    def __init__(self, config: GradientBoostingProviderConfig | None = None) -> None:
        super().__init__(config if config is not None else GradientBoostingProviderConfig())

    def _train(self, features: np.ndarray, rows: np.ndarray, train: Samples,
               validation: Samples) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        from sklearn.ensemble import HistGradientBoostingClassifier

        c = self.config
        self._model = HistGradientBoostingClassifier(
            max_iter=c.max_iter, learning_rate=c.learning_rate, max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf, early_stopping=False, random_state=c.seed,
        )
        with _openmp_threads(c.threads):
            self._model.fit(features[train[0], train[1]], train[2])
        p_train = self._predict(features[train[0], train[1]])
        p_validation = self._predict(features[validation[0], validation[1]])
        return p_train, p_validation, {}

    def reversal_probability(self, context: MarketContext, candidates: Candidates) -> np.ndarray:
        """P(reversal) at each candidate from its bar's features; NaN without a model or inputs."""
        out = np.full(len(candidates), np.nan)
        if self._model is None or len(candidates) == 0:
            return out
        x = context.features[candidates.bar, candidates.asset]
        ok = np.isfinite(x).all(axis=1)
        out[ok] = self._predict(x[ok])
        return out

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """P(reversal) of feature rows x (k, n_features) without NaN."""
        if len(x) == 0:
            return np.zeros(0)
        with _openmp_threads(self.config.threads):
            return self._model.predict_proba(x)[:, 1]


def _openmp_threads(threads: int) -> Any:
    """Limit scikit-learn's OpenMP threads inside a ``with`` block (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="openmp")


PROVIDER_CLASS = GradientBoostingProvider
