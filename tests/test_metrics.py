"""Tests of backtester.metrics against hand-worked answers and pandas reference formulas."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest

from backtester.engine.records import trade_dt
from backtester.metrics import (
    COUNT_NAMES,
    METRIC_NAMES,
    YEAR_NS,
    compute_metrics,
    periods_per_year,
)

HOUR_NS = 3600 * 1_000_000_000


def make_trades(pnl: list[float], return_pct: list[float] | None = None) -> np.ndarray:
    trades = np.zeros(len(pnl), dtype=trade_dt)
    trades["pnl"] = pnl
    trades["return_pct"] = return_pct if return_pct is not None else np.zeros(len(pnl))
    return trades


def metrics_of(
    equity: list[float],
    *,
    initial_equity: float = 100.0,
    ppy: float = 252.0,
    open_positions: list[int] | None = None,
    trades: np.ndarray | None = None,
    bar_seconds: float | None = None,
) -> dict[str, float]:
    equity_array = np.asarray(equity, dtype=np.float64)
    positions = np.zeros(equity_array.size) if open_positions is None else open_positions
    return compute_metrics(
        equity_array,
        np.asarray(positions),
        make_trades([]) if trades is None else trades,
        initial_equity=initial_equity,
        periods_per_year=ppy,
        bar_seconds=bar_seconds,
    )


# --- periods_per_year ---------------------------------------------------------------------


def test_periods_per_year_on_hourly_24_7_bars_over_one_year_is_8766():
    # Arrange: 8767 hourly stamps span exactly 8766 h = 365.25 days
    times = 1_704_067_200 * 10**9 + np.arange(8767, dtype=np.int64) * HOUR_NS

    # Act / Assert
    assert periods_per_year(times) == pytest.approx(8766.0, rel=1e-12)


def test_periods_per_year_on_business_days_matches_calendar_density():
    # Arrange: 2024 business days (Mon 1 Jan .. Tue 31 Dec), 262 bars over 365 days
    index = pd.bdate_range("2024-01-01", "2024-12-31", tz="UTC")
    times = index.as_unit("ns").asi8

    # Act
    result = periods_per_year(times)

    # Assert
    assert len(index) == 262
    assert result == pytest.approx(261 * 365.25 / 365, rel=1e-12)


def test_periods_per_year_accepts_datetime64_like_int64():
    times = np.arange(11, dtype=np.int64) * (YEAR_NS // 10)

    assert periods_per_year(times.astype("datetime64[ns]")) == pytest.approx(10.0)
    assert periods_per_year(times) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "times",
    [
        np.array([], dtype=np.int64),
        np.array([5], dtype=np.int64),
        np.array([5, 5, 5], dtype=np.int64),
        np.array([10, 5], dtype=np.int64),
    ],
    ids=["empty", "one_bar", "zero_span", "descending"],
)
def test_periods_per_year_without_positive_span_raises_value_error(times):
    with pytest.raises(ValueError, match="times"):
        periods_per_year(times)


# --- returns, risk and drawdown -----------------------------------------------------------


def test_three_bar_example_matches_hand_computed_return_metrics():
    # Arrange: returns 0.1, -0.1, 121/99 - 1 = 2/9; mean 2/27; sample variance 1929/72900;
    # ppy = 3 makes the 3 bars exactly one year.
    std = math.sqrt(1929) / 270

    # Act
    result = metrics_of([110.0, 99.0, 121.0], ppy=3.0, bar_seconds=2 * 86400.0)

    # Assert
    assert result["total_return"] == pytest.approx(0.21)
    assert result["cagr"] == pytest.approx(0.21)
    assert result["volatility"] == pytest.approx(std * math.sqrt(3))
    assert result["sharpe"] == pytest.approx(20 / math.sqrt(1929) * math.sqrt(3))
    # downside deviation sqrt(0.01 / 3); sortino = (2/27) / (0.1/sqrt3) * sqrt3 = 20/9
    assert result["sortino"] == pytest.approx(20 / 9)
    assert result["max_drawdown"] == pytest.approx(-0.1)  # 110 -> 99
    assert result["max_drawdown_bars"] == 1.0
    assert result["max_drawdown_duration_days"] == pytest.approx(2.0)
    assert result["calmar"] == pytest.approx(2.1)
    assert result["final_equity"] == 121.0


def test_return_metrics_match_pandas_reference_on_random_walk():
    # Arrange
    rng = np.random.default_rng(7)
    equity = 1000.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.01, 500))
    series = pd.Series(np.concatenate(([1000.0], equity)))
    returns = series.pct_change().dropna()
    drawdown = series / series.cummax() - 1.0

    # Act
    result = metrics_of(list(equity), initial_equity=1000.0, ppy=252.0)

    # Assert
    assert result["volatility"] == pytest.approx(returns.std() * math.sqrt(252))
    assert result["sharpe"] == pytest.approx(returns.mean() / returns.std() * math.sqrt(252))
    downside = math.sqrt((returns.clip(upper=0.0) ** 2).mean())
    assert result["sortino"] == pytest.approx(returns.mean() / downside * math.sqrt(252))
    assert result["max_drawdown"] == pytest.approx(drawdown.min())
    assert result["cagr"] == pytest.approx((equity[-1] / 1000.0) ** (252 / 500) - 1.0)


def test_cagr_over_exactly_one_year_of_bars_equals_total_return():
    equity = [101.0, 97.0, 104.0, 110.0, 108.0, 112.0, 115.0, 111.0, 118.0, 120.0, 119.0, 125.0]

    result = metrics_of(equity, ppy=12.0)

    assert result["total_return"] == pytest.approx(0.25)
    assert result["cagr"] == pytest.approx(result["total_return"])


def test_cagr_over_two_years_is_the_geometric_annual_rate():
    equity = list(np.linspace(101.0, 121.0, 24))  # 24 monthly bars ending at 121

    result = metrics_of(equity, ppy=12.0)

    assert result["cagr"] == pytest.approx(0.1)  # 1.1 ** 2 = 1.21


def test_longest_drawdown_counts_bars_below_peak_across_several_episodes():
    # Arrange: below 100 on bars 0-1 (regained at bar 2 = 100); peak 105 at bar 3, below on
    # bars 4-6, regained at bar 7 (106); bar 8 below to the end.
    equity = [90.0, 95.0, 100.0, 105.0, 100.0, 101.0, 104.0, 106.0, 53.0]

    # Act
    result = metrics_of(equity, bar_seconds=3600.0)

    # Assert
    assert result["max_drawdown_bars"] == 3.0
    assert result["max_drawdown_duration_days"] == pytest.approx(3 / 24)
    assert result["max_drawdown"] == pytest.approx(-0.5)  # 106 -> 53


def test_drawdown_never_recovered_runs_to_the_last_bar():
    result = metrics_of([120.0, 90.0, 80.0, 85.0])

    assert result["max_drawdown_bars"] == 3.0
    assert result["max_drawdown"] == pytest.approx(80.0 / 120.0 - 1.0)


def test_first_bar_below_initial_equity_is_a_drawdown():
    result = metrics_of([95.0, 100.0, 101.0])

    assert result["max_drawdown"] == pytest.approx(-0.05)
    assert result["max_drawdown_bars"] == 1.0


def test_rising_equity_has_zero_drawdown_and_nan_calmar():
    result = metrics_of([101.0, 103.0, 104.0], bar_seconds=60.0)

    assert result["max_drawdown"] == 0.0
    assert result["max_drawdown_bars"] == 0.0
    assert result["max_drawdown_duration_days"] == 0.0
    assert math.isnan(result["calmar"])
    assert math.isnan(result["sortino"])  # no losing bar


def test_flat_equity_gives_nan_sharpe_and_zero_volatility():
    result = metrics_of([100.0, 100.0, 100.0, 100.0])

    assert math.isnan(result["sharpe"])
    assert math.isnan(result["sortino"])
    assert result["volatility"] == 0.0
    assert result["total_return"] == 0.0
    assert result["cagr"] == 0.0


def test_constant_growth_rate_gives_nan_sharpe_not_a_huge_number():
    equity = list(100.0 * 1.01 ** np.arange(1, 30))

    result = metrics_of(equity)

    assert math.isnan(result["sharpe"])


def test_without_bar_seconds_drawdown_duration_in_days_is_nan():
    result = metrics_of([110.0, 99.0, 121.0])

    assert result["max_drawdown_bars"] == 1.0
    assert math.isnan(result["max_drawdown_duration_days"])


def test_single_bar_has_nan_volatility_and_sharpe_but_a_cagr():
    result = metrics_of([90.0], ppy=4.0)

    assert math.isnan(result["volatility"])
    assert math.isnan(result["sharpe"])
    assert result["sortino"] == pytest.approx(-1.0 * 2.0)  # mean -0.1 / downside 0.1 * sqrt 4
    assert result["cagr"] == pytest.approx(0.9**4 - 1.0)


def test_equity_reaching_zero_gives_nan_return_metrics_and_cagr_of_minus_one():
    result = metrics_of([50.0, 0.0, 0.0])

    assert math.isnan(result["volatility"])
    assert math.isnan(result["sharpe"])
    assert math.isnan(result["sortino"])
    assert result["cagr"] == -1.0
    assert result["total_return"] == -1.0
    assert result["max_drawdown"] == -1.0


def test_negative_final_equity_gives_nan_cagr():
    result = metrics_of([50.0, -10.0])

    assert math.isnan(result["cagr"])
    assert result["max_drawdown"] == pytest.approx(-1.1)


def test_cagr_that_overflows_a_float_is_nan_not_an_error():
    result = metrics_of([1e6], initial_equity=1.0, ppy=1e6)

    assert math.isnan(result["cagr"])


# --- trades and exposure ------------------------------------------------------------------


def test_four_trades_match_hand_computed_trade_statistics():
    # Arrange: pnl deviations from the mean 5 are 5, -10, 15, -10 -> sample var 450 / 3
    trades = make_trades([10.0, -5.0, 20.0, -5.0], [0.1, -0.05, 0.2, -0.05])

    # Act
    result = metrics_of([100.0, 120.0], trades=trades)

    # Assert
    assert result["trades"] == 4.0
    assert result["win_rate"] == 0.5
    assert result["profit_factor"] == pytest.approx(3.0)
    assert result["expectancy"] == pytest.approx(5.0)
    assert result["sqn"] == pytest.approx(2 * 5.0 / math.sqrt(150.0))
    assert result["average_trade_return"] == pytest.approx(0.05)
    assert result["best_trade"] == pytest.approx(0.2)
    assert result["worst_trade"] == pytest.approx(-0.05)


def test_no_trades_gives_zero_count_and_nan_trade_statistics():
    result = metrics_of([100.0, 101.0])

    assert result["trades"] == 0.0
    for name in ("win_rate", "profit_factor", "expectancy", "average_trade_return",
                 "best_trade", "worst_trade", "sqn"):
        assert math.isnan(result[name]), name


def test_only_winning_trades_gives_nan_profit_factor():
    result = metrics_of([100.0], trades=make_trades([3.0, 7.0]))

    assert math.isnan(result["profit_factor"])
    assert result["win_rate"] == 1.0


def test_only_losing_trades_gives_zero_profit_factor():
    result = metrics_of([100.0], trades=make_trades([-3.0, -7.0]))

    assert result["profit_factor"] == 0.0
    assert result["win_rate"] == 0.0


@pytest.mark.parametrize("pnl", [[4.0], [2.5, 2.5, 2.5]], ids=["one_trade", "equal_pnl"])
def test_sqn_without_pnl_spread_is_nan(pnl):
    result = metrics_of([100.0], trades=make_trades(pnl))

    assert math.isnan(result["sqn"])
    assert result["expectancy"] == pytest.approx(pnl[0])


def test_breakeven_trade_is_not_a_win():
    result = metrics_of([100.0], trades=make_trades([0.0, 1.0]))

    assert result["win_rate"] == 0.5


def test_exposure_is_the_share_of_bars_with_an_open_position():
    result = metrics_of([100.0, 101.0, 102.0, 103.0], open_positions=[0, 1, 3, 0])

    assert result["exposure"] == 0.5


# --- output shape and input checks --------------------------------------------------------


def test_result_has_every_metric_name_in_order_as_plain_json_floats_and_counts_as_ints():
    result = metrics_of([110.0, 99.0, 121.0], trades=make_trades([1.0, -1.0]))

    assert tuple(result) == METRIC_NAMES
    assert all(type(value) is (int if name in COUNT_NAMES else float)
               for name, value in result.items())
    assert COUNT_NAMES == {"trades", "max_drawdown_bars"}
    assert b'"trades":2,' in orjson.dumps(result)  # not 2.0
    decoded = orjson.loads(orjson.dumps(result))
    assert decoded["trades"] == 2 and type(decoded["max_drawdown_bars"]) is int
    assert decoded["max_drawdown_duration_days"] is None  # nan -> null


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"equity": np.array([])}, "equity"),
        ({"equity": np.ones((2, 2))}, "equity"),
        ({"open_positions": np.zeros(2)}, "open_positions"),
        ({"trades": np.zeros(2)}, "trades"),
        ({"initial_equity": 0.0}, "initial_equity"),
        ({"periods_per_year": float("nan")}, "periods_per_year"),
        ({"bar_seconds": -1.0}, "bar_seconds"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_input_raises_value_error_naming_the_field(kwargs, field):
    # Arrange
    arguments = {
        "equity": np.array([100.0, 101.0, 102.0]),
        "open_positions": np.zeros(3),
        "trades": make_trades([]),
        "initial_equity": 100.0,
        "periods_per_year": 252.0,
        "bar_seconds": None,
        **kwargs,
    }
    equity = arguments.pop("equity")
    open_positions = arguments.pop("open_positions")
    trades = arguments.pop("trades")

    # Act / Assert
    with pytest.raises(ValueError, match=field):
        compute_metrics(equity, open_positions, trades, **arguments)
