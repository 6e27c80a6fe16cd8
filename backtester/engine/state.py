"""What the event loop carries from one chunk to the next (EngineState), and its JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backtester.engine.records import NO_TIME
from backtester.errors import EngineError


@dataclass(frozen=True, slots=True)
class EngineState:
    """What the event loop carries from one chunk to the next.

    Per-asset arrays have shape (n_assets,) and are read-only. ``units`` is signed
    (negative for a short); a flat asset has units 0, NaN prices and ids -1. Stop and
    take prices are absolute (NaN for none); pending stop-loss and take-profit are the
    fractional distances of the decision waiting for the next open; ``funding`` is the
    borrow / funding paid so far by each open position.

    Attributes
    ----------
    cash : float
        Cash after every fill, fee and carry charge so far.
    correlation_history : np.ndarray
        float64 (correlation_window + 1, n_assets): a ring of the last closes (NaN where
        none yet), for ``Rules.correlation_window``; (1, n_assets) when it is off.
    last_equity : float
        Equity at the last close; sizes the pending decisions.
    day : int
        Session-day id of the last bar (``days``), ``records.NO_TIME`` before any.
    day_start_equity : float
        Equity at the last close before the current day.
    day_halted : bool
        The day's loss limit was hit: no entries until the next day.
    peak_equity : float
        Highest equity at a close since the start or the last drawdown reset, tracked
        while ``Rules.max_drawdown`` is on.
    drawdown_halted_at : int
        Global bar of the close that started the drawdown halt, -1 for none.
    last_time : int
        Start time (ns, ``times``) of the last bar, ``records.NO_TIME`` before any.
    correlation_count, correlation_position : int
        Closes held in the ring, and the row the next one goes to.
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
    funding: np.ndarray
    correlation_history: np.ndarray
    last_equity: float
    day: int
    day_start_equity: float
    day_halted: bool
    peak_equity: float
    drawdown_halted_at: int
    last_time: int
    correlation_count: int
    correlation_position: int
    next_bar: int = 0

    @classmethod
    def initial(cls, n_assets: int, cash: float, correlation_window: int = 0) -> EngineState:
        """Return the state of a fresh account: all cash, no position, nothing pending."""
        if isinstance(n_assets, bool) or not isinstance(n_assets, (int, np.integer)) or (
            n_assets < 1
        ):
            raise EngineError(f"n_assets is {n_assets}, was expected >= 1: pass the asset count")
        check_positive_finite("initial_cash", cash)
        if (
            isinstance(correlation_window, bool)
            or not isinstance(correlation_window, (int, np.integer))
            or correlation_window < 0
        ):
            raise EngineError(
                f"correlation_window is {show(correlation_window)}, was expected an int >= 0 "
                "(Rules.correlation_window)"
            )

        def filled(value: float, dtype: type) -> np.ndarray:
            return read_only(np.full(n_assets, value, dtype=dtype))

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
            funding=filled(0.0, np.float64),
            correlation_history=read_only(
                np.full((int(correlation_window) + 1, n_assets), np.nan, dtype=np.float64)
            ),
            last_equity=float(cash),
            day=int(NO_TIME),
            day_start_equity=float(cash),
            day_halted=False,
            peak_equity=float(cash),
            drawdown_halted_at=-1,
            last_time=int(NO_TIME),
            correlation_count=0,
            correlation_position=0,
            next_bar=0,
        )

    def to_json(self) -> dict:
        """A JSON-ready dict (NaN as None) that ``from_json`` turns back into this state."""
        out: dict = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                if value.dtype.kind == "f":
                    objects = value.astype(object)
                    objects[np.isnan(value)] = None
                    out[name] = objects.tolist()
                else:
                    out[name] = value.tolist()
            else:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> EngineState:
        """Rebuild a state written by ``to_json`` (exactly: floats round-trip).

        A dict from before the portfolio rules (no ``funding``, ``peak_equity``...) gets
        their fresh values: nothing paid, no halt, the peak and the day's start at the
        last equity.
        """
        history = data.get("correlation_history")
        window = len(history) - 1 if history else 0
        template = cls.initial(len(data["units"]), 1.0, window)
        values = {}
        for name in cls.__slots__:
            current = getattr(template, name)
            if name not in data:
                values[name] = current
            elif isinstance(current, np.ndarray):
                raw = np.array(data[name], dtype=object)
                raw[np.equal(raw, None)] = np.nan
                values[name] = read_only(np.array(raw.tolist(), dtype=current.dtype))
            else:
                values[name] = type(current)(data[name])
        for name in ("day_start_equity", "peak_equity"):
            if name not in data:
                values[name] = values["last_equity"]
        return cls(**values)

    @property
    def n_assets(self) -> int:
        return int(self.units.shape[0])

    @property
    def open_positions(self) -> int:
        """Number of assets with an open position."""
        return int(np.count_nonzero(self.units))

    @property
    def correlation_window(self) -> int:
        """The ``Rules.correlation_window`` the ring was made for."""
        return int(self.correlation_history.shape[0]) - 1


def show(value: object) -> str:
    """repr of a value, NumPy scalars shown as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def check_positive_finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(value) and value > 0
    ):
        raise EngineError(f"{name} is {show(value)}, was expected a finite number > 0")
