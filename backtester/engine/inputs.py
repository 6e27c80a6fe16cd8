"""Checks of simulate()'s array inputs, and their one form for the kernel.

Every array reaches ``kernels.simulate_nb`` as a C-contiguous, read-only view of the
kernel's dtype (float64 prices and sizes, int8 directions, int64 ids and times), so
numba compiles the kernel for one signature per process whatever the caller passed
(writable numpy, read-only pandas 3 or Arrow buffers, slices): ``as_kernel_array``.

The checks are vectorised and cheap when the inputs are good: min/max reductions (NaN
propagates, so one NaN fails them) and, for decisions, the few cells that hold one; the
cell-by-cell pass that finds the first bad value runs only when a check fails, so the
messages are those of a full check. Prices can be checked once for a whole run
(``CheckedPrices``) and passed window by window with ``simulate(checked_prices=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backtester.engine.records import EXIT_DIRECTION
from backtester.engine.rules import Rules
from backtester.engine.state import show
from backtester.errors import EngineError

PRICE_FIELDS = ("open", "high", "low", "close")
DECISION_FIELDS = ("direction", "size", "stop_loss", "take_profit", "decision_id")


def as_kernel_array(array: np.ndarray, dtype: type) -> np.ndarray:
    """``array`` as a C-contiguous read-only array of ``dtype``: a view when it already is
    one (no copy), else a copy; one numba signature for every caller."""
    out = np.ascontiguousarray(array, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True)
class CheckedPrices:
    """open, high, low and close (n_bars, n_assets), checked once (finite, > 0, same
    shape) and held in the kernel's form; ``window`` gives rows [start, stop) to pass to
    ``simulate(..., checked_prices=True)`` without checking them again."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @classmethod
    def of(cls, open: np.ndarray, high: np.ndarray, low: np.ndarray,  # noqa: A002
           close: np.ndarray) -> CheckedPrices:
        """Check the four arrays (``EngineError`` naming the first bad value)."""
        return cls(*check_prices((open, high, low, close)))

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.open, self.high, self.low, self.close

    def window(self, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """Rows [start, stop) of the four arrays (views, still C-contiguous)."""
        return tuple(a[start:stop] for a in self.arrays)


def check_prices(values: tuple[np.ndarray, ...], *, checked: bool = False) -> list[np.ndarray]:
    """The four price arrays in the kernel's form; ``checked``: the caller checked their
    values already (``CheckedPrices``), only their shape and dtype are checked here."""
    if checked:
        prices = [_as_checked_price_array(name, v) for name, v in zip(PRICE_FIELDS, values)]
    else:
        prices = [_as_price_array(name, v) for name, v in zip(PRICE_FIELDS, values, strict=True)]
    shape = prices[0].shape
    for name, array in zip(PRICE_FIELDS, prices):
        if array.shape != shape:
            raise EngineError(
                f"{name} has shape {array.shape}, was expected {shape} like open: pass the "
                "price arrays of one Bars"
            )
    return prices


def _as_checked_price_array(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or array.dtype != np.float64 or 0 in array.shape:
        raise EngineError(
            f"{name} has shape {array.shape} and dtype {array.dtype}, was expected a "
            "non-empty (n_bars, n_assets) float64 window of CheckedPrices: pass "
            "CheckedPrices.window(start, stop), or leave checked_prices False"
        )
    return as_kernel_array(array, np.float64)


def _as_price_array(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise EngineError(
            f"{name} has shape {array.shape}, was expected (n_bars, n_assets) with at least "
            "one bar and one asset: pass a 2-D array (Bars.open etc.)"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise EngineError(f"{name} has dtype {array.dtype}, was expected float64 prices")
    array = as_kernel_array(array, np.float64)
    if not (array.min() > 0.0 and array.max() < np.inf):  # NaN fails both
        bad = _first_bad(~(array > 0.0) | ~np.isfinite(array))
        raise EngineError(
            f"{name}[{bad[0]}, {bad[1]}] is {show(array[bad])}, prices must be finite and > 0: "
            "drop or fill those bars before simulating"
        )
    return array


def check_decisions(decisions: object, shape: tuple[int, int]) -> tuple[list[np.ndarray], int]:
    """Checked decision arrays in the kernel's argument order, and how many cells hold a
    decision. Only those cells are read past the direction's range check."""
    from backtester.engine.simulate import Decisions

    if not isinstance(decisions, Decisions):
        raise EngineError(
            f"decisions is a {type(decisions).__name__}, was expected a Decisions: "
            "build one with Decisions.empty(n_bars, n_assets) and fill it"
        )
    raw = {name: np.asarray(getattr(decisions, name)) for name in DECISION_FIELDS}
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
    if direction.min() < -1 or direction.max() > EXIT_DIRECTION:
        bad = _first_bad((direction < -1) | (direction > EXIT_DIRECTION))
        raise EngineError(
            f"decisions.direction[{bad[0]}, {bad[1]}] is {show(direction[bad])}, was expected "
            f"-1, 0, +1 or {EXIT_DIRECTION} (EXIT_DIRECTION: close, open nothing)"
        )
    direction = as_kernel_array(direction, np.int8)
    cells = np.flatnonzero(direction != 0)  # C order: the first bad below is the first overall
    n_decisions = int(cells.size)
    cells = cells[direction.reshape(-1)[cells] != EXIT_DIRECTION]  # entries
    size = as_kernel_array(raw["size"], np.float64)
    values = size.reshape(-1)[cells]
    if not np.all((values > 0.0) & np.isfinite(values)):
        bad = _cell(cells[np.flatnonzero(~((values > 0.0) & np.isfinite(values)))[0]], shape)
        raise EngineError(
            f"decisions.size[{bad[0]}, {bad[1]}] is {show(size[bad])} on a decision, was expected "
            "a finite fraction of equity > 0"
        )
    distances = []
    for name in ("stop_loss", "take_profit"):
        distance = as_kernel_array(raw[name], np.float64)
        values = distance.reshape(-1)[cells]
        wrong = (values < 0.0) | np.isinf(values)
        if wrong.any():
            bad = _cell(cells[np.flatnonzero(wrong)[0]], shape)
            raise EngineError(
                f"decisions.{name}[{bad[0]}, {bad[1]}] is {show(distance[bad])} on a decision, "
                "was expected a fractional distance >= 0 (0 or NaN for none)"
            )
        distances.append(distance)
    decision_id = as_kernel_array(raw["decision_id"], np.int64)
    return [direction, size, *distances, decision_id], n_decisions


def check_rule_inputs(
    rules: Rules,
    shape: tuple[int, int],
    volume: np.ndarray | None,
    spread: np.ndarray | None,
    times: np.ndarray | None,
    days: np.ndarray | None,
) -> list[np.ndarray]:
    """Checked (volume, spread, times, days); dummy arrays stand in for those absent."""
    needs_volume = rules.impact > 0.0 or rules.max_participation > 0.0
    if volume is None and needs_volume:
        raise EngineError(
            "volume is None, was expected a (n_bars, n_assets) array: rules.impact and "
            "rules.max_participation need the volume of each bar"
        )
    if times is None and rules.has_carry:
        raise EngineError(
            "times is None, was expected (n_bars,) int64 bar start times in ns: borrow and "
            "funding rates are charged for the time positions are held"
        )
    if days is None and rules.daily_loss_limit > 0.0:
        raise EngineError(
            "days is None, was expected (n_bars,) int64 session-day ids: "
            "rules.daily_loss_limit is measured from each day's opening equity"
        )
    out = []
    for name, value in (("volume", volume), ("spread", spread)):
        if value is None:
            out.append(as_kernel_array(np.zeros((1, 1)), np.float64))
            continue
        array = np.asarray(value)
        if array.shape != shape or not np.issubdtype(array.dtype, np.number):
            raise EngineError(
                f"{name} has shape {array.shape} and dtype {array.dtype}, was expected "
                f"{shape} numbers like the prices"
            )
        array = as_kernel_array(array, np.float64)
        if not (array.min() >= 0.0 and array.max() < np.inf):  # NaN fails both
            bad = _first_bad(~(array >= 0.0) | ~np.isfinite(array))
            raise EngineError(
                f"{name}[{bad[0]}, {bad[1]}] is {show(array[bad])}, was expected a finite "
                "number >= 0: fill missing values before simulating"
            )
        out.append(array)
    for name, value in (("times", times), ("days", days)):
        if value is None:
            out.append(as_kernel_array(np.zeros(1, dtype=np.int64), np.int64))
            continue
        array = np.asarray(value)
        if array.shape != shape[:1] or not np.issubdtype(array.dtype, np.integer):
            raise EngineError(
                f"{name} has shape {array.shape} and dtype {array.dtype}, was expected "
                f"({shape[0]},) int64, one per bar"
            )
        array = as_kernel_array(array, np.int64)
        bad = np.flatnonzero(np.diff(array) < 0)
        if bad.size:
            raise EngineError(
                f"{name}[{bad[0] + 1}] is {array[bad[0] + 1]}, was expected >= "
                f"{array[bad[0]]} ({name}[{bad[0]}]): pass bars in time order"
            )
        out.append(array)
    return out


def _cell(flat: int, shape: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape))


def _first_bad(mask: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True in ``mask``, or None."""
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return None
    return _cell(flat[0], mask.shape)
