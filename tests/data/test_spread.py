"""The optional bid-ask spread column: loading, refusals, alignment, resampling, round trip."""

from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data import (
    FIELDS,
    Bars,
    bars_info,
    generate_market,
    load_bars,
    parse_timeframe,
    resample,
    save_bars,
    select_range,
)
from backtester.data.loaders import bars_from_frame
from backtester.errors import DataError


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _load(path, **kwargs) -> Bars:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_bars(path, **kwargs)


def _with_spread(bars: Bars, seed: int = 3) -> Bars:
    rng = np.random.default_rng(seed)
    spread = np.ascontiguousarray(rng.uniform(0.0, 0.05, size=bars.close.shape) * bars.close)
    return Bars(bars.times, bars.symbols, *(getattr(bars, f) for f in FIELDS),
                timeframe=bars.timeframe, spread=spread)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("header", ["spread", "Spread", "BID_ASK_SPREAD", "Bid-Ask Spread", "ba_spread"])
def test_spread_column_under_any_alias_and_case_is_loaded(tmp_path, header):
    path = _write(tmp_path, "SPY.csv", f"""
        time,open,high,low,close,volume,{header}
        2024-01-02 10:00,10,11,9,10.5,5,0.02
        2024-01-02 11:00,10.5,11,10,10.8,6,0
        2024-01-02 12:00,10.8,11,10,10.9,7,0.035
        """)
    bars = load_bars(path)
    assert bars.has_spread
    assert bars.spread.dtype == np.float64 and bars.spread.shape == (3, 1)
    np.testing.assert_array_equal(bars.spread[:, 0], [0.02, 0.0, 0.035])


def test_without_a_spread_column_spread_is_none(tmp_path):
    path = _write(tmp_path, "SPY.csv", """
        time,open,high,low,close,volume
        2024-01-02 10:00,10,11,9,10.5,5
        2024-01-02 11:00,10.5,11,10,10.8,6
        """)
    bars = load_bars(path)
    assert bars.spread is None and not bars.has_spread
    assert "spread" not in bars.to_long_frame().columns
    assert "mean_spread" not in bars_info(bars)


def test_embedded_generator_has_no_spread():
    bars = generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 01:00"), ["BTCUSD"])
    assert bars.spread is None


def test_newest_first_file_reverses_the_spread_with_the_bars(tmp_path):
    path = _write(tmp_path, "X.csv", """
        time,open,high,low,close,volume,spread
        2024-01-03,2,3,2,3,1,0.2
        2024-01-02,1,2,1,2,1,0.1
        """)
    bars = load_bars(path)
    np.testing.assert_array_equal(bars.close[:, 0], [2, 3])
    np.testing.assert_array_equal(bars.spread[:, 0], [0.1, 0.2])


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("-0.01", r"spread -0\.01 is negative; fix or drop that row"),
        ("", r"spread is empty or NaN; fill it in or drop that row"),
        ("NaN", r"spread is empty or NaN; fill it in or drop that row"),
        ("wide", r"spread 'wide' is not a number; fill it in or drop that row"),
    ],
)
def test_bad_spread_cell_is_refused_by_file_row_and_column_in_one_line(tmp_path, cell, problem):
    path = _write(tmp_path, "SPY.csv", f"""
        time,open,high,low,close,volume,spread
        2024-01-02 10:00,10,11,9,10.5,5,0.02
        2024-01-02 11:00,10.5,11,10,10.8,6,{cell}
        """)
    with pytest.raises(DataError) as caught:
        load_bars(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: row 2 (2024-01-02 11:00:00+00:00): ")
    assert re.search(problem, message), message


def test_negative_spread_message_uses_the_files_column_name(tmp_path):
    path = _write(tmp_path, "SPY.csv", """
        time,open,high,low,close,BA_Spread
        2024-01-02,10,11,9,10.5,-0.5
        2024-01-03,10,11,9,10.5,0.5
        """)
    with pytest.raises(DataError, match=r"SPY\.csv: row 1 \(2024-01-02 00:00:00\+00:00\): "
                                        r"BA_Spread -0\.5 is negative; fix or drop that row$"):
        _load(path)


def test_two_spread_columns_are_refused(tmp_path):
    path = _write(tmp_path, "SPY.csv", """
        time,open,high,low,close,spread,ba_spread
        2024-01-02,10,11,9,10.5,0.1,0.1
        """)
    with pytest.raises(DataError, match=r"columns 'spread' and 'ba_spread' both name the spread"):
        _load(path)


# --------------------------------------------------------------------------- several symbols


def test_long_file_with_two_symbols_carries_each_symbols_spread(tmp_path):
    path = _write(tmp_path, "long.csv", """
        date,ticker,open,high,low,close,volume,spread
        2024-01-02,ETH,3,4,2,3.5,7,0.01
        2024-01-02,BTC,30,40,20,35,1,0.5
        2024-01-03,ETH,3.5,4,3,3.8,8,0.02
        2024-01-03,BTC,35,41,34,40,2,0.6
        """)
    bars = load_bars(path)
    assert bars.symbols == ("ETH", "BTC")
    np.testing.assert_array_equal(bars.spread, [[0.01, 0.5], [0.02, 0.6]])
    picked = load_bars(path, symbols=["BTC"])
    np.testing.assert_array_equal(picked.spread, [[0.5], [0.6]])


def test_two_files_both_with_spread_are_combined(tmp_path):
    _write(tmp_path, "A.csv", "time,open,high,low,close,volume,spread\n2024-01-02,1,2,1,2,1,0.1\n2024-01-03,2,3,2,3,1,0.2\n")
    _write(tmp_path, "B.csv", "time,open,high,low,close,volume,Bid_Ask_Spread\n2024-01-02,5,6,5,6,1,0.3\n2024-01-03,6,7,6,7,1,0.4\n")
    bars = load_bars(tmp_path)
    np.testing.assert_array_equal(bars.spread, [[0.1, 0.3], [0.2, 0.4]])


def test_two_files_where_one_lacks_the_spread_column_are_refused(tmp_path):
    _write(tmp_path, "A.csv", "time,open,high,low,close,volume,spread\n2024-01-02,1,2,1,2,1,0.1\n2024-01-03,2,3,2,3,1,0.2\n")
    lacking = _write(tmp_path, "B.csv", "time,open,high,low,close,volume\n2024-01-02,5,6,5,6,1\n2024-01-03,6,7,6,7,1\n")
    with pytest.raises(DataError) as caught:
        load_bars(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{lacking}: no spread column, but ")
    assert "A.csv has one" in message
    assert message.endswith("add a spread column to every file or remove it from all")
    # Only the chosen symbols need to agree.
    assert load_bars(tmp_path, symbols=["A"]).spread is not None
    assert load_bars(tmp_path, symbols=["B"]).spread is None


def test_missing_bar_takes_the_previous_bars_spread(tmp_path):
    _write(tmp_path, "A.csv", """
        time,open,high,low,close,volume,spread
        2024-01-02 10:00,1,2,1,2,1,0.1
        2024-01-02 11:00,2,3,2,3,1,0.2
        2024-01-02 12:00,3,4,3,4,1,0.3
        2024-01-02 13:00,4,5,4,5,1,0.4
        """)
    _write(tmp_path, "B.csv", """
        time,open,high,low,close,volume,spread
        2024-01-02 10:00,5,6,5,6,1,0.5
        2024-01-02 13:00,6,7,6,7,1,0.8
        """)
    with pytest.warns(UserWarning, match=r"filled 2 missing bars \(B: 2\)"):
        bars = load_bars(tmp_path)
    np.testing.assert_array_equal(bars.spread[:, 1], [0.5, 0.5, 0.5, 0.8])
    np.testing.assert_array_equal(bars.close[:, 1], [6, 6, 6, 7])
    np.testing.assert_array_equal(bars.spread[:, 0], [0.1, 0.2, 0.3, 0.4])


def test_missing_first_bar_after_trimming_takes_the_trimmed_bars_spread(tmp_path):
    _write(tmp_path, "A.csv", """
        time,open,high,low,close,volume,spread
        2024-01-02 09:00,1,2,1,2,1,0.1
        2024-01-02 11:00,2,3,2,3,1,0.3
        """)
    _write(tmp_path, "B.csv", """
        time,open,high,low,close,volume,spread
        2024-01-02 10:00,5,6,5,6,1,0.5
        2024-01-02 11:00,6,7,6,7,1,0.6
        """)
    bars = _load(tmp_path)
    np.testing.assert_array_equal(bars.spread, [[0.1, 0.5], [0.3, 0.6]])


# --------------------------------------------------------------------------- DataFrame path


def test_dataframe_with_spread_behaves_like_a_file():
    frame = pd.DataFrame({
        "time": ["2024-01-02", "2024-01-03"], "open": [1, 2], "high": [2, 3],
        "low": [1, 2], "close": [2, 3], "volume": [1, 1], "Spread": [0.01, 0.02],
    })
    bars = bars_from_frame(frame, source="my frame")
    np.testing.assert_array_equal(bars.spread[:, 0], [0.01, 0.02])
    frame.loc[1, "Spread"] = -0.02
    with pytest.raises(DataError, match=r"^my frame: row 2 \(2024-01-03 00:00:00\+00:00\): "
                                        r"Spread -0\.02 is negative; fix or drop that row$"):
        bars_from_frame(frame, source="my frame")
    frame.loc[1, "Spread"] = np.nan
    with pytest.raises(DataError, match=r"^my frame: row 2 .*Spread is empty or NaN"):
        bars_from_frame(frame, source="my frame")


# --------------------------------------------------------------------------- Bars operations


def test_bars_rejects_a_spread_of_the_wrong_shape():
    bars = generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 00:10"), ["BTCUSD"])
    with pytest.raises(ValueError, match=r"Bars\.spread has shape \(3, 1\)"):
        Bars(bars.times, bars.symbols, *(getattr(bars, f) for f in FIELDS), spread=np.zeros((3, 1)))


def test_positional_construction_without_spread_still_works():
    bars = generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 00:10"), ["BTCUSD"])
    copy = Bars(bars.times, bars.symbols, *(getattr(bars, f) for f in FIELDS), "1min")
    assert copy.spread is None and copy.timeframe == "1min"


def test_slice_select_and_range_keep_the_spread():
    base = generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 02:00"), ["BTCUSD", "ETHUSD"])
    bars = _with_spread(base)
    part = bars.slice(10, 20)
    np.testing.assert_array_equal(part.spread, bars.spread[10:20])
    one = bars.select(["ETHUSD"])
    np.testing.assert_array_equal(one.spread[:, 0], bars.spread[:, 1])
    assert one.spread.flags.c_contiguous
    ranged, first = select_range(bars, pd.Timestamp("2025-01-02 01:00", tz="UTC"),
                                 pd.Timestamp("2025-01-02 01:30", tz="UTC"), 5, "test")
    np.testing.assert_array_equal(ranged.spread, bars.spread[55:90])
    assert first == 5
    frame = bars.to_long_frame()
    np.testing.assert_array_equal(frame["spread"].to_numpy(), bars.spread.reshape(-1))
    info = bars_info(bars)
    assert info["mean_spread"]["ETHUSD"] == pytest.approx(bars.spread[:, 1].mean())


@pytest.mark.parametrize("timeframe", ["5min", "15min", "1h", "1d"])
def test_resampled_spread_is_the_mean_like_pandas(timeframe):
    base = generate_market(pd.Timestamp("2025-03-07 13:00"), pd.Timestamp("2025-03-10 02:00"), ["BTCUSD", "ETHUSD"])
    index = base.index
    keep = np.asarray((index.day_of_week < 5) & (index.hour >= 14) & (index.hour < 21))
    bars = _with_spread(Bars(base.times[keep], base.symbols, *(getattr(base, f)[keep] for f in FIELDS),
                             timeframe=base.timeframe))
    coarse = resample(bars, timeframe)
    for column in range(bars.n_assets):
        frame = pd.DataFrame({"spread": bars.spread[:, column]}, index=bars.index)
        expected = frame.resample(parse_timeframe(timeframe), label="left", closed="left",
                                  origin="epoch").mean().dropna()
        np.testing.assert_array_equal(coarse.index, expected.index)
        np.testing.assert_allclose(coarse.spread[:, column], expected["spread"].to_numpy(), rtol=1e-12)


def test_resample_without_spread_stays_without():
    bars = generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 02:00"), ["BTCUSD"])
    assert resample(bars, "1h").spread is None


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_and_load_round_trip_keeps_the_spread(tmp_path, suffix):
    bars = _with_spread(generate_market(pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-02 01:00"),
                                        ["BTCUSD", "ETHUSD"]))
    path = tmp_path / f"bars{suffix}"
    save_bars(bars, path)
    back = load_bars(path)
    assert back.symbols == bars.symbols
    np.testing.assert_allclose(back.spread, bars.spread, rtol=1e-15)
    np.testing.assert_allclose(back.close, bars.close, rtol=1e-15)
