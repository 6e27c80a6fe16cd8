"""Counterfactual books: invariants, a hand-computed buy and hold, attribution on providers
of known skill, regimes per trade, provider credit, and the frozen memory mode."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from kit import OracleProvider, first_bar_of, make_config, random_bars, with_run

from backtester.errors import MemoryStoreError
from backtester.runner import run_backtest

SKILLS = {"oracle_70": 0.70, "oracle_55": 0.55, "oracle_50": 0.50, "oracle_40": 0.40}


@pytest.fixture(scope="module")
def market():
    bars = random_bars(4 * 96 * 30 + 3000, seed=5)
    return bars, first_bar_of(bars, "2025-01-01")


def _config(tmp_path: Path, *, learning: bool = True, **overrides):
    return with_run(make_config(tmp_path, learning=learning, **overrides), chunk="month")


def _books(result) -> pd.DataFrame:
    return pd.read_parquet(result.out_dir / "books.parquet")


def test_with_learning_off_the_ensemble_books_trade_exactly_what_the_run_traded(market,
                                                                                tmp_path):
    # Arrange: no memory, so learned weights are equal weights and there is no memory vote
    bars, first = market
    # Act
    result = run_backtest(_config(tmp_path, learning=False), bars=bars, first=first)
    # Assert
    books = _books(result)
    for name in ("equal_weight", "learned_without_memory_vote"):
        np.testing.assert_array_equal(books[name], result.equity["equity"])
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    assert summary["memory_mode"] == "off"
    assert all(c["books"]["learned_minus_equal"] == 0.0 for c in summary["chunks"])


def test_a_lone_provider_book_is_the_run_of_that_provider_alone(market, tmp_path):
    # Arrange: only momentum votes; its book's score is its vote x confidence, which is
    # also the ensemble score of a one-provider ensemble
    bars, first = market
    config = _config(tmp_path, learning=False,
                     **{"strategies.mean_reversion.enabled": False,
                        "strategies.breakout.enabled": False})
    # Act
    result = run_backtest(config, bars=bars, first=first)
    # Assert
    np.testing.assert_array_equal(_books(result)["momentum"], result.equity["equity"])


def test_buy_and_hold_matches_a_hand_computed_book(market, tmp_path):
    # Arrange
    bars, first = market
    config = _config(tmp_path, learning=False)
    # Act
    result = run_backtest(config, bars=bars, first=first)
    # Assert: decided at the first bar's close, filled at the next open plus slippage,
    # equal capital per symbol, held, closed at the last close less slippage
    ex = config.execution
    cash = config.run.initial_cash
    n = bars.n_assets
    fill = bars.open[first + 1] * (1 + ex.slippage)
    units = cash / n / fill
    spent = (units * fill * (1 + ex.commission)).sum()
    close = bars.close[first:]
    expected = cash - spent + close @ units
    expected[0] = cash
    exit_price = close[-1] * (1 - ex.slippage)
    expected[-1] = cash - spent + (units * exit_price * (1 - ex.commission)).sum()
    np.testing.assert_allclose(_books(result)["buy_and_hold"], expected, rtol=1e-12)


def _oracle_run(market, tmp_path):
    bars, first = market
    config = _config(tmp_path, **{"ensemble.weight_floor": 0.01,
                                  "execution.stop_loss": 0.0, "execution.take_profit": 0.0,
                                  "execution.max_holding_bars": 16})
    oracles = tuple(OracleProvider(name, skill, 16, seed=i)
                    for i, (name, skill) in enumerate(SKILLS.items()))
    return run_backtest(config, bars=bars, first=first, providers=oracles)


def test_on_providers_of_known_skill_learning_beats_equal_weight_and_regret_shrinks(
        market, tmp_path):
    # Act
    result = _oracle_run(market, tmp_path)
    # Assert
    books = result.books
    assert books["best_single"] == "oracle_70"
    overall = books["overall"]
    assert overall["learned"]["total_return"] > overall["equal_weight"]["total_return"] + 0.05
    assert books["learned_minus_equal"] > 0.05
    # the first chunk learned nothing yet: learned and equal weight are the same book
    chunks = books["chunks"]
    assert chunks[0]["learned_minus_equal"] == 0.0
    # regret to the oracle that is right 70% of the time: it is paid in the first chunk,
    # gone once the weights are learned, so the average regret shrinks chunk by chunk
    regret = [c["figures"]["oracle_70"]["total_return"] - c["figures"]["learned"]["total_return"]
              for c in chunks]
    # a chunk's own regret is to its best provider in hindsight, at least oracle_70's
    assert all(c["regret"] >= r - 1e-12 for c, r in zip(chunks, regret))
    average = np.cumsum(regret) / np.arange(1, len(regret) + 1)
    assert all(a > b for a, b in zip(average, average[1:])), regret
    assert regret[0] > 0.1 and max(regret[1:]) < 0.01, regret
    assert books["significance"]["bootstrap"]["low"] > 0  # more than noise here
    assert "better than equal weights" in books["significance"]["sentence"]


def test_regimes_and_provider_credit_are_recorded_for_every_trade(market, tmp_path):
    # Act
    result = _oracle_run(market, tmp_path)
    # Assert: trades.parquet carries each trade's regime at entry, as its outcome file does
    trades = pd.read_parquet(result.out_dir / "trades.parquet")
    memory = Path(result.config.memory.dir)
    outcomes = {o["decision_id"]: o for o in
                (orjson.loads(p.read_bytes()) for p in memory.glob("outcome_*.json"))}
    matched = trades[trades["decision_id"].isin(list(outcomes))]
    assert len(matched) == len(outcomes) > 100
    assert all(outcomes[d]["regime"] == r for d, r in zip(matched["decision_id"],
                                                            matched["regime"]))
    # the per-regime breakdown of the learned book adds up to the whole book
    by_regime = result.books["regimes"]["learned"]
    assert sum(r["trades"] for r in by_regime.values()) == len(trades)
    assert sum(r["pnl"] for r in by_regime.values()) == pytest.approx(trades["pnl"].sum())
    # every closed trade is credited to every provider as with, against or abstained
    for name, row in result.providers.items():
        assert row["trades_with"] + row["trades_against"] + row["trades_abstained"] == \
            len(outcomes), name
    def share_with(name: str) -> float:
        return result.providers[name]["trades_with"] / len(outcomes)

    assert share_with("oracle_70") > 0.8 > 0.6 > share_with("oracle_40")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _learn_two_months(market, tmp_path):
    """Learn January and February (bars handed in: the run covers first .. the last bar)."""
    bars, first = market
    march = first_bar_of(bars, "2025-03-01")
    config = _config(tmp_path, **{"run.start": "2025-01-01", "run.end": "2025-03-01"})
    run_backtest(config, bars=bars.slice(0, march), first=first)
    return config, march


def test_frozen_memory_decides_with_what_it_learned_and_writes_nothing(market, tmp_path):
    # Arrange
    bars, _ = market
    learned, march = _learn_two_months(market, tmp_path)
    memory = Path(learned.memory.dir)
    before = _digest(memory)
    frozen = replace(learned, memory=replace(learned.memory, mode="frozen"),
                     run=replace(learned.run, start="2025-03-01", end="2025-05-01"))
    # Act
    result = run_backtest(frozen, bars=bars, first=march)
    # Assert: byte-identical memory folder, and the run decided with the learned weights
    assert _digest(memory) == before
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    assert (summary["memory_mode"], summary["in_sample"], summary["learning"]) == \
        ("frozen", False, False)
    weights = [c.weights["overall"] for c in result.chunks]
    assert all(w == weights[0] for w in weights)  # nothing learned between frozen chunks
    assert len(set(weights[0].values())) > 1  # but not equal weights: learned ones


def test_frozen_memory_over_a_learned_period_needs_the_in_sample_flag(market, tmp_path):
    bars, first = market
    learned, march = _learn_two_months(market, tmp_path)
    before = _digest(Path(learned.memory.dir))
    frozen = replace(learned, memory=replace(learned.memory, mode="frozen"))
    with pytest.raises(MemoryStoreError, match="in-sample; pass --in-sample"):
        run_backtest(frozen, bars=bars.slice(0, march), first=first)
    result = run_backtest(frozen, bars=bars.slice(0, march), first=first, in_sample=True)
    assert result.in_sample
    assert _digest(Path(learned.memory.dir)) == before


def test_frozen_memory_refuses_an_empty_folder(market, tmp_path):
    bars, first = market
    config = _config(tmp_path, **{"memory.mode": "frozen"})
    with pytest.raises(MemoryStoreError, match="no committed memory here"):
        run_backtest(config, bars=bars, first=first)
    assert not Path(config.memory.dir).exists()


def test_a_manifest_naming_a_run_outside_the_runs_folder_is_refused_on_resume(market, tmp_path):
    # Arrange: an unfinished run whose manifest someone edited to point elsewhere
    bars, first = market
    march = first_bar_of(bars, "2025-03-01")
    config = _config(tmp_path, **{"run.start": "2025-01-01", "run.end": "2025-03-01"})
    run_backtest(replace(config, run=replace(config.run, chunk="quarter")),
                 bars=bars.slice(0, march), first=first)
    path = Path(config.memory.dir) / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    manifest["active_run"] = {"run_id": "../../outside", "start": "", "end": "",
                              "chunk_kind": "month"}
    path.write_bytes(orjson.dumps(manifest))
    # Act / Assert
    with pytest.raises(MemoryStoreError, match="is not a folder name"):
        run_backtest(config, bars=bars.slice(0, march), first=first, resume=True)
    assert not (tmp_path / "outside").exists()
