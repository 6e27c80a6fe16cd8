"""Risk rules on tiny hand-computed bars: halts, correlation, exposure, cash, lots.

Every test runs twice: through the compiled kernel and through its pure-Python body.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine_kit import CASH, decide, run
from backtester.engine import ExitReason, Rules, SimulationResult


def columns(*closes: list[float]) -> tuple[np.ndarray, ...]:
    """Flat bars (o = h = l = c) from one list of prices per asset."""
    table = np.ascontiguousarray(np.array(closes, dtype=float).T)
    return table, table.copy(), table.copy(), table.copy()


def entries(result: SimulationResult) -> list[tuple[int, int]]:
    """(asset, entry bar) of every trade, in asset order."""
    return sorted((int(t["asset"]), int(t["entry_bar"])) for t in result.trades)


# --- max open positions ---------------------------------------------------------------------


def test_entries_beyond_max_open_positions_are_counted(use_numba):
    prices = columns([100.0] * 3, [100.0] * 3)
    decisions = decide(3, 2, (0, 0, +1, 0.1), (0, 1, +1, 0.1))
    result = run(prices, decisions, use_numba, max_open_positions=1)
    assert entries(result) == [(0, 1)]
    assert result.risk["max_open_positions"] == {"refused": 1, "resized": 0}


# --- daily loss limit ---------------------------------------------------------------------


def daily_loss_market():
    """Asset 0: 50 units long from bar 1 at 100, closes at 90 on bar 2 (equity 9,500)."""
    prices = columns([100, 100, 90, 90, 90, 90], [50.0] * 6)
    decisions = decide(6, 2, (0, 0, +1, 0.5), (2, 1, +1, 0.1), (3, 1, +1, 0.1))
    days = np.array([0, 0, 0, 0, 1, 1])
    return prices, decisions, days


def test_a_day_past_its_loss_limit_refuses_entries_until_the_next_day(use_numba):
    # Arrange: -5% at bar 2's close against a 3% limit; asset 1 tries bar 3, then bar 4.
    prices, decisions, days = daily_loss_market()
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(daily_loss_limit=0.03), days=days)
    # Assert: bar 3 (day 0) refused, bar 4 (day 1) filled; asset 0 is still held.
    assert entries(result) == [(0, 1), (1, 4)]
    assert result.risk["daily_loss"] == {"refused": 1, "resized": 0}
    assert result.equity[2] == pytest.approx(9_500.0)


def test_flatten_closes_every_position_at_the_close_that_hit_the_limit(use_numba):
    prices, decisions, days = daily_loss_market()
    rules = Rules(daily_loss_limit=0.03, flatten_on_daily_limit=True, slippage=0.001,
                  taker_fee=0.001)  # fmt: skip
    result = run(prices, decisions, use_numba, rules=rules, days=days)
    first = result.trades[result.trades["asset"] == 0][0]
    assert (first["exit_bar"], first["exit_reason"]) == (2, ExitReason.DAILY_LOSS)
    assert first["exit_price"] == pytest.approx(90 * 0.999)
    units = 5_000.0 / 100.1
    fees = 0.001 * units * 100.1 + 0.001 * units * 90 * 0.999
    assert first["pnl"] == pytest.approx(units * (90 * 0.999 - 100.1) - fees)
    assert result.equity[2] == pytest.approx(CASH + first["pnl"])
    assert result.open_positions[2] == 0
    assert entries(result) == [(0, 1), (1, 4)]


def test_a_loss_inside_the_limit_halts_nothing(use_numba):
    prices, decisions, days = daily_loss_market()
    result = run(prices, decisions, use_numba, rules=Rules(daily_loss_limit=0.06), days=days)
    assert entries(result) == [(0, 1), (1, 3)]
    assert result.risk["daily_loss"] == {"refused": 0, "resized": 0}


# --- drawdown -------------------------------------------------------------------------------


def test_drawdown_halt_refuses_entries_and_lifts_after_the_reset_bars(use_numba):
    # Arrange: equity 9,500 at bar 2's close (peak 10,000, limit 4%) halts from bar 2;
    # with a reset of 2 bars, the halt lifts at bar 4's close.
    prices = columns([100, 100, 90, 90, 90, 90, 90], [50.0] * 7)
    decisions = decide(7, 2, (0, 0, +1, 0.5), (2, 1, +1, 0.1), (3, 1, +1, 0.1),
                       (4, 1, +1, 0.1))  # fmt: skip
    # Act
    lifted = run(prices, decisions, use_numba,
                 rules=Rules(max_drawdown=0.04, drawdown_reset_bars=2), close_at_end=False)
    halted = run(prices, decisions, use_numba, rules=Rules(max_drawdown=0.04),
                 close_at_end=False)  # fmt: skip
    # Assert: bars 3 and 4 refused, bar 5 fills; the peak reset to 9,500.
    assert lifted.risk["drawdown"] == {"refused": 2, "resized": 0}
    assert lifted.state.units[1] > 0 and lifted.state.entry_bar[1] == 5
    assert lifted.state.peak_equity == pytest.approx(9_500.0)
    assert lifted.state.drawdown_halted_at == -1
    assert halted.risk["drawdown"] == {"refused": 3, "resized": 0}
    assert halted.state.units[1] == 0.0
    assert halted.state.drawdown_halted_at == 2


# --- correlation ----------------------------------------------------------------------------


def correlated_closes(sign: float = 1.0) -> np.ndarray:
    """Two assets over 9 bars whose returns move together (sign 1) or apart (sign -1)."""
    r0 = np.array([0.0, 0.01, -0.02, 0.015, 0.005, -0.01, 0.02, 0.0, 0.0])
    noise = np.array([0.0, 0.002, 0.001, -0.003, 0.004, -0.002, 0.001, 0.0, 0.0])
    close0 = 100 * np.exp(np.cumsum(r0))
    close1 = 50 * np.exp(np.cumsum(sign * r0 + noise))
    return np.column_stack([close0, close1])


def test_second_correlated_entry_is_scaled_by_the_excess_correlation(use_numba):
    # Arrange: asset 0 long from bar 6; asset 1 decided at bar 6 fills at bar 7's open.
    closes = correlated_closes()
    prices = columns(*closes.T)
    decisions = decide(9, 2, (5, 0, +1, 0.3), (6, 1, +1, 0.3))
    rules = Rules(correlation_window=5, correlation_threshold=0.5)
    # Act
    result = run(prices, decisions, use_numba, rules=rules)
    # Assert: rho over the 5 returns ending at bar 6's close (closes of bars 1..6).
    returns = np.diff(np.log(closes[1:7]), axis=0)
    rho = np.corrcoef(returns[:, 0], returns[:, 1])[0, 1]
    assert 0.9 < rho < 1.0
    equity = result.equity[6]  # flat bars, no cost: still 10,000
    expected = 0.3 * equity / closes[7, 1] * (1 - rho) / (1 - 0.5)
    second = result.trades[result.trades["asset"] == 1][0]
    assert second["size"] == pytest.approx(expected, rel=1e-9)
    assert result.risk["correlation"] == {"refused": 0, "resized": 1}


def test_refuse_mode_skips_the_correlated_entry(use_numba):
    prices = columns(*correlated_closes().T)
    decisions = decide(9, 2, (5, 0, +1, 0.3), (6, 1, +1, 0.3))
    rules = Rules(correlation_window=5, correlation_threshold=0.5, correlation_action="refuse")
    result = run(prices, decisions, use_numba, rules=rules)
    assert entries(result) == [(0, 6)]
    assert result.risk["correlation"] == {"refused": 1, "resized": 0}


@pytest.mark.parametrize(
    ("sign", "first_direction"), [(-1.0, +1), (1.0, -1)], ids=["anti-correlated", "opposite"]
)
def test_anti_correlated_or_opposite_positions_do_not_count(use_numba, sign, first_direction):
    closes = correlated_closes(sign)
    prices = columns(*closes.T)
    decisions = decide(9, 2, (5, 0, first_direction, 0.3), (6, 1, +1, 0.3))
    rules = Rules(correlation_window=5, correlation_threshold=0.5)
    result = run(prices, decisions, use_numba, rules=rules)
    second = result.trades[result.trades["asset"] == 1][0]
    assert second["size"] == pytest.approx(0.3 * result.equity[6] / closes[7, 1], rel=1e-12)
    assert result.risk["correlation"] == {"refused": 0, "resized": 0}


def test_correlation_is_not_checked_before_the_window_is_full(use_numba):
    prices = columns(*correlated_closes().T)
    decisions = decide(9, 2, (1, 0, +1, 0.3), (2, 1, +1, 0.3))
    result = run(prices, decisions, use_numba, rules=Rules(correlation_window=5))
    assert result.risk["correlation"] == {"refused": 0, "resized": 0}


# --- exposure, cash and lots ----------------------------------------------------------------


def test_symbol_exposure_resizes_an_entry_to_its_share_of_equity(use_numba):
    prices = columns([100.0] * 3)
    decisions = decide(3, 1, (0, 0, +1, 0.5))
    result = run(prices, decisions, use_numba, rules=Rules(max_symbol_exposure=0.3))
    assert result.trades["size"][0] == pytest.approx(30.0)
    assert result.risk["symbol_exposure"] == {"refused": 0, "resized": 1}


def test_gross_exposure_resizes_then_refuses_entries_of_one_bar(use_numba):
    # Arrange: three 50% entries at 100 under a 60% gross limit.
    prices = columns([100.0] * 3, [100.0] * 3, [100.0] * 3)
    decisions = decide(3, 3, (0, 0, +1, 0.5), (0, 1, -1, 0.5), (0, 2, +1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(max_gross_exposure=0.6))
    # Assert: 50 units, then the 1,000 of room left -> 10 units short, then no room.
    np.testing.assert_allclose(np.sort(result.trades["size"]), [10.0, 50.0])
    assert entries(result) == [(0, 1), (1, 1)]
    assert result.risk["gross_exposure"] == {"refused": 1, "resized": 1}


def test_gross_exposure_values_open_positions_at_this_open(use_numba):
    # Asset 0: 50 units from bar 1 at 100, worth 5,500 at bar 2's open (110).
    prices = columns([100, 100, 110, 110], [100.0] * 4)
    decisions = decide(4, 2, (0, 0, +1, 0.5), (1, 1, +1, 0.5))
    result = run(prices, decisions, use_numba, rules=Rules(max_gross_exposure=0.6))
    # Room = 0.6 x equity at bar 1's close (10,000) - 5,500 = 500 -> 5 units.
    assert result.trades[result.trades["asset"] == 1]["size"][0] == pytest.approx(5.0)


def test_cash_only_long_never_spends_more_than_the_cash(use_numba):
    prices = columns([100.0] * 3)
    decisions = decide(3, 1, (0, 0, +1, 1.5))
    rules = Rules(cash_only=True, taker_fee=0.001)
    result = run(prices, decisions, use_numba, rules=rules, close_at_end=False)
    units = CASH / (100 * 1.001)
    assert result.state.units[0] == pytest.approx(units, rel=1e-12)
    assert result.state.cash == pytest.approx(0.0, abs=1e-9)
    assert result.risk["cash"] == {"refused": 0, "resized": 1}


def test_cash_only_leaves_shorts_alone(use_numba):
    prices = columns([100.0] * 3)
    decisions = decide(3, 1, (0, 0, -1, 1.5))
    result = run(prices, decisions, use_numba, rules=Rules(cash_only=True), close_at_end=False)
    assert result.state.units[0] == pytest.approx(-150.0)
    assert result.risk["cash"] == {"refused": 0, "resized": 0}


def test_lot_size_rounds_down_per_asset_and_refuses_zero_lots(use_numba):
    # Arrange: 50 units wanted on each asset; lots of 7, fractional, and 60.
    prices = columns([100.0] * 3, [100.0] * 3, [100.0] * 3)
    decisions = decide(3, 3, (0, 0, +1, 0.5), (0, 1, +1, 0.5), (0, 2, -1, 0.5))
    # Act
    result = run(prices, decisions, use_numba, rules=Rules(lot_size=(7.0, 0.0, 60.0)),
                 initial_cash=30_000.0, close_at_end=False)  # fmt: skip
    # Assert: 150 units -> 147 (21 lots); 150 kept; 150 -> 120 (2 lots).
    np.testing.assert_allclose(result.state.units, [147.0, 150.0, -120.0])
    assert result.risk["lot_size"] == {"refused": 0, "resized": 0}  # rounding is no resize
    refused = run(prices, decisions, use_numba, rules=Rules(lot_size=200.0),
                  initial_cash=30_000.0)  # fmt: skip
    assert len(refused.trades) == 0
    assert refused.risk["lot_size"] == {"refused": 3, "resized": 0}


def test_lot_size_keeps_an_exact_multiple_despite_binary_fractions(use_numba):
    prices = columns([100.0] * 3)
    decisions = decide(3, 1, (0, 0, +1, 0.003))  # 0.3 units in lots of 0.1
    result = run(prices, decisions, use_numba, rules=Rules(lot_size=0.1), close_at_end=False)
    assert result.state.units[0] == pytest.approx(0.3)
