"""Python side of the event loop: validate inputs, call the kernel once, wrap the results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from backtester.engine import warmup
from backtester.engine.inputs import (
    PRICE_FIELDS,
    CheckedPrices,
    check_decisions,
    check_prices,
    check_rule_inputs,
)
from backtester.engine.kernels import simulate_nb
from backtester.engine.records import (
    ACCOUNT_CASH,
    ACCOUNT_DAY_START_EQUITY,
    ACCOUNT_LAST_EQUITY,
    ACCOUNT_PEAK_EQUITY,
    ACCOUNT_SIZE,
    CLOCK_DAY,
    CLOCK_DAY_HALTED,
    CLOCK_DRAWDOWN_HALTED_AT,
    CLOCK_HISTORY_COUNT,
    CLOCK_HISTORY_POSITION,
    CLOCK_LAST_TIME,
    CLOCK_SIZE,
    NO_TIME,
    RISK_REASON_NAMES,
    RISK_REFUSED,
    RISK_RESIZED,
    RISK_SIZE,
    SIMULATION_STATUS_MESSAGES,
    STATE_ARRAY_FIELDS,
    SimulationStatus,
    trade_dt,
)
from backtester.engine.rules import Rules, pack_rules
from backtester.engine.state import EngineState, read_only, show
from backtester.errors import EngineError

__all__ = ["CheckedPrices", "Decisions", "EngineState", "PRICE_FIELDS", "Rules",
           "SimulationResult", "simulate"]


@dataclass(frozen=True, slots=True)
class Decisions:
    """Orders decided at each bar's close, shape (n_bars, n_assets) each.

    Attributes
    ----------
    direction : np.ndarray
        int8 in {-1, 0, +1, EXIT_DIRECTION}; 0 means no decision; ``EXIT_DIRECTION`` (2,
        ``backtester.engine.EXIT_DIRECTION``) closes the position at the next open and
        opens nothing (exit reason "exit").
    size : np.ndarray
        Fraction of equity to commit, > 0 where direction is -1 or +1.
    stop_loss, take_profit : np.ndarray
        Fractional distances from the fill price (0.02 = 2%); 0 or NaN means none.
    decision_id : np.ndarray
        int64 id carried into the trade the decision opens.
    """

    direction: np.ndarray
    size: np.ndarray
    stop_loss: np.ndarray
    take_profit: np.ndarray
    decision_id: np.ndarray

    @classmethod
    def empty(cls, n_bars: int, n_assets: int) -> Decisions:
        """Return writable arrays holding no decision (direction 0, id -1)."""
        shape = (n_bars, n_assets)
        return cls(
            direction=np.zeros(shape, dtype=np.int8),
            size=np.zeros(shape, dtype=np.float64),
            stop_loss=np.zeros(shape, dtype=np.float64),
            take_profit=np.zeros(shape, dtype=np.float64),
            decision_id=np.full(shape, -1, dtype=np.int64),
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.direction))


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Outputs of one call to ``simulate``.

    Attributes
    ----------
    equity : np.ndarray
        float64 (n_bars,), equity at each close (the last one after ``close_at_end``).
    open_positions : np.ndarray
        int64 (n_bars,), open positions at each close.
    trades : np.ndarray
        Closed trades (``records.trade_dt``) in the order they closed, global bar indices.
    state : EngineState
        State after the last bar, to pass to the next chunk.
    risk : dict
        Entries refused or resized by each rule in this call: name (``records.
        RISK_REASON_NAMES``) -> {"refused": n, "resized": n}.
    """

    equity: np.ndarray
    open_positions: np.ndarray
    trades: np.ndarray
    state: EngineState
    risk: dict = field(default_factory=dict)


def simulate(
    open: np.ndarray,  # noqa: A002 - named like Bars.open
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    decisions: Decisions,
    *,
    state: EngineState | None = None,
    initial_cash: float = 100_000.0,
    commission: float = 0.0,
    slippage: float = 0.0,
    max_holding_bars: int = 0,
    max_open_positions: int = 0,
    rules: Rules | None = None,
    volume: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    times: np.ndarray | None = None,
    days: np.ndarray | None = None,
    close_at_end: bool = True,
    bar_offset: int | None = None,
    use_numba: bool = True,
    checked_prices: bool = False,
) -> SimulationResult:
    """Simulate fills, exits and equity of ``decisions`` over bars x assets prices.

    A decision at bar t fills at bar t+1's open with adverse slippage; stop-loss and
    take-profit are checked inside each bar (stop first when both could hit); see
    ``kernels.simulate_nb`` for the exact order of events and ``Rules`` for the costs
    and risk limits.

    Parameters
    ----------
    open, high, low, close : np.ndarray
        Prices, shape (n_bars, n_assets), finite and > 0.
    decisions : Decisions
        Decisions of the same shape.
    state : EngineState, optional
        State returned by the previous chunk; a fresh account of ``initial_cash`` if None.
    initial_cash : float
        Starting cash when ``state`` is None.
    commission : float
        Fraction of the notional charged on each side (``Rules`` taker and maker fee).
    slippage : float
        Adverse fraction of the price on market fills (entries, signal, stop, max-hold
        and end exits); take-profits are limit fills without slippage.
    max_holding_bars : int
        Close at the close once held this many bars; 0 for no limit.
    max_open_positions : int
        Entries are refused while this many positions are open; 0 for no limit.
    rules : Rules, optional
        Costs and risk limits; replaces the four options above, which must then keep
        their defaults. None: ``Rules(taker_fee=commission, maker_fee=commission, ...)``.
    volume : np.ndarray, optional
        float (n_bars, n_assets) >= 0, traded units per bar; needed by ``rules.impact``
        and ``rules.max_participation``.
    spread : np.ndarray, optional
        float (n_bars, n_assets) >= 0, full quoted spread as a fraction of the price per
        bar; replaces ``rules.spread``.
    times : np.ndarray, optional
        int64 (n_bars,) bar start times in nanoseconds UTC, non-decreasing; needed by
        borrow and funding rates.
    days : np.ndarray, optional
        int64 (n_bars,) session-day ids (e.g. days since the epoch in the session's
        timezone), non-decreasing; needed by ``rules.daily_loss_limit``.
    close_at_end : bool
        Close every position at the last close and drop pending decisions. Set it False
        for all but the last chunk of a run.
    bar_offset : int, optional
        Global index of the first bar; defaults to ``state.next_bar`` (0 when fresh).
    use_numba : bool
        False runs the kernel's pure-Python body ``simulate_nb.py_func`` (slow; for
        debugging; its small helpers stay compiled).
    checked_prices : bool
        The prices are windows of a ``CheckedPrices`` (checked once for a whole run, as
        ``portfolio.Trading`` does): their values are not checked again, only their shape
        and dtype. False (the default) checks every price.

    Returns
    -------
    SimulationResult

    Raises
    ------
    EngineError
        If an input is malformed; the message names the field and the fix.
    """
    prices = check_prices((open, high, low, close), checked=checked_prices)
    shape = prices[0].shape
    arrays, n_decisions = check_decisions(decisions, shape)
    _check_scalars(commission, slippage, max_holding_bars, max_open_positions)
    rules = _resolve_rules(rules, commission, slippage, max_holding_bars, max_open_positions)
    n_bars, n_assets = shape
    inputs = check_rule_inputs(rules, shape, volume, spread, times, days)
    if state is None:
        state = EngineState.initial(n_assets, initial_cash, rules.correlation_window)
    _check_state(state, n_assets, rules.correlation_window)
    bar_offset = _resolve_bar_offset(bar_offset, state)
    _check_clock(state, *(None if raw is None else array
                          for raw, array in zip((times, days), inputs[2:], strict=True)))
    params, asset_params = pack_rules(
        rules, n_assets, has_volume=volume is not None, has_spread=spread is not None,
        has_times=times is not None, has_days=days is not None,
    )  # fmt: skip

    account = np.empty(ACCOUNT_SIZE, dtype=np.float64)
    account[ACCOUNT_CASH] = state.cash
    account[ACCOUNT_LAST_EQUITY] = state.last_equity
    account[ACCOUNT_DAY_START_EQUITY] = state.day_start_equity
    account[ACCOUNT_PEAK_EQUITY] = state.peak_equity
    clock = np.empty(CLOCK_SIZE, dtype=np.int64)
    clock[CLOCK_DAY] = state.day
    clock[CLOCK_DAY_HALTED] = int(state.day_halted)
    clock[CLOCK_DRAWDOWN_HALTED_AT] = state.drawdown_halted_at
    clock[CLOCK_LAST_TIME] = state.last_time
    clock[CLOCK_HISTORY_COUNT] = state.correlation_count
    clock[CLOCK_HISTORY_POSITION] = state.correlation_position
    state_arrays = [  # copies: the kernel updates them in place
        np.array(getattr(state, name), dtype=dtype) for name, dtype in STATE_ARRAY_FIELDS
    ]
    history = np.array(state.correlation_history, dtype=np.float64)
    capacity = (
        n_decisions
        + np.count_nonzero(state.units)
        + np.count_nonzero(state.pending_direction)
    )
    trades = np.zeros(max(int(capacity), 1), dtype=trade_dt)
    equity = np.empty(n_bars, dtype=np.float64)
    open_positions = np.empty(n_bars, dtype=np.int64)
    risk = np.zeros((RISK_SIZE, 2), dtype=np.int64)

    if use_numba:
        warmup.wait()  # a background compile of simulate_nb, if one runs, fills the cache
    kernel = simulate_nb if use_numba else simulate_nb.py_func
    n_trades, status = kernel(
        *prices, *arrays, params,
        asset_params, *inputs, bool(close_at_end), int(bar_offset), account, clock,
        *state_arrays, history, equity, open_positions, trades, risk,
    )  # fmt: skip
    if status != SimulationStatus.OK:
        raise EngineError(f"simulation stopped: {SIMULATION_STATUS_MESSAGES[int(status)]}")

    new_state = EngineState(
        cash=float(account[ACCOUNT_CASH]),
        **{name: read_only(array) for (name, _), array in zip(STATE_ARRAY_FIELDS, state_arrays)},
        correlation_history=read_only(history),
        last_equity=float(account[ACCOUNT_LAST_EQUITY]),
        day=int(clock[CLOCK_DAY]),
        day_start_equity=float(account[ACCOUNT_DAY_START_EQUITY]),
        day_halted=bool(clock[CLOCK_DAY_HALTED]),
        peak_equity=float(account[ACCOUNT_PEAK_EQUITY]),
        drawdown_halted_at=int(clock[CLOCK_DRAWDOWN_HALTED_AT]),
        last_time=int(clock[CLOCK_LAST_TIME]),
        correlation_count=int(clock[CLOCK_HISTORY_COUNT]),
        correlation_position=int(clock[CLOCK_HISTORY_POSITION]),
        next_bar=int(bar_offset) + n_bars,
    )
    counts = {
        name: {"refused": int(risk[k, RISK_REFUSED]), "resized": int(risk[k, RISK_RESIZED])}
        for k, name in enumerate(RISK_REASON_NAMES)
    }
    return SimulationResult(equity, open_positions, trades[:n_trades].copy(), new_state, counts)


def _resolve_rules(
    rules: Rules | None,
    commission: float,
    slippage: float,
    max_holding_bars: int,
    max_open_positions: int,
) -> Rules:
    """``rules``, or the Rules of the four legacy options when it is None."""
    if rules is None:
        return Rules(
            taker_fee=float(commission), maker_fee=float(commission), slippage=float(slippage),
            max_holding_bars=int(max_holding_bars), max_open_positions=int(max_open_positions),
        )  # fmt: skip
    if not isinstance(rules, Rules):
        raise EngineError(
            f"rules is a {type(rules).__name__}, was expected a Rules: build one with "
            "Rules(taker_fee=..., ...)"
        )
    for name, value in (
        ("commission", commission),
        ("slippage", slippage),
        ("max_holding_bars", max_holding_bars),
        ("max_open_positions", max_open_positions),
    ):
        if value != 0:
            field_name = "taker_fee and maker_fee" if name == "commission" else name
            raise EngineError(
                f"{name} is {show(value)}, was expected 0 when rules is given: set "
                f"Rules({field_name}) instead"
            )
    return rules


def _check_clock(state: EngineState, times: np.ndarray | None, days: np.ndarray | None) -> None:
    """The chunk's first time and day must not go back before the state's last ones."""
    for name, array, last in (("times", times, state.last_time), ("days", days, state.day)):
        if array is not None and last != NO_TIME and int(array[0]) < last:
            raise EngineError(
                f"{name}[0] is {int(array[0])}, was expected >= {last} (the state's last "
                f"{name[:-1]}): pass the state of the chunk right before this one"
            )


def _check_scalars(
    commission: float, slippage: float, max_holding_bars: int, max_open_positions: int
) -> None:
    for name, value in (("commission", commission), ("slippage", slippage)):
        if not isinstance(value, (int, float, np.integer, np.floating)) or not (
            math.isfinite(value) and 0.0 <= value < 1.0
        ):
            raise EngineError(
                f"{name} is {show(value)}, was expected a fraction in [0, 1) (0.001 = 0.1%)"
            )
    for name, value in (
        ("max_holding_bars", max_holding_bars),
        ("max_open_positions", max_open_positions),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise EngineError(
                f"{name} is {show(value)}, was expected an int >= 0 (0 for no limit)"
            )


def _resolve_bar_offset(bar_offset: int | None, state: EngineState) -> int:
    if bar_offset is None:
        return state.next_bar
    if isinstance(bar_offset, bool) or not isinstance(bar_offset, (int, np.integer)):
        raise EngineError(f"bar_offset is {show(bar_offset)}, was expected an int >= 0")
    if bar_offset < 0:
        raise EngineError(f"bar_offset is {bar_offset}, was expected an int >= 0")
    if state.next_bar != 0 and bar_offset != state.next_bar:
        raise EngineError(
            f"bar_offset is {bar_offset}, was expected {state.next_bar} (state.next_bar): "
            "pass the state returned by the chunk that ends right before this one, or leave "
            "bar_offset out"
        )
    return int(bar_offset)


def _check_state(state: EngineState, n_assets: int, correlation_window: int) -> None:
    if not isinstance(state, EngineState):
        raise EngineError(
            f"state is a {type(state).__name__}, was expected an EngineState: pass "
            "SimulationResult.state or EngineState.initial(n_assets, cash)"
        )
    for name, _ in STATE_ARRAY_FIELDS:
        shape = np.shape(getattr(state, name))
        if shape != (n_assets,):
            raise EngineError(
                f"state.{name} has shape {shape}, was expected ({n_assets},) for {n_assets} "
                "assets: pass the state of a run over the same assets"
            )
    rows = correlation_window + 1
    shape = np.shape(state.correlation_history)
    if shape != (rows, n_assets):
        raise EngineError(
            f"state.correlation_history has shape {shape}, was expected ({rows}, {n_assets}) "
            f"for correlation_window {correlation_window}: pass a state of a run with the same "
            f"rules, or EngineState.initial(n_assets, cash, {correlation_window})"
        )
    if not (0 <= state.correlation_count <= rows and 0 <= state.correlation_position < rows):
        raise EngineError(
            f"state.correlation_count is {state.correlation_count}, was expected in [0, {rows}] "
            "with correlation_position in the ring: pass a state bt returned"
        )
    for name in ("cash", "last_equity", "day_start_equity", "peak_equity"):
        value = getattr(state, name)
        if not math.isfinite(value):
            raise EngineError(f"state.{name} is {show(value)}, was expected a finite number")
    if not np.all(np.isfinite(state.units)):
        raise EngineError("state.units holds a non-finite value: pass a state bt returned")
