"""[risk], [sizing], [costs] and [features] through the walk-forward loop: chunked equals
one piece with every rule on, the accounting still closes, the counts reach metrics.json
and the report, Kelly sizes from earlier chunks only, the monitor's changes are recorded,
and configs/realistic.toml runs on the embedded market and on real bars."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from kit import make_config, random_bars, with_run

from backtester.config import load_config
from backtester.data.bars import Bars
from backtester.errors import ConfigError
from backtester.runner import run_backtest
from backtester.sizing import learn_kelly

ROOT = Path(__file__).resolve().parents[1]
EVERY_RULE = {
    "costs.maker_fee": 0.0002, "costs.taker_fee": 0.0006, "costs.spread": 0.0003,
    "costs.take_profit_margin": 0.0005, "costs.impact": 0.01, "costs.max_participation": 0.5,
    "costs.borrow_rate": {"S1": 0.2, "default": 0.05}, "costs.funding_rate": 0.1,
    "risk.daily_loss_limit": 0.004, "risk.flatten_on_daily_limit": True,
    "risk.max_drawdown": 0.03, "risk.drawdown_reset_bars": 300,
    "risk.max_gross_exposure": 0.5, "risk.max_symbol_exposure": 0.2,
    "risk.correlation_window": 48, "risk.correlation_threshold": 0.1, "risk.cash_only": True,
    "sizing.method": "volatility_target", "sizing.volatility_target": 0.01,
    "sizing.confidence_scaling": True, "sizing.lot_size": {"S0": 0.5, "default": 0.1},
    "features.timeframes": ["1h", "4h"],
    "execution.max_open_positions": 3,
}


@pytest.fixture(scope="module")
def market() -> tuple[Bars, int]:
    bars = random_bars(3 * 96 * 30 + 3000)  # about three months after the warm-up
    first = int(np.searchsorted(bars.times, pd.Timestamp("2025-01-01", tz="UTC").value))
    return bars, first


def test_every_rule_on_chunked_equals_one_piece_and_the_books_balance(market, tmp_path):
    # Arrange: learning off, every rule of [risk], [sizing], [costs] and [features] on
    bars, first = market
    config = make_config(tmp_path, learning=False, **EVERY_RULE)
    # Act
    whole = run_backtest(with_run(config, chunk="all"), bars=bars, first=first, write=False)
    by_week = run_backtest(with_run(config, chunk="week"), bars=bars, first=first, write=False)
    by_bars = run_backtest(with_run(config, chunk="777"), bars=bars, first=first, write=False)
    # Assert: the same trades and equity, and the same refusals and resizes in total
    total = whole.chunks[0].risk
    assert len(whole.trades) > 30 and whole.trades["funding"].abs().sum() > 0
    reasons = set(total["refused"]) | set(total["resized"])
    assert {"correlation", "symbol_exposure", "daily_loss", "drawdown"} <= reasons, total
    assert "daily_loss" in total["exits"]
    for other in (by_week, by_bars):
        assert len(other.chunks) > 5
        pd.testing.assert_frame_equal(other.trades, whole.trades)
        np.testing.assert_array_equal(other.equity["equity"], whole.equity["equity"])
        for kind in ("exits", "refused", "resized"):
            summed: dict[str, int] = {}
            for c in other.chunks:
                for reason, n in c.risk[kind].items():
                    summed[reason] = summed.get(reason, 0) + n
            assert summed == total[kind], kind
        for name in whole.books["overall"]:
            assert other.books["overall"][name]["total_return"] == pytest.approx(
                whole.books["overall"][name]["total_return"], rel=1e-12, abs=1e-15)
    # every cost is in the trades' pnl: final equity = initial cash + their sum
    initial = config.run.initial_cash
    assert whole.metrics["final_equity"] == pytest.approx(initial + whole.trades["pnl"].sum(),
                                                          rel=1e-12)


def test_rules_off_are_todays_results(market, tmp_path):
    # Every section at its defaults, spelled out, trades exactly like a config without them
    bars, first = market
    plain = make_config(tmp_path, learning=False)
    spelled = make_config(tmp_path, learning=False, **{
        "risk.daily_loss_limit": 0.0, "sizing.method": "fixed_fraction", "costs.spread": 0.0,
        "costs.maker_fee": plain.execution.commission,
        "costs.taker_fee": plain.execution.commission, "features.timeframes": []})
    a = run_backtest(with_run(plain, chunk="month"), bars=bars, first=first, write=False)
    b = run_backtest(with_run(spelled, chunk="month"), bars=bars, first=first, write=False)
    # (decision ids differ: they are salted with the config hash, which names the keys)
    pd.testing.assert_frame_equal(a.trades.drop(columns="decision_id"),
                                  b.trades.drop(columns="decision_id"))
    np.testing.assert_array_equal(a.equity["equity"], b.equity["equity"])


def test_counts_and_costs_reach_metrics_json_and_the_report(market, tmp_path):
    bars, first = market
    config = make_config(tmp_path, learning=False, **EVERY_RULE)
    result = run_backtest(with_run(config, chunk="month"), bars=bars, first=first)
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    assert summary["risk"]["refused"] and summary["risk"]["exits"]
    assert all(set(c["risk"]) == {"exits", "refused", "resized"} for c in summary["chunks"])
    trades = pd.read_parquet(result.out_dir / "trades.parquet")
    assert "funding" in trades and trades["funding"].sum() > 0
    html = (result.out_dir / "report.html").read_text()
    assert '<section id="risk">' in html and 'data-kind="refused"' in html
    assert 'data-field="funding"' in html


def test_kelly_sizes_from_earlier_chunks_only(market, tmp_path):
    # Arrange: Kelly sizing with a low bar for an estimate, learning on
    bars, first = market
    config = make_config(tmp_path, **{"sizing.method": "kelly", "sizing.kelly_min_trades": 5,
                                      "sizing.max_fraction": 0.3})
    # Act
    result = run_backtest(with_run(config, chunk="month"), bars=bars, first=first, write=False)
    # Assert: the first month knows no trade and sizes at execution.position_size; the
    # second sizes from the tallies of the first month's closed trades
    first_chunk, second = result.chunks[0], result.chunks[1]
    assert set(first_chunk.learning["sizing"]) <= {"fixed_fraction_fallback", "kelly_zero"}
    assert first_chunk.learning["sizing"]["fixed_fraction_fallback"] > 0
    assert sum(v for k, v in second.learning["sizing"].items()
               if k.startswith("kelly_") and k != "kelly_zero") > 0


def test_kelly_tallies_are_the_first_chunks_outcomes(tmp_path):
    outcomes = [{"regime": "RANGING", "direction": 1, "return_pct": 0.02,
                 "votes": {"a": {"vote": 1}}},
                {"regime": "RANGING", "direction": -1, "return_pct": -0.01,
                 "votes": {"a": {"vote": 1}}}]
    tallies = learn_kelly({}, outcomes, ["a"])["kelly"]
    assert tallies["all"] == {"trades": 2, "wins": 1, "win_return": 0.02, "loss_return": 0.01}
    assert tallies["RANGING|-"]["trades"] == 1 and tallies["RANGING|a"]["trades"] == 1


def test_the_monitors_changes_are_in_metrics_json_and_the_report(market, tmp_path):
    bars, first = market
    config = make_config(tmp_path, **{
        "monitor.window": 10, "monitor.min_win_rate": 0.9, "monitor.adapt_threshold": True,
        "monitor.threshold_step": 0.05, "monitor.threshold_max": 0.4})
    result = run_backtest(with_run(config, chunk="month"), bars=bars, first=first)
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    changes = summary["parameter_changes"]
    thresholds = [c for c in changes if c["parameter"] == "threshold"]
    assert thresholds[0]["old"] == 0.25 and thresholds[0]["new"] == pytest.approx(0.3)
    assert thresholds[0]["chunk"] == result.chunks[0].chunk.label
    assert "win rate of the last 10 trades" in thresholds[0]["reason"]
    html = (result.out_dir / "report.html").read_text()
    assert f'<tr data-chunk="{thresholds[0]["chunk"]}"><th>' in html.split('id="risk"')[1]


def _real_bars() -> Path:
    spec = importlib.util.find_spec("backtesting")  # a dev extra, for its sample data only
    return Path(spec.submodule_search_locations[0]) / "test" / "EURUSD.csv"


def test_realistic_config_runs_on_real_bars(tmp_path):
    # EURUSD hourly bars, 2017-04 to 2018-02 (real quotes shipped with backtesting.py,
    # the first four months warm-up);
    # their first column is an unnamed index of times
    frame = pd.read_csv(_real_bars())
    frame = frame.rename(columns={frame.columns[0]: "time"})
    path = tmp_path / "EURUSD.csv"
    frame.to_csv(path, index=False)
    config = load_config(ROOT / "configs" / "realistic.toml", {
        "data.path": str(path), "data.symbols": ["EURUSD"], "data.timeframe": "1h",
        "run.start": "2017-09-01", "run.end": "2018-01-01", "run.year": None,
        "run.chunk": "month", "run.out_dir": str(tmp_path / "runs"),
        "memory.dir": str(tmp_path / "memory"), "memory.embedder": "hashing",
        # tick volume is not units traded: no participation cap or impact from it
        "costs.max_participation": 0.0, "costs.impact": 0.0})
    result = run_backtest(config)
    assert len(result.chunks) == 4 and len(result.trades) > 5
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    assert summary["risk"]["exits"]
    assert result.trades["funding"].abs().sum() > 0  # shorts borrow, longs pay funding


def test_realistic_config_runs_on_the_embedded_market(tmp_path):
    config = load_config(ROOT / "configs" / "realistic.toml", {
        "run.start": "2025-01-06", "run.end": "2025-01-27", "run.year": None,
        "run.chunk": "week", "run.out_dir": str(tmp_path / "runs"),
        "memory.dir": str(tmp_path / "memory"), "memory.embedder": "hashing",
        "data.cache_dir": str(tmp_path / "cache")})
    result = run_backtest(config, write=False)
    assert len(result.chunks) == 3 and len(result.trades) > 10
    total = {k: sum(c.risk[k].get(r, 0) for c in result.chunks for r in c.risk[k])
             for k in ("exits", "refused", "resized")}
    assert total["exits"] == len(result.trades)


def test_a_spread_column_in_the_data_costs_what_the_same_fixed_spread_costs(tmp_path):
    # A spread column of exactly 4 bp of each bar's close trades like costs.spread = 0.0004
    bars = random_bars(96 * 75, seed=3, n_assets=2, start="2024-11-01")
    frame = bars.to_long_frame()
    frame["spread"] = frame["close"] * 0.0004
    path = tmp_path / "bars.csv"
    frame.to_csv(path, index=False)
    common = {"data.path": str(path), "data.symbols": list(bars.symbols),
              "data.timeframe": "15min", "run.start": "2025-01-01", "run.end": "2025-01-15",
              "run.year": None, "run.chunk": "week"}
    from_data = make_config(tmp_path, learning=False, **common,
                            **{"costs.spread_from_data": True})
    fixed = make_config(tmp_path, learning=False, **common, **{"costs.spread": 0.0004})
    none = make_config(tmp_path, learning=False, **common)
    a, b, c = (run_backtest(cfg, write=False) for cfg in (from_data, fixed, none))
    columns = ["entry_price", "exit_price", "size", "pnl"]
    assert len(a.trades) > 10
    np.testing.assert_allclose(a.trades[columns].to_numpy(), b.trades[columns].to_numpy(),
                               rtol=1e-9)
    assert a.metrics["final_equity"] < c.metrics["final_equity"]  # the spread costs
    # without the column, asking for it is one line
    plain = tmp_path / "plain.csv"
    bars.to_long_frame().to_csv(plain, index=False)
    missing = make_config(tmp_path, learning=False, **{**common, "data.path": str(plain)},
                          **{"costs.spread_from_data": True})
    with pytest.raises(ConfigError, match="costs.spread_from_data is true but the data has no"):
        run_backtest(missing, write=False)


@pytest.mark.parametrize("sizing", [{"sizing.method": "volatility_target"},
                                    {"sizing.method": "kelly", "sizing.kelly_min_trades": 5}])
def test_no_lookahead_with_every_rule_on_and_learning(market, tmp_path, sizing):
    # Arrange: every bar from a cut inside a 4-hour bar on is changed (prices x 1.3, volume
    # x 3); learning on, so weights, Kelly tallies and the monitor read earlier chunks
    bars, first = market
    cut = first + 3001  # 15 minutes into an hour: the 1h and 4h bars in progress change
    later = np.arange(bars.n_bars) >= cut
    scale = np.where(later, 1.3, 1.0)[:, None]
    changed = Bars(bars.times, bars.symbols, bars.open * scale, bars.high * scale,
                   bars.low * scale, bars.close * scale,
                   np.where(later[:, None], bars.volume * 3, bars.volume), bars.timeframe)
    rules = {**EVERY_RULE, **sizing, "monitor.adapt_threshold": True}
    a, b = (run_backtest(with_run(make_config(tmp_path, **rules,
                                              **{"memory.dir": str(tmp_path / name)}),
                                  chunk="week"), bars=market_bars, first=first, write=False)
            for name, market_bars in (("a", bars), ("b", changed)))
    # Assert: trades closed before the cut and the equity before it are the same
    cut_time = pd.Timestamp(int(bars.times[cut]), tz="UTC")
    done_a = a.trades[a.trades["exit_time"] < cut_time].reset_index(drop=True)
    done_b = b.trades[b.trades["exit_time"] < cut_time].reset_index(drop=True)
    assert len(done_a) > 10
    pd.testing.assert_frame_equal(done_a, done_b)
    np.testing.assert_array_equal(a.equity["equity"][: cut - first],
                                  b.equity["equity"][: cut - first])
    if len(a.trades) > len(done_a):  # (Kelly sizes this losing mix to 0 after a while)
        assert not a.equity["equity"].equals(b.equity["equity"])  # the change did matter
