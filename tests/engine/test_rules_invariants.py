"""Portfolio rules: chunking invariant per rule, compiled == pure Python, accounting, state."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backtester.engine import (
    RISK_REASON_NAMES,
    Decisions,
    EngineState,
    Rules,
    SimulationResult,
    simulate,
)
from backtester.errors import EngineError

DECISION_FIELDS = ("direction", "size", "stop_loss", "take_profit", "decision_id")
HOUR_NS = 3_600 * 10**9
FRIDAY = np.datetime64("2024-01-05T09:00", "ns").astype(np.int64)

RULE_CASES = {
    "fees": dict(taker_fee=0.001, maker_fee=0.0002, slippage=0.0005),
    "spread": dict(spread=0.002),
    "spread-array": dict(),  # the per-bar spread array is passed
    "take-profit-margin": dict(take_profit_margin=0.003),
    "impact": dict(impact=0.02),
    "participation": dict(max_participation=0.05),
    "max-hold": dict(max_holding_bars=7),
    "max-open": dict(max_open_positions=1),
    "daily-loss": dict(daily_loss_limit=0.004),
    "daily-flatten": dict(daily_loss_limit=0.004, flatten_on_daily_limit=True),
    "drawdown-reset": dict(max_drawdown=0.01, drawdown_reset_bars=20),
    "drawdown": dict(max_drawdown=0.02),
    "gross": dict(max_gross_exposure=0.5),
    "symbol": dict(max_symbol_exposure=0.15),
    "correlation-scale": dict(correlation_window=20, correlation_threshold=0.2),
    "correlation-refuse": dict(correlation_window=12, correlation_threshold=0.3,
                               correlation_action="refuse"),  # fmt: skip
    "cash-only": dict(cash_only=True),
    "lot-size": dict(lot_size=(1.0, 25.0, 0.5)),
    "carry": dict(borrow_rate=0.5, funding_rate=(0.2, -0.1, 0.3)),
}
RULE_CASES["all"] = {
    key: value for case in RULE_CASES.values() for key, value in case.items()
} | dict(max_open_positions=3, max_drawdown=0.03, correlation_action="scale", impact=0.01)
# Markets that make a case's rule act (the default one would not trigger it).
MARKETS = {"cash-only": dict(size_high=1.5)}
# The risk counters each case must move (refused or resized at least once).
COUNTED = {
    "participation": "participation",
    "max-open": "max_open_positions",
    "daily-loss": "daily_loss",
    "daily-flatten": "daily_loss",
    "drawdown-reset": "drawdown",
    "drawdown": "drawdown",
    "gross": "gross_exposure",
    "symbol": "symbol_exposure",
    "correlation-scale": "correlation",
    "correlation-refuse": "correlation",
    "cash-only": "cash",
    # lot-size: rounding is not counted (only a refusal at 0 lots); the equity check shows it acted
}


def rule_market(
    seed: int, n_bars: int = 360, n_assets: int = 3, density: float = 0.08, size_high: float = 0.6
):
    """Hourly bars from a Friday (so over weekends), correlated assets, volume and spread."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.006, (n_bars, 1))
    close = 100.0 * np.exp(np.cumsum(common + rng.normal(0.0, 0.005, (n_bars, n_assets)), axis=0))
    open_ = np.vstack([np.full((1, n_assets), 100.0), close[:-1]])
    open_ *= np.exp(rng.normal(0.0, 0.003, open_.shape))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.005, close.shape)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.005, close.shape)))
    decisions = Decisions.empty(n_bars, n_assets)
    mask = rng.random((n_bars, n_assets)) < density
    count = int(mask.sum())
    decisions.direction[mask] = rng.choice(np.array([-1, 1], dtype=np.int8), count)
    decisions.size[mask] = rng.uniform(0.1, size_high, count)
    decisions.stop_loss[mask] = rng.choice([0.0, 0.01, 0.02], count)
    decisions.take_profit[mask] = rng.choice([0.0, 0.01, 0.02], count)
    decisions.decision_id[mask] = np.arange(count)
    times = FRIDAY + np.arange(n_bars) * HOUR_NS
    times[n_bars // 2 :] += 5 * HOUR_NS  # a gap
    inputs = {
        "volume": rng.lognormal(np.log(3_000.0), 0.8, (n_bars, n_assets)),
        "times": times,
        "days": times // (24 * HOUR_NS),
    }
    inputs["volume"][rng.random((n_bars, n_assets)) < 0.02] = 0.0
    return (open_, high, low, close), decisions, inputs


def options_for(case: str, inputs: dict, start: int = 0, stop: int | None = None) -> dict:
    options = {name: array[start:stop] for name, array in inputs.items()}
    if case in ("spread-array", "all"):
        n_bars = len(inputs["times"])
        spread = np.linspace(0.0, 0.004, n_bars * 3).reshape(n_bars, 3)
        options["spread"] = spread[start:stop]
    return options


def piece(decisions: Decisions, start: int, stop: int) -> Decisions:
    return Decisions(*(getattr(decisions, name)[start:stop] for name in DECISION_FIELDS))


def run_in_pieces(prices, decisions, inputs, case, cuts, **kwargs):
    rules = Rules(**RULE_CASES[case])
    state, parts = None, []
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        part = simulate(
            *(p[start:stop] for p in prices), piece(decisions, start, stop), state=state,
            rules=rules, close_at_end=stop == cuts[-1],
            **options_for(case, inputs, start, stop), **kwargs,
        )  # fmt: skip
        state = part.state
        parts.append(part)
    return parts


def summed_risk(parts: list[SimulationResult]) -> dict:
    return {
        name: {kind: sum(p.risk[name][kind] for p in parts) for kind in ("refused", "resized")}
        for name in RISK_REASON_NAMES
    }


def assert_same_state(left: EngineState, right: EngineState) -> None:
    for field in dataclasses.fields(EngineState):
        np.testing.assert_array_equal(getattr(left, field.name), getattr(right, field.name))


@pytest.mark.parametrize("n_pieces", [2, 3, 7])
@pytest.mark.parametrize("case", list(RULE_CASES))
def test_every_rule_gives_the_same_run_in_pieces_as_in_one_call(case, n_pieces):
    # Arrange: random cut points (one of them a one-bar piece when there are 7).
    prices, decisions, inputs = rule_market(list(RULE_CASES).index(case), **MARKETS.get(case, {}))
    n_bars = len(inputs["times"])
    rng = np.random.default_rng(n_pieces)
    inner = sorted(rng.choice(np.arange(2, n_bars - 2), n_pieces - 1, replace=False).tolist())
    if n_pieces == 7:
        inner[0] = 1
    cuts = [0, *inner, n_bars]
    # Act
    (whole,) = run_in_pieces(prices, decisions, inputs, case, [0, n_bars])
    parts = run_in_pieces(prices, decisions, inputs, case, cuts)
    # Assert: identical to the last bit, risk counts included.
    np.testing.assert_array_equal(np.concatenate([p.trades for p in parts]), whole.trades)
    np.testing.assert_array_equal(np.concatenate([p.equity for p in parts]), whole.equity)
    assert summed_risk(parts) == whole.risk
    assert_same_state(parts[-1].state, whole.state)
    # ... and the rule did act on this market.
    plain = simulate(*prices, decisions)
    assert not np.array_equal(whole.equity, plain.equity)
    if case in COUNTED:
        assert sum(whole.risk[COUNTED[case]].values()) > 0
    if case == "carry":
        assert np.count_nonzero(whole.trades["funding"]) > 10
    if case == "daily-flatten":
        assert "daily_loss" in {n for n in _reason_names(whole.trades)}


def _reason_names(trades: np.ndarray) -> list[str]:
    from backtester.engine import exit_reason_names

    return exit_reason_names(trades["exit_reason"])


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_compiled_kernel_and_pure_python_body_agree_for_every_rule(case):
    prices, decisions, inputs = rule_market(7, n_bars=150)
    rules = Rules(**RULE_CASES[case])
    options = options_for(case, inputs)
    compiled = simulate(*prices, decisions, rules=rules, **options)
    python = simulate(*prices, decisions, rules=rules, use_numba=False, **options)
    np.testing.assert_array_equal(compiled.trades, python.trades)
    np.testing.assert_array_equal(compiled.equity, python.equity)
    assert compiled.risk == python.risk
    assert_same_state(compiled.state, python.state)


@pytest.mark.parametrize("case", ["carry", "all", "daily-flatten", "impact"])
def test_trade_pnls_add_up_to_the_change_in_equity_with_rules(case):
    prices, decisions, inputs = rule_market(3)
    result = simulate(*prices, decisions, rules=Rules(**RULE_CASES[case]), initial_cash=50_000.0,
                      **options_for(case, inputs))  # fmt: skip
    assert result.trades["pnl"].sum() == pytest.approx(result.equity[-1] - 50_000.0, rel=1e-9)


def test_default_rules_give_the_legacy_keyword_run_to_the_bit():
    prices, decisions, _ = rule_market(11)
    legacy = simulate(*prices, decisions, commission=0.001, slippage=0.0005, max_holding_bars=9,
                      max_open_positions=2)  # fmt: skip
    rules = Rules(taker_fee=0.001, maker_fee=0.001, slippage=0.0005, max_holding_bars=9,
                  max_open_positions=2)  # fmt: skip
    ruled = simulate(*prices, decisions, rules=rules)
    np.testing.assert_array_equal(legacy.trades, ruled.trades)
    np.testing.assert_array_equal(legacy.equity, ruled.equity)
    assert_same_state(legacy.state, ruled.state)
    assert np.all(legacy.trades["funding"] == 0.0)


def test_risk_counts_every_reason_by_name():
    prices, decisions, _ = rule_market(1)
    result = simulate(*prices, decisions)
    assert list(result.risk) == list(RISK_REASON_NAMES)
    assert all(counts == {"refused": 0, "resized": 0} for counts in result.risk.values())


# --- state ----------------------------------------------------------------------------------


def test_state_round_trips_through_json_with_its_correlation_ring():
    prices, decisions, inputs = rule_market(5)
    rules = Rules(correlation_window=12, borrow_rate=0.5, funding_rate=0.2,
                  daily_loss_limit=0.004, max_drawdown=0.03, drawdown_reset_bars=20)  # fmt: skip
    result = simulate(*(p[:340] for p in prices), piece(decisions, 0, 340), rules=rules,
                      close_at_end=False, **{k: v[:340] for k, v in inputs.items()})  # fmt: skip
    state = result.state
    assert state.correlation_history.shape == (13, 3)
    assert state.open_positions > 0 and np.count_nonzero(state.funding) > 0
    text = json.dumps(state.to_json(), allow_nan=False)
    again = EngineState.from_json(json.loads(text))
    assert_same_state(again, state)
    fresh = EngineState.initial(3, 1_000.0, correlation_window=4)
    assert_same_state(EngineState.from_json(json.loads(json.dumps(fresh.to_json()))), fresh)


def test_state_saved_before_the_rules_loads_with_fresh_rule_fields():
    # Arrange: a dict as written before (no funding, ring, day or peak keys).
    prices, decisions, _ = rule_market(6)
    first = simulate(*(p[:100] for p in prices), piece(decisions, 0, 100), close_at_end=False)
    old = first.state.to_json()
    for name in ("funding", "correlation_history", "day", "day_start_equity", "day_halted",
                 "peak_equity", "drawdown_halted_at", "last_time", "correlation_count",
                 "correlation_position"):  # fmt: skip
        del old[name]
    # Act
    state = EngineState.from_json(old)
    # Assert: it continues exactly like the state it came from.
    assert state.peak_equity == first.state.last_equity
    assert state.correlation_history.shape == (1, 3)
    rest = [p[100:] for p in prices]
    np.testing.assert_array_equal(
        simulate(*rest, piece(decisions, 100, 360), state=state).equity,
        simulate(*rest, piece(decisions, 100, 360), state=first.state).equity,
    )


def test_state_with_another_correlation_window_is_refused():
    prices, decisions, _ = rule_market(2)
    state = EngineState.initial(3, 1_000.0, correlation_window=5)
    with pytest.raises(EngineError, match=r"state.correlation_history has shape \(6, 3\), "
                       r"was expected \(11, 3\) for correlation_window 10"):  # fmt: skip
        simulate(*prices, decisions, state=state, rules=Rules(correlation_window=10))


def test_times_going_back_across_chunks_are_refused():
    prices, decisions, inputs = rule_market(2)
    first = simulate(*(p[:50] for p in prices), piece(decisions, 0, 50), close_at_end=False,
                     times=inputs["times"][:50])  # fmt: skip
    with pytest.raises(EngineError, match=r"times\[0\] is .*, was expected >= "):
        simulate(*(p[50:] for p in prices), piece(decisions, 50, 360), state=first.state,
                 times=inputs["times"][50:] - 100 * HOUR_NS)  # fmt: skip


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(taker_fee=1.0), r"taker_fee is 1.0, was expected a fraction in \[0, 1\)"),
        (dict(maker_fee=-0.1), r"maker_fee is -0.1"),
        (dict(spread=float("nan")), r"spread is nan"),
        (dict(take_profit_margin=2), r"take_profit_margin is 2"),
        (dict(impact=-1.0), r"impact is -1.0, was expected a finite number >= 0"),
        (dict(impact_exponent=0.0), r"impact_exponent is 0.0, was expected a finite number > 0"),
        (dict(max_participation=1.5), r"max_participation is 1.5"),
        (dict(max_holding_bars=-1), r"max_holding_bars is -1, was expected an int >= 0"),
        (dict(max_open_positions=1.5), r"max_open_positions is 1.5"),
        (dict(daily_loss_limit=1.0), r"daily_loss_limit is 1.0"),
        (dict(flatten_on_daily_limit=1), r"flatten_on_daily_limit is 1, was expected True"),
        (dict(max_drawdown=-0.1), r"max_drawdown is -0.1"),
        (dict(drawdown_reset_bars=True), r"drawdown_reset_bars is True"),
        (dict(max_gross_exposure=float("inf")), r"max_gross_exposure is inf"),
        (dict(max_symbol_exposure=-2.0), r"max_symbol_exposure is -2.0"),
        (dict(correlation_window=1), r"correlation_window is 1, was expected 0 \(off\) or >= 2"),
        (dict(correlation_threshold=1.0), r"correlation_threshold is 1.0"),
        (dict(correlation_action="drop"), r"correlation_action is 'drop', was expected 'scale'"),
        (dict(cash_only="yes"), r"cash_only is 'yes', was expected True or False"),
        (dict(lot_size=-1.0), r"lot_size is -1.0, was expected finite lot sizes >= 0"),
        (dict(lot_size=(1.0, np.nan)), r"lot_size\[1\] is nan"),
        (dict(borrow_rate=(0.1, -0.1)), r"borrow_rate\[1\] is -0.1, was expected finite annual"),
        (dict(funding_rate=[[0.1]]), r"funding_rate has shape \(1, 1\)"),
    ],
)
def test_malformed_rules_raise_one_line_engine_error_naming_the_field(fields, message):
    with pytest.raises(EngineError, match=message) as caught:
        Rules(**fields)
    assert "\n" not in str(caught.value)


def tiny():
    prices = [np.full((4, 2), 100.0) for _ in range(4)]
    decisions = Decisions.empty(4, 2)
    return prices, decisions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(rules=Rules(), commission=0.001), r"commission is 0.001, was expected 0 when rules"),
        (dict(rules=Rules(), max_open_positions=2), r"max_open_positions is 2, was expected 0"),
        (dict(rules={"taker_fee": 0.1}), r"rules is a dict, was expected a Rules"),
        (dict(rules=Rules(lot_size=(1.0, 2.0, 3.0))), r"rules.lot_size has 3 values, was "
                                                      r"expected 2 \(one per asset\)"),
        (dict(rules=Rules(max_participation=0.1)), r"volume is None, was expected"),
        (dict(rules=Rules(funding_rate=0.1)), r"times is None, was expected"),
        (dict(rules=Rules(daily_loss_limit=0.1)), r"days is None, was expected"),
        (dict(volume=np.full((4, 3), 1.0)), r"volume has shape \(4, 3\) and dtype float64"),
        (dict(volume=np.full((4, 2), -1.0)), r"volume\[0, 0\] is -1.0, was expected a finite"),
        (dict(spread=np.full((4, 2), np.nan)), r"spread\[0, 0\] is nan"),
        (dict(times=np.arange(4.0)), r"times has shape \(4,\) and dtype float64, was expected"),
        (dict(days=np.array([0, 1, 0, 1])), r"days\[2\] is 0, was expected >= 1 \(days\[1\]\)"),
    ],
)
def test_malformed_rule_inputs_raise_one_line_engine_error(options, message):
    prices, decisions = tiny()
    with pytest.raises(EngineError, match=message) as caught:
        simulate(*prices, decisions, **options)
    assert "\n" not in str(caught.value)
