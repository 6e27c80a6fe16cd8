"""A small torch LSTM voting on reversals, retrained walk-forward before every chunk.

The label, training rows, validation split, vote and report are those of ``ml.py``
(`LSTMProvider` subclasses its `ReversalProvider`). The network reads the window of
``window`` bars of every feature column (the 12, and 12 per ``features.timeframes``)
ending AT the bar it judges, standardised with the mean and std of the training rows.

torch is imported on first training or vote, not when this module is imported, so a run
without an LSTM provider never loads it. Nothing is written to disk: the model lives in
memory and is retrained every chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtester.providers.base import Candidates, MarketContext
from backtester.providers.ml import (
    ReversalModelConfig,
    ReversalProvider,
    Samples,
    check_integer,
    check_real,
)

KIND = "lstm"
PREDICT_BATCH = 4096  # windows per forward pass when predicting


@dataclass(frozen=True, kw_only=True, slots=True)
class LSTMProviderConfig(ReversalModelConfig):
    """An LSTM over feature windows, trained with binary cross-entropy (Adam).

    Parameters
    ----------
    window : int, default 32
        Bars per input window, ending at the judged bar; at least 1.
    hidden : int, default 32
        LSTM hidden units, at least 1.
    layers : int, default 1
        Stacked LSTM layers, at least 1.
    epochs : int, default 5
        Passes over the training samples, at least 1.
    batch_size : int, default 256
        Samples per gradient step, at least 1.
    learning_rate : float, default 0.001
        Adam step size, in (0, 1].
    max_train_seconds : float, default 15.0
        Training stops after this wall time even before ``epochs``, > 0. The cap makes the
        model depend on the machine's speed and load: a slower or busier machine trains
        on fewer batches, and two runs are no longer bound to agree. The default is sized
        so that at the default window, epochs and train_bars (about 48,000 pooled
        training windows for 3 assets) the epochs end first on a 2-core machine: an epoch
        took about 1.5 s there idle and 2 to 3 s with the other core busy. ``prepare``
        reports ``stopped_by_time`` = 1 when the cap cut training short.
    threads : int, default 1
        torch intra-op threads while training and predicting, at least 1. On 2 cores a
        second thread saved 15% of an epoch on an idle machine but made it up to 6 times
        slower while other work shared the cores.

    The shared fields are those of `ReversalModelConfig`.
    """

    name: str = KIND
    window: int = 32
    hidden: int = 32
    layers: int = 1
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    max_train_seconds: float = 15.0
    threads: int = 1

    def __post_init__(self) -> None:
        self.check_label_fields()
        for field in ("window", "hidden", "layers", "epochs", "batch_size", "threads"):
            check_integer(self, field, 1)
        check_real(self, "learning_rate", 0.0, 1.0, low_open=True, high_open=False)
        check_real(self, "max_train_seconds", 0.0, math.inf, low_open=True)


CONFIG_CLASS = LSTMProviderConfig


def _torch() -> Any:
    import torch

    return torch


@contextmanager
def _torch_settings(threads: int, seed: int | None = None) -> Iterator[Any]:
    """Deterministic torch on ``threads`` threads, seeded; restores the caller's settings."""
    torch = _torch()
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield torch
        finally:
            torch.set_num_threads(threads_before)
            torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)


def windows_complete(features: np.ndarray, window: int) -> np.ndarray:
    """True where the ``window`` rows ending at (bar, asset) are all finite, (n_bars, n_assets).

    False for the first ``window - 1`` bars.
    """
    bad = (~np.isfinite(features).all(axis=2)).astype(np.int64)
    count = np.cumsum(bad, axis=0)
    out = np.zeros(bad.shape, dtype=bool)
    if features.shape[0] >= window:
        before = np.vstack([np.zeros((1, bad.shape[1]), np.int64), count[:-window]])
        out[window - 1 :] = count[window - 1 :] - before == 0
    return out


def gather_windows(values: np.ndarray, bar: np.ndarray, asset: np.ndarray,
                   window: int) -> np.ndarray:
    """Rows ``bar - window + 1 .. bar`` of ``values[:, asset]``: (k, window, n_features)."""
    rows = bar[:, None] + np.arange(1 - window, 1)
    return values[rows, asset[:, None]]


class LSTMProvider(ReversalProvider):
    """Votes on reversals with an LSTM over the last ``window`` bars of features.

    Training is seeded and deterministic (``torch.use_deterministic_algorithms``) as long
    as ``max_train_seconds`` does not cut it short; the global torch random state, thread
    count and determinism flag are restored afterwards. ``prepare`` trains on windows
    ending before ``start - horizon``.
    """

    config: LSTMProviderConfig

    def __init__(self, config: LSTMProviderConfig | None = None) -> None:
        super().__init__(config if config is not None else LSTMProviderConfig())
        self._mean = np.zeros(0)
        self._std = np.ones(0)

    def _empty_report(self) -> dict[str, float]:
        return {**super()._empty_report(), "epochs": 0.0, "stopped_by_time": 0.0}

    def _first_valid(self) -> int:
        return max(self.config.trend_lookback, self.config.window - 1)

    def _samples(self, features: np.ndarray, labels: np.ndarray,
                 rows: np.ndarray) -> tuple[Samples, Samples]:
        """The pooled samples whose whole window is finite (`windows_complete`)."""
        complete = windows_complete(features, self.config.window)
        train, validation = super()._samples(features, labels, rows)
        return _keep_complete(train, complete), _keep_complete(validation, complete)

    def _train(self, features: np.ndarray, rows: np.ndarray, train: Samples,
               validation: Samples) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        c = self.config
        at_train = features[train[0], train[1]]
        self._mean = at_train.mean(axis=0)
        std = at_train.std(axis=0)
        self._std = np.where(std > 0, std, 1.0)
        # only the bars the windows read are standardised; indices shift by `first`
        first = int(rows[0]) - (c.window - 1)
        standardised = self._standardise(features[first:])
        train_at = (train[0] - first, train[1], train[2])
        with _torch_settings(c.threads, c.seed) as torch:
            self._model, epochs, stopped = self._fit(torch, standardised, train_at)
            p_train = self._predict(torch, standardised, train_at[0], train_at[1])
            p_validation = self._predict(torch, standardised, validation[0] - first,
                                         validation[1])
        return p_train, p_validation, {"epochs": epochs, "stopped_by_time": float(stopped)}

    def _fit(self, torch: Any, standardised: np.ndarray,
             train: Samples) -> tuple[Any, float, bool]:
        c = self.config
        n_features = standardised.shape[2]
        model = torch.nn.ModuleDict({
            "lstm": torch.nn.LSTM(n_features, c.hidden, c.layers, batch_first=True),
            "head": torch.nn.Linear(c.hidden, 1),
        })
        optimiser = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
        loss_function = torch.nn.BCEWithLogitsLoss()
        shuffle = np.random.default_rng(c.seed)
        bar, asset, y = train
        targets = torch.from_numpy(y.astype(np.float32))
        batches_per_epoch = math.ceil(len(y) / c.batch_size)
        batches, stopped = 0, False
        loop_began = time.perf_counter()
        model.train()
        for _ in range(c.epochs):
            order = shuffle.permutation(len(y))
            for first in range(0, len(y), c.batch_size):
                pick = order[first : first + c.batch_size]
                x = torch.from_numpy(gather_windows(standardised, bar[pick], asset[pick], c.window))
                loss = loss_function(_logits(model, x), targets[pick])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                batches += 1
                if time.perf_counter() - loop_began >= c.max_train_seconds:
                    stopped = batches < batches_per_epoch * c.epochs
                    break
            if stopped:
                break
        model.eval()
        return model, batches / batches_per_epoch, stopped

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        """Features scaled by the training rows' mean and std, float32 (NaN kept)."""
        return ((values - self._mean) / self._std).astype(np.float32)

    def _predict(self, torch: Any, standardised: np.ndarray, bar: np.ndarray,
                 asset: np.ndarray) -> np.ndarray:
        """P(reversal) of the windows of ``standardised`` ending at (bar, asset)."""
        window = self.config.window
        return self._probability(torch, (
            gather_windows(standardised, bar[i : i + PREDICT_BATCH], asset[i : i + PREDICT_BATCH],
                           window)
            for i in range(0, len(bar), PREDICT_BATCH)
        ))

    def _probability(self, torch: Any, batches: Iterable[np.ndarray]) -> np.ndarray:
        """P(reversal) of batches of standardised windows, (k, window, n_features) each."""
        with torch.no_grad():
            logits = [_logits(self._model, torch.from_numpy(x)).double().numpy() for x in batches]
        logits = np.concatenate(logits) if logits else np.zeros(0)
        return 1.0 / (1.0 + np.exp(-logits))

    def reversal_probability(self, context: MarketContext, candidates: Candidates) -> np.ndarray:
        """P(reversal) from the window ending at each candidate's bar.

        NaN without a model, or where that window is incomplete (it starts before bar 0 or
        holds a NaN feature).
        """
        c = self.config
        out = np.full(len(candidates), np.nan)
        if self._model is None or len(candidates) == 0:
            return out
        bar, asset = candidates.bar, candidates.asset
        inside = bar >= c.window - 1
        windows = gather_windows(context.features, np.where(inside, bar, c.window - 1), asset,
                                 c.window)
        ok = inside & np.isfinite(windows).all(axis=(1, 2))
        if ok.any():
            standardised = self._standardise(windows[ok])
            with _torch_settings(c.threads) as torch:
                out[ok] = self._probability(torch, (
                    standardised[i : i + PREDICT_BATCH]
                    for i in range(0, len(standardised), PREDICT_BATCH)
                ))
        return out


def _logits(model: Any, x: Any) -> Any:
    out, _ = model["lstm"](x)
    return model["head"](out[:, -1]).squeeze(1)


def _keep_complete(samples: Samples, complete: np.ndarray) -> Samples:
    bar, asset, y = samples
    keep = complete[bar, asset]
    return bar[keep], asset[keep], y[keep]


PROVIDER_CLASS = LSTMProvider
