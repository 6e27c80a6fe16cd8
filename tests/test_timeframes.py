"""Higher-timeframe features against pandas resampling, causality by perturbing the future,
the column names, the errors and the warm-up."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from backtester.data.bars import FIELDS, Bars
from backtester.data.resample import parse_timeframe
from backtester.errors import ConfigError
from backtester.features import FEATURE_NAMES, compute_features
from backtester.market import warmup_bars
from backtester.providers.base import MarketContext
from backtester.timeframes import (
    HIGHER_WARMUP_BARS,
    higher_feature_names,
    higher_warmup_bars,
    market_features,
    timeframe_blocks,
)
from kit import make_config, random_bars

AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
QUARTER_NS = 15 * 60 * 10**9


def _without(bars: Bars, drop: np.ndarray) -> Bars:
    keep = np.ones(bars.n_bars, dtype=bool)
    keep[drop] = False
    return Bars(bars.times[keep], bars.symbols,
                *(np.ascontiguousarray(getattr(bars, f)[keep]) for f in FIELDS),
                timeframe=bars.timeframe)


@pytest.fixture(scope="module")
def gappy() -> Bars:
    """15-minute bars from 07:45 (not on an hour), with a 25-hour gap and a short one."""
    bars = random_bars(6000, seed=3, n_assets=2, start="2024-12-01 07:45")
    return _without(bars, np.r_[np.arange(1000, 1100), np.arange(4003, 4010)])


def _pandas_higher(bars: Bars, asset: int, timeframe: str) -> np.ndarray:
    """pandas resample, compute_features on the coarse frame, then each traded bar shows
    the coarse bar whose END is the last at or before the traded bar's close (ffill)."""
    rule = parse_timeframe(timeframe)
    frame = pd.DataFrame({f: getattr(bars, f)[:, asset] for f in FIELDS}, index=bars.index)
    coarse = frame.resample(rule, label="left", closed="left", origin="epoch").agg(AGGREGATION)
    coarse = coarse.dropna(subset=["open"])
    coarse_bars = Bars(coarse.index.as_unit("ns").asi8, ("X",),
                       *(np.ascontiguousarray(coarse[f].to_numpy()[:, None]) for f in FIELDS),
                       timeframe=timeframe)
    values = pd.DataFrame(compute_features(coarse_bars)[:, 0, :], index=coarse.index + rule)
    closes = bars.index + parse_timeframe(bars.timeframe)
    return values.reindex(closes, method="ffill").to_numpy()


@pytest.mark.parametrize("timeframes", [("1h",), ("4h", "1d"), ("45min", "2h")])
def test_higher_features_match_pandas_resample_then_features_then_ffill_on_bar_ends(
        gappy, timeframes):
    # Act
    features, names = market_features(gappy, timeframes)
    # Assert
    assert features.shape == (gappy.n_bars, 2, 12 * (1 + len(timeframes)))
    np.testing.assert_array_equal(features[:, :, :12], compute_features(gappy))
    for block, tf in enumerate(timeframes, start=1):
        assert names[12 * block:12 * block + 12] == tuple(f"{n}_{tf}" for n in FEATURE_NAMES)
        for asset in range(2):
            expected = _pandas_higher(gappy, asset, tf)
            actual = features[:, asset, 12 * block:12 * block + 12]
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
            np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def test_a_coarse_bar_shows_from_the_traded_bar_whose_close_ends_it():
    # Arrange: 15-minute bars from 00:00; the 00:00-01:00 hour ends at the close of bar 3
    bars = random_bars(400, seed=5, n_assets=1, start="2024-12-02")
    # Act
    features, _ = market_features(bars, ("1h",))
    hourly = compute_features(Bars(bars.times[::4], bars.symbols, bars.open[::4],
                                   np.maximum.reduceat(bars.high, np.arange(0, 400, 4)),
                                   np.minimum.reduceat(bars.low, np.arange(0, 400, 4)),
                                   bars.close[3::4], np.add.reduceat(bars.volume,
                                                                     np.arange(0, 400, 4)),
                                   timeframe="1h"))
    # Assert: bars 0..2 see no closed hour; bars 4k+3 .. 4k+6 see hour k
    assert np.isnan(features[:3, 0, 12:]).all()
    for t in (3, 4, 5, 6, 7, 250, 399):
        np.testing.assert_array_equal(features[t, 0, 12:], hourly[(t + 1) // 4 - 1, 0])


@pytest.mark.parametrize("t", [1500, 1503, 2051, 2718, 5200])  # mid-hour, mid-day, hour end
def test_rows_up_to_t_do_not_change_when_every_later_bar_changes(gappy, t):
    # Arrange
    timeframes = ("1h", "4h", "1d", "45min")
    before, _ = market_features(gappy, timeframes)
    rng = np.random.default_rng(t)
    shape = (gappy.n_bars - t - 1, gappy.n_assets)
    fields = {f: getattr(gappy, f).copy() for f in FIELDS}
    for f in ("open", "high", "low", "close"):
        fields[f][t + 1:] = rng.uniform(50.0, 150.0, shape)
    fields["volume"][t + 1:] = rng.uniform(0.0, 1e4, shape)
    future = Bars(gappy.times, gappy.symbols, *(fields[f] for f in FIELDS),
                  timeframe=gappy.timeframe)
    # Act
    after, _ = market_features(future, timeframes)
    # Assert
    np.testing.assert_array_equal(after[:t + 1], before[:t + 1])
    assert not np.array_equal(after[t + 1:], before[t + 1:], equal_nan=True)


def test_no_timeframes_gives_exactly_the_twelve_features(gappy):
    features, names = market_features(gappy, ())
    np.testing.assert_array_equal(features, compute_features(gappy))
    assert names == FEATURE_NAMES


def test_names_are_canonical_and_keep_the_given_order():
    names = higher_feature_names(("240min", "1H", "1d"))
    assert names[:12] == FEATURE_NAMES
    assert names[12] == "sma5_4h" and names[24 + 3] == "rsi14_1h" and names[-1] == "oc_range_1d"
    assert timeframe_blocks(names) == (("4h", 12), ("1h", 24), ("1d", 36))
    assert timeframe_blocks(FEATURE_NAMES) == ()


@pytest.mark.parametrize(("timeframes", "says"), [
    (("4 hours please",), "features.timeframes[0] is not a bar length"),
    (("1h", "2M"), "features.timeframes[1] is not a bar length"),
    (("10min",), "features.timeframes[0] must be a whole multiple of the data's 15min"),
    (("15min",), "features.timeframes[0] must be a whole multiple of the data's 15min"),
    (("1h", "20min"), "features.timeframes[1] must be a whole multiple of the data's 15min"),
    (("1h", "60min"), "features.timeframes lists 1h twice"),
])
def test_bad_timeframes_are_refused_in_one_line(timeframes, says):
    bars = random_bars(50, n_assets=1)
    with pytest.raises(ConfigError) as caught:
        market_features(bars, timeframes)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_context_feature_reads_a_column_by_name_and_refuses_unknown_names(gappy):
    features, names = market_features(gappy, ("4h",))
    context = MarketContext(gappy, features, np.zeros(gappy.close.shape, np.int8), names)
    column = context.feature("rsi14_4h")
    np.testing.assert_array_equal(column, features[:, :, names.index("rsi14_4h")])
    assert np.shares_memory(column, features)
    with pytest.raises(ConfigError, match=r"unknown feature 'rsi14_1d'; valid: sma5, .*rsi14_4h"):
        context.feature("rsi14_1d")
    plain = MarketContext(gappy, features[:, :, :12], context.regimes)
    assert plain.feature_names == FEATURE_NAMES


def test_warmup_covers_the_longest_timeframe_so_every_feature_is_defined_at_the_start(tmp_path):
    # Arrange
    config = make_config(tmp_path, **{"data.timeframe": "15min"})
    wanted = higher_warmup_bars(("4h", "1d"), "15min")
    assert wanted == HIGHER_WARMUP_BARS * 96
    for offset in (0, 1, 37, 95):  # the first loaded bar anywhere in a day
        bars = random_bars(wanted + 5, seed=offset, n_assets=1,
                           start=str(pd.Timestamp("2024-06-01 00:00") + offset * pd.Timedelta(
                               "15min")))
        # Act
        features, _ = market_features(bars, ("4h", "1d"))
        # Assert: the first traded bar (index `wanted`) has every feature
        assert np.isfinite(features[wanted]).all()
    assert warmup_bars(config) == warmup_bars(config, timeframes=())
    assert warmup_bars(config, timeframes=("4h", "1d")) == max(wanted, warmup_bars(config))


def test_warmup_bars_reads_features_timeframes_from_the_config(tmp_path):
    config = make_config(tmp_path, **{"data.timeframe": "15min"})
    with_1d = replace(config, features=replace(config.features, timeframes=("1d",)))
    assert warmup_bars(with_1d) == HIGHER_WARMUP_BARS * 96
    with pytest.raises(ConfigError, match=r"^features\.timeframes\[0\] must be a whole"):
        warmup_bars(config, timeframes=("5min",))


def test_built_in_strategies_give_the_same_signals_with_higher_timeframe_columns(gappy):
    from backtester.regime import compute_regimes
    from strategies import STRATEGY_REGISTRY

    regimes = compute_regimes(gappy)
    features, names = market_features(gappy, ("1h", "4h"))
    plain = MarketContext(gappy, compute_features(gappy), regimes)
    wide = MarketContext(gappy, features, regimes, names)
    for name, cls in STRATEGY_REGISTRY.items():
        if cls.__module__.startswith("strategies."):
            left, right = cls().signals(plain), cls().signals(wide)
            for field in ("entry", "view", "confidence"):
                np.testing.assert_array_equal(getattr(left, field), getattr(right, field),
                                              err_msg=f"{name}.{field}")
