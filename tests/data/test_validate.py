"""Validation messages (file, row, column, fix), gap finding and the info summary."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data import FIELDS, Bars, bars_info, find_gaps, generate_market, load_bars
from backtester.errors import DataError

HEADER = "time,open,high,low,close,volume"


def _csv(folder: Path, rows: list[str], header: str = HEADER, name: str = "btc.csv") -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _good_rows(n: int, start: str = "2025-01-02 12:00") -> list[str]:
    times = pd.date_range(start, periods=n, freq="h")
    return [f"{t:%Y-%m-%d %H:%M},100,101,99,100.5,10" for t in times]


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        load_bars(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _bars(times: pd.DatetimeIndex, timeframe: str) -> Bars:
    n = len(times)
    ones = np.ones((n, 1))
    return Bars(times.as_unit("ns").asi8, ("X",), ones, ones * 2, ones * 0.5, ones, ones, timeframe=timeframe)


# --------------------------------------------------------------------------- one-line errors


def test_high_below_low_names_file_row_time_and_both_columns(tmp_path):
    # Arrange: data row 17 is 2025-01-03 04:00 UTC
    rows = _good_rows(16)
    rows.append("2025-01-03 04:00,101.8,101.2,102.5,101.9,10")
    path = _csv(tmp_path, rows)
    # Act
    message = _error(path)
    # Assert
    assert message == (
        f"{path}: row 17 (2025-01-03 04:00:00+00:00): high 101.2 is below low 102.5; "
        "fix or drop that row"
    )


def test_missing_column_lists_the_columns_present(tmp_path):
    path = _csv(tmp_path, ["2025-01-02,1,2,1,1"], header="Date,Open,High,Low,Volume")
    assert _error(path) == (
        f"{path}: missing column 'close' (columns are: Date, Open, High, Low, Volume); "
        "rename a column to close"
    )


def test_several_missing_columns_are_all_named(tmp_path):
    path = _csv(tmp_path, ["2025-01-02,1"], header="when,Open")
    assert "missing columns 'time', 'high', 'low', 'close'" in _error(path)


def test_two_columns_for_one_field_are_refused(tmp_path):
    path = _csv(tmp_path, ["2025-01-02,2025-01-02 09:30,1,1,1,1"],
                header="date,timestamp,open,high,low,close")
    assert "columns 'date' and 'timestamp' both name the time" in _error(path)


def test_unparseable_timestamp_names_row_column_and_value(tmp_path):
    rows = _good_rows(3)
    rows[1] = "2025-13-45 99:00,100,101,99,100.5,10"
    message = _error(_csv(tmp_path, rows))
    assert re.search(r"btc\.csv: row 2: time '2025-13-45 99:00' is not a timestamp; use ISO 8601", message)


def test_empty_timestamp_names_row_and_column(tmp_path):
    rows = _good_rows(3)
    rows[2] = ",100,101,99,100.5,10"
    assert re.search(r"btc\.csv: row 3: time is empty; fill it in", _error(_csv(tmp_path, rows)))


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("", "close is empty or NaN"), ("NaN", "close is empty or NaN"), ("abc", "close 'abc' is not a number")],
)
def test_missing_or_non_numeric_price_names_row_time_and_column(tmp_path, cell, problem):
    rows = _good_rows(4)
    rows[3] = f"2025-01-02 15:00,100,101,99,{cell},10"
    message = _error(_csv(tmp_path, rows))
    assert message == f"{tmp_path / 'btc.csv'}: row 4 (2025-01-02 15:00:00+00:00): {problem}; fill it in or drop that row"


def test_non_positive_price_is_refused(tmp_path):
    rows = _good_rows(2)
    rows[1] = "2025-01-02 13:00,100,101,0,100.5,10"
    assert "row 2 (2025-01-02 13:00:00+00:00): low 0 is not positive; fix or drop that row" in _error(_csv(tmp_path, rows))


def test_negative_volume_is_refused(tmp_path):
    rows = _good_rows(2)
    rows[0] = "2025-01-02 12:00,100,101,99,100.5,-3"
    assert "row 1 (2025-01-02 12:00:00+00:00): volume -3 is negative" in _error(_csv(tmp_path, rows))


def test_high_below_close_and_low_above_open_name_the_columns(tmp_path):
    rows = _good_rows(2)
    rows[1] = "2025-01-02 13:00,100,101,99,102,10"
    assert "row 2 (2025-01-02 13:00:00+00:00): high 101 is below close 102" in _error(_csv(tmp_path, rows))
    rows[1] = "2025-01-02 13:00,98,101,99,100,10"
    assert "row 2 (2025-01-02 13:00:00+00:00): low 99 is above open 98" in _error(_csv(tmp_path, rows))


def test_original_header_spelling_is_used_in_messages(tmp_path):
    path = _csv(tmp_path, ["2025-01-02,100,99,101,100"], header="Date,Open,High,Low,Close")
    assert "row 1 (2025-01-02 00:00:00+00:00): High 99 is below Low 101" in _error(path)


def test_float_rounding_breach_of_high_is_accepted_and_clipped(tmp_path):
    close = 100.00000000000001  # one ulp above the high
    rows = [f"2025-01-02 12:00,99,100,98,{close!r},1", "2025-01-02 13:00,100,101,99,100.5,1"]
    bars = load_bars(_csv(tmp_path, rows))
    assert bars.high[0, 0] == bars.close[0, 0] == close


def test_duplicate_timestamp_names_both_rows(tmp_path):
    rows = _good_rows(4)
    rows[3] = rows[1]
    assert "row 4 (2025-01-02 13:00:00+00:00): duplicate time in column 'time' (also at row 2); drop one" in _error(_csv(tmp_path, rows))


def test_duplicate_timestamp_is_per_symbol_in_a_long_file(tmp_path):
    header = "symbol,time,open,high,low,close,volume"
    ok = ["A,2025-01-02 12:00,1,1,1,1,1", "B,2025-01-02 12:00,1,1,1,1,1", "A,2025-01-02 13:00,1,1,1,1,1", "B,2025-01-02 13:00,1,1,1,1,1"]
    assert load_bars(_csv(tmp_path, ok, header=header)).symbols == ("A", "B")
    bad = [*ok, "B,2025-01-02 12:00,1,1,1,1,1"]
    assert "row 5 (2025-01-02 12:00:00+00:00): duplicate time in column 'time' for B (also at row 2)" in _error(_csv(tmp_path, bad, header=header))


def test_unsorted_timestamps_name_the_row_where_time_goes_back(tmp_path):
    rows = _good_rows(5)
    rows[2], rows[3] = rows[3], rows[2]
    message = _error(_csv(tmp_path, rows))
    assert "row 4 (2025-01-02 14:00:00+00:00): time in column 'time' goes back from row 3 (2025-01-02 15:00:00+00:00); sort the file by time" in message


@pytest.mark.parametrize("text", ["", HEADER + "\n"])
def test_empty_file_is_refused(tmp_path, text):
    path = tmp_path / "btc.csv"
    path.write_text(text)
    assert re.search(r"btc\.csv: the file (is empty|has no data rows)", _error(path))


def test_unreadable_parquet_file_is_a_data_error(tmp_path):
    path = tmp_path / "btc.parquet"
    path.write_bytes(b"not parquet at all")
    assert re.search(r"btc\.parquet: cannot be read as parquet", _error(path))


# --------------------------------------------------------------------------- gaps


def test_missing_minutes_in_24_7_data_are_gaps():
    bars = generate_market(pd.Timestamp("2025-01-03"), pd.Timestamp("2025-01-06"), ["BTCUSD"])
    keep = np.ones(bars.n_bars, dtype=bool)
    keep[100:103] = False  # 01:40, 01:41, 01:42 missing
    holed = Bars(bars.times[keep], bars.symbols, *(getattr(bars, f)[keep] for f in FIELDS), timeframe="1min")
    assert find_gaps(bars) == []
    assert find_gaps(holed) == [(pd.Timestamp("2025-01-03 01:39", tz="UTC"), pd.Timestamp("2025-01-03 01:43", tz="UTC"))]


def _session_hours(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Hourly bars 14:30..20:30 UTC on each given day."""
    return pd.DatetimeIndex([d + pd.Timedelta(hours=14.5 + k) for d in days for k in range(7)], tz="UTC")


def test_session_data_reports_only_breaks_inside_a_session():
    # Arrange: six weeks of weekday sessions, one holiday, one missing bar mid-session
    days = pd.bdate_range("2025-03-03", "2025-04-11")
    days = days[days != pd.Timestamp("2025-03-21")]
    times = _session_hours(days)
    missing = pd.Timestamp("2025-03-12 17:30", tz="UTC")
    # Act
    gaps = find_gaps(_bars(times[times != missing], "1h"))
    # Assert: overnight, weekend and holiday breaks are normal
    assert gaps == [(pd.Timestamp("2025-03-12 16:30", tz="UTC"), pd.Timestamp("2025-03-12 18:30", tz="UTC"))]


def test_daily_session_data_reports_breaks_longer_than_a_long_weekend():
    days = pd.bdate_range("2025-01-06", "2025-03-28", tz="UTC")
    days = days[(days < "2025-02-10") | (days > "2025-02-14")]  # a missing week
    days = days[days != pd.Timestamp("2025-03-07", tz="UTC")]  # a long weekend
    assert find_gaps(_bars(days, "1d")) == [(pd.Timestamp("2025-02-07", tz="UTC"), pd.Timestamp("2025-02-17", tz="UTC"))]


# --------------------------------------------------------------------------- info


def test_bars_info_summarises_symbols_range_prices_volume_and_gaps():
    # Arrange
    times = pd.date_range("2025-01-01", periods=4, freq="min", tz="UTC").delete(2)
    close = np.array([[10.0, 1.0], [12.0, 3.0], [11.0, 2.0]])
    volume = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    bars = Bars(times.as_unit("ns").asi8, ("A", "B"), close, close, close, close, volume, timeframe="1min")
    # Act
    info = bars_info(bars)
    # Assert
    assert info == {
        "symbols": ["A", "B"],
        "first": "2025-01-01T00:00:00+00:00",
        "last": "2025-01-01T00:03:00+00:00",
        "n_bars": 3,
        "timeframe": "1min",
        "per_symbol": {
            "A": {"min_close": 10.0, "max_close": 12.0, "total_volume": 6.0},
            "B": {"min_close": 1.0, "max_close": 3.0, "total_volume": 15.0},
        },
        "n_gaps": 1,
        "gaps": [{"from": "2025-01-01T00:01:00+00:00", "to": "2025-01-01T00:03:00+00:00"}],
    }
