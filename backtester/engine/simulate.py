"""Python side of the event loop: validate inputs, call the kernel once, wrap the results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backtester.engine.kernels import simulate_nb
from backtester.engine.records import (
    ACCOUNT_CASH,
    ACCOUNT_LAST_EQUITY,
    ACCOUNT_SIZE,
    SIMULATION_STATUS_MESSAGES,
    STATE_ARRAY_FIELDS,
    SimulationStatus,
    trade_dt,
)
from backtester.errors import EngineError

PRICE_FIELDS = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class EngineState:
    """What the event loop carries from one chunk to the next.

    Per-asset arrays have shape (n_assets,) and are read-only. ``units`` is signed
    (negative for a short); a flat asset has units 0, NaN prices and ids -1. Stop and
    take prices are absolute (NaN for none); pending stop-loss and take-profit are the
    fractional distances of the decision waiting for the next open.

    Attributes
    ----------
    cash : float
        Cash after every fill and fee so far.
    last_equity : float
        Equity at the last close; sizes the pending decisions.
    next_bar : int
        Global index of the next bar to simulate.
    """

    cash: float
    units: np.ndarray
    entry_price: np.ndarray
    entry_bar: np.ndarray
    entry_fee: np.ndarray
    stop_price: np.ndarray
    take_price: np.ndarray
    open_decision_id: np.ndarray
    pending_direction: np.ndarray
    pending_size: np.ndarray
    pending_stop_loss: np.ndarray
    pending_take_profit: np.ndarray
    pending_decision_id: np.ndarray
    last_equity: float
    next_bar: int = 0

    @classmethod
    def initial(cls, n_assets: int, cash: float) -> EngineState:
        """Return the state of a fresh account: all cash, no position, nothing pending."""
        if n_assets < 1:
            raise EngineError(f"n_assets is {n_assets}, was expected >= 1: pass the asset count")
        _check_positive_finite("initial_cash", cash)

        def filled(value: float, dtype: type) -> np.ndarray:
            return _read_only(np.full(n_assets, value, dtype=dtype))

        return cls(
            cash=float(cash),
            units=filled(0.0, np.float64),
            entry_price=filled(np.nan, np.float64),
            entry_bar=filled(-1, np.int64),
            entry_fee=filled(0.0, np.float64),
            stop_price=filled(np.nan, np.float64),
            take_price=filled(np.nan, np.float64),
            open_decision_id=filled(-1, np.int64),
            pending_direction=filled(0, np.int8),
            pending_size=filled(0.0, np.float64),
            pending_stop_loss=filled(np.nan, np.float64),
            pending_take_profit=filled(np.nan, np.float64),
            pending_decision_id=filled(-1, np.int64),
            last_equity=float(cash),
            next_bar=0,
        )

    def to_json(self) -> dict:
        """A JSON-ready dict (NaN as None) that ``from_json`` turns back into this state."""
        out: dict = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                out[name] = [None if isinstance(x, float) and np.isnan(x) else x
                             for x in value.tolist()]
            else:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> EngineState:
        """Rebuild a state written by ``to_json`` (exactly: floats round-trip)."""
        template = cls.initial(len(data["units"]), 1.0)
        values = {}
        for name in cls.__slots__:
            current = getattr(template, name)
            if isinstance(current, np.ndarray):
                raw = [np.nan if x is None else x for x in data[name]]
                values[name] = _read_only(np.array(raw, dtype=current.dtype))
            else:
                values[name] = type(current)(data[name])
        return cls(**values)

    @property
    def n_assets(self) -> int:
        return int(self.units.shape[0])

    @property
    def open_positions(self) -> int:
        """Number of assets with an open position."""
        return int(np.count_nonzero(self.units))


@dataclass(frozen=True, slots=True)
class Decisions:
    """Orders decided at each bar's close, shape (n_bars, n_assets) each.

    Attributes
    ----------
    direction : np.ndarray
        int8 in {-1, 0, +1}; 0 means no decision.
    size : np.ndarray
        Fraction of equity to commit, > 0 where direction != 0.
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
    """

    equity: np.ndarray
    open_positions: np.ndarray
    trades: np.ndarray
    state: EngineState


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
    close_at_end: bool = True,
    bar_offset: int | None = None,
    use_numba: bool = True,
) -> SimulationResult:
    """Simulate fills, exits and equity of ``decisions`` over bars x assets prices.

    A decision at bar t fills at bar t+1's open with adverse slippage; stop-loss and
    take-profit are checked inside each bar (stop first when both could hit); see
    ``kernels.simulate_nb`` for the exact order of events.

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
        Fraction of the notional charged on each side.
    slippage : float
        Adverse fraction of the price on market fills (entries, signal, stop, max-hold
        and end exits); take-profits are limit fills without slippage.
    max_holding_bars : int
        Close at the close once held this many bars; 0 for no limit.
    max_open_positions : int
        Entries are skipped while this many positions are open; 0 for no limit.
    close_at_end : bool
        Close every position at the last close and drop pending decisions. Set it False
        for all but the last chunk of a run.
    bar_offset : int, optional
        Global index of the first bar; defaults to ``state.next_bar`` (0 when fresh).
    use_numba : bool
        False runs the kernel's pure-Python body ``simulate_nb.py_func`` (slow; for
        debugging; its small helper ``close_position_nb`` stays compiled).

    Returns
    -------
    SimulationResult

    Raises
    ------
    EngineError
        If an input is malformed; the message names the field and the fix.
    """
    prices = {
        name: _as_price_array(name, value)
        for name, value in zip(PRICE_FIELDS, (open, high, low, close), strict=True)
    }
    shape = prices["open"].shape
    for name, array in prices.items():
        if array.shape != shape:
            raise EngineError(
                f"{name} has shape {array.shape}, was expected {shape} like open: pass the "
                "price arrays of one Bars"
            )
    arrays = _as_decision_arrays(decisions, shape)
    _check_scalars(commission, slippage, max_holding_bars, max_open_positions)
    if state is None:
        state = EngineState.initial(shape[1], initial_cash)
    _check_state(state, shape[1])
    bar_offset = _resolve_bar_offset(bar_offset, state)

    account = np.empty(ACCOUNT_SIZE, dtype=np.float64)
    account[ACCOUNT_CASH] = state.cash
    account[ACCOUNT_LAST_EQUITY] = state.last_equity
    state_arrays = [  # copies: the kernel updates them in place
        np.array(getattr(state, name), dtype=dtype) for name, dtype in STATE_ARRAY_FIELDS
    ]
    n_bars = shape[0]
    capacity = (
        np.count_nonzero(arrays[0])
        + np.count_nonzero(state.units)
        + np.count_nonzero(state.pending_direction)
    )
    trades = np.zeros(max(int(capacity), 1), dtype=trade_dt)
    equity = np.empty(n_bars, dtype=np.float64)
    open_positions = np.empty(n_bars, dtype=np.int64)

    kernel = simulate_nb if use_numba else simulate_nb.py_func
    n_trades, status = kernel(
        prices["open"], prices["high"], prices["low"], prices["close"], *arrays,
        float(commission), float(slippage), int(max_holding_bars), int(max_open_positions),
        bool(close_at_end), int(bar_offset), account, *state_arrays,
        equity, open_positions, trades,
    )  # fmt: skip
    if status != SimulationStatus.OK:
        raise EngineError(f"simulation stopped: {SIMULATION_STATUS_MESSAGES[int(status)]}")

    new_state = EngineState(
        cash=float(account[ACCOUNT_CASH]),
        **{name: _read_only(array) for (name, _), array in zip(STATE_ARRAY_FIELDS, state_arrays)},
        last_equity=float(account[ACCOUNT_LAST_EQUITY]),
        next_bar=int(bar_offset) + n_bars,
    )
    return SimulationResult(equity, open_positions, trades[:n_trades].copy(), new_state)


def _show(value: object) -> str:
    """repr of a value, NumPy scalars shown as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _check_positive_finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(value) and value > 0
    ):
        raise EngineError(f"{name} is {_show(value)}, was expected a finite number > 0")


def _first_bad(mask: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True in ``mask``, or None."""
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return None
    return tuple(int(i) for i in np.unravel_index(flat[0], mask.shape))


def _as_price_array(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise EngineError(
            f"{name} has shape {array.shape}, was expected (n_bars, n_assets) with at least "
            "one bar and one asset: pass a 2-D array (Bars.open etc.)"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise EngineError(f"{name} has dtype {array.dtype}, was expected float64 prices")
    array = np.ascontiguousarray(array, dtype=np.float64)
    bad = _first_bad(~(array > 0.0) | ~np.isfinite(array))
    if bad is not None:
        raise EngineError(
            f"{name}[{bad[0]}, {bad[1]}] is {_show(array[bad])}, prices must be finite and > 0: "
            "drop or fill those bars before simulating"
        )
    return array


def _as_decision_arrays(decisions: Decisions, shape: tuple[int, int]) -> list[np.ndarray]:
    """Checked, contiguous decision arrays in the kernel's argument order."""
    if not isinstance(decisions, Decisions):
        raise EngineError(
            f"decisions is a {type(decisions).__name__}, was expected a Decisions: "
            "build one with Decisions.empty(n_bars, n_assets) and fill it"
        )
    raw = {
        name: np.asarray(getattr(decisions, name))
        for name in ("direction", "size", "stop_loss", "take_profit", "decision_id")
    }
    for name, array in raw.items():
        if array.shape != shape:
            raise EngineError(
                f"decisions.{name} has shape {array.shape}, was expected {shape} like the "
                "prices: build it with Decisions.empty(n_bars, n_assets)"
            )
    for name in ("direction", "decision_id"):
        if not np.issubdtype(raw[name].dtype, np.integer):
            raise EngineError(
                f"decisions.{name} has dtype {raw[name].dtype}, was expected an integer dtype"
            )
    direction = raw["direction"]
    bad = _first_bad((direction < -1) | (direction > 1))
    if bad is not None:
        raise EngineError(
            f"decisions.direction[{bad[0]}, {bad[1]}] is {_show(direction[bad])}, was expected "
            "-1, 0 or +1"
        )
    direction = np.ascontiguousarray(direction, dtype=np.int8)
    active = direction != 0
    size = np.ascontiguousarray(raw["size"], dtype=np.float64)
    bad = _first_bad(active & ~((size > 0.0) & np.isfinite(size)))
    if bad is not None:
        raise EngineError(
            f"decisions.size[{bad[0]}, {bad[1]}] is {_show(size[bad])} on a decision, was expected "
            "a finite fraction of equity > 0"
        )
    distances = []
    for name in ("stop_loss", "take_profit"):
        distance = np.ascontiguousarray(raw[name], dtype=np.float64)
        bad = _first_bad(active & ((distance < 0.0) | np.isinf(distance)))
        if bad is not None:
            raise EngineError(
                f"decisions.{name}[{bad[0]}, {bad[1]}] is {_show(distance[bad])} on a decision, "
                "was expected a fractional distance >= 0 (0 or NaN for none)"
            )
        distances.append(distance)
    decision_id = np.ascontiguousarray(raw["decision_id"], dtype=np.int64)
    return [direction, size, *distances, decision_id]


def _check_scalars(
    commission: float, slippage: float, max_holding_bars: int, max_open_positions: int
) -> None:
    for name, value in (("commission", commission), ("slippage", slippage)):
        if not isinstance(value, (int, float, np.integer, np.floating)) or not (
            math.isfinite(value) and 0.0 <= value < 1.0
        ):
            raise EngineError(
                f"{name} is {_show(value)}, was expected a fraction in [0, 1) (0.001 = 0.1%)"
            )
    for name, value in (
        ("max_holding_bars", max_holding_bars),
        ("max_open_positions", max_open_positions),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise EngineError(
                f"{name} is {_show(value)}, was expected an int >= 0 (0 for no limit)"
            )


def _resolve_bar_offset(bar_offset: int | None, state: EngineState) -> int:
    if bar_offset is None:
        return state.next_bar
    if isinstance(bar_offset, bool) or not isinstance(bar_offset, (int, np.integer)):
        raise EngineError(f"bar_offset is {_show(bar_offset)}, was expected an int >= 0")
    if bar_offset < 0:
        raise EngineError(f"bar_offset is {bar_offset}, was expected an int >= 0")
    if state.next_bar != 0 and bar_offset != state.next_bar:
        raise EngineError(
            f"bar_offset is {bar_offset}, was expected {state.next_bar} (state.next_bar): "
            "pass the state returned by the chunk that ends right before this one, or leave "
            "bar_offset out"
        )
    return int(bar_offset)


def _check_state(state: EngineState, n_assets: int) -> None:
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
    for name in ("cash", "last_equity"):
        value = getattr(state, name)
        if not math.isfinite(value):
            raise EngineError(f"state.{name} is {_show(value)}, was expected a finite number")
    if not np.all(np.isfinite(state.units)):
        raise EngineError("state.units holds a non-finite value: pass a state bt returned")
