"""Trend following: enter when MACD momentum turns in the direction of the SMA50 trend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backtester.errors import ConfigError
from backtester.providers.base import MarketContext
from strategies.base import Signals, Strategy, StrategyConfig, crossed_above, crossed_below, feature


@dataclass(frozen=True, kw_only=True, slots=True)
class MomentumConfig(StrategyConfig):
    """Momentum: the MACD histogram crossing zero with price on the same side of SMA50."""

    name: ClassVar[str] = "momentum"
    confidence_scale: float = 0.01  # |close/SMA20 - 1| at which confidence reaches 1

    def __post_init__(self) -> None:
        if not self.confidence_scale > 0:
            raise ConfigError(f"confidence_scale must be > 0, was {self.confidence_scale!r}")


class Momentum(Strategy):
    """Long when the trend (close vs SMA50) and momentum (MACD histogram) are both up."""

    name = "momentum"
    config_class = MomentumConfig

    def signals(self, context: MarketContext) -> Signals:
        hist = feature(context, "macd_hist")
        trend = feature(context, "sma50")
        up = (hist > 0) & (trend > 0)
        down = (hist < 0) & (trend < 0)
        view = np.where(up, 1, np.where(down, -1, 0)).astype(np.int8)
        entry = np.where(crossed_above(hist, 0.0) & (trend > 0), 1, 0)
        entry = np.where(crossed_below(hist, 0.0) & (trend < 0), -1, entry).astype(np.int8)
        strength = np.abs(feature(context, "sma20")) / self.config.confidence_scale
        confidence = np.clip(np.nan_to_num(strength, nan=0.0), 0.0, 1.0)
        return Signals(entry, view, confidence)

