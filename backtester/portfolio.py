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

from backtester.errors import ConfigError
from backtester.portfolio_config import (  # noqa: F401 - re-exported
    CORRELATION_ACTIONS,
    DEFAULT_KEY,
    SIZING_METHODS,
    VOLATILITY_MEASURES,
    CostsConfig,
    PerSymbol,
    RiskConfig,
    SizingConfig,
)

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
    import pandas as pd

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
    def of(cls, config: Any, bars: Any, days: np.ndarray | None = None) -> MarketInputs:
        """What ``config``'s rules need from ``bars`` (the spread as a fraction of the close
        when ``costs.spread_from_data``); ``days``: ``session_days`` of the bars, computed
        here when the daily loss limit needs them and none are given."""
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
            days=None if risk.daily_loss_limit <= 0 else (
                days if days is not None else session_days(bars.times, config.data.tz)),
        )

    def window(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """The simulate() keyword arguments for bars [start, stop)."""
        return {name: value[start:stop] for name in ("volume", "spread", "times", "days")
                if (value := getattr(self, name)) is not None}


class Trading:
    """How one run's decisions become fills: the rules, the per-bar inputs they read and
    the sizer, shared by the run and its shadow books so every book trades alike."""

    def __init__(self, config: Any, bars: Any) -> None:
        from backtester.engine import CheckedPrices
        from backtester.sizing import Sizer

        self.config = config
        self.bars = bars
        self.rules = engine_rules(config, bars.symbols)
        self.hold_rules = engine_rules(config, bars.symbols, hold=True)
        days = (session_days(bars.times, config.data.tz)  # once, for whichever rule needs it
                if config.risk.daily_loss_limit > 0
                or config.sizing.method == "volatility_target" else None)
        self.inputs = MarketInputs.of(config, bars, days)
        self.prices = CheckedPrices.of(bars.open, bars.high, bars.low, bars.close)  # once
        self.sizer = Sizer(config, bars, days)

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

        return simulate(*self.prices.window(start, stop), decisions, state=state,
                        rules=self.hold_rules if hold else self.rules, close_at_end=last,
                        bar_offset=start, checked_prices=True,
                        **self.inputs.window(start, stop))
