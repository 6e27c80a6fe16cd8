"""The Parquet cache of the embedded market: one key, cache hits, atomic writes, repair."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtester.data import FIELDS, cache_key, embedded_bars, generate_market
from backtester.data import cache

START, END = pd.Timestamp("2025-03-01"), pd.Timestamp("2025-03-03")


def _assert_same_bars(a, b) -> None:
    assert a.symbols == b.symbols and a.timeframe == b.timeframe
    np.testing.assert_array_equal(a.times, b.times)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def _refuse_generation(*args, **kwargs):
    raise AssertionError("the generator ran although the cache holds the data")


def test_cache_key_is_a_sha256_that_changes_with_each_input(monkeypatch):
    # Arrange
    base = cache_key("BTCUSD", 2025, 7)
    # Act
    variants = {
        cache_key("ETHUSD", 2025, 7),
        cache_key("BTCUSD", 2024, 7),
        cache_key("BTCUSD", 2025, 8),
    }
    monkeypatch.setattr(cache, "GENERATOR_VERSION", cache.GENERATOR_VERSION + 1)
    variants.add(cache_key("BTCUSD", 2025, 7))
    monkeypatch.undo()
    monkeypatch.setattr(cache, "generator_parameters", lambda symbol: {"changed": True})
    variants.add(cache_key("BTCUSD", 2025, 7))
    monkeypatch.undo()
    # Assert
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert cache_key("BTCUSD", 2025, 7) == base
    assert len(variants) == 5 and base not in variants


def test_embedded_bars_equal_generate_market_across_a_year_boundary(tmp_path):
    start, end = pd.Timestamp("2024-12-31 22:00"), pd.Timestamp("2025-01-01 02:00")
    cached = embedded_bars(start, end, symbols=["SOLUSD"], cache_dir=tmp_path)
    _assert_same_bars(cached, generate_market(start, end, symbols=["SOLUSD"]))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[: len("embedded_SOLUSD_2024")] for n in names] == [
        "embedded_SOLUSD_2024",
        "embedded_SOLUSD_2025",
    ]


def test_cache_files_are_named_by_symbol_year_and_key(tmp_path):
    embedded_bars(START, END, symbols=["BTCUSD", "ETHUSD"], cache_dir=tmp_path)
    expected = {f"embedded_{s}_2025_{cache_key(s, 2025, 7)[:12]}.parquet" for s in ("BTCUSD", "ETHUSD")}
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_second_call_reads_the_cache_without_generating(tmp_path, monkeypatch):
    # Arrange
    first = embedded_bars(START, END, cache_dir=tmp_path)
    monkeypatch.setattr(cache, "_generate_symbol", _refuse_generation)
    # Act
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = embedded_bars(START, END, cache_dir=tmp_path)
    # Assert
    _assert_same_bars(first, second)


def test_corrupt_cache_file_is_regenerated_with_a_warning(tmp_path, monkeypatch):
    # Arrange
    embedded_bars(START, END, symbols=["BTCUSD"], cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"PAR1 this is not a parquet file")
    # Act
    with pytest.warns(UserWarning, match=r"embedded_BTCUSD_2025_.*unreadable or stale.*regenerating"):
        repaired = embedded_bars(START, END, symbols=["BTCUSD"], cache_dir=tmp_path)
    # Assert: right numbers, and the rewritten file now serves without the generator
    _assert_same_bars(repaired, generate_market(START, END, symbols=["BTCUSD"]))
    monkeypatch.setattr(cache, "_generate_symbol", _refuse_generation)
    _assert_same_bars(repaired, embedded_bars(START, END, symbols=["BTCUSD"], cache_dir=tmp_path))


def test_cache_file_with_the_wrong_rows_is_regenerated(tmp_path):
    # Arrange: a valid Parquet file under the right name with too few rows
    path = cache.cache_path(tmp_path, "ETHUSD", 2025, 7)
    table = pa.table({"time": pa.array([0], pa.int64()), **{f: [1.0] for f in FIELDS}})
    pq.write_table(table, path)
    # Act
    with pytest.warns(UserWarning, match="regenerating"):
        bars = embedded_bars(START, END, symbols=["ETHUSD"], cache_dir=tmp_path)
    # Assert
    _assert_same_bars(bars, generate_market(START, END, symbols=["ETHUSD"]))


def test_failed_write_leaves_no_partial_file_and_still_returns_bars(tmp_path, monkeypatch):
    # Arrange
    def broken_write(table, sink, **kwargs):
        sink.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(cache.pq, "write_table", broken_write)
    # Act
    with pytest.warns(UserWarning, match="cannot write the cache"):
        bars = embedded_bars(START, END, symbols=["BTCUSD"], cache_dir=tmp_path)
    # Assert
    assert list(tmp_path.iterdir()) == []
    _assert_same_bars(bars, generate_market(START, END, symbols=["BTCUSD"]))


def test_successful_writes_leave_no_temporary_files(tmp_path):
    embedded_bars(START, END, cache_dir=tmp_path / "nested" / "cache")
    names = [p.name for p in (tmp_path / "nested" / "cache").iterdir()]
    assert len(names) == 3 and all(n.endswith(".parquet") and not n.startswith(".") for n in names)
