"""The embedded market generator: determinism, window consistency, realism."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtester.data import FIELDS, GENERATOR_EPOCH, REGIME_NAMES, generate_market
from backtester.data import generator
from backtester.data.generator import _generate_symbol, symbol_profile
from backtester.errors import ConfigError, DataError

UTC = "UTC"
YEAR_2025 = (pd.Timestamp("2025-01-01", tz=UTC), pd.Timestamp("2026-01-01", tz=UTC))


def _minute(ts: str) -> int:
    return int((pd.Timestamp(ts, tz=UTC) - GENERATOR_EPOCH) / pd.Timedelta(minutes=1))


def _assert_same_bars(a, b) -> None:
    assert a.symbols == b.symbols
    np.testing.assert_array_equal(a.times, b.times)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.fixture(scope="module")
def year_2025():
    return generate_market(*YEAR_2025)


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
