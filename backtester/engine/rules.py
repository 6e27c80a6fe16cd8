"""Portfolio rules of the event loop (costs and risk limits), checked and packed for the kernel."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from backtester.engine.records import (
    ASSET_BORROW_RATE,
    ASSET_FUNDING_RATE,
    ASSET_LOT_SIZE,
    ASSET_PARAM_SIZE,
    PARAM_CASH_ONLY,
    PARAM_CORRELATION_REFUSE,
    PARAM_CORRELATION_THRESHOLD,
    PARAM_CORRELATION_WINDOW,
    PARAM_DAILY_LOSS_LIMIT,
    PARAM_DRAWDOWN_RESET_BARS,
    PARAM_FLATTEN_ON_DAILY_LIMIT,
    PARAM_HALF_SPREAD,
    PARAM_HAS_CARRY,
    PARAM_HAS_DAYS,
    PARAM_HAS_LOT_SIZE,
    PARAM_HAS_SPREAD,
    PARAM_HAS_TIMES,
    PARAM_HAS_VOLUME,
    PARAM_IMPACT,
    PARAM_IMPACT_EXPONENT,
    PARAM_MAKER_FEE,
    PARAM_MAX_DRAWDOWN,
    PARAM_MAX_GROSS_EXPOSURE,
    PARAM_MAX_HOLDING_BARS,
    PARAM_MAX_OPEN_POSITIONS,
    PARAM_MAX_PARTICIPATION,
    PARAM_MAX_SYMBOL_EXPOSURE,
    PARAM_SIZE,
    PARAM_SLIPPAGE,
    PARAM_TAKE_PROFIT_MARGIN,
    PARAM_TAKER_FEE,
)
from backtester.errors import EngineError

CORRELATION_ACTIONS = ("scale", "refuse")
# Per-asset fields: a scalar (every asset) or one value per asset, stored as a tuple.
PER_ASSET_FIELDS = ("lot_size", "borrow_rate", "funding_rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """Costs and risk limits of the event loop; the defaults add none.

    Costs
    -----
    taker_fee : float
        Fraction of the notional paid on market fills: entries and signal, stop-loss,
        max-hold, daily-loss and end exits.
    maker_fee : float
        Fraction of the notional paid on take-profit fills (resting limit orders).
    slippage : float
        Adverse fraction of the price on market fills.
    spread : float
        Full quoted spread as a fraction of the price; half of it is paid on every
        market fill. A per-bar ``spread`` array passed to ``simulate`` replaces it.
    take_profit_margin : float
        A take-profit fills only once the bar trades through it: a long when high >=
        take * (1 + margin) (an open beyond it fills at the open), a short when low <=
        take * (1 - margin); 0 fills on a touch.
    impact : float
        Square-root-law market impact: each market fill moves ``impact * (quantity /
        bar volume) ** impact_exponent`` against the order (Almgren et al. 2005, "Direct
        estimation of equity market impact"; Toth et al. 2011, Physical Review X 1,
        021006). Needs ``volume``; an entry in a bar of no volume is refused
        (participation), an exit in such a bar pays no impact.
    impact_exponent : float
        0.5 is the square-root law.
    max_participation : float
        An entry's quantity is capped at this fraction of its fill bar's volume (resize;
        refused when the volume is 0); 0 for no cap. Exits are never capped: a position
        always closes in full. Needs ``volume``.

    Risk
    ----
    max_holding_bars : int
        Close at the close once held this many bars; 0 for no limit.
    max_open_positions : int
        Entries are refused while this many positions are open; 0 for no limit.
    daily_loss_limit : float
        Fraction of the session day's opening equity (the equity at the last close
        before the day); once equity at a close is that far below it, entries are refused
        until the next day. 0 is off; needs ``days``.
    flatten_on_daily_limit : bool
        Also close every position at the close that hit the daily limit (DAILY_LOSS).
    max_drawdown : float
        No new entries once equity at a close is <= peak * (1 - max_drawdown); 0 is off.
    drawdown_reset_bars : int
        The drawdown halt lifts this many bars after the close that started it, and the
        peak resets to the equity at that close; 0: the halt never lifts.
    max_gross_exposure : float
        Sum of |units| * price over open positions (at the fill bar's open) and the new
        entry (at its fill) <= this * equity; the entry is resized to fit, refused when
        there is no room. 0 for no limit.
    max_symbol_exposure : float
        One entry's notional <= this * equity (resize); 0 for no limit.
    correlation_window : int
        Log close-to-close returns (this many, ending at the previous close) on which an
        entry's Pearson correlation with each open position in the same direction is
        measured; 0 is off, else >= 2. No check until window + 1 closes were seen.
    correlation_threshold : float
        Correlations above it act on the entry.
    correlation_action : str
        "scale": quantity *= (1 - rho_max) / (1 - threshold), rho_max the highest
        correlation; "refuse": no entry.
    cash_only : bool
        A long entry never spends more than the cash there is (quantity * fill + fee <=
        cash; resize).
    lot_size : float or tuple of float
        Per asset (a scalar applies to all); quantities are rounded down to a multiple,
        an entry rounding to 0 is refused. 0: fractional units.
    borrow_rate : float or tuple of float
        Annual rate per asset, >= 0, charged on shorts' notional at each bar's open
        for the time since the previous bar. Needs ``times``.
    funding_rate : float or tuple of float
        Annual rate per asset charged likewise on longs (perpetual funding; negative
        is received). Needs ``times``.
    """

    taker_fee: float = 0.0
    maker_fee: float = 0.0
    slippage: float = 0.0
    spread: float = 0.0
    take_profit_margin: float = 0.0
    impact: float = 0.0
    impact_exponent: float = 0.5
    max_participation: float = 0.0
    max_holding_bars: int = 0
    max_open_positions: int = 0
    daily_loss_limit: float = 0.0
    flatten_on_daily_limit: bool = False
    max_drawdown: float = 0.0
    drawdown_reset_bars: int = 0
    max_gross_exposure: float = 0.0
    max_symbol_exposure: float = 0.0
    correlation_window: int = 0
    correlation_threshold: float = 0.7
    correlation_action: str = "scale"
    cash_only: bool = False
    lot_size: float | tuple[float, ...] = 0.0
    borrow_rate: float | tuple[float, ...] = 0.0
    funding_rate: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        for name in ("taker_fee", "maker_fee", "slippage", "spread", "take_profit_margin",
                     "daily_loss_limit", "max_drawdown"):  # fmt: skip
            _check_number(name, getattr(self, name), 0.0, 1.0, "a fraction in [0, 1)",
                          upper_open=True)  # fmt: skip
        _check_number("correlation_threshold", self.correlation_threshold, 0.0, 1.0,
                      "a correlation in [0, 1)", upper_open=True)  # fmt: skip
        _check_number("max_participation", self.max_participation, 0.0, 1.0,
                      "a fraction of the bar's volume in [0, 1] (0 for no cap)")  # fmt: skip
        for name in ("impact", "max_gross_exposure", "max_symbol_exposure"):
            _check_number(name, getattr(self, name), 0.0, math.inf,
                          "a finite number >= 0 (0 for none)")  # fmt: skip
        _check_number("impact_exponent", self.impact_exponent, 0.0, math.inf,
                      "a finite number > 0 (0.5 for the square-root law)")  # fmt: skip
        if self.impact_exponent == 0.0:
            raise EngineError(
                "impact_exponent is 0.0, was expected a finite number > 0 (0.5 for the "
                "square-root law)"
            )
        for name in ("max_holding_bars", "max_open_positions", "drawdown_reset_bars",
                     "correlation_window"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise EngineError(
                    f"{name} is {_show(value)}, was expected an int >= 0 (0 for no limit)"
                )
            object.__setattr__(self, name, int(value))
        if self.correlation_window == 1:
            raise EngineError(
                "correlation_window is 1, was expected 0 (off) or >= 2: a correlation "
                "needs at least two returns"
            )
        for name in ("flatten_on_daily_limit", "cash_only"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise EngineError(f"{name} is {_show(value)}, was expected True or False")
            object.__setattr__(self, name, bool(value))
        if self.correlation_action not in CORRELATION_ACTIONS:
            raise EngineError(
                f"correlation_action is {_show(self.correlation_action)}, was expected "
                "'scale' or 'refuse'"
            )
        for name, low, what in (
            ("lot_size", 0.0, "finite lot sizes >= 0 (0 for fractional units)"),
            ("borrow_rate", 0.0, "finite annual rates >= 0"),
            ("funding_rate", -math.inf, "finite annual rates (negative = received)"),
        ):
            object.__setattr__(self, name, _per_asset(name, getattr(self, name), low, what))

    def asset_values(self, name: str, n_assets: int) -> np.ndarray:
        """The per-asset field ``name`` as a float64 (n_assets,) array (a scalar broadcast)."""
        value = getattr(self, name)
        if isinstance(value, float):
            return np.full(n_assets, value)
        if len(value) != n_assets:
            raise EngineError(
                f"rules.{name} has {len(value)} values, was expected {n_assets} (one per "
                "asset) or a scalar: pass one value per price column"
            )
        return np.array(value, dtype=np.float64)

    @property
    def has_carry(self) -> bool:
        """Whether some borrow or funding rate is not 0 (``times`` is needed)."""
        return any(np.any(np.asarray(getattr(self, name)) != 0.0)
                   for name in ("borrow_rate", "funding_rate"))  # fmt: skip

    def to_dict(self) -> dict:
        """The fields as a plain dict (per-asset tuples kept)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def pack_rules(
    rules: Rules,
    n_assets: int,
    *,
    has_volume: bool,
    has_spread: bool,
    has_times: bool,
    has_days: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(params, asset_params): the rules as the kernel's float64 arrays (``records.PARAM_*``)."""
    params = np.zeros(PARAM_SIZE, dtype=np.float64)
    params[PARAM_TAKER_FEE] = rules.taker_fee
    params[PARAM_MAKER_FEE] = rules.maker_fee
    params[PARAM_SLIPPAGE] = rules.slippage
    params[PARAM_HALF_SPREAD] = rules.spread / 2.0
    params[PARAM_TAKE_PROFIT_MARGIN] = rules.take_profit_margin
    params[PARAM_IMPACT] = rules.impact
    params[PARAM_IMPACT_EXPONENT] = rules.impact_exponent
    params[PARAM_MAX_PARTICIPATION] = rules.max_participation
    params[PARAM_MAX_HOLDING_BARS] = rules.max_holding_bars
    params[PARAM_MAX_OPEN_POSITIONS] = rules.max_open_positions
    params[PARAM_DAILY_LOSS_LIMIT] = rules.daily_loss_limit
    params[PARAM_FLATTEN_ON_DAILY_LIMIT] = float(rules.flatten_on_daily_limit)
    params[PARAM_MAX_DRAWDOWN] = rules.max_drawdown
    params[PARAM_DRAWDOWN_RESET_BARS] = rules.drawdown_reset_bars
    params[PARAM_MAX_GROSS_EXPOSURE] = rules.max_gross_exposure
    params[PARAM_MAX_SYMBOL_EXPOSURE] = rules.max_symbol_exposure
    params[PARAM_CORRELATION_WINDOW] = rules.correlation_window
    params[PARAM_CORRELATION_THRESHOLD] = rules.correlation_threshold
    params[PARAM_CORRELATION_REFUSE] = float(rules.correlation_action == "refuse")
    params[PARAM_CASH_ONLY] = float(rules.cash_only)
    params[PARAM_HAS_VOLUME] = float(has_volume)
    params[PARAM_HAS_SPREAD] = float(has_spread)
    params[PARAM_HAS_TIMES] = float(has_times)
    params[PARAM_HAS_DAYS] = float(has_days)
    asset_params = np.zeros((n_assets, ASSET_PARAM_SIZE), dtype=np.float64)
    asset_params[:, ASSET_LOT_SIZE] = rules.asset_values("lot_size", n_assets)
    asset_params[:, ASSET_BORROW_RATE] = rules.asset_values("borrow_rate", n_assets)
    asset_params[:, ASSET_FUNDING_RATE] = rules.asset_values("funding_rate", n_assets)
    params[PARAM_HAS_CARRY] = float(has_times and rules.has_carry)
    params[PARAM_HAS_LOT_SIZE] = float(np.any(asset_params[:, ASSET_LOT_SIZE] > 0.0))
    return params, asset_params


def _show(value: object) -> str:
    """repr of a value, NumPy scalars shown as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_number(
    name: str, value: object, low: float, high: float, what: str, *, upper_open: bool = False
) -> None:
    ok = (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value
        and (value < high if upper_open else value <= high)
    )
    if not ok:
        raise EngineError(f"{name} is {_show(value)}, was expected {what}")


def _per_asset(name: str, value: object, low: float, what: str) -> float | tuple[float, ...]:
    """A scalar as a float, a sequence as a tuple of floats, both checked."""
    if isinstance(value, bool):
        raise EngineError(f"{name} is {value!r}, was expected a number or one number per asset")
    if isinstance(value, (int, float, np.integer, np.floating)):
        values, scalar = np.array([value], dtype=np.float64), True
    else:
        try:
            values = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise EngineError(
                f"{name} is {_show(value)}, was expected a number or one number per asset"
            ) from None
        scalar = False
        if values.ndim != 1 or values.size == 0:
            raise EngineError(
                f"{name} has shape {values.shape}, was expected a number or (n_assets,)"
            )
    bad = np.flatnonzero(~np.isfinite(values) | (values < low))
    if bad.size:
        where = "" if scalar else f"[{bad[0]}]"
        raise EngineError(f"{name}{where} is {_show(values[bad[0]])}, was expected {what}")
    return float(values[0]) if scalar else tuple(float(x) for x in values)
