"""The walk-forward loop: chunk invariance, no lookahead, accounting, written results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from kit import random_bars

from backtester.config import load_config
from backtester.data.bars import Bars
from backtester.runner import run_backtest, warmup_bars


@pytest.fixture(scope="module")
def market() -> tuple[Bars, int]:
    bars = random_bars(4 * 96 * 30 + 3000)  # about four months after the warm-up
    first = int(np.searchsorted(bars.times, pd.Timestamp("2025-01-01", tz="UTC").value))
    return bars, first


def _config(tmp_path, **run):
    """The default config with learning off (the chunk-invariance setting)."""
    config = load_config(None, {"run.out_dir": str(tmp_path / "runs"), "memory.mode": "off",
                                "memory.dir": str(tmp_path / "memory")})
    return replace(config, run=replace(config.run, **run))


def test_chunked_run_equals_one_piece(market, tmp_path):
    # Arrange
    bars, first = market
    # Act
    by_month = run_backtest(_config(tmp_path, chunk="month"), bars=bars, first=first, write=False)
    whole = run_backtest(_config(tmp_path, chunk="all"), bars=bars, first=first, write=False)
    by_bars = run_backtest(_config(tmp_path, chunk="1234"), bars=bars, first=first, write=False)
    # Assert: same trades, field by field, and the same equity curve
    assert len(by_month.chunks) >= 4 and len(whole.chunks) == 1
    assert len(whole.trades) > 20
    for other in (by_month, by_bars):
        pd.testing.assert_frame_equal(other.trades, whole.trades)
        np.testing.assert_array_equal(other.equity["equity"], whole.equity["equity"])


def test_accounting_final_equity_is_cash_plus_trade_pnl(market, tmp_path):
    bars, first = market
    result = run_backtest(_config(tmp_path, chunk="month"), bars=bars, first=first, write=False)
    initial = result.config.run.initial_cash
    assert result.metrics["final_equity"] == pytest.approx(initial + result.trades["pnl"].sum(),
                                                           rel=1e-12)
    # chunk returns compound to the whole-period return
    growth = np.prod([1 + c.metrics["total_return"] for c in result.chunks])
    assert growth - 1 == pytest.approx(result.metrics["total_return"], rel=1e-9)
    assert sum(c.metrics["trades"] for c in result.chunks) == len(result.trades)


def test_no_lookahead_changing_the_future_leaves_the_past(market, tmp_path):
    bars, first = market
    cut = first + 3000
    later = np.arange(bars.n_bars) >= cut
    scale = np.where(later, 1.3, 1.0)[:, None]
    changed = Bars(bars.times, bars.symbols, bars.open * scale, bars.high * scale,
                   bars.low * scale, bars.close * scale,
                   np.where(later[:, None], bars.volume * 3, bars.volume), bars.timeframe)
    config = _config(tmp_path, chunk="month")
    a = run_backtest(config, bars=bars, first=first, write=False)
    b = run_backtest(config, bars=changed, first=first, write=False)
    cut_time = pd.Timestamp(int(bars.times[cut]), tz="UTC")
    # every trade that closed before the change is the same, and so is the equity before it
    done_a = a.trades[a.trades["exit_time"] < cut_time]
    done_b = b.trades[b.trades["exit_time"] < cut_time]
    assert len(done_a) > 10
    pd.testing.assert_frame_equal(done_a.reset_index(drop=True), done_b.reset_index(drop=True))
    np.testing.assert_array_equal(a.equity["equity"][: cut - first], b.equity["equity"][: cut - first])
    assert not a.equity["equity"].equals(b.equity["equity"])  # the change did matter later


def test_results_are_written_and_agree_with_each_other(market, tmp_path):
    bars, first = market
    result = run_backtest(_config(tmp_path, chunk="month"), bars=bars, first=first)
    out = result.out_dir
    assert {p.name for p in out.iterdir()} == {"metrics.json", "trades.parquet",
                                               "equity.parquet", "config.toml",
                                               "books.parquet", "prices.parquet",
                                               "report.html"}
    summary = orjson.loads((out / "metrics.json").read_bytes())
    trades = pd.read_parquet(out / "trades.parquet")
    equity = pd.read_parquet(out / "equity.parquet")
    assert summary["overall"]["trades"] == len(trades)
    assert summary["overall"]["final_equity"] == pytest.approx(equity["equity"].iloc[-1])
    assert [c["label"] for c in summary["chunks"]] == [c.chunk.label for c in result.chunks]
    assert summary["config_hash"] == result.config.decision_hash()
    books = pd.read_parquet(out / "books.parquet")
    np.testing.assert_array_equal(books["learned"], equity["equity"])
    assert list(books.columns) == ["time", *summary["books"]["names"]]
    assert set(trades["regime"]) <= {"TRENDING", "RANGING", "VOLATILE", "UNKNOWN"}
    # the written config reproduces the run's config
    assert load_config(out / "config.toml") == result.config


def test_warmup_covers_features_regimes_and_ml_training_history():
    from backtester.features import WARMUP_BARS
    from backtester.regime import regime_warmup

    config = load_config(None)
    assert warmup_bars(config) == max(WARMUP_BARS, regime_warmup(config.regime))
    ml = load_config(Path(__file__).resolve().parents[1] / "configs" / "ml.toml")
    gbm = next(p for p in ml.providers if p.name == "gbm")
    assert warmup_bars(ml) >= gbm.train_bars + gbm.horizon
