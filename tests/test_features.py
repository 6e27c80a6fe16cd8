"""Tests of backtester.features against pandas formulas, a published RSI table and hand math."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtester.data.bars import Bars
from backtester.features import (
    FEATURE_NAMES,
    WARMUP_BARS,
    compute_features,
    ema_1d_nb,
    features_1d_nb,
    rolling_mean_std_1d_nb,
    rsi_1d_nb,
)

MINUTE_NS = 60_000_000_000


def make_bars(close, open_=None, high=None, low=None, volume=None) -> Bars:
    close = np.asarray(close, dtype=np.float64)
    if close.ndim == 1:
        close = close[:, None]
    open_ = close if open_ is None else open_
    high = close if high is None else high
    low = close if low is None else low
    volume = np.ones_like(close) if volume is None else volume
    fields = [np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(close.shape))
              for x in (open_, high, low, close, volume)]
    n, n_assets = close.shape
    symbols = tuple(f"S{j}" for j in range(n_assets))
    return Bars(np.arange(n, dtype=np.int64) * MINUTE_NS, symbols, *fields)


def random_walk_bars(n: int = 1500, n_assets: int = 3, seed: int = 7, level: float = 100.0) -> Bars:
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.002, (n, n_assets)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * (1 + rng.normal(0.0, 0.0005, (n, n_assets)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.0, 0.002, (n, n_assets)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.0, 0.002, (n, n_assets)))
    volume = rng.uniform(0.0, 1000.0, (n, n_assets))
    return make_bars(close, open_, high, low, volume)


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, :, FEATURE_NAMES.index(name)]


def assert_close_with_same_nans(
    actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-9
) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12)


@pytest.fixture(scope="module")
def walk() -> tuple[Bars, np.ndarray]:
    bars = random_walk_bars()
    return bars, compute_features(bars)


def test_feature_names_are_the_twelve_documented_names_in_order():
    assert FEATURE_NAMES == (
        "sma5", "sma20", "sma50", "rsi14", "macd", "macd_signal", "macd_hist",
        "bb_position", "volume_ratio", "hl_range", "close_position", "oc_range",
    )


def test_compute_features_returns_float64_bars_by_assets_by_twelve(walk):
    bars, features = walk
    assert features.shape == (bars.n_bars, bars.n_assets, 12)
    assert features.dtype == np.float64


@pytest.mark.parametrize(("name", "window"), [("sma5", 5), ("sma20", 20), ("sma50", 50)])
def test_sma_features_match_pandas_rolling_mean(walk, name, window):
    bars, features = walk
    close = pd.DataFrame(bars.close)
    expected = (close / close.rolling(window).mean() - 1).to_numpy()
    assert_close_with_same_nans(column(features, name), expected)


def test_bb_position_matches_pandas_bands_with_population_std(walk):
    bars, features = walk
    close = pd.DataFrame(bars.close)
    mean, std = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
    lower, upper = mean - 2 * std, mean + 2 * std
    expected = ((close - lower) / (upper - lower)).to_numpy()
    assert_close_with_same_nans(column(features, "bb_position"), expected, rtol=1e-8)


def test_volume_ratio_matches_pandas_rolling_mean(walk):
    bars, features = walk
    volume = pd.DataFrame(bars.volume)
    expected = (volume / volume.rolling(20).mean()).to_numpy()
    assert_close_with_same_nans(column(features, "volume_ratio"), expected)


def test_macd_signal_and_histogram_match_pandas_ewm_after_warmup(walk):
    bars, features = walk
    close = pd.DataFrame(bars.close)
    line = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    expected = {
        "macd": (line / close).to_numpy(),
        "macd_signal": (signal / close).to_numpy(),
        "macd_hist": ((line - signal) / close).to_numpy(),
    }
    for name, values in expected.items():
        actual = column(features, name)
        # 26 + 9 - 1 = 34 bars are needed: NaN at bar indexes 0..32, defined from 33 on.
        assert np.isnan(actual[:33]).all(), name
        np.testing.assert_allclose(actual[33:], values[33:], rtol=1e-9, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("span", [2, 9, 26])
def test_ema_matches_pandas_ewm_without_adjustment(span):
    values = np.random.default_rng(3).normal(50.0, 5.0, 400)
    expected = pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(ema_1d_nb(values, span), expected, rtol=1e-12)


# StockCharts ChartSchool, "Relative Strength Index (RSI)", worked example spreadsheet
# cs-rsi.xls (QQQQ daily closes), https://chartschool.stockcharts.com/table-of-contents/
# technical-indicators-and-overlays/technical-indicators/relative-strength-index-rsi
# The page shows the closes rounded to 2 decimals (44.34, 44.09, ...); the published RSI
# column is computed from these 4-decimal closes (the rounded ones give 70.46, not 70.53).
STOCKCHARTS_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
]
STOCKCHARTS_RSI = [
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38,
    54.71, 50.42, 39.99, 41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
]


def test_rsi_first_values_match_hand_computation_from_wilder_formula():
    # Arrange: the first 14 changes of the StockCharts closes, split by hand.
    gains = [0.0595, 0.7154, 0.4986, 0.2691, 0.3290, 0.4188, 0.2393, 0.1397, 0.6680]
    losses = [0.2487, 0.5373, 0.1895, 0.4188]  # the 14th change (46.2820 -> 46.2820) is 0
    avg_gain, avg_loss = sum(gains) / 14, sum(losses) / 14  # 0.238386, 0.099593
    first = 100 - 100 / (1 + avg_gain / avg_loss)
    # Next bar: 46.2820 -> 46.0028 is a loss of 0.2792, smoothed (prev * 13 + x) / 14.
    avg_gain, avg_loss = avg_gain * 13 / 14, (avg_loss * 13 + 0.2792) / 14
    second = 100 - 100 / (1 + avg_gain / avg_loss)
    # Act
    rsi = rsi_1d_nb(np.array(STOCKCHARTS_CLOSES), 14)
    # Assert: hand values are the published ones, and the kernel reproduces them.
    assert (round(first, 2), round(second, 2)) == (70.53, 66.32)
    np.testing.assert_allclose(rsi[14:16], [first, second], rtol=1e-9)


def test_rsi_matches_stockcharts_published_table():
    rsi = rsi_1d_nb(np.array(STOCKCHARTS_CLOSES), 14)
    assert np.isnan(rsi[:14]).all()
    np.testing.assert_allclose(rsi[14:], STOCKCHARTS_RSI, atol=0.005 + 1e-9)


def test_rsi_matches_pandas_wilder_smoothing_on_random_walk(walk):
    bars, features = walk
    close = pd.Series(bars.close[:, 1])
    change = close.diff().iloc[1:]
    expected = np.full(len(close), np.nan)
    averages = []
    for part in (change.clip(lower=0), (-change).clip(lower=0)):
        seeded = pd.concat([pd.Series([part.iloc[:14].mean()]), part.iloc[14:]], ignore_index=True)
        averages.append(seeded.ewm(alpha=1 / 14, adjust=False).mean().to_numpy())
    expected[14:] = 100 * averages[0] / (averages[0] + averages[1])
    assert_close_with_same_nans(column(features, "rsi14")[:, 1], expected)


@pytest.mark.parametrize(
    ("close", "expected"),
    [
        (np.arange(1.0, 31.0), 100.0),  # only gains: average loss 0
        (np.arange(30.0, 0.0, -1.0), 0.0),  # only losses
        (np.full(30, 7.0), 50.0),  # no change at all
    ],
)
def test_rsi_limits_for_one_sided_and_flat_series(close, expected):
    rsi = rsi_1d_nb(close, 14)
    np.testing.assert_array_equal(rsi[14:], expected)


def test_bar_shape_features_match_hand_computed_three_bar_example():
    # Arrange: bar 2 has high == low (close position defaults to 0.5).
    bars = make_bars(
        close=[11.0, 9.0, 20.0],
        open_=[10.0, 10.0, 16.0],
        high=[12.0, 10.5, 20.0],
        low=[9.0, 8.5, 20.0],
        volume=[1.0, 1.0, 1.0],
    )
    # Act
    features = compute_features(bars)[:, 0, :]
    # Assert
    by_name = dict(zip(FEATURE_NAMES, features.T, strict=True))
    np.testing.assert_allclose(by_name["hl_range"], [3 / 11, 2 / 9, 0.0])
    np.testing.assert_allclose(by_name["close_position"], [2 / 3, 0.25, 0.5])
    np.testing.assert_allclose(by_name["oc_range"], [0.1, -0.1, 0.25])


def test_flat_window_after_moves_gives_bb_position_one_half_and_zero_deviation():
    close = np.concatenate([np.random.default_rng(1).normal(100.0, 3.0, 200), np.full(25, 101.3)])
    mean, std = rolling_mean_std_1d_nb(close, 20)
    features = compute_features(make_bars(close))[:, 0, :]
    assert std[-1] == 0.0 and mean[-1] == 101.3
    np.testing.assert_array_equal(features[-5:, FEATURE_NAMES.index("bb_position")], 0.5)
    np.testing.assert_array_equal(features[-5:, FEATURE_NAMES.index("sma20")], 0.0)


def test_volume_ratio_is_one_when_average_volume_is_zero():
    volume = np.concatenate([np.full(30, 5.0), np.zeros(25)])
    features = compute_features(make_bars(np.linspace(10, 20, 55), volume=volume))
    np.testing.assert_array_equal(column(features, "volume_ratio")[-5:, 0], 1.0)


def test_rolling_mean_std_stays_accurate_over_a_long_high_priced_series():
    rng = np.random.default_rng(11)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, 200_000)))
    mean, std = rolling_mean_std_1d_nb(close, 20)
    reference = pd.Series(close).rolling(20)
    np.testing.assert_allclose(mean[19:], reference.mean().to_numpy()[19:], rtol=1e-11)
    np.testing.assert_allclose(std[19:], reference.std(ddof=0).to_numpy()[19:], rtol=1e-6)


def test_rolling_mean_std_gives_nan_for_windows_holding_a_nan():
    values = np.arange(12.0)
    values[5] = np.nan
    mean, _ = rolling_mean_std_1d_nb(values, 3)
    expected = pd.Series(values).rolling(3).mean().to_numpy()
    assert_close_with_same_nans(mean, expected)


def test_each_feature_becomes_defined_at_its_documented_warmup_bar(walk):
    _, features = walk
    first_defined = {
        "sma5": 4, "sma20": 19, "sma50": 49, "rsi14": 14, "macd": 33, "macd_signal": 33,
        "macd_hist": 33, "bb_position": 19, "volume_ratio": 19,
        "hl_range": 0, "close_position": 0, "oc_range": 0,
    }
    for name, start in first_defined.items():
        values = column(features, name)
        assert np.isnan(values[:start]).all(), name
        assert np.isfinite(values[start:]).all(), name
    assert WARMUP_BARS == max(first_defined.values())


def test_features_at_or_before_t_ignore_bars_after_t(walk):
    # Arrange: replace every bar after t by unrelated values.
    bars, features = walk
    t = 700
    other = random_walk_bars(seed=99, level=250.0)
    changed = Bars(
        bars.times, bars.symbols,
        *(np.vstack([getattr(bars, f)[: t + 1], getattr(other, f)[t + 1:]])
          for f in ("open", "high", "low", "close", "volume")),
    )
    # Act
    changed_features = compute_features(changed)
    prefix_features = compute_features(bars.slice(0, t + 1))
    # Assert
    np.testing.assert_array_equal(changed_features[: t + 1], features[: t + 1])
    np.testing.assert_array_equal(prefix_features, features[: t + 1])
    assert not np.allclose(changed_features[t + 1:], features[t + 1:], equal_nan=True)


def test_each_asset_column_is_computed_independently(walk):
    bars, features = walk
    alone = compute_features(bars.select(["S2"]))
    np.testing.assert_array_equal(alone[:, 0, :], features[:, 2, :])


def test_pure_python_kernel_path_matches_compiled_kernel():
    bars = random_walk_bars(n=120, n_assets=1, seed=5)
    fields = ("open", "high", "low", "close", "volume")
    args = [np.ascontiguousarray(getattr(bars, f)[:, 0]) for f in fields]
    compiled, python = np.empty((120, 12)), np.empty((120, 12))
    features_1d_nb(*args, compiled)
    features_1d_nb.py_func(*args, python)
    np.testing.assert_allclose(python, compiled, rtol=1e-12, equal_nan=True)


def test_empty_bars_give_an_empty_feature_array():
    features = compute_features(make_bars(np.empty((0, 2))))
    assert features.shape == (0, 2, 12)
