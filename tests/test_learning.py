"""Proof that the ensemble learns: providers of known skill, and the memory between chunks."""

from __future__ import annotations

import numpy as np
import pytest

from kit import OracleProvider, first_bar_of, make_config, random_bars, with_run

from backtester.runner import run_backtest

SKILLS = {"oracle_70": 0.70, "oracle_55": 0.55, "oracle_50": 0.50, "oracle_40": 0.40}


@pytest.fixture(scope="module")
def market():
    bars = random_bars(4 * 96 * 30 + 3000, seed=5)
    return bars, first_bar_of(bars, "2025-01-01")


def _oracles(horizon: int) -> tuple[OracleProvider, ...]:
    return tuple(OracleProvider(name, skill, horizon, seed=i)
                 for i, (name, skill) in enumerate(SKILLS.items()))


def _run(market, tmp_path, method: str, floor: float = 0.2):
    bars, first = market
    # trades exit after exactly the oracles' horizon (no stop or target), so a trade's pnl
    # follows whether its direction was right over that horizon
    config = with_run(make_config(tmp_path / method, **{
        "ensemble.method": method, "ensemble.weight_floor": floor,
        "execution.stop_loss": 0.0, "execution.take_profit": 0.0,
        "execution.max_holding_bars": 16}), chunk="month")
    return run_backtest(config, bars=bars, first=first, write=False,
                        providers=_oracles(config.execution.max_holding_bars))


def test_weights_rank_by_skill_after_two_chunks_and_learning_beats_equal(market, tmp_path):
    # Act
    learned = _run(market, tmp_path, "mwu", floor=0.01)  # a low floor: no ties at the floor
    equal = _run(market, tmp_path, "equal")
    # Assert: the weights used in the third chunk (learned from chunks one and two) rank
    # the oracles strictly by their skill
    third = learned.chunks[2].weights["overall"]
    weights = [third[name] for name in SKILLS]
    assert all(a > b for a, b in zip(weights, weights[1:])), third
    first = learned.chunks[0].weights["overall"]
    assert len(set(round(first[n], 12) for n in SKILLS)) == 1  # chunk one: nothing learned yet
    # over chunks 2..4 the learned ensemble's hit rate and pnl beat equal weights
    def later(result, key):
        return [c.learning["ensemble"][key] for c in result.chunks[1:]]

    hits = sum(later(learned, "hits")) / sum(later(learned, "votes"))
    hits_equal = sum(later(equal, "hits")) / sum(later(equal, "votes"))
    assert hits > hits_equal + 0.03, (hits, hits_equal)
    def later_pnl(result):
        return result.chunks[-1].metrics["final_equity"] - result.chunks[0].metrics["final_equity"]

    assert later_pnl(learned) > later_pnl(equal), (later_pnl(learned), later_pnl(equal))


@pytest.mark.parametrize("method", ["thompson", "wilson"])
def test_alternative_methods_also_favour_the_skilled_oracle(market, tmp_path, method):
    result = _run(market, tmp_path, method)
    third = result.chunks[2].weights["overall"]
    assert third["oracle_70"] > third["oracle_50"] > 0
    assert third["oracle_70"] > third["oracle_40"]


def test_learning_is_deterministic(market, tmp_path):
    a = _run(market, tmp_path / "a", "thompson")
    b = _run(market, tmp_path / "b", "thompson")
    assert [c.weights for c in a.chunks] == [c.weights for c in b.chunks]
    np.testing.assert_array_equal(a.equity["equity"], b.equity["equity"])
