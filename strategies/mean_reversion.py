"""Mean reversion: fade RSI extremes outside the Bollinger bands, less so in trends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backtester.errors import ConfigError
from backtester.providers.base import MarketContext
from backtester.regime import TRENDING
from strategies.base import Signals, Strategy, StrategyConfig, crossed_above, crossed_below, feature


@dataclass(frozen=True, kw_only=True, slots=True)
class MeanReversionConfig(StrategyConfig):
    """Mean reversion on RSI(14) and the Bollinger position."""

    name: ClassVar[str] = "mean_reversion"
    oversold: float = 30.0
    overbought: float = 70.0
    trend_discount: float = 0.5  # confidence multiplier in TRENDING regimes

    def __post_init__(self) -> None:
        if not 0 < self.oversold < self.overbought < 100:
            raise ConfigError(
                f"oversold < overbought must both lie in (0, 100), was "
                f"oversold={self.oversold!r}, overbought={self.overbought!r}"
            )
        if not 0 <= self.trend_discount <= 1:
            raise ConfigError(f"trend_discount must be in [0, 1], was {self.trend_discount!r}")


class MeanReversion(Strategy):
    """Long when oversold below the lower band, short when overbought above the upper."""

    name = "mean_reversion"
    config_class = MeanReversionConfig

    def signals(self, context: MarketContext) -> Signals:
        c = self.config
        rsi = feature(context, "rsi14")
        band = feature(context, "bb_position")
        long_view = (rsi < c.oversold) | (band < 0)
        short_view = (rsi > c.overbought) | (band > 1)
        view = np.where(long_view & ~short_view, 1, np.where(short_view & ~long_view, -1, 0))
        entry = np.where(crossed_below(rsi, c.oversold) & (band < 0.5), 1, 0)
        entry = np.where(crossed_above(rsi, c.overbought) & (band > 0.5), -1, entry)
        # distance into the extreme zone, 20 RSI points past the threshold = full confidence
        depth = np.where(view > 0, c.oversold - rsi, rsi - c.overbought)
        confidence = np.clip(0.5 + np.nan_to_num(depth, nan=0.0) / 20.0, 0.0, 1.0)
        confidence = np.where(context.regimes == TRENDING, confidence * c.trend_discount,
                              confidence)
        return Signals(entry.astype(np.int8), view.astype(np.int8), confidence)
