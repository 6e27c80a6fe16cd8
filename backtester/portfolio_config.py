"""The [risk], [sizing] and [costs] sections' configs, apart from ``backtester.portfolio``
(which turns them into the engine's rules) so that loading a config imports neither numpy
nor pandas; ``portfolio`` re-exports every name here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from backtester.checks import require as _check

CORRELATION_ACTIONS = ("scale", "refuse")
SIZING_METHODS = ("fixed_fraction", "volatility_target", "kelly")
VOLATILITY_MEASURES = ("returns", "atr")
PerSymbol = float | dict[str, float]  # one value for every symbol, or {symbol: value}
DEFAULT_KEY = "default"  # {default = 0.05, GME = 0.5}: symbols not named get the default


def _fraction(key: str, value: float, upper: float = 1.0) -> None:
    _check(0 <= value < upper, key, value, f"a fraction in [0, {upper:g}) (0 = off)")


def _per_symbol(key: str, value: PerSymbol, *, minimum: float | None) -> None:
    items = value.items() if isinstance(value, dict) else [("", value)]
    for symbol, v in items:
        name = f"{key}.{symbol}" if symbol else key
        _check(math.isfinite(v) and (minimum is None or v >= minimum), name, v,
               "a finite number" + (f" >= {minimum:g}" if minimum is not None else ""))


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskConfig:
    """The risk manager: limits checked at every entry, halts, and their counts."""

    daily_loss_limit: float = 0.0  # no entries for the rest of the session day past this loss
    flatten_on_daily_limit: bool = False  # and close every position at that close
    max_drawdown: float = 0.0  # no entries below this drawdown from the equity peak
    drawdown_reset_bars: int = 0  # the halt lifts after this many bars (peak reset); 0 never
    max_gross_exposure: float = 0.0  # sum of |notional| / equity; 0 = no limit
    max_symbol_exposure: float = 0.0  # one position's |notional| / equity; 0 = no limit
    correlation_window: int = 0  # bars of returns in the correlation check; 0 = off
    correlation_threshold: float = 0.7
    correlation_action: str = "scale"  # scale | refuse
    cash_only: bool = False  # a long never spends more cash than the account holds

    def __post_init__(self) -> None:
        _fraction("risk.daily_loss_limit", self.daily_loss_limit)
        _fraction("risk.max_drawdown", self.max_drawdown)
        _check(0 <= self.drawdown_reset_bars <= 10_000_000, "risk.drawdown_reset_bars",
               self.drawdown_reset_bars, "an integer in [0, 10000000] (0 = never)")
        for key in ("max_gross_exposure", "max_symbol_exposure"):
            value = getattr(self, key)
            _check(0 <= value <= 100, f"risk.{key}", value, "in [0, 100] (0 = no limit)")
        _check(self.correlation_window == 0 or 2 <= self.correlation_window <= 100_000,
               "risk.correlation_window", self.correlation_window, "0 (off) or 2..100000 bars")
        _check(-1 < self.correlation_threshold < 1, "risk.correlation_threshold",
               self.correlation_threshold, "in (-1, 1)")
        _check(self.correlation_action in CORRELATION_ACTIONS, "risk.correlation_action",
               self.correlation_action, " or ".join(CORRELATION_ACTIONS))


@dataclass(frozen=True, kw_only=True, slots=True)
class SizingConfig:
    """How large a new position is, as a fraction of equity, before the risk manager."""

    method: str = "fixed_fraction"  # fixed_fraction | volatility_target | kelly
    volatility_target: float = 0.01  # a position's expected daily volatility / equity
    volatility_measure: str = "returns"  # returns (std of log returns) | atr (mean true range)
    volatility_window: int = 48  # bars, causal
    kelly_fraction: float = 0.5  # the share of the full Kelly size taken
    kelly_min_trades: int = 30  # closed trades a mix or regime needs before its own estimate
    max_fraction: float = 0.25  # no position above this fraction of equity (any method)
    confidence_scaling: bool = False  # |ensemble score| scales the size
    lot_size: PerSymbol = 0.0  # units are whole multiples of this; 0 = fractional

    def __post_init__(self) -> None:
        _check(self.method in SIZING_METHODS, "sizing.method", self.method,
               " | ".join(SIZING_METHODS))
        _check(0 < self.volatility_target <= 1, "sizing.volatility_target",
               self.volatility_target, "in (0, 1]")
        _check(self.volatility_measure in VOLATILITY_MEASURES, "sizing.volatility_measure",
               self.volatility_measure, " or ".join(VOLATILITY_MEASURES))
        _check(2 <= self.volatility_window <= 100_000, "sizing.volatility_window",
               self.volatility_window, "2..100000 bars")
        _check(0 < self.kelly_fraction <= 1, "sizing.kelly_fraction", self.kelly_fraction,
               "in (0, 1]")
        _check(1 <= self.kelly_min_trades <= 1_000_000, "sizing.kelly_min_trades",
               self.kelly_min_trades, "1..1000000")
        _check(0 < self.max_fraction <= 10, "sizing.max_fraction", self.max_fraction,
               "in (0, 10]")
        _per_symbol("sizing.lot_size", self.lot_size, minimum=0.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class CostsConfig:
    """What trading costs: fees by order type, spread, impact, and holding costs."""

    maker_fee: float | None = None  # take-profits (resting limits); unset = execution.commission
    taker_fee: float | None = None  # market fills; unset = execution.commission
    spread: float = 0.0  # full quoted spread as a fraction of price; half paid per market fill
    spread_from_data: bool = False  # use the data's spread column (price units) instead
    take_profit_margin: float = 0.0  # a take-profit fills only past target * (1 + margin)
    impact: float = 0.0  # extra slippage = impact * (quantity / bar volume) ** exponent
    impact_exponent: float = 0.5  # 0.5: the square-root law
    max_participation: float = 0.0  # an entry is at most this share of its bar's volume
    borrow_rate: PerSymbol = 0.0  # annual, charged on shorts per bar held
    funding_rate: PerSymbol = 0.0  # annual, charged on longs (perpetuals; < 0 is received)

    def __post_init__(self) -> None:
        for key in ("maker_fee", "taker_fee"):
            value = getattr(self, key)
            if value is not None:
                _check(-0.01 < value < 0.1, f"costs.{key}", value,
                       "in (-0.01, 0.1) (a maker rebate may be negative)")
        _fraction("costs.spread", self.spread, 0.1)
        _fraction("costs.take_profit_margin", self.take_profit_margin, 0.1)
        _check(0 <= self.impact <= 10, "costs.impact", self.impact, "in [0, 10]")
        _check(0 < self.impact_exponent <= 2, "costs.impact_exponent", self.impact_exponent,
               "in (0, 2]")
        _check(0 <= self.max_participation <= 1, "costs.max_participation",
               self.max_participation, "in [0, 1] (0 = no cap)")
        _per_symbol("costs.borrow_rate", self.borrow_rate, minimum=0.0)
        _per_symbol("costs.funding_rate", self.funding_rate, minimum=None)
