"""Timeframes, resampling against pandas, range selection and timestamp parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtester.data import (
    FIELDS,
    Bars,
    format_timeframe,
    generate_market,
    parse_timeframe,
    resample,
    select_range,
    to_utc,
)
from backtester.errors import ConfigError, DataError

AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


@pytest.fixture(scope="module")
def minutes() -> Bars:
    return generate_market(pd.Timestamp("2025-03-07 13:00"), pd.Timestamp("2025-03-11 02:00"), ["BTCUSD", "ETHUSD"])


def _session_only(bars: Bars) -> Bars:
    """Drop the weekend and the hours outside 14:00-21:00 UTC, as a stock feed would."""
    index = bars.index
    keep = np.asarray((index.day_of_week < 5) & (index.hour >= 14) & (index.hour < 21))
    return Bars(bars.times[keep], bars.symbols, *(getattr(bars, f)[keep] for f in FIELDS), timeframe=bars.timeframe)


def _pandas_reference(bars: Bars, timeframe: str, column: int) -> pd.DataFrame:
    frame = pd.DataFrame({f: getattr(bars, f)[:, column] for f in FIELDS}, index=bars.index)
    rule = parse_timeframe(timeframe)
    out = frame.resample(rule, label="left", closed="left", origin="epoch").agg(AGGREGATION)
    return out.dropna(subset=["open"])


@pytest.mark.parametrize("timeframe", ["5min", "15min", "30min", "1h", "4h", "1d"])
@pytest.mark.parametrize("sessions", [False, True], ids=["24/7", "sessions"])
def test_resample_matches_pandas_resample_agg(minutes, timeframe, sessions):
    # Arrange
    bars = _session_only(minutes) if sessions else minutes
    # Act
    coarse = resample(bars, timeframe)
    # Assert
    assert coarse.timeframe == timeframe
    for column in range(bars.n_assets):
        expected = _pandas_reference(bars, timeframe, column)
        np.testing.assert_array_equal(coarse.index, expected.index)
        for field in FIELDS:
            np.testing.assert_allclose(getattr(coarse, field)[:, column], expected[field].to_numpy(), rtol=1e-12)


def test_resample_drops_empty_bins_instead_of_filling_them(minutes):
    hourly = resample(_session_only(minutes), "1h")
    assert set(hourly.index.hour) == set(range(14, 21))
    assert hourly.index.day_of_week.max() < 5


def test_resample_of_a_slice_equals_the_slice_of_the_resample(minutes):
    # Bins are aligned to the epoch, so chunk boundaries on bin edges do not matter.
    whole = resample(minutes, "4h")
    part = resample(minutes.slice(60 * 7, minutes.n_bars), "4h")  # from 20:00, a 4h edge
    np.testing.assert_array_equal(part.times, whole.times[-part.n_bars :])
    np.testing.assert_array_equal(part.close, whole.close[-part.n_bars :])


def test_resample_to_the_same_timeframe_returns_the_same_bars(minutes):
    assert resample(minutes, "1m") is minutes


def test_resample_to_a_finer_timeframe_is_a_data_error(minutes):
    hourly = resample(minutes, "1h")
    with pytest.raises(DataError, match="cannot resample 1h bars to the finer 5min"):
        resample(hourly, "5min")


def test_resample_to_a_non_multiple_is_a_data_error(minutes):
    with pytest.raises(DataError, match="7min is not a whole multiple of the data's 5min"):
        resample(resample(minutes, "5min"), "7min")


@pytest.mark.parametrize(
    ("text", "minutes_expected"),
    [
        ("1min", 1), ("5m", 5), ("5min", 5), ("15T", 15), ("60min", 60), ("1h", 60), ("1H", 60),
        ("4h", 240), (" 2 hours ", 120), ("1d", 1440), ("1D", 1440), ("1w", 7 * 1440), ("h", 60),
    ],
)  # fmt: skip
def test_parse_timeframe_accepts_common_spellings(text, minutes_expected):
    assert parse_timeframe(text) == pd.Timedelta(minutes=minutes_expected)


@pytest.mark.parametrize(
    ("text", "match"),
    [("1M", "ambiguous"), ("abc", "not a bar length"), ("0min", "not a bar length"), ("5 fortnights", "not a bar length")],
)
def test_parse_timeframe_refuses_unclear_text(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_timeframe(text)


@pytest.mark.parametrize(
    ("length", "name"),
    [(pd.Timedelta(minutes=60), "1h"), (pd.Timedelta(hours=24), "1d"), (pd.Timedelta(seconds=90), "90s"), (pd.Timedelta(minutes=15), "15min")],
)
def test_format_timeframe_gives_the_canonical_name(length, name):
    assert format_timeframe(length) == name


def test_select_range_returns_warmup_bars_and_the_first_index_in_range(minutes):
    # Act
    selected, first = select_range(minutes, pd.Timestamp("2025-03-08"), pd.Timestamp("2025-03-09"), 30, "embedded")
    # Assert
    assert first == 30
    assert selected.index[first] == pd.Timestamp("2025-03-08", tz="UTC")
    assert selected.index[0] == pd.Timestamp("2025-03-07 23:30", tz="UTC")
    assert selected.index[-1] == pd.Timestamp("2025-03-08 23:59", tz="UTC")


def test_select_range_clips_warmup_at_the_start_of_the_data(minutes):
    selected, first = select_range(minutes, pd.Timestamp("2025-03-07 13:10"), pd.Timestamp("2025-03-07 14:00"), 500, "x")
    assert first == 10 and selected.n_bars == 60


def test_select_range_without_bars_in_range_says_what_the_data_covers(minutes):
    with pytest.raises(DataError) as caught:
        select_range(minutes, pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"), 0, "data/btc.csv")
    assert str(caught.value) == (
        "data/btc.csv: no bars between 2024-01-01 00:00:00+00:00 and 2025-01-01 00:00:00+00:00; "
        "the data covers 2025-03-07 13:00:00+00:00 to 2025-03-11 01:59:00+00:00; "
        "choose --year/--start/--end inside it"
    )


def test_to_utc_reads_naive_times_as_utc_and_converts_aware_ones():
    assert to_utc("2025-01-01 10:00") == pd.Timestamp("2025-01-01 10:00", tz="UTC")
    assert to_utc(pd.Timestamp("2025-01-01 10:00", tz="America/New_York")) == pd.Timestamp("2025-01-01 15:00", tz="UTC")
    with pytest.raises(ConfigError, match="start is not a timestamp, was 'soon'"):
        to_utc("soon", "start")
