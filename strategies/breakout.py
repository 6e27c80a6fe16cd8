"""Breakout: enter when the close leaves the prior Donchian channel, confirmed by volume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from backtester.errors import ConfigError
from backtester.providers.base import MarketContext
from strategies.base import Signals, Strategy, StrategyConfig, feature


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakoutConfig(StrategyConfig):
    """Donchian breakout over the previous ``lookback`` bars."""

    name: ClassVar[str] = "breakout"
    lookback: int = 48
    zone: float = 0.2  # top/bottom share of the channel where the view is long/short

    def __post_init__(self) -> None:
        if self.lookback < 2:
            raise ConfigError(f"lookback must be >= 2, was {self.lookback!r}")
        if not 0 < self.zone < 0.5:
            raise ConfigError(f"zone must be in (0, 0.5), was {self.zone!r}")


class Breakout(Strategy):
    """Long on a close above the prior channel high, short below the prior channel low."""

    name = "breakout"
    config_class = BreakoutConfig

    def signals(self, context: MarketContext) -> Signals:
        bars, n = context.bars, self.config.lookback
        # channel of the n bars BEFORE t (shifted by one: bar t is not in its own channel)
        upper = pd.DataFrame(bars.high).rolling(n).max().shift(1).to_numpy()
        lower = pd.DataFrame(bars.low).rolling(n).min().shift(1).to_numpy()
        close = bars.close
        with np.errstate(invalid="ignore", divide="ignore"):
            position = (close - lower) / (upper - lower)
        above, below = close > upper, close < lower
        entry = np.zeros(close.shape, dtype=np.int8)
        entry[1:] = np.where(above[1:] & ~above[:-1], 1, np.where(below[1:] & ~below[:-1], -1, 0))
        view = np.where(position >= 1 - self.config.zone, 1,
                        np.where(position <= self.config.zone, -1, 0)).astype(np.int8)
        volume_ratio = np.nan_to_num(feature(context, "volume_ratio"), nan=0.0)
        confidence = np.clip(0.25 + volume_ratio / 2.0, 0.0, 1.0)
        return Signals(entry, view, confidence)
