"""Costs of the portfolio rules on tiny hand-computed bars: fees, spread, impact, carry.

Every test runs twice: through the compiled kernel and through its pure-Python body.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine_kit import CASH, bars, decide, run
from backtester.engine import Decisions, ExitReason, Rules, simulate
from backtester.errors import EngineError

DAY_NS = 86_400 * 10**9


# --- fees -----------------------------------------------------------------------------------


def test_take_profit_pays_the_maker_fee_and_the_entry_the_taker_fee(use_numba):
    # Arrange: long 50% at 100 with a 2% target (102); bar 2 trades up to 103.
    prices = bars((100, 100, 100, 100), (100, 101, 99, 100), (100, 103, 99.5, 101))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.0, 0.02))
    rules = Rules(taker_fee=0.001, maker_fee=0.0002)
    # Act
    result = run(prices, decisions, use_numba, rules=rules)
    # Assert: 50 units; entry fee 0.001 * 5,000 = 5; exit fee 0.0002 * 50 * 102 = 1.02.
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.TAKE_PROFIT
    assert trade["exit_price"] == pytest.approx(102.0)
    assert trade["fees"] == pytest.approx(6.02)
    assert trade["pnl"] == pytest.approx(50 * 2.0 - 6.02)
    assert result.equity[-1] == pytest.approx(CASH + 93.98)


def test_stop_loss_pays_the_taker_fee_on_both_sides(use_numba):
    prices = bars((100, 100, 100, 100), (100, 101, 99.5, 100), (100, 100.5, 98.5, 99))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.01, 0.0))
    result = run(prices, decisions, use_numba, rules=Rules(taker_fee=0.001, maker_fee=0.0002))
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.STOP_LOSS
    assert trade["exit_price"] == pytest.approx(99.0)
    assert trade["fees"] == pytest.approx(5.0 + 0.001 * 50 * 99.0)
    assert trade["pnl"] == pytest.approx(-50.0 - 9.95)


# --- take-profit margin ---------------------------------------------------------------------


def test_take_profit_touched_but_not_traded_through_does_not_fill(use_numba):
    # Arrange: target 102, margin 0.5% -> the bar must reach 102.51; bar 2 reaches 102.3.
    prices = bars(
        (100, 100, 100, 100), (100, 101, 99, 100), (101, 102.3, 100.5, 101), (101, 102.6, 100, 101)
    )
    decisions = decide(4, 1, (0, 0, +1, 0.5, 0.0, 0.02))
    rules = Rules(maker_fee=0.0002, take_profit_margin=0.005)
    # Act
    result = run(prices, decisions, use_numba, rules=rules)
    # Assert: no fill on bar 2, a fill at the target (not 102.51) on bar 3, maker fee.
    (trade,) = result.trades
    assert (trade["exit_bar"], trade["exit_reason"]) == (3, ExitReason.TAKE_PROFIT)
    assert trade["exit_price"] == pytest.approx(102.0)
    assert trade["fees"] == pytest.approx(0.0002 * 50 * 102.0)
    assert result.open_positions[2] == 1


def test_take_profit_without_margin_fills_on_a_touch(use_numba):
    prices = bars((100, 100, 100, 100), (100, 101, 99, 100), (101, 102.0, 100.5, 101))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.0, 0.02))
    result = run(prices, decisions, use_numba, rules=Rules())
    assert result.trades["exit_reason"][0] == ExitReason.TAKE_PROFIT
    assert result.trades["exit_bar"][0] == 2


def test_open_beyond_the_margin_fills_a_take_profit_at_the_open(use_numba):
    prices = bars((100, 100, 100, 100), (100, 101, 99, 100), (103, 104, 102.8, 103))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.0, 0.02))
    result = run(prices, decisions, use_numba, rules=Rules(take_profit_margin=0.005))
    assert result.trades["exit_price"][0] == pytest.approx(103.0)


def test_short_take_profit_needs_the_low_below_target_minus_margin(use_numba):
    # Short at 100, target 98, margin 1% -> the low must reach 97.02.
    prices = bars((100, 100, 100, 100), (100, 101, 99, 100), (99, 99.5, 97.5, 98),
                  (98, 98.5, 97.0, 97.5))  # fmt: skip
    decisions = decide(4, 1, (0, 0, -1, 0.5, 0.0, 0.02))
    result = run(prices, decisions, use_numba, rules=Rules(take_profit_margin=0.01))
    (trade,) = result.trades
    assert (trade["exit_bar"], trade["exit_price"]) == (3, pytest.approx(98.0))


# --- spread ---------------------------------------------------------------------------------


def test_fixed_spread_costs_half_on_each_market_fill(use_numba):
    # Arrange: spread 0.2% (half 0.1%) plus slippage 0.1%; flat to 110, closed at the end.
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110))
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(slippage=0.001, spread=0.002))
    # Assert: entry 100 * 1.002, exit 110 * 0.998.
    (trade,) = result.trades
    assert trade["entry_price"] == pytest.approx(100.2)
    assert trade["exit_price"] == pytest.approx(109.78)
    assert trade["size"] == pytest.approx(5_000.0 / 100.2)


def test_per_bar_spread_replaces_the_fixed_one(use_numba):
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110))
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    spread = np.array([[0.0], [0.004], [0.01]])
    result = run(prices, decisions, use_numba, rules=Rules(spread=0.5), spread=spread)
    (trade,) = result.trades
    assert trade["entry_price"] == pytest.approx(100.2)
    assert trade["exit_price"] == pytest.approx(110 * 0.995)


def test_take_profit_pays_no_spread(use_numba):
    prices = bars((100, 100, 100, 100), (100, 101, 99, 100), (100, 103, 99.5, 101))
    decisions = decide(3, 1, (0, 0, +1, 0.5, 0.0, 0.02))
    result = run(prices, decisions, use_numba, rules=Rules(spread=0.01))
    assert result.trades["entry_price"][0] == pytest.approx(100.5)
    assert result.trades["exit_price"][0] == pytest.approx(100.5 * 1.02)


# --- impact and participation ---------------------------------------------------------------


def test_impact_follows_the_square_root_of_participation(use_numba):
    # Arrange: 50 units into a bar of 1,000 -> 5% participation; impact 0.1.
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 100, 100))
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    volume = np.array([[1_000.0], [1_000.0], [200.0]])
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(impact=0.1), volume=volume)
    # Assert: the quantity is sized before impact; the exit of 50 out of 200 pays 0.1*0.5.
    (trade,) = result.trades
    assert trade["size"] == pytest.approx(50.0)
    assert trade["entry_price"] == pytest.approx(100.0 * (1.0 + 0.1 * math.sqrt(0.05)))
    assert trade["exit_price"] == pytest.approx(100.0 * (1.0 - 0.05))
    assert result.risk["participation"] == {"refused": 0, "resized": 0}


def test_participation_caps_an_entry_but_never_an_exit(use_numba):
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 100, 100))
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    volume = np.array([[1_000.0], [1_000.0], [10.0]])
    rules = Rules(max_participation=0.02, impact=0.1, impact_exponent=1.0)
    result = run(prices, decisions, use_numba, rules=rules, volume=volume)
    (trade,) = result.trades
    assert trade["size"] == pytest.approx(20.0)  # 2% of 1,000
    assert trade["entry_price"] == pytest.approx(100.0 * (1.0 + 0.1 * 0.02))
    assert trade["exit_price"] == pytest.approx(100.0 * (1.0 - 0.1 * 2.0))  # 20 of 10 units
    assert result.risk["participation"] == {"refused": 0, "resized": 1}


def test_entry_into_a_bar_without_volume_is_refused(use_numba):
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100))
    decisions = decide(2, 1, (0, 0, +1, 0.5))
    volume = np.array([[1_000.0], [0.0]])
    result = run(prices, decisions, use_numba, rules=Rules(max_participation=0.5), volume=volume)
    assert len(result.trades) == 0
    assert result.risk["participation"] == {"refused": 1, "resized": 0}


def test_impact_without_volume_is_refused():
    prices = bars((100, 100, 100, 100))
    with pytest.raises(EngineError, match="volume is None, was expected"):
        simulate(*prices, Decisions.empty(1, 1), rules=Rules(impact=0.1))


# --- borrow and funding -------------------------------------------------------------------


def weekdays(*dates: str) -> np.ndarray:
    return np.array([np.datetime64(d, "ns").astype(np.int64) for d in dates])


def test_short_pays_borrow_over_a_weekend(use_numba):
    # Arrange: decide short on Thursday, fill Friday at 100, Monday opens at 110.
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110))
    decisions = decide(3, 1, (0, 0, -1, 0.5))
    times = weekdays("2024-01-04", "2024-01-05", "2024-01-08")
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(borrow_rate=0.1, funding_rate=0.3),
                 times=times)  # fmt: skip
    # Assert: 50 units x Monday's open 110 x 10% x 3 / 365 days.
    charge = 50 * 110 * 0.1 * 3 / 365
    (trade,) = result.trades
    assert trade["funding"] == pytest.approx(charge, rel=1e-12)
    assert trade["pnl"] == pytest.approx(-50 * 10.0 - charge, rel=1e-12)
    assert result.equity[-1] == pytest.approx(CASH - 500.0 - charge, rel=1e-12)
    assert result.equity[1] == pytest.approx(CASH)  # nothing charged on the entry bar


def test_long_pays_funding_and_a_negative_rate_is_received(use_numba):
    prices = bars((100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 100, 100),
                  (120, 120, 120, 120))  # fmt: skip
    decisions = decide(4, 2, (0, 0, +1, 0.25), (0, 1, +1, 0.25))
    prices = tuple(np.repeat(p, 2, axis=1) for p in prices)
    times = np.arange(4) * DAY_NS
    rules = Rules(borrow_rate=1.0, funding_rate=(0.365, -0.73))
    result = run(prices, decisions, use_numba, rules=rules, times=times)
    # 25 units each: asset 0 pays 25 x open x 0.365 / 365 per day (one day at 100, one at 120).
    paid = 25 * 100 * 0.001 + 25 * 120 * 0.001
    trades = result.trades[np.argsort(result.trades["asset"])]
    np.testing.assert_allclose(trades["funding"], [paid, -2 * paid], rtol=1e-12)
    np.testing.assert_allclose(trades["pnl"], [25 * 20 - paid, 25 * 20 + 2 * paid], rtol=1e-12)
    assert result.equity[-1] == pytest.approx(CASH + 1_000.0 + paid, rel=1e-12)


def test_borrow_rate_without_times_is_refused():
    prices = bars((100, 100, 100, 100))
    with pytest.raises(EngineError, match="times is None, was expected"):
        simulate(*prices, Decisions.empty(1, 1), rules=Rules(borrow_rate=0.05))
