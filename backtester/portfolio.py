"""Portfolio realism: the [risk], [sizing] and [costs] sections, and the engine rules
and per-bar inputs they become.

Every rule runs inside the event loop (``engine.kernels``); this module only turns the
configuration into the engine's ``Rules`` and the arrays a rule needs (volume, spread,
bar times, session days), so the run, its shadow books and the library all simulate
with one set of rules. Defaults switch every rule off: today's results are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtester.checks import require as _check
from backtester.errors import ConfigError

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
        _check(np.isfinite(v) and (minimum is None or v >= minimum), name, v,
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


def per_symbol(value: PerSymbol, symbols: tuple[str, ...]) -> np.ndarray:
    """One value per symbol: a number for all, or {symbol: value, default: value} (a
    symbol the data lacks is ignored, so one config serves several data sets)."""
    if not isinstance(value, dict):
        return np.full(len(symbols), float(value))
    fallback = float(value.get(DEFAULT_KEY, 0.0))
    return np.array([float(value.get(s, fallback)) for s in symbols])


def engine_rules(config: Any, symbols: tuple[str, ...], *, hold: bool = False) -> Any:
    """The engine's Rules for ``config`` over ``symbols``.

    ``hold`` (the buy-and-hold benchmark): costs and lot sizes only; no risk limit, no
    holding limit and no position cap stop a benchmark from holding.
    """
    from backtester.engine import Rules

    execution, risk, costs = config.execution, config.risk, config.costs
    fees = {"taker_fee": execution.commission if costs.taker_fee is None else costs.taker_fee,
            "maker_fee": execution.commission if costs.maker_fee is None else costs.maker_fee}
    shared = dict(
        **fees, slippage=execution.slippage, spread=costs.spread,
        take_profit_margin=costs.take_profit_margin, impact=costs.impact,
        impact_exponent=costs.impact_exponent, max_participation=costs.max_participation,
        lot_size=per_symbol(config.sizing.lot_size, symbols),
        borrow_rate=per_symbol(costs.borrow_rate, symbols),
        funding_rate=per_symbol(costs.funding_rate, symbols),
    )
    if hold:
        return Rules(**shared)
    return Rules(
        **shared, max_holding_bars=execution.max_holding_bars,
        max_open_positions=execution.max_open_positions,
        daily_loss_limit=risk.daily_loss_limit,
        flatten_on_daily_limit=risk.flatten_on_daily_limit, max_drawdown=risk.max_drawdown,
        drawdown_reset_bars=risk.drawdown_reset_bars,
        max_gross_exposure=risk.max_gross_exposure,
        max_symbol_exposure=risk.max_symbol_exposure,
        correlation_window=risk.correlation_window,
        correlation_threshold=risk.correlation_threshold,
        correlation_action=risk.correlation_action, cash_only=risk.cash_only,
    )


def session_days(times: np.ndarray, tz: str) -> np.ndarray:
    """The session day of each bar time (int64 ns, UTC) as days since 1970-01-01 in ``tz``:
    a day's loss limit resets at local midnight ("UTC" for crypto's UTC day)."""
    local = pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]"), tz="UTC")
    if tz != "UTC":
        local = local.tz_convert(tz).tz_localize(None)
    else:
        local = local.tz_localize(None)
    return (local.values.astype("datetime64[D]").astype(np.int64)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class MarketInputs:
    """The per-bar arrays the rules read, over the whole loaded range (None when unused)."""

    volume: np.ndarray | None
    spread: np.ndarray | None  # fraction of price
    times: np.ndarray | None
    days: np.ndarray | None

    @classmethod
    def of(cls, config: Any, bars: Any) -> MarketInputs:
        """What ``config``'s rules need from ``bars`` (the spread as a fraction of the close
        when ``costs.spread_from_data``)."""
        costs, risk = config.costs, config.risk
        needs_volume = costs.impact > 0 or costs.max_participation > 0
        rates = [per_symbol(costs.borrow_rate, bars.symbols),
                 per_symbol(costs.funding_rate, bars.symbols)]
        spread = None
        if costs.spread_from_data:
            if getattr(bars, "spread", None) is None:
                raise ConfigError("costs.spread_from_data is true but the data has no spread "
                                  "column; add a 'spread' column (ask - bid, in price units) "
                                  "to the files, or set costs.spread instead")
            spread = np.ascontiguousarray(bars.spread / bars.close, dtype=np.float64)
        return cls(
            volume=np.ascontiguousarray(bars.volume) if needs_volume else None,
            spread=spread,
            times=bars.times if any(np.any(r != 0) for r in rates) else None,
            days=session_days(bars.times, config.data.tz) if risk.daily_loss_limit > 0
            else None,
        )

    def window(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """The simulate() keyword arguments for bars [start, stop)."""
        return {name: value[start:stop] for name in ("volume", "spread", "times", "days")
                if (value := getattr(self, name)) is not None}


class Trading:
    """How one run's decisions become fills: the rules, the per-bar inputs they read and
    the sizer, shared by the run and its shadow books so every book trades alike."""

    def __init__(self, config: Any, bars: Any) -> None:
        from backtester.sizing import Sizer

        self.config = config
        self.bars = bars
        self.rules = engine_rules(config, bars.symbols)
        self.hold_rules = engine_rules(config, bars.symbols, hold=True)
        self.inputs = MarketInputs.of(config, bars)
        self.sizer = Sizer(config, bars, session_days(bars.times, config.data.tz))

    def initial_state(self, *, hold: bool = False) -> Any:
        """A fresh account of ``run.initial_cash`` (``hold``: for the buy-and-hold rules)."""
        from backtester.engine import EngineState

        window = (self.hold_rules if hold else self.rules).correlation_window
        return EngineState.initial(self.bars.n_assets, self.config.run.initial_cash,
                                   correlation_window=window)

    def size(self, candidates: Any, score: np.ndarray, votes: list[Any], names: list[str],
             regimes: np.ndarray, parameters: dict[str, Any]
             ) -> tuple[np.ndarray, dict[str, int]]:
        """Fractions of equity per candidate (``sizing.Sizer.fractions``); ``regimes``
        are the candidates' regime codes."""
        from backtester.regime import REGIME_NAMES
        from backtester.sizing import mix_keys

        keys = (mix_keys(names, votes, score, [REGIME_NAMES[int(r)] for r in regimes])
                if self.config.sizing.method == "kelly" else [])
        return self.sizer.fractions(candidates, score, keys, parameters)

    def simulate(self, decisions: Any, state: Any, start: int, stop: int, *, last: bool,
                 hold: bool = False) -> Any:
        """Simulate bars [start, stop) from ``state``; ``last`` closes every position at
        the end; ``hold`` uses the buy-and-hold rules (costs only)."""
        from backtester.engine import simulate

        window = self.bars.slice(start, stop)
        return simulate(window.open, window.high, window.low, window.close, decisions,
                        state=state, rules=self.hold_rules if hold else self.rules,
                        close_at_end=last, bar_offset=start, **self.inputs.window(start, stop))
