"""simulate(): chunking invariant, accounting invariants, validation, state and results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backtester.engine import (
    Decisions,
    EngineState,
    ExitReason,
    exit_reason_names,
    simulate,
    trade_dt,
)
from backtester.engine.kernels import simulate_nb
from backtester.engine.records import (
    ACCOUNT_SIZE,
    NO_TIME,
    RISK_SIZE,
    STATE_ARRAY_FIELDS,
    SimulationStatus,
)
from backtester.engine.rules import Rules, pack_rules
from backtester.errors import EngineError

DECISION_FIELDS = ("direction", "size", "stop_loss", "take_profit", "decision_id")


def random_market(seed: int, n_bars: int = 300, n_assets: int = 3, density: float = 0.08):
    """Random-walk OHLC and dense random decisions (longs, shorts, SL/TP, 0 and NaN)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n_bars, n_assets)), axis=0))
    open_ = np.vstack([np.full((1, n_assets), 100.0), close[:-1]])
    open_ *= np.exp(rng.normal(0.0, 0.004, open_.shape))  # gaps
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.006, close.shape)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.006, close.shape)))
    decisions = Decisions.empty(n_bars, n_assets)
    mask = rng.random((n_bars, n_assets)) < density
    count = int(mask.sum())
    decisions.direction[mask] = rng.choice(np.array([-1, 1], dtype=np.int8), count)
    decisions.size[mask] = rng.uniform(0.05, 0.5, count)
    decisions.stop_loss[mask] = rng.choice([0.0, np.nan, 0.01, 0.02], count)
    decisions.take_profit[mask] = rng.choice([0.0, np.nan, 0.015, 0.03], count)
    decisions.decision_id[mask] = rng.integers(0, 2**62, count)
    return (open_, high, low, close), decisions


def piece(decisions: Decisions, start: int, stop: int) -> Decisions:
    return Decisions(*(getattr(decisions, name)[start:stop] for name in DECISION_FIELDS))


SETTINGS = [
    dict(commission=0.001, slippage=0.0005, max_holding_bars=7, max_open_positions=2),
    dict(commission=0.0, slippage=0.0, max_holding_bars=0, max_open_positions=0),
    dict(commission=0.002, slippage=0.001, max_holding_bars=30, max_open_positions=1),
]


# --- invariants ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("settings", SETTINGS, ids=["all-rules", "plain", "one-slot"])
def test_simulating_in_pieces_equals_simulating_in_one_call(seed, settings):
    # Arrange: random cut points, including a one-bar piece.
    prices, decisions = random_market(seed)
    n_bars = prices[0].shape[0]
    rng = np.random.default_rng(100 + seed)
    inner = sorted(rng.choice(np.arange(2, n_bars - 2), 3, replace=False).tolist())
    cuts = [0, 1, *inner, n_bars]
    # Act
    whole = simulate(*prices, decisions, **settings)
    state, equities, trades = None, [], []
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        part = simulate(
            *(p[start:stop] for p in prices),
            piece(decisions, start, stop),
            state=state,
            close_at_end=stop == n_bars,
            **settings,
        )
        state = part.state
        equities.append(part.equity)
        trades.append(part.trades)
    # Assert: identical to the last bit.
    assert len(whole.trades) > 20  # the scenario exercises the rules
    assert set(whole.trades["exit_reason"]) >= {ExitReason.STOP_LOSS, ExitReason.TAKE_PROFIT}
    np.testing.assert_array_equal(np.concatenate(trades), whole.trades)
    np.testing.assert_array_equal(np.concatenate(equities), whole.equity)
    for field in dataclasses.fields(EngineState):
        np.testing.assert_array_equal(getattr(state, field.name), getattr(whole.state, field.name))


def test_pieces_without_close_at_end_carry_open_positions_and_pending_decisions():
    prices, decisions = random_market(5, density=0.2)
    first = simulate(*(p[:150] for p in prices), piece(decisions, 0, 150), close_at_end=False)
    assert first.state.open_positions > 0
    assert np.count_nonzero(first.state.pending_direction) > 0
    np.testing.assert_array_equal(first.state.pending_direction, decisions.direction[149])


@pytest.mark.parametrize("seed", range(3))
def test_compiled_kernel_and_pure_python_body_agree(seed):
    prices, decisions = random_market(seed, n_bars=120)
    settings = SETTINGS[0]
    compiled = simulate(*prices, decisions, **settings)
    python = simulate(*prices, decisions, use_numba=False, **settings)
    np.testing.assert_array_equal(compiled.trades, python.trades)
    np.testing.assert_array_equal(compiled.equity, python.equity)
    np.testing.assert_array_equal(compiled.open_positions, python.open_positions)


@pytest.mark.parametrize("settings", SETTINGS, ids=["all-rules", "plain", "one-slot"])
def test_trade_pnls_add_up_to_the_change_in_equity(settings):
    prices, decisions = random_market(11)
    result = simulate(*prices, decisions, initial_cash=50_000.0, **settings)
    assert result.trades["pnl"].sum() == pytest.approx(result.equity[-1] - 50_000.0, rel=1e-9)
    assert result.state.cash == pytest.approx(result.equity[-1], rel=1e-12)


def test_trades_obey_fill_timing_and_position_limit():
    prices, decisions = random_market(3)
    result = simulate(*prices, decisions, max_open_positions=2, max_holding_bars=5)
    trades = result.trades
    assert result.open_positions.max() <= 2
    assert np.all(trades["exit_bar"] >= trades["entry_bar"])
    assert np.all(trades["exit_bar"] - trades["entry_bar"] <= 5)
    # Each trade was opened by a decision taken on the bar before its entry.
    decided = decisions.decision_id[trades["entry_bar"] - 1, trades["asset"]]
    np.testing.assert_array_equal(decided, trades["decision_id"])


def test_equity_marks_open_positions_to_the_close():
    prices, decisions = random_market(8)
    close = prices[3]
    result = simulate(*prices, decisions, close_at_end=False, commission=0.001)
    # Rebuild the equity of the last bar from the state: cash + signed units x close.
    expected = result.state.cash + float(result.state.units @ close[-1])
    assert result.equity[-1] == pytest.approx(expected, rel=1e-12)


# --- state and results --------------------------------------------------------------------


def test_initial_state_is_all_cash_and_flat():
    state = EngineState.initial(2, 5_000.0)
    assert (state.cash, state.last_equity, state.next_bar) == (5_000.0, 5_000.0, 0)
    np.testing.assert_array_equal(state.units, [0.0, 0.0])
    np.testing.assert_array_equal(state.pending_direction, [0, 0])
    assert state.open_positions == 0
    assert state.n_assets == 2


def test_simulate_leaves_the_input_state_untouched_and_returns_read_only_arrays():
    prices, decisions = random_market(2)
    first = simulate(*(p[:100] for p in prices), piece(decisions, 0, 100), close_at_end=False)
    units_before = first.state.units.copy()
    simulate(*(p[100:] for p in prices), piece(decisions, 100, 300), state=first.state)
    np.testing.assert_array_equal(first.state.units, units_before)
    with pytest.raises(ValueError):
        first.state.units[0] = 1.0


def test_bar_offset_defaults_to_the_state_next_bar():
    prices, decisions = random_market(4)
    first = simulate(*(p[:100] for p in prices), piece(decisions, 0, 100), close_at_end=False)
    second = simulate(*(p[100:] for p in prices), piece(decisions, 100, 300), state=first.state)
    assert first.state.next_bar == 100
    assert second.state.next_bar == 300
    assert second.trades["exit_bar"].min() >= 100


def test_bar_offset_that_skips_bars_after_a_state_is_refused():
    prices, decisions = random_market(4)
    first = simulate(*(p[:100] for p in prices), piece(decisions, 0, 100), close_at_end=False)
    with pytest.raises(EngineError, match=r"bar_offset is 120, was expected 100"):
        simulate(*(p[120:] for p in prices), piece(decisions, 120, 300), state=first.state,
                 bar_offset=120)  # fmt: skip


def test_empty_decisions_hold_no_order():
    decisions = Decisions.empty(3, 2)
    assert decisions.shape == (3, 2)
    assert decisions.direction.dtype == np.int8
    assert not decisions.direction.any()
    np.testing.assert_array_equal(decisions.decision_id, np.full((3, 2), -1))


def test_exit_reason_names_map_codes_in_order():
    codes = np.array([ExitReason.END, ExitReason.STOP_LOSS, ExitReason.SIGNAL], dtype=np.int8)
    assert exit_reason_names(codes) == ["end", "stop_loss", "signal"]


def test_kernel_reports_a_full_trades_buffer_instead_of_writing_past_it():
    # Arrange: two trades to record, room for one.
    prices = np.full((3, 2), 100.0)
    direction = np.zeros((3, 2), dtype=np.int8)
    direction[0] = 1
    size = np.full((3, 2), 0.1)
    nan = np.full((3, 2), np.nan)
    ids = np.zeros((3, 2), dtype=np.int64)
    state = EngineState.initial(2, 1_000.0)
    arrays = [np.array(getattr(state, name)) for name, _ in STATE_ARRAY_FIELDS]
    params, asset_params = pack_rules(Rules(), 2, has_volume=False, has_spread=False,
                                      has_times=False, has_days=False)  # fmt: skip
    clock = np.array([NO_TIME, 0, -1, NO_TIME, 0, 0], dtype=np.int64)
    no_volume, no_times = np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    trades = np.zeros(1, dtype=trade_dt)
    # Act
    n_trades, status = simulate_nb(
        prices, prices, prices, prices, direction, size, nan, nan, ids, params, asset_params,
        no_volume, no_volume, no_times, no_times, True, 0, np.full(ACCOUNT_SIZE, 1_000.0),
        clock, *arrays, np.full((1, 2), np.nan), np.empty(3), np.empty(3, np.int64), trades,
        np.zeros((RISK_SIZE, 2), dtype=np.int64),
    )  # fmt: skip
    # Assert
    assert (n_trades, status) == (1, SimulationStatus.TRADES_BUFFER_FULL)


# --- validation ---------------------------------------------------------------------------


def tiny():
    prices = [np.full((4, 2), 100.0) for _ in range(4)]
    decisions = Decisions.empty(4, 2)
    decisions.direction[1, 0] = 1
    decisions.size[1, 0] = 0.5
    return prices, decisions


def spoil_price(field: int, value: float):
    def spoil(prices, decisions, options):
        prices[field] = prices[field].copy()
        prices[field][2, 1] = value

    return spoil


def spoil_decision(name: str, value, bar: int = 1):
    def spoil(prices, decisions, options):
        getattr(decisions, name)[bar, 0] = value

    return spoil


def spoil_option(name: str, value):
    def spoil(prices, decisions, options):
        options[name] = value

    return spoil


def spoil_shape(prices, decisions, options):
    prices[2] = prices[2][:3]


def spoil_dimensions(prices, decisions, options):
    prices[0] = prices[0][:, 0]


def spoil_state(prices, decisions, options):
    options["state"] = EngineState.initial(3, 1_000.0)


def spoil_decision_shape(prices, decisions, options):
    options["decisions"] = Decisions.empty(5, 2)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (spoil_price(3, np.nan), r"close\[2, 1\] is nan, prices must be finite and > 0"),
        (spoil_price(0, 0.0), r"open\[2, 1\] is 0.0"),
        (spoil_price(1, -5.0), r"high\[2, 1\] is -5.0"),
        (spoil_price(2, np.inf), r"low\[2, 1\] is inf"),
        (spoil_shape, r"low has shape \(3, 2\)"),
        (spoil_dimensions, r"open has shape \(4,\), was expected \(n_bars, n_assets\)"),
        (spoil_decision_shape, r"decisions.direction has shape \(5, 2\), was expected \(4, 2\)"),
        (spoil_decision("direction", 3), r"decisions.direction\[1, 0\] is 3"),
        (spoil_decision("size", 0.0), r"decisions.size\[1, 0\] is 0.0 on a decision"),
        (spoil_decision("size", np.nan), r"decisions.size\[1, 0\] is nan"),
        (spoil_decision("stop_loss", -0.01), r"decisions.stop_loss\[1, 0\] is -0.01"),
        (spoil_decision("take_profit", np.inf), r"decisions.take_profit\[1, 0\] is inf"),
        (spoil_option("commission", -0.001), r"commission is -0.001, was expected a fraction"),
        (spoil_option("slippage", 1.5), r"slippage is 1.5"),
        (spoil_option("max_holding_bars", -1), r"max_holding_bars is -1"),
        (spoil_option("max_open_positions", 1.5), r"max_open_positions is 1.5"),
        (spoil_option("initial_cash", 0.0), r"initial_cash is 0.0"),
        (spoil_option("bar_offset", -3), r"bar_offset is -3"),
        (spoil_state, r"state.units has shape \(3,\), was expected \(2,\)"),
    ],
)
def test_malformed_input_raises_one_line_engine_error_naming_the_field(spoil, message):
    # Arrange
    prices, decisions = tiny()
    options: dict = {"decisions": decisions}
    spoil(prices, decisions, options)
    # Act / Assert
    with pytest.raises(EngineError, match=message) as caught:
        simulate(*prices, **options)
    assert "\n" not in str(caught.value)
    assert "got" not in str(caught.value)


def test_size_and_stops_are_only_checked_where_there_is_a_decision():
    prices, decisions = tiny()
    decisions.size[2, 1] = -1.0  # no direction at [2, 1]: ignored
    decisions.stop_loss[3, 0] = -1.0
    result = simulate(*prices, decisions)
    assert len(result.trades) == 1


def test_decisions_of_another_type_are_refused():
    prices, _ = tiny()
    with pytest.raises(EngineError, match="decisions is a dict, was expected a Decisions"):
        simulate(*prices, {"direction": np.zeros((4, 2))})
