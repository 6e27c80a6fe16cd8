"""Files that cannot be bars are refused before they are parsed: a sparse or binary file
(NUL bytes where text belongs), and a file of more rows than data.max_rows."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from backtester.data import load_bars
from backtester.errors import DataError

HEADER = "time,open,high,low,close,volume\n"


def _rows(n: int) -> str:
    times = pd.date_range("2025-01-01", periods=n, freq="1min")
    return "".join(f"{t:%Y-%m-%d %H:%M},1,1,1,1,1\n" for t in times)


def test_a_sparse_file_is_refused_at_once_in_one_line(tmp_path):
    # a 1 GiB file of holes: nothing but its first block is read
    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:
        f.truncate(2**30)
    with pytest.raises(DataError) as caught:
        load_bars(path)
    assert "NUL bytes" in str(caught.value) and "\n" not in str(caught.value)


def test_a_header_then_holes_is_refused_too(tmp_path):
    path = tmp_path / "damaged.csv"
    path.write_text(HEADER + _rows(3))
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path))
        f.write(b"\x00" * 100)
    with pytest.raises(DataError, match="NUL bytes"):
        load_bars(path)


def test_more_rows_than_the_limit_is_refused_naming_the_key_and_raising_it_works(tmp_path):
    path = tmp_path / "X.csv"
    path.write_text(HEADER + _rows(40))
    with pytest.raises(DataError, match=r"more than 3 rows, over the limit of 3 rows per "
                                        r"file; raise data.max_rows"):
        load_bars(path, max_rows=3)
    assert load_bars(path, max_rows=40).n_bars == 40
    frame = pd.read_csv(path)
    parquet = tmp_path / "X.parquet"
    frame.to_parquet(parquet, index=False)
    with pytest.raises(DataError, match=r"X.parquet: 40 rows, over the limit of 10"):
        load_bars(parquet, max_rows=10)


def test_a_path_that_is_neither_file_nor_folder_is_one_line():
    with pytest.raises(DataError, match="not a file or a folder"):
        load_bars("/dev/null")
