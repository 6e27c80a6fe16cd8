"""The embedded market generator: determinism, window consistency, realism, and regimes
that give trend following, mean reversion and breakouts each their own edge."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtester.data import FIELDS, GENERATOR_EPOCH, REGIME_NAMES, generate_market
from backtester.data import generator
from backtester.data.generator import _generate_symbol, hidden_regimes, symbol_profile
from backtester.data.resample import resample
from backtester.errors import ConfigError, DataError
from backtester.regime import (
    RANGING,
    TRENDING,
    VOLATILE,
    RegimeConfig,
    compute_regimes,
    regime_warmup,
)

UTC = "UTC"
YEAR_2025 = (pd.Timestamp("2025-01-01", tz=UTC), pd.Timestamp("2026-01-01", tz=UTC))


def _minute(ts: str) -> int:
    return int((pd.Timestamp(ts, tz=UTC) - GENERATOR_EPOCH) / pd.Timedelta(minutes=1))


def _assert_same_bars(a, b) -> None:
    assert a.symbols == b.symbols
    np.testing.assert_array_equal(a.times, b.times)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


TREND_UP, TREND_DOWN, RANGING_SPELL, VOLATILE_SPELL = range(len(REGIME_NAMES))
HOURS_2021 = 8784  # 2020 is a leap year


@pytest.fixture(scope="module")
def year_2025():
    return generate_market(*YEAR_2025)


@pytest.fixture(scope="module")
def btc_2025_15min():
    """BTCUSD 2025: 15-minute log returns and the hidden regime of each return's bar."""
    *_, close, _, regime = _generate_symbol("BTCUSD", _minute("2025-01-01"), _minute("2026-01-01"))
    log_close = np.log(close[14::15])  # the close of each 15-minute bar
    return np.diff(log_close), regime[15::15]


def _spell_starts(regime: np.ndarray) -> np.ndarray:
    """Index of the first hour of every spell."""
    return np.flatnonzero(np.r_[True, regime[1:] != regime[:-1]])


def test_same_seed_gives_identical_bars():
    # Arrange
    start, end = pd.Timestamp("2023-05-01"), pd.Timestamp("2023-05-02")
    # Act
    first = generate_market(start, end, seed=11)
    second = generate_market(start, end, seed=11)
    # Assert
    _assert_same_bars(first, second)


def test_different_seed_gives_different_bars():
    start, end = pd.Timestamp("2023-05-01"), pd.Timestamp("2023-05-02")
    a = generate_market(start, end, seed=1)
    b = generate_market(start, end, seed=2)
    assert not np.allclose(a.close, b.close)


def test_second_quarter_request_equals_that_slice_of_the_year_request(year_2025):
    # Arrange
    q2_start, q2_end = pd.Timestamp("2025-04-01", tz=UTC), pd.Timestamp("2025-07-01", tz=UTC)
    first = np.searchsorted(year_2025.times, q2_start.value)
    stop = np.searchsorted(year_2025.times, q2_end.value)
    # Act
    quarter = generate_market(q2_start, q2_end)
    # Assert
    _assert_same_bars(quarter, year_2025.slice(first, stop))


def test_window_starting_mid_minute_begins_at_the_next_whole_minute(year_2025):
    bars = generate_market(pd.Timestamp("2025-03-10 10:17:30"), pd.Timestamp("2025-03-10 12:00"))
    assert bars.index[0] == pd.Timestamp("2025-03-10 10:18", tz=UTC)
    assert bars.index[-1] == pd.Timestamp("2025-03-10 11:59", tz=UTC)
    first = np.searchsorted(year_2025.times, bars.times[0])
    _assert_same_bars(bars, year_2025.slice(first, first + bars.n_bars))


def test_a_symbol_is_the_same_whatever_other_symbols_are_requested(year_2025):
    alone = generate_market(*YEAR_2025, symbols=["ETHUSD"])
    _assert_same_bars(alone, year_2025.select(["ETHUSD"]))


def test_times_are_every_minute_of_the_window_in_utc(year_2025):
    assert year_2025.n_bars == 365 * 1440
    assert year_2025.timeframe == "1min"
    assert year_2025.index[0] == YEAR_2025[0]
    assert set(np.diff(year_2025.times)) == {60 * 10**9}


def test_ohlc_invariants_hold_on_a_generated_year(year_2025):
    o, h, l, c, v = (getattr(year_2025, f) for f in FIELDS)
    assert (h >= np.maximum(o, c)).all()
    assert (l <= np.minimum(o, c)).all()
    assert (l > 0).all()
    assert (v > 0).all()
    assert np.isfinite(np.stack([o, h, l, c, v])).all()


def test_open_is_the_previous_close_up_to_tiny_noise(year_2025):
    gap = np.abs(year_2025.open[1:] / year_2025.close[:-1] - 1.0)
    move = np.abs(year_2025.close[1:] / year_2025.close[:-1] - 1.0)
    assert np.median(gap) < 0.1 * np.median(move)
    # Wicks: the high-low range exceeds the open-close body on most bars.
    body = np.abs(year_2025.close - year_2025.open)
    assert np.mean(year_2025.high - year_2025.low > body) > 0.99


def test_default_symbols_trade_at_crypto_price_levels(year_2025):
    median = {s: np.median(year_2025.close[:, j]) for j, s in enumerate(year_2025.symbols)}
    assert 10_000 < median["BTCUSD"] < 100_000
    assert 500 < median["ETHUSD"] < 10_000
    assert 20 < median["SOLUSD"] < 1_000


def test_hourly_path_meets_the_minute_closes_at_each_hour(year_2025):
    log_price, _, _ = generator._hourly_path("BTCUSD", 7, _minute("2026-01-01") // 60)
    first_hour = _minute("2025-01-01") // 60
    hour_closes = year_2025.close[59::60, 0]
    np.testing.assert_allclose(np.log(hour_closes), log_price[first_hour + 1 :], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_log_price_stays_within_a_factor_of_ten_of_its_level_for_forty_years(seed):
    for symbol in generator.DEFAULT_SYMBOLS:
        log_price, _, _ = generator._hourly_path(symbol, seed, 40 * 8766)
        deviation = np.abs(log_price - np.log(symbol_profile(symbol).level))
        assert deviation.max() < np.log(10), symbol


def test_all_four_regimes_occur_in_a_year_in_persistent_spells():
    # Act
    *_, regime = _generate_symbol("BTCUSD", _minute("2025-01-01"), _minute("2026-01-01"))
    # Assert
    assert set(np.unique(regime)) == set(range(len(REGIME_NAMES)))
    switches = np.count_nonzero(np.diff(regime))
    mean_spell_minutes = regime.shape[0] / (switches + 1)
    assert mean_spell_minutes > 24 * 60


def test_volatility_clusters_and_volume_rises_in_volatile_spells():
    # Arrange
    o, h, l, c, v, regime = _generate_symbol("BTCUSD", _minute("2025-01-01"), _minute("2026-01-01"))
    hourly = np.log(c[59::60])
    size = np.abs(np.diff(hourly))
    # Act
    autocorrelation = np.corrcoef(size[:-1], size[1:])[0, 1]
    minute_move = np.abs(np.diff(np.log(c)))
    # Assert
    assert autocorrelation > 0.1
    assert v[regime == 3].mean() > 1.5 * v[regime == 2].mean()
    assert np.corrcoef(minute_move, v[1:])[0, 1] > 0.2


def test_trend_regimes_drift_in_their_direction():
    o, h, l, c, v, regime = _generate_symbol("ETHUSD", _minute("2021-01-01"), _minute("2025-01-01"))
    step = np.diff(np.log(c))
    assert step[regime[1:] == 0].mean() > 0 > step[regime[1:] == 1].mean()


def test_symbols_co_move_through_a_shared_market_factor(year_2025):
    hourly = np.diff(np.log(year_2025.close[59::60]), axis=0)
    correlation = np.corrcoef(hourly.T)
    assert correlation[0, 1] > 0.2 and correlation[0, 2] > 0.2


def test_unknown_symbol_gets_a_level_from_its_name_that_no_process_changes():
    # Arrange
    start, end = pd.Timestamp("2022-01-01"), pd.Timestamp("2022-01-01 00:05")
    here = generate_market(start, end, symbols=["ZZTOP"]).close[:, 0].tolist()
    script = (
        "import pandas as pd; from backtester.data import generate_market; "
        "print(generate_market(pd.Timestamp('2022-01-01'), pd.Timestamp('2022-01-01 00:05'), "
        "symbols=['ZZTOP']).close[:, 0].tolist())"
    )
    # Act: another interpreter with another str hash seed
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout
    # Assert
    assert there.strip() == str(here)
    assert symbol_profile("ZZTOP") != symbol_profile("ZZBOTTOM")
    level = symbol_profile("ZZTOP").level
    assert level > 1 and level < 10_000


def test_quote_suffix_variants_share_the_crypto_profile():
    assert symbol_profile("BTCUSDT") == symbol_profile("BTC-USD") == symbol_profile("BTCUSD")


def test_start_before_the_epoch_raises_data_error_pointing_to_data_flag():
    with pytest.raises(DataError, match=r"starts at 2020-01-01.*--data"):
        generate_market(pd.Timestamp("2019-12-31"), pd.Timestamp("2020-01-02"))


def test_end_not_after_start_raises_data_error():
    with pytest.raises(DataError, match="is not after start"):
        generate_market(pd.Timestamp("2021-01-02"), pd.Timestamp("2021-01-01"))


@pytest.mark.parametrize(
    ("symbols", "match"),
    [([], "symbols is empty"), (["BTCUSD", "BTCUSD"], "BTCUSD twice"), ([""], "invalid entry")],
)
def test_bad_symbol_lists_raise_config_error(symbols, match):
    with pytest.raises(ConfigError, match=match):
        generate_market(pd.Timestamp("2021-01-01"), pd.Timestamp("2021-01-02"), symbols=symbols)


def test_a_single_symbol_string_is_one_symbol_not_its_letters():
    bars = generate_market(pd.Timestamp("2021-01-01"), pd.Timestamp("2021-01-01 01:00"), "SOLUSD")
    assert bars.symbols == ("SOLUSD",)


def test_pure_python_kernels_match_the_compiled_ones(monkeypatch):
    # Arrange: two hours from the epoch, small enough for the interpreter
    compiled = _generate_symbol("BTCUSD", 30, 150)
    monkeypatch.setattr(generator, "_skeleton_nb", generator._skeleton_nb.py_func)
    monkeypatch.setattr(generator, "_minutes_nb", generator._minutes_nb.py_func)
    # Act
    interpreted = _generate_symbol("BTCUSD", 30, 150)
    # Assert
    for a, b in zip(compiled, interpreted):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ----------------------------------------------------------------------------- regimes
# Generator version 3: each hidden regime rewards one kind of rule (benchmarks/bench_skill.py
# measures what that gives the strategies). Statistics on fixed seeds, with wide margins.


def test_returns_are_positively_autocorrelated_inside_trend_spells(btc_2025_15min):
    # Arrange: pairs of consecutive 15-minute returns inside one trend spell
    returns, regime = btc_2025_15min
    pair = (regime[:-1] == regime[1:]) & np.isin(regime[:-1], (TREND_UP, TREND_DOWN))
    # Act
    autocorrelation = np.corrcoef(returns[:-1][pair], returns[1:][pair])[0, 1]
    # Assert: about +0.09; a random walk gives 0 +- 0.01 on this many pairs
    assert pair.sum() > 5_000
    assert autocorrelation > 0.04


def test_a_trend_spells_first_six_hours_point_the_way_of_its_next_six():
    # Arrange: the hourly path of 2021-2025, every trend spell of at least 12 hours
    agree = []
    for symbol in generator.DEFAULT_SYMBOLS:
        log_price, _, regime = generator._hourly_path(symbol, 7, HOURS_2021 + 5 * 8766)
        starts = _spell_starts(regime)
        starts = starts[np.isin(regime[starts], (TREND_UP, TREND_DOWN))]
        starts = starts[(starts >= HOURS_2021) & (starts + 12 < regime.shape[0])]
        starts = starts[regime[starts + 11] == regime[starts]]
        # Act
        first = log_price[starts + 6] - log_price[starts]
        then = log_price[starts + 12] - log_price[starts + 6]
        agree.append(np.sign(first) == np.sign(then))
    # Assert: momentum pays inside trends (about 85% agree; a coin gives 50%)
    agree = np.concatenate(agree)
    assert agree.size > 500
    assert agree.mean() > 0.7


def test_ranging_spells_pull_back_to_their_starting_level_within_hours():
    # Arrange: hourly log prices; the anchor of a ranging spell is where it began
    log_price, _, regime = generator._hourly_path("ETHUSD", 7, HOURS_2021 + 2 * 8766)
    starts = _spell_starts(regime)
    spell = np.cumsum(np.isin(np.arange(regime.shape[0]), starts)) - 1
    anchor = log_price[starts][spell]
    ranging = regime == RANGING_SPELL
    ranging[:HOURS_2021] = False
    deviation = (log_price[:-1] - anchor)[ranging]
    step = np.diff(log_price)[ranging]
    # Act: step = -pull * deviation + noise
    pull = -np.polyfit(deviation, step, 1)[0]
    half_life = np.log(2.0) / pull
    # Assert: MarketModel.range_pull_per_hour = 0.1, a half-life of about 7 hours
    assert 4.0 < half_life < 12.0


def test_volatile_spells_are_twice_as_volatile_as_ranging_ones(btc_2025_15min):
    returns, regime = btc_2025_15min
    ratio = returns[regime == VOLATILE_SPELL].std() / returns[regime == RANGING_SPELL].std()
    assert ratio > 1.7  # about 2 (regime volatilities 1.9 / 0.87, plus the burst)


def test_a_volatile_spells_first_move_follows_through():
    # Arrange: every volatile spell of 2021-2025, its first two hours and the ten after
    follow = []
    for symbol in generator.DEFAULT_SYMBOLS:
        log_price, sigma, regime = generator._hourly_path(symbol, 7, HOURS_2021 + 5 * 8766)
        starts = _spell_starts(regime)
        starts = starts[(regime[starts] == VOLATILE_SPELL) & (starts >= HOURS_2021)]
        starts = starts[starts + 12 < regime.shape[0]]
        # Act: the later move in the direction of the first one, in hourly volatilities
        first = np.sign(log_price[starts + 2] - log_price[starts])
        follow.append(first * (log_price[starts + 12] - log_price[starts + 2]) / sigma[starts])
    follow = np.concatenate(follow)
    t_statistic = follow.mean() / follow.std() * np.sqrt(follow.size)
    # Assert: about 62% follow through, t about 7
    assert follow.size > 500
    assert np.mean(follow > 0) > 0.56
    assert t_statistic > 4.0


def test_regime_labels_of_the_bars_find_the_hidden_regimes(year_2025):
    # Arrange: the default run's view, 15-minute bars and backtester.regime's labels
    bars = resample(year_2025, "15min")
    warmup = regime_warmup(RegimeConfig())
    labels = compute_regimes(bars)[warmup:]
    hidden = hidden_regimes(bars.times, bars.symbols)[warmup:]

    def share(hidden_codes: tuple[int, ...], label: int) -> float:
        return float(np.mean(labels[np.isin(hidden, hidden_codes)] == label))

    # Act / Assert: about 85% of ranging bars RANGING, 74% of volatile ones VOLATILE, 40%
    # of trend bars TRENDING (a trend is labelled once it has run for some hours)
    assert share((RANGING_SPELL,), RANGING) > 0.75
    assert share((VOLATILE_SPELL,), VOLATILE) > 0.6
    assert share((TREND_UP, TREND_DOWN), TRENDING) > 0.3
    assert share((TREND_UP, TREND_DOWN), TRENDING) > 5 * share((RANGING_SPELL,), TRENDING)


@pytest.mark.parametrize("symbol", generator.DEFAULT_SYMBOLS)
def test_realised_daily_volatility_is_near_the_symbols_profile(symbol):
    log_price, _, _ = generator._hourly_path(symbol, 7, HOURS_2021 + 5 * 8766)
    daily = np.diff(log_price[HOURS_2021::24])
    ratio = daily.std() / symbol_profile(symbol).daily_volatility
    assert 0.8 < ratio < 1.3


def test_hidden_regimes_are_the_generators_regime_of_each_bar():
    # Arrange
    first, stop = _minute("2025-03-01"), _minute("2025-03-08")
    *_, regime = _generate_symbol("SOLUSD", first, stop)
    times = generator.minute_times(first, stop)
    # Act
    hidden = hidden_regimes(times, ["BTCUSD", "SOLUSD"])
    # Assert
    assert hidden.shape == (stop - first, 2) and hidden.dtype == np.int8
    np.testing.assert_array_equal(hidden[:, 1], regime)
    assert len(np.unique(hidden[:, 0])) > 1


def test_hidden_regimes_before_the_epoch_raise_data_error():
    times = np.array([pd.Timestamp("2019-12-31", tz=UTC).value])
    with pytest.raises(DataError, match="before the embedded market"):
        hidden_regimes(times, ["BTCUSD"])
