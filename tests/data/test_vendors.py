"""Bar files as vendors write them: one small sample per shape, hand-checkable times and
prices; the layouts sniffed (banner, delimiter, decimal comma, encoding); duplicates; the
one-symbol file named by --symbols."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data import load_bars
from backtester.errors import ConfigError, DataError


def _load(path: Path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bars = load_bars(path, **kwargs)
    return bars, [str(w.message) for w in caught]


def _times(bars) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in bars.index]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_cryptodatadownload_banner_ampm_dates_newest_first(tmp_path):
    path = _write(tmp_path / "Bitstamp_BTCUSD_1h.csv",
                  "Timestamps are UTC timezone,https://www.CryptoDataDownload.com\n"
                  "Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD\n"
                  "2019-10-09 11-PM,BTCUSD,8600,8650,8590,8620,10,86200\n"
                  "2019-10-09 10-PM,BTCUSD,8550,8610,8540,8600,12,103200\n"
                  "2019-10-09 12-PM,BTCUSD,8500,8560,8490,8550,9,76950\n")
    bars, notes = _load(path)
    assert bars.symbols == ("BTCUSD",)
    assert _times(bars) == ["2019-10-09 12:00", "2019-10-09 22:00", "2019-10-09 23:00"]
    assert bars.close[:, 0].tolist() == [8550, 8600, 8620]
    assert bars.volume[:, 0].tolist() == [9, 12, 10]  # Volume BTC, the first volume
    assert any("skipped 1 line above the header ('Timestamps are UTC timezone" in n
               for n in notes)
    assert any("'Volume BTC' read as the volume" in n for n in notes)


def test_cryptodatadownload_unix_column_is_the_time(tmp_path):
    path = _write(tmp_path / "cdd.csv",
                  "https://www.CryptoDataDownload.com\n"
                  "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n"
                  "1570665600000,2019-10-10 00:00:00,BTC/USDT,1,2,0.5,1.5,3,4,5\n"
                  "1570662000000,2019-10-09 23:00:00,BTC/USDT,1,2,0.5,1.2,3,4,5\n")
    bars, _ = _load(path)
    assert _times(bars) == ["2019-10-09 23:00", "2019-10-10 00:00"]
    assert bars.symbols == ("BTC/USDT",)


def test_metatrader5_tab_separated_angle_brackets_date_and_time(tmp_path):
    path = _write(tmp_path / "EURUSD_H1.csv",
                  "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
                  "2019.10.09\t22:00:00\t1.0970\t1.0980\t1.0960\t1.0975\t1200\t0\t12\n"
                  "2019.10.09\t23:00:00\t1.0975\t1.0990\t1.0970\t1.0985\t900\t0\t15\n")
    bars, notes = _load(path)
    assert _times(bars) == ["2019-10-09 22:00", "2019-10-09 23:00"]
    assert bars.close[:, 0].tolist() == [1.0975, 1.0985]
    assert bars.spread is None  # points, not price units
    assert any("ignored column '<SPREAD>'" in n for n in notes)
    assert any("read as tab-separated" in n for n in notes)


def test_metatrader4_history_without_header(tmp_path):
    path = _write(tmp_path / "GBPUSD60.csv",
                  "2019.10.09,22:00,1.2200,1.2210,1.2190,1.2205,150\n"
                  "2019.10.09,23:00,1.2205,1.2230,1.2200,1.2225,180\n")
    bars, notes = _load(path)
    assert _times(bars) == ["2019-10-09 22:00", "2019-10-09 23:00"]
    assert bars.volume[:, 0].tolist() == [150, 180]
    assert any("no header; read the 7 columns as MetaTrader history" in n for n in notes)


def test_yahoo_daily_with_adj_close(tmp_path):
    path = _write(tmp_path / "AAPL.csv",
                  "Date,Open,High,Low,Close,Adj Close,Volume\n"
                  "2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n"
                  "2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500\n")
    bars, _ = _load(path)
    assert _times(bars) == ["2024-01-02 00:00", "2024-01-03 00:00"]
    assert bars.close[:, 0].tolist() == [185.64, 184.25]  # Close, not Adj Close
    assert bars.timeframe == "1d"


def test_stooq_plain_and_ticker_per_date_time(tmp_path):
    plain = _write(tmp_path / "spy.csv", "Date,Open,High,Low,Close,Volume\n"
                                         "2024-01-02,100,101,99,100.5,1000\n"
                                         "2024-01-03,100.5,102,100,101.5,1100\n")
    assert _times(_load(plain)[0]) == ["2024-01-02 00:00", "2024-01-03 00:00"]
    path = _write(tmp_path / "aapl_us_h.csv",
                  "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
                  "AAPL.US,60,20240102,150000,187,188,186,187.5,1000,0\n"
                  "AAPL.US,60,20240102,160000,187.5,189,187,188.5,1100,0\n")
    bars, _ = _load(path)
    assert bars.symbols == ("AAPL.US",)
    assert _times(bars) == ["2024-01-02 15:00", "2024-01-02 16:00"]


def test_binance_klines_without_and_with_header(tmp_path):
    rows = ("1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68,1704070799999,"
            "5.4e7,47134,682.9,2.9e7,0\n"
            "1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37,1704074399999,"
            "5.1e7,44440,664.4,2.8e7,0\n")
    bare = _write(tmp_path / "BTCUSDT-1h-2024-01.csv", rows)
    bars, notes = _load(bare)
    assert _times(bars) == ["2024-01-01 00:00", "2024-01-01 01:00"]
    assert bars.close[:, 0].tolist() == [42475.23, 42613.56]
    assert bars.volume[:, 0].tolist() == [1271.68, 1196.37]
    assert any("read the 12 columns as Binance klines" in n for n in notes)
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore\n")
    headed = _write(tmp_path / "BTCUSDT.csv", header + rows)
    assert _times(_load(headed)[0]) == _times(bars)


def test_dukascopy_day_first_with_milliseconds(tmp_path):
    path = _write(tmp_path / "EURUSD_Candlestick_1_Hour_BID.csv",
                  "Gmt time,Open,High,Low,Close,Volume\n"
                  "09.10.2019 22:00:00.000,1.0970,1.0980,1.0960,1.0975,1234.5\n"
                  "09.10.2019 23:00:00.000,1.0975,1.0990,1.0970,1.0985,2345.5\n")
    bars, _ = _load(path)
    assert _times(bars) == ["2019-10-09 22:00", "2019-10-09 23:00"]  # 9 October, day first


def test_dukascopy_local_time_offsets_are_converted_to_utc(tmp_path):
    path = _write(tmp_path / "local.csv",
                  "Local time,Open,High,Low,Close,Volume\n"
                  "10.10.2019 00:00:00.000 GMT+0200,1,2,0.5,1.5,1\n"
                  "10.10.2019 01:00:00.000 GMT+0200,1,2,0.5,1.5,1\n")
    bars, _ = _load(path, tz="Europe/Berlin")
    assert _times(bars) == ["2019-10-09 22:00", "2019-10-09 23:00"]


@pytest.mark.parametrize("time", ["1704067200", "2024-01-01T00:00:00Z"])
def test_tradingview_export_unix_seconds_or_iso(tmp_path, time):
    later = "1704070800" if time.isdigit() else "2024-01-01T01:00:00Z"
    path = _write(tmp_path / "BINANCE_BTCUSDT, 60.csv",
                  f"time,open,high,low,close,Volume,Volume MA\n{time},1,2,0.5,1.5,10,9\n"
                  f"{later},1.5,2,1,1.8,11,10\n")
    assert _times(_load(path)[0]) == ["2024-01-01 00:00", "2024-01-01 01:00"]


def test_pandas_written_csv_with_an_unnamed_index_of_datetimes(tmp_path):
    path = _write(tmp_path / "GOOG.csv", ",Open,High,Low,Close,Volume\n"
                                         "2004-08-19,100.0,104.06,95.96,100.34,22351900\n"
                                         "2004-08-20,101.01,109.08,100.5,108.31,11428600\n")
    bars, _ = _load(path)
    assert _times(bars) == ["2004-08-19 00:00", "2004-08-20 00:00"]
    assert bars.close[:, 0].tolist() == [100.34, 108.31]


def test_semicolons_and_decimal_commas(tmp_path):
    path = _write(tmp_path / "dax.csv", "Datum;Open;High;Low;Close;Volume\n".replace(
        "Datum", "Date") + "2024-01-02;16.750,5;16.800,25;16.700;16.780,75;1.000\n"
                           "2024-01-03;16.780,75;16.900;16.750,5;16.850;1.200\n")
    bars, notes = _load(path)
    assert bars.close[:, 0].tolist() == [16780.75, 16850.0]
    assert bars.volume[:, 0].tolist() == [1000, 1200]
    assert any("read as ';'-separated with decimal commas" in n for n in notes)


def test_latin1_header_and_utf8_bom(tmp_path):
    latin = _write(tmp_path / "latin.csv", "Börse: Xetra\ntime,open,high,low,close\n"
                   "2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5\n", encoding="latin-1")
    bars, notes = _load(latin)
    assert bars.n_bars == 2 and any("read as Latin-1" in n for n in notes)
    bom = _write(tmp_path / "bom.csv", "\ufefftime,open,high,low,close\n"
                 "2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5\n")
    assert _load(bom)[0].n_bars == 2


@pytest.mark.parametrize("row", [1, 3])
def test_a_row_with_an_extra_field_is_refused_by_row(tmp_path, row):
    lines = ["2024-01-02,1,2,0.5,1.5,100", "2024-01-03,1,2,0.5,1.5,100",
             "2024-01-04,1,2,0.5,1.5,100"]
    lines[row - 1] = lines[row - 1].replace(",100", ",NASDAQ,100")
    path = _write(tmp_path / "x.csv", "time,open,high,low,close,volume\n" + "\n".join(lines))
    with pytest.raises(DataError) as caught:
        load_bars(path)
    message = str(caught.value)
    assert f"x.csv: row {row}: the row has more fields than the header" in message
    assert "1970" not in message and "\n" not in message


def test_a_trailing_delimiter_on_every_row_is_read(tmp_path):
    path = _write(tmp_path / "x.csv", "time,open,high,low,close\n"
                                      "2024-01-02,1,2,0.5,1.5,\n2024-01-03,1,2,0.5,1.6,\n")
    assert _load(path)[0].close[:, 0].tolist() == [1.5, 1.6]


# --------------------------------------------------------------------------- duplicates

_DUPLICATED = ("time,open,high,low,close,volume\n"
               "2024-01-02 10:00,10,12,9,11,100\n"
               "2024-01-02 11:00,11,13,10,12,200\n"
               "2024-01-02 11:00,13,15,12,14,400\n"
               "2024-01-02 12:00,14,15,13,14.5,300\n")


def test_duplicates_are_refused_naming_the_way_through(tmp_path):
    path = _write(tmp_path / "d.csv", _DUPLICATED)
    with pytest.raises(DataError) as caught:
        load_bars(path)
    message = str(caught.value)
    assert "row 3 (2024-01-02 11:00:00+00:00): duplicate time in column 'time' (also at row 2)"\
        in message
    assert "--on-duplicate first|last|mean (data.on_duplicate" in message


@pytest.mark.parametrize(("policy", "close", "volume", "high"), [
    ("first", 12, 200, 13), ("last", 14, 400, 15),
    ("mean", (12 + 14) / 2, (200 + 400) / 2, (13 + 15) / 2),
])
def test_duplicate_policies(tmp_path, policy, close, volume, high):
    path = _write(tmp_path / "d.csv", _DUPLICATED)
    bars, notes = _load(path, on_duplicate=policy)
    assert _times(bars) == ["2024-01-02 10:00", "2024-01-02 11:00", "2024-01-02 12:00"]
    assert (bars.close[1, 0], bars.volume[1, 0], bars.high[1, 0]) == (close, volume, high)
    assert [n for n in notes if "resolved 1 duplicate times by" in n]


def test_unknown_duplicate_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="on_duplicate must be one of error, first, last"):
        load_bars(_write(tmp_path / "d.csv", _DUPLICATED), on_duplicate="newest")


def test_duplicates_resolved_per_symbol_in_a_newest_first_long_file(tmp_path):
    path = _write(tmp_path / "long.csv", "time,symbol,open,high,low,close\n"
                  "2024-01-02 11:00,A,1,2,0.5,1.5\n2024-01-02 11:00,A,1,2,0.5,1.7\n"
                  "2024-01-02 10:00,A,1,2,0.5,1.1\n2024-01-02 11:00,B,1,2,0.5,1.5\n"
                  "2024-01-02 10:00,B,1,2,0.5,1.2\n")
    bars, notes = _load(path, on_duplicate="last")
    np.testing.assert_array_equal(bars.close, [[1.1, 1.2], [1.7, 1.5]])
    assert any("resolved 1 duplicate times (A: 1) by keeping the last" in n for n in notes)


# --------------------------------------------------------------------------- symbol names

def test_one_symbol_file_takes_the_one_name_asked(tmp_path):
    path = _write(tmp_path / "EURUSD.csv", "time,open,high,low,close\n"
                  "2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5\n")
    bars, notes = _load(path, symbols=["AAPL"])
    assert bars.symbols == ("AAPL",)
    assert "EURUSD.csv holds one symbol; named AAPL as --symbols asks" in notes


def test_several_symbols_and_an_unknown_name_are_refused_with_the_list(tmp_path):
    for name in ("A", "B"):
        _write(tmp_path / f"{name}.csv", "time,open,high,low,close\n"
               "2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match=r"symbol 'AAPL' is not in the data; available: A, B"):
        load_bars(tmp_path, symbols=["AAPL"])


def test_a_symbol_column_is_not_renamed(tmp_path):
    path = _write(tmp_path / "x.csv", "time,symbol,open,high,low,close\n"
                  "2024-01-02,MSFT,1,2,0.5,1.5\n2024-01-03,MSFT,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match="available: MSFT"):
        load_bars(path, symbols=["AAPL"])


def test_frame_source_reads_the_same_vendor_shapes():
    from backtester.data.loaders import bars_from_frame

    frame = pd.DataFrame({"<DATE>": ["2019.10.09", "2019.10.09"], "<TIME>": ["22:00", "23:00"],
                          "<OPEN>": [1.0, 1.1], "<HIGH>": [1.2, 1.2], "<LOW>": [0.9, 1.0],
                          "<CLOSE>": [1.1, 1.15]})
    assert _times(bars_from_frame(frame)) == ["2019-10-09 22:00", "2019-10-09 23:00"]
