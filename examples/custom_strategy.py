"""A complete user strategy, loaded by bt from this file: no edit inside bt.

Use it from a config (the path is relative to the config file's folder)::

    [strategies.rsi_extremes]
    class = "custom_strategy.py:RsiExtremes"
    oversold = 25.0          # the other keys are RsiExtremesConfig's fields

or as ``class = "custom_strategy:RsiExtremes"`` when this folder is on ``sys.path``.

The strategy protocol
---------------------
A strategy has

* ``name``: the ``[strategies.<name>]`` table it answers to; no built-in strategy's name;
* ``config_class``: a frozen, keyword-only dataclass of its parameters whose ``name``
  (a ClassVar) equals the strategy's; bt checks the table's keys against its fields
  (unknown keys get a "did you mean") and the values against their types, and the
  dataclass checks ranges in ``__post_init__`` by raising ``ConfigError``;
* a constructor taking that config;
* ``propose(context, start, stop)``: a bool array (stop - start, n_assets), True where
  it proposes an entry on bars [start, stop);
* ``vote(context, candidates, similar=None)``: a ``Votes`` with one vote in {-1, 0, +1}
  and one confidence in [0, 1] per candidate, on every strategy's candidates;
* ``prepare(context, start, stop)`` and ``report()``: per-chunk hooks returning dicts of
  figures (rules learn nothing: ``{}``).

Subclassing ``strategies.Strategy`` gives ``propose``, ``vote``, ``prepare`` and
``report`` from one method, ``signals(context)``, which returns three bars x assets
arrays over the whole loaded range: ``entry`` (+1/-1 where it proposes, else 0), ``view``
(its direction at every bar) and ``confidence``. Row t must depend on bars <= t only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backtester.errors import ConfigError
from backtester.providers.base import MarketContext
from strategies import Signals, Strategy, StrategyConfig
from strategies.base import crossed_above, crossed_below, feature


@dataclass(frozen=True, kw_only=True, slots=True)
class RsiExtremesConfig(StrategyConfig):
    """RSI(14) leaving an extreme zone.

    Parameters
    ----------
    oversold : float, default 30.0
        RSI below which the market is oversold, in (0, overbought).
    overbought : float, default 70.0
        RSI above which the market is overbought, in (oversold, 100).
    full_confidence : float, default 15.0
        RSI points past the threshold at which the confidence reaches 1, > 0.
    """

    name: ClassVar[str] = "rsi_extremes"
    oversold: float = 30.0
    overbought: float = 70.0
    full_confidence: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.oversold < self.overbought < 100:
            raise ConfigError(f"oversold < overbought must both lie in (0, 100), was "
                              f"oversold={self.oversold!r}, overbought={self.overbought!r}")
        if not self.full_confidence > 0:
            raise ConfigError(f"full_confidence must be > 0, was {self.full_confidence!r}")


class RsiExtremes(Strategy):
    """Long when RSI(14) climbs back above ``oversold``, short when it falls back below
    ``overbought``; its view is the side of 50 the RSI is on."""

    name = "rsi_extremes"
    config_class = RsiExtremesConfig

    def signals(self, context: MarketContext) -> Signals:
        """Entries where RSI leaves an extreme zone; views and confidences at every bar."""
        c = self.config
        rsi = feature(context, "rsi14")  # causal: row t reads bars <= t
        entry = np.where(crossed_above(rsi, c.oversold), 1, 0)
        entry = np.where(crossed_below(rsi, c.overbought), -1, entry).astype(np.int8)
        view = np.where(rsi < c.oversold, 1, np.where(rsi > c.overbought, -1, 0))
        view = np.where(entry != 0, entry, view).astype(np.int8)
        depth = np.where(rsi < 50, c.oversold - rsi, rsi - c.overbought)
        confidence = np.clip(0.5 + np.nan_to_num(depth, nan=0.0) / c.full_confidence, 0.0, 1.0)
        return Signals(entry, view, confidence)
