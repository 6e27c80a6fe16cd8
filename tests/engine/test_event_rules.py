"""Event rules of the simulation, one rule per test, on tiny hand-computed bars.

Every test runs twice: through the compiled kernel and through its pure-Python body.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine_kit import CASH, bars, decide, run
from backtester.engine import Decisions, ExitReason, simulate


def flat(*prices: float) -> list[tuple[float, float, float, float]]:
    """Bars that never move inside: o = h = l = c."""
    return [(p, p, p, p) for p in prices]


# --- entries ------------------------------------------------------------------------------


def test_long_decision_fills_at_next_open_with_slippage_and_commission(use_numba):
    # Arrange: decide long 50% at bar 0's close; bar 1 opens at 100.
    prices = bars(*flat(99.0), (100.0, 102.0, 99.0, 101.0), (101.0, 104.0, 100.0, 103.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, commission=0.001, slippage=0.01,
                 close_at_end=False)  # fmt: skip
    # Assert: entry 100 * 1.01 = 101, units = 0.5 * 10,000 / 101, fee = 0.1% of 5,000.
    units = 5_000.0 / 101.0
    state = result.state
    assert state.entry_price[0] == pytest.approx(101.0)
    assert state.units[0] == pytest.approx(units)
    assert state.entry_fee[0] == pytest.approx(5.0)
    assert state.entry_bar[0] == 1
    assert state.cash == pytest.approx(10_000.0 - 5_000.0 - 5.0)
    expected_equity = [10_000.0, 4_995.0 + units * 101.0, 4_995.0 + units * 103.0]
    np.testing.assert_allclose(result.equity, expected_equity, rtol=1e-12)
    np.testing.assert_array_equal(result.open_positions, [0, 1, 1])
    assert len(result.trades) == 0


def test_short_entry_fills_below_open_and_gains_when_price_falls(use_numba):
    # Arrange: short 50% decided at bar 0; bar 1 opens at 100; slippage 1% -> fill at 99.
    prices = bars(*flat(100.0, 100.0, 90.0))
    decisions = decide(3, 1, (0, 0, -1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, slippage=0.01, close_at_end=False)
    # Assert: short entry credits cash; equity = cash - units * close.
    units = 5_000.0 / 99.0
    assert result.state.units[0] == pytest.approx(-units)
    assert result.state.cash == pytest.approx(15_000.0)
    np.testing.assert_allclose(
        result.equity, [10_000.0, 15_000.0 - units * 100.0, 15_000.0 - units * 90.0]
    )


def test_decision_on_last_bar_stays_pending_without_close_at_end(use_numba):
    prices = bars(*flat(100.0, 100.0))
    decisions = decide(2, 1, (1, 0, -1, 0.3, 0.02, 0.05, 77))
    result = run(prices, decisions, use_numba, close_at_end=False)
    state = result.state
    assert (state.pending_direction[0], state.pending_size[0]) == (-1, 0.3)
    assert (state.pending_stop_loss[0], state.pending_take_profit[0]) == (0.02, 0.05)
    assert state.pending_decision_id[0] == 77
    assert state.units[0] == 0.0


def test_close_at_end_drops_pending_decision_of_last_bar(use_numba):
    prices = bars(*flat(100.0, 100.0))
    result = run(prices, decide(2, 1, (1, 0, +1, 0.3)), use_numba, close_at_end=True)
    assert result.state.pending_direction[0] == 0
    assert len(result.trades) == 0
    np.testing.assert_array_equal(result.equity, [CASH, CASH])


# --- stop-loss and take-profit ------------------------------------------------------------


def test_long_stop_inside_bar_exits_at_stop_minus_slippage(use_numba):
    # Arrange: entry at 100 (no slippage on entry so the stop is 98), stop 2%.
    prices = bars(*flat(100.0, 100.0), (99.0, 100.0, 97.0, 99.5))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.0))
    # Act
    result = run(prices, decisions, use_numba)
    # Assert
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.STOP_LOSS
    assert trade["exit_bar"] == 2
    assert trade["exit_price"] == pytest.approx(98.0)
    assert trade["pnl"] == pytest.approx(50.0 * (98.0 - 100.0))


def test_stop_exit_pays_slippage_on_a_stop_computed_from_the_fill(use_numba):
    # Entry 100 * 1.01 = 101 -> stop 101 * 0.98 = 98.98 -> exit 98.98 * 0.99.
    prices = bars(*flat(100.0, 100.0), (99.5, 100.0, 97.0, 99.5))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.0))
    result = run(prices, decisions, use_numba, slippage=0.01)
    assert result.trades[0]["exit_price"] == pytest.approx(101.0 * 0.98 * 0.99)


def test_take_profit_fills_at_limit_without_slippage(use_numba):
    # Entry 101 (1% slippage), take-profit 3% -> 104.03, reached by bar 2's high of 105.
    prices = bars(*flat(100.0, 100.0), (101.0, 105.0, 100.5, 102.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.0, 0.03))
    result = run(prices, decisions, use_numba, slippage=0.01)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.TAKE_PROFIT
    assert trade["exit_price"] == pytest.approx(101.0 * 1.03)


def test_bar_reaching_both_stop_and_target_exits_at_the_stop(use_numba):
    prices = bars(*flat(100.0, 100.0), (100.0, 104.0, 97.0, 103.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.03))
    result = run(prices, decisions, use_numba)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.STOP_LOSS
    assert trade["exit_price"] == pytest.approx(98.0)


def test_open_gapping_through_stop_exits_at_the_open_with_slippage(use_numba):
    prices = bars(*flat(100.0, 100.0), (95.0, 96.0, 94.0, 95.5))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.0))
    result = run(prices, decisions, use_numba, slippage=0.001)
    # Entry 100.1, stop 98.098; the open 95 is below it: exit 95 * 0.999.
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.STOP_LOSS
    assert trade["exit_price"] == pytest.approx(95.0 * 0.999)


def test_open_gapping_through_target_exits_at_the_better_open(use_numba):
    # The open 106 is above the 103 target: the limit fills at 106, even though the
    # bar later trades below the stop (the open is the bar's first price).
    prices = bars(*flat(100.0, 100.0), (106.0, 107.0, 90.0, 95.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.03))
    result = run(prices, decisions, use_numba)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.TAKE_PROFIT
    assert trade["exit_price"] == 106.0


@pytest.mark.parametrize(
    ("bar", "reason", "exit_price"),
    [
        ((101.0, 103.0, 100.0, 101.0), ExitReason.STOP_LOSS, 102.0),  # high reaches 100 * 1.02
        ((99.0, 100.0, 96.0, 98.0), ExitReason.TAKE_PROFIT, 97.0),  # low reaches 100 * 0.97
        ((105.0, 106.0, 104.0, 105.0), ExitReason.STOP_LOSS, 105.0),  # gap up through stop
        ((95.0, 96.0, 94.0, 95.0), ExitReason.TAKE_PROFIT, 95.0),  # gap down through target
        ((100.0, 103.0, 96.0, 100.0), ExitReason.STOP_LOSS, 102.0),  # both in range: stop
    ],
)
def test_short_stop_and_target_mirror_the_long_rules(use_numba, bar, reason, exit_price):
    prices = bars(*flat(100.0, 100.0), bar)
    decisions = decide(3, 1, (0, 0, -1, 0.5, 0.02, 0.03))
    result = run(prices, decisions, use_numba)
    (trade,) = result.trades
    assert trade["exit_reason"] == reason
    assert trade["exit_price"] == pytest.approx(exit_price)
    assert trade["pnl"] == pytest.approx(-50.0 * (exit_price - 100.0))


def test_stop_is_checked_on_the_bar_the_position_opened(use_numba):
    prices = bars(*flat(100.0), (100.0, 100.5, 97.0, 99.0), *flat(99.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.0))
    result = run(prices, decisions, use_numba)
    (trade,) = result.trades
    assert (trade["entry_bar"], trade["exit_bar"]) == (1, 1)
    assert trade["exit_reason"] == ExitReason.STOP_LOSS
    np.testing.assert_array_equal(result.open_positions, [0, 0, 0])


@pytest.mark.parametrize("missing", [0.0, np.nan])
def test_zero_or_nan_stop_and_target_mean_none(use_numba, missing):
    prices = bars(*flat(100.0, 100.0), (100.0, 200.0, 1.0, 100.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, missing, missing))
    result = run(prices, decisions, use_numba)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.END


# --- max holding time ---------------------------------------------------------------------


def test_max_hold_exits_at_the_close_after_the_given_bars(use_numba):
    # Entry at bar 1; with max_holding_bars=2 the exit is at bar 3's close, with slippage.
    prices = bars(*flat(100.0, 100.0, 101.0), (102.0, 103.0, 101.0, 102.5), *flat(104.0))
    decisions = decide(5, 1, (0, 0, +1, 0.5))
    result = run(prices, decisions, use_numba, max_holding_bars=2, slippage=0.01)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.MAX_HOLD
    assert (trade["entry_bar"], trade["exit_bar"]) == (1, 3)
    assert trade["exit_price"] == pytest.approx(102.5 * 0.99)
    np.testing.assert_array_equal(result.open_positions, [0, 1, 1, 0, 0])


def test_stop_takes_precedence_over_max_hold_on_the_same_bar(use_numba):
    prices = bars(*flat(100.0, 100.0), (100.0, 100.0, 97.0, 99.0))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.02, 0.0))
    result = run(prices, decisions, use_numba, max_holding_bars=1)
    assert result.trades[0]["exit_reason"] == ExitReason.STOP_LOSS


def test_max_hold_counts_global_bars_with_bar_offset(use_numba):
    prices = bars(*flat(100.0, 100.0, 100.0, 100.0))
    decisions = decide(4, 1, (0, 0, +1, 0.5))
    result = run(prices, decisions, use_numba, max_holding_bars=2, bar_offset=1_000)
    (trade,) = result.trades
    assert (trade["entry_bar"], trade["exit_bar"]) == (1_001, 1_003)
    assert result.state.next_bar == 1_004


# --- decisions against open positions -----------------------------------------------------


def test_opposite_decision_closes_at_open_then_reverses_sized_on_previous_close(use_numba):
    # Arrange: long 50 units from bar 1 at 100 (cash 5,000); bar 2 closes at 108
    # (equity 10,400); a short decided at bar 2 fills at bar 3's open of 110.
    prices = bars(*flat(100.0, 100.0, 108.0, 110.0))
    decisions = decide(4, 1, (0, 0, +1, 0.5), (2, 0, -1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, close_at_end=False)
    # Assert: trade 1 closed by the signal at 110; short of 0.5 * 10,400 / 110 units.
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.SIGNAL
    assert (trade["exit_bar"], trade["exit_price"], trade["pnl"]) == (3, 110.0, 500.0)
    assert trade["decision_id"] == 0
    assert result.state.units[0] == pytest.approx(-5_200.0 / 110.0)
    assert result.state.open_decision_id[0] == 1
    assert result.state.cash == pytest.approx(10_500.0 + 5_200.0)


def test_decision_in_the_direction_of_the_open_position_is_ignored(use_numba):
    prices = bars(*flat(100.0, 100.0, 105.0, 110.0))
    decisions = decide(4, 1, (0, 0, +1, 0.5), (2, 0, +1, 0.9))
    result = run(prices, decisions, use_numba, close_at_end=False)
    assert result.state.units[0] == pytest.approx(50.0)
    assert result.state.entry_bar[0] == 1
    assert result.state.open_decision_id[0] == 0
    assert result.state.pending_direction[0] == 0


# --- max open positions -------------------------------------------------------------------


def test_entries_beyond_max_open_positions_are_skipped_in_column_order(use_numba):
    prices = bars(*([(100.0,) * 4] * 3 for _ in range(3)))
    decisions = decide(3, 3, (0, 0, +1, 0.2), (0, 1, -1, 0.2), (0, 2, +1, 0.2))
    result = run(prices, decisions, use_numba, max_open_positions=2)
    np.testing.assert_array_equal(sorted(result.trades["asset"]), [0, 1])
    np.testing.assert_array_equal(result.open_positions, [0, 2, 0])


def test_signal_close_at_the_open_frees_a_slot_for_an_entry_at_that_open(use_numba):
    # Asset 1 is long; at bar 2 asset 0 wants in and asset 1 reverses, with one slot.
    prices = bars(*([(100.0,) * 4] * 2 for _ in range(4)))
    decisions = decide(4, 2, (0, 1, +1, 0.2), (2, 0, +1, 0.2), (2, 1, -1, 0.2))
    result = run(prices, decisions, use_numba, max_open_positions=1, close_at_end=False)
    # Closes at the open come first: asset 0 takes the slot, asset 1's short is skipped.
    (trade,) = result.trades
    assert (trade["asset"], trade["exit_reason"], trade["exit_bar"]) == (1, ExitReason.SIGNAL, 3)
    np.testing.assert_array_equal(result.state.units != 0.0, [True, False])


def test_exit_inside_a_bar_does_not_free_a_slot_at_that_bar_open(use_numba):
    # Asset 0 stops out inside bar 2; asset 1's entry at bar 2's open is skipped, and its
    # next decision (bar 2) fills at bar 3.
    stop_bar = [(100.0, 100.0, 97.0, 98.0), (100.0,) * 4]
    prices = bars(*([(100.0,) * 4] * 2 for _ in range(2)), stop_bar, [(100.0,) * 4] * 2)
    decisions = decide(4, 2, (0, 0, +1, 0.2, 0.02, 0.0), (1, 1, +1, 0.2), (2, 1, +1, 0.2, 0, 0, 9))
    result = run(prices, decisions, use_numba, max_open_positions=1)
    asset_one = result.trades[result.trades["asset"] == 1]
    assert len(asset_one) == 1
    assert (asset_one[0]["entry_bar"], asset_one[0]["decision_id"]) == (3, 9)


# --- accounting ---------------------------------------------------------------------------


def test_close_at_end_closes_at_last_close_with_slippage_and_restates_equity(use_numba):
    prices = bars(*flat(100.0, 100.0, 104.0, 105.0))
    decisions = decide(4, 1, (0, 0, +1, 0.5))
    result = run(prices, decisions, use_numba, commission=0.001, slippage=0.01)
    (trade,) = result.trades
    units = 5_000.0 / 101.0
    exit_price = 105.0 * 0.99
    exit_fee = 0.001 * units * exit_price
    assert trade["exit_reason"] == ExitReason.END
    assert trade["exit_bar"] == 3
    assert trade["exit_price"] == pytest.approx(exit_price)
    assert trade["size"] == pytest.approx(units)
    assert trade["fees"] == pytest.approx(5.0 + exit_fee)
    pnl = units * (exit_price - 101.0) - 5.0 - exit_fee
    assert trade["pnl"] == pytest.approx(pnl)
    assert trade["return_pct"] == pytest.approx(pnl / 5_000.0)
    assert result.equity[-1] == pytest.approx(CASH + pnl)
    assert result.state.cash == pytest.approx(CASH + pnl)
    assert result.open_positions[-1] == 0


def test_short_trade_pnl_and_cash_include_both_fees(use_numba):
    prices = bars(*flat(100.0, 100.0, 90.0))
    decisions = decide(3, 1, (0, 0, -1, 0.5))
    result = run(prices, decisions, use_numba, commission=0.002)
    (trade,) = result.trades
    # 50 units short at 100, covered at 90; fees 0.2% of 5,000 and of 4,500.
    assert trade["direction"] == -1
    assert trade["fees"] == pytest.approx(10.0 + 9.0)
    assert trade["pnl"] == pytest.approx(500.0 - 19.0)
    assert result.equity[-1] == pytest.approx(CASH + 481.0)


def test_entry_is_skipped_once_equity_is_gone(use_numba):
    # A full-size short at 100 held one bar while the price goes to 250: equity
    # 2,000 - 2,500 = -500; the next decision cannot be sized and is skipped.
    prices = bars(*flat(100.0, 100.0), (100.0, 250.0, 100.0, 250.0), *flat(250.0, 250.0))
    decisions = decide(5, 1, (0, 0, -1, 1.0), (2, 0, +1, 0.5))
    result = run(prices, decisions, use_numba, initial_cash=1_000.0, max_holding_bars=1)
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.MAX_HOLD
    np.testing.assert_allclose(result.equity, [1_000.0, 1_000.0, -500.0, -500.0, -500.0])
    np.testing.assert_array_equal(result.open_positions, [0, 1, 0, 0, 0])


# --- exit decisions -----------------------------------------------------------------------


def test_an_exit_decision_closes_at_the_next_open_and_opens_nothing(use_numba):
    # Arrange: long 50% at bar 0's close (fills at 100), exit decided at bar 2's close,
    # then an exit on the flat asset at bar 3 (a no-op) and a new long at bar 4.
    from backtester.engine import EXIT_DIRECTION

    prices = bars(*flat(99.0, 100.0, 104.0, 110.0, 111.0, 112.0, 113.0))
    decisions = decide(7, 1, (0, 0, +1, 0.5), (2, 0, EXIT_DIRECTION, 0.0),
                       (3, 0, EXIT_DIRECTION, 0.0), (4, 0, +1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, commission=0.001, slippage=0.01,
                 close_at_end=False)  # fmt: skip
    # Assert: the exit sells at bar 3's open less slippage, 110 * 0.99 = 108.9, a market
    # fill paying the taker fee; nothing opens short; the next long fills at bar 5.
    units = 5_000.0 / 101.0
    (trade,) = result.trades
    assert trade["exit_bar"] == 3 and trade["exit_reason"] == ExitReason.EXIT
    assert trade["exit_price"] == pytest.approx(108.9)
    fees = 5.0 + 0.001 * units * 108.9
    assert trade["pnl"] == pytest.approx(units * (108.9 - 101.0) - fees)
    np.testing.assert_array_equal(result.open_positions, [0, 1, 1, 0, 0, 1, 1])
    assert result.state.units[0] > 0 and result.state.entry_bar[0] == 5


def test_an_exit_direction_needs_no_size_and_other_codes_are_refused():
    prices = bars(*flat(100.0, 101.0))
    exit_only = Decisions.empty(2, 1)
    exit_only.direction[0, 0] = 2  # size 0 is fine for an exit
    assert len(simulate(*prices, exit_only).trades) == 0
    bad = Decisions.empty(2, 1)
    bad.direction[0, 0] = 3
    with pytest.raises(Exception, match=r"direction\[0, 0\] is 3, was expected -1, 0, \+1 or 2"):
        simulate(*prices, bad)
