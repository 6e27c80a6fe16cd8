"""simulate()'s input checks: prices checked once per run, one numba signature, the same
messages as a full check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backtester.engine import CheckedPrices, Decisions, simulate
from backtester.engine.inputs import as_kernel_array
from backtester.errors import EngineError


def _market(n_bars: int = 50, n_assets: int = 2) -> tuple[np.ndarray, ...]:
    close = 100.0 + np.cumsum(np.full((n_bars, n_assets), 0.1), axis=0)
    return close, close * 1.01, close * 0.99, close


def _decisions(n_bars: int = 50, n_assets: int = 2) -> Decisions:
    decisions = Decisions.empty(n_bars, n_assets)
    decisions.direction[::7, 0] = 1
    decisions.size[::7, 0] = 0.1
    decisions.direction[10, 1] = 2  # an exit: its size is not read
    return decisions


def test_checked_prices_give_the_same_result_as_full_checks():
    prices, decisions = _market(), _decisions()
    checked = CheckedPrices.of(*prices)
    full = simulate(*(p[10:40] for p in prices), decisions=_decisions(30), bar_offset=10)
    fast = simulate(*checked.window(10, 40), _decisions(30), bar_offset=10,
                    checked_prices=True)
    np.testing.assert_array_equal(full.equity, fast.equity)
    np.testing.assert_array_equal(full.trades, fast.trades)
    assert simulate(*prices, decisions).trades.size > 0


def test_checked_prices_refuse_a_bad_price_once():
    prices = [p.copy() for p in _market()]
    prices[2][5, 1] = np.nan
    with pytest.raises(EngineError, match=r"low\[5, 1\] is nan, prices must be finite"):
        CheckedPrices.of(*prices)


def test_checked_prices_flag_still_checks_shape_and_dtype():
    prices = _market()
    with pytest.raises(EngineError, match="window of CheckedPrices"):
        simulate(*(p.astype(np.float32) for p in prices), _decisions(), checked_prices=True)


@pytest.mark.parametrize(("field", "row", "value", "message"), [
    ("direction", 3, 5, r"decisions.direction\[3, 1\] is 5"),
    ("size", 14, np.nan, r"decisions.size\[14, 0\] is nan on a decision"),
    ("stop_loss", 21, -0.1, r"decisions.stop_loss\[21, 0\] is -0.1 on a decision"),
    ("take_profit", 28, np.inf, r"decisions.take_profit\[28, 0\] is inf on a decision"),
])
def test_decision_checks_name_the_first_bad_cell(field, row, value, message):
    decisions = _decisions()
    column = 1 if field == "direction" else 0
    getattr(decisions, field)[row, column] = value
    getattr(decisions, field)[row + 7 if row + 7 < 50 else row, column] = value
    with pytest.raises(EngineError, match=message):
        simulate(*_market(), decisions)


def test_a_bad_value_where_there_is_no_decision_is_ignored():
    decisions = _decisions()
    decisions.size[1, 1] = np.nan  # no decision at [1, 1]
    decisions.stop_loss[10, 1] = -1.0  # an exit: opens nothing
    simulate(*_market(), decisions)


def test_kernel_arrays_are_read_only_views_without_copies():
    array = np.ones((4, 2))
    view = as_kernel_array(array, np.float64)
    assert view.base is array and not view.flags.writeable and array.flags.writeable
    frozen = as_kernel_array(view, np.float64)
    assert frozen is view


def test_the_kernel_compiles_once_for_read_only_and_writable_prices():
    code = textwrap.dedent(
        """
        import numpy as np
        from backtester.engine import Decisions, simulate
        from backtester.engine.kernels import simulate_nb
        writable = np.full((6, 2), 100.0)
        frozen = writable.copy()
        frozen.flags.writeable = False
        strided = np.full((6, 4), 100.0)[:, ::2]  # not contiguous
        for prices in (writable, frozen, strided):
            simulate(prices, prices, prices, prices, Decisions.empty(6, 2))
        decisions = Decisions.empty(6, 2)
        for array in (decisions.direction, decisions.size):
            array.flags.writeable = False
        simulate(writable, writable, writable, writable, decisions,
                 volume=np.ones((6, 2)), times=np.arange(6), days=np.zeros(6, dtype=np.int32))
        print(len(simulate_nb.signatures))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "1"
