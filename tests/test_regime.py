"""Tests of backtester.regime: config checks, kernels against brute force, labelled scenarios."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from backtester.data.bars import Bars
from backtester.errors import ConfigError
from backtester.regime import (
    RANGING,
    REGIME_NAMES,
    TRENDING,
    UNKNOWN,
    VOLATILE,
    RegimeConfig,
    compute_regimes,
    dense_rank_1d,
    efficiency_ratio_1d_nb,
    label_regimes_1d_nb,
    log_return_volatility_1d_nb,
    percentile_bars,
    regime_first_bar,
    regime_warmup,
    rolling_percentile_1d,
    rolling_percentile_1d_nb,
)

MINUTE_NS = 60_000_000_000
SMALL = RegimeConfig(trend_window=10, volatility_window=5, percentile_window=20)
LONG_TREND = RegimeConfig(trend_window=50, volatility_window=5, percentile_window=20)


def make_bars(close) -> Bars:
    close = np.asarray(close, dtype=np.float64)
    if close.ndim == 1:
        close = close[:, None]
    close = np.ascontiguousarray(close)
    n, n_assets = close.shape
    symbols = tuple(f"S{j}" for j in range(n_assets))
    return Bars(np.arange(n, dtype=np.int64) * MINUTE_NS, symbols, close, close, close, close,
                np.ones_like(close))


def random_walk(n: int, n_assets: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, (n, n_assets)), axis=0))


def brute_force_percentile(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(values.shape[0], np.nan)
    for t in range(window - 1, values.shape[0]):
        trailing = values[t - window + 1 : t + 1]
        if not np.isnan(trailing).any():
            out[t] = np.mean(trailing <= values[t])
    return out


def test_regime_codes_and_names():
    assert (RANGING, TRENDING, VOLATILE, UNKNOWN) == (0, 1, 2, -1)
    assert REGIME_NAMES == {0: "RANGING", 1: "TRENDING", 2: "VOLATILE", -1: "UNKNOWN"}


def test_regime_config_is_frozen_keyword_only_and_slotted():
    config = RegimeConfig()
    windows = (config.trend_window, config.volatility_window, config.percentile_window)
    assert windows == (48, 48, 2000)
    assert (config.volatile_percentile, config.trend_threshold) == (0.85, 0.35)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.trend_window = 10
    with pytest.raises(TypeError):
        RegimeConfig(48)
    assert not hasattr(config, "__dict__")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trend_window", 0),
        ("trend_window", 2.5),
        ("trend_window", True),
        ("volatility_window", 1),
        ("percentile_window", 1),
        ("percentile_window", "2000"),
        ("volatile_percentile", 0.0),
        ("volatile_percentile", 1.5),
        ("volatile_percentile", float("nan")),
        ("trend_threshold", -0.1),
        ("trend_threshold", 1.01),
        ("trend_threshold", "0.3"),
    ],
)
def test_regime_config_out_of_range_value_raises_config_error_naming_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} .*, was ") as caught:
        RegimeConfig(**{field: value})
    assert "\n" not in str(caught.value)


def test_regime_config_accepts_boundary_values():
    config = RegimeConfig(trend_window=1, volatility_window=2, percentile_window=2,
                          volatile_percentile=1.0, trend_threshold=0.0)
    assert config.trend_threshold == 0.0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (RegimeConfig(), 48 + 2000 - 1),
        # first volatility at bar 5 (returns 1..5), 20 of them by bar 24
        (SMALL, 24),
        (LONG_TREND, 50),
    ],
)
def test_regime_warmup_counts_bars_until_every_window_is_full(config, expected):
    assert regime_warmup(config) == expected


@pytest.mark.parametrize("config", [SMALL, LONG_TREND])
def test_regimes_are_unknown_exactly_during_warmup(config):
    regimes = compute_regimes(make_bars(random_walk(300, 2, seed=1)), config)
    warmup = regime_warmup(config)
    assert regimes.dtype == np.int8 and regimes.shape == (300, 2)
    assert (regimes[:warmup] == UNKNOWN).all()
    assert np.isin(regimes[warmup:], [RANGING, TRENDING, VOLATILE]).all()


def test_series_shorter_than_the_first_labelled_bar_is_all_unknown():
    # default windows: volatility from bar 48, 50 of them (MIN_PERCENTILE_VALUES) at bar 97
    assert regime_first_bar(RegimeConfig()) == 97
    regimes = compute_regimes(make_bars(random_walk(97, 1, seed=2)))
    assert (regimes == UNKNOWN).all()


def test_short_history_ranks_against_the_volatilities_available():
    # 400 bars, far fewer than the 2,047 of a full window: labelled from bar 97 on, each
    # bar's percentile over every volatility so far (brute force below)
    bars = make_bars(random_walk(400, 1, seed=3))
    regimes = compute_regimes(bars)[:, 0]
    assert (regimes[:97] == UNKNOWN).all()
    assert np.isin(regimes[97:], [RANGING, TRENDING, VOLATILE]).all()
    volatility = log_return_volatility_1d_nb(bars.close[:, 0], 48)
    expanding = rolling_percentile_1d(volatility, 2000, 50)
    for t in (97, 200, 399):
        seen = volatility[48 : t + 1]
        assert expanding[t] == np.mean(seen <= volatility[t])
    assert np.isnan(expanding[96])


def test_full_window_results_are_unchanged_by_the_shorter_start():
    values = np.random.default_rng(4).normal(size=600)
    full = rolling_percentile_1d(values, 250)
    early = rolling_percentile_1d(values, 250, 50)
    np.testing.assert_array_equal(early[249:], full[249:])
    assert np.isnan(full[:249]).all() and not np.isnan(early[49:249]).any()


def test_percentile_window_as_a_duration_is_bars_of_the_timeframe():
    config = RegimeConfig(percentile_window="90d")
    assert percentile_bars(config, "1d") == 90
    assert percentile_bars(config, "1h") == 2160
    assert regime_warmup(config, "1d") == 48 + 90 - 1
    with pytest.raises(ConfigError, match=r"^percentile_window .*was 'ninety days'.*\"90d\""):
        RegimeConfig(percentile_window="ninety days")
    daily = make_bars(random_walk(300, 1, seed=5))
    daily = type(daily)(daily.times, daily.symbols, daily.open, daily.high, daily.low,
                        daily.close, daily.volume, timeframe="1d")
    np.testing.assert_array_equal(compute_regimes(daily, config),
                                  compute_regimes(daily, RegimeConfig(percentile_window=90)))


@pytest.mark.parametrize("window", [1, 2, 37, 400])
def test_rolling_percentile_matches_brute_force_with_ties_and_nans(window):
    rng = np.random.default_rng(window)
    values = rng.integers(0, 25, 2500).astype(np.float64)  # many ties
    values[[3, 900, 901, 1700]] = np.nan
    expected = brute_force_percentile(values, window)
    np.testing.assert_array_equal(rolling_percentile_1d(values, window), expected)


def test_rolling_percentile_matches_brute_force_on_continuous_values():
    values = np.random.default_rng(4).lognormal(0.0, 1.0, 3000)
    expected = brute_force_percentile(values, 250)
    np.testing.assert_array_equal(rolling_percentile_1d(values, 250), expected)


def test_rolling_percentile_at_or_before_t_ignores_values_after_t():
    rng = np.random.default_rng(8)
    values = rng.normal(size=2000)
    changed = values.copy()
    changed[1201:] = rng.normal(5.0, 3.0, 799)  # new values, also far above the old ones
    before, after = rolling_percentile_1d(values, 300), rolling_percentile_1d(changed, 300)
    np.testing.assert_array_equal(after[:1201], before[:1201])
    np.testing.assert_array_equal(rolling_percentile_1d(values[:1201], 300), before[:1201])


def test_efficiency_ratio_matches_hand_computed_example():
    close = np.array([10.0, 11.0, 10.0, 12.0, 13.0, 13.0])
    # t=3: |12-10| / (1+1+2) ; t=4: |13-11| / (1+2+1) ; t=5: |13-10| / (2+1+0)
    expected = [np.nan, np.nan, np.nan, 0.5, 0.5, 1.0]
    np.testing.assert_allclose(efficiency_ratio_1d_nb(close, 3), expected)


def test_efficiency_ratio_is_zero_on_flat_prices():
    ratio = efficiency_ratio_1d_nb(np.full(6, 4.2), 2)
    np.testing.assert_array_equal(ratio[2:], 0.0)


def test_volatility_matches_pandas_rolling_std_of_log_returns():
    close = random_walk(600, 1, seed=6)[:, 0]
    expected = np.log(pd.Series(close)).diff().rolling(48).std(ddof=0).to_numpy()
    actual = log_return_volatility_1d_nb(close, 48)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-9)


def test_clean_trend_is_labelled_trending_wherever_not_volatile():
    # Arrange: steady 0.05 % rise per bar with tiny noise, every change positive.
    rng = np.random.default_rng(12)
    n = 4000
    close = 100.0 * np.exp(0.0005 * np.arange(n) + rng.normal(0.0, 1e-5, n))
    # Act
    regimes = compute_regimes(make_bars(close))[regime_warmup(RegimeConfig()):, 0]
    # Assert: the top volatility ranks stay VOLATILE by definition; the rest is trend.
    assert not (regimes == RANGING).any()
    assert np.mean(regimes == TRENDING) > 0.7


def test_flat_noisy_series_is_labelled_ranging_wherever_not_volatile():
    rng = np.random.default_rng(13)
    close = 100.0 * (1.0 + 0.001 * rng.standard_normal(4000))
    regimes = compute_regimes(make_bars(close))[regime_warmup(RegimeConfig()):, 0]
    assert not (regimes == TRENDING).any()
    assert np.mean(regimes == RANGING) > 0.7


def test_volatility_burst_after_calm_period_is_labelled_volatile():
    # Arrange: 3000 calm bars (0.1 % moves), then moves ten times larger.
    rng = np.random.default_rng(14)
    returns = np.concatenate([rng.normal(0.0, 0.001, 3000), rng.normal(0.0, 0.01, 400)])
    close = 100.0 * np.exp(np.cumsum(returns))
    # Act
    regimes = compute_regimes(make_bars(close))[:, 0]
    # Assert: once the 48-bar window holds enough burst returns, the volatility tops the
    # trailing 2000 values until about 15 % of them come from the burst (300 bars).
    assert (regimes[3020:3250] == VOLATILE).all()
    assert np.mean(regimes[2047:3000] == VOLATILE) < 0.5


def test_flat_prices_have_zero_volatility_and_are_never_volatile():
    regimes = compute_regimes(make_bars(np.full(2200, 50.0)))
    assert (regimes[regime_warmup(RegimeConfig()):] == RANGING).all()


def test_regimes_at_or_before_t_ignore_bars_after_t():
    close = random_walk(900, 3, seed=21)
    t = 600
    changed = close.copy()
    changed[t + 1:] = random_walk(900 - t - 1, 3, seed=22) * 3.0
    regimes = compute_regimes(make_bars(close), SMALL)
    changed_regimes = compute_regimes(make_bars(changed), SMALL)
    prefix_regimes = compute_regimes(make_bars(close[: t + 1]), SMALL)
    np.testing.assert_array_equal(changed_regimes[: t + 1], regimes[: t + 1])
    np.testing.assert_array_equal(prefix_regimes, regimes[: t + 1])
    assert not np.array_equal(changed_regimes, regimes)


def test_each_asset_column_is_labelled_independently():
    bars = make_bars(random_walk(500, 3, seed=23))
    regimes = compute_regimes(bars, SMALL)
    np.testing.assert_array_equal(compute_regimes(bars.select(["S1"]), SMALL)[:, 0], regimes[:, 1])


def test_dense_rank_numbers_distinct_values_from_one_and_nan_zero():
    values = np.array([3.0, np.nan, -0.0, 7.5, 0.0, 3.0, np.nan, -2.0])
    np.testing.assert_array_equal(dense_rank_1d(values), [3, 0, 2, 4, 2, 3, 0, 1])


def test_pure_python_kernel_path_matches_compiled_kernel():
    close = random_walk(200, 1, seed=24)[:, 0]
    volatility = log_return_volatility_1d_nb(close, 5)
    rank = dense_rank_1d(volatility)
    percentile = rolling_percentile_1d_nb(volatility, rank, 20, 10)
    np.testing.assert_array_equal(
        rolling_percentile_1d_nb.py_func(volatility, rank, 20, 10), percentile
    )
    args = (volatility, percentile, efficiency_ratio_1d_nb(close, 10), 0.85, 0.35)
    np.testing.assert_array_equal(label_regimes_1d_nb.py_func(*args), label_regimes_1d_nb(*args))
