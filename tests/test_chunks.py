"""Chunk planning over UTC calendar periods and fixed bar counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtester.chunks import plan_chunks
from backtester.errors import ConfigError


def _hourly(start: str, end: str) -> np.ndarray:
    return pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left").as_unit("ns").asi8


def test_quarters_of_a_year_cover_every_bar_once():
    times = _hourly("2024-12-31", "2026-01-01")  # one day of warm-up before 2025
    first = 24
    chunks = plan_chunks(times, first, "quarter")
    assert [c.label for c in chunks] == ["2025Q1", "2025Q2", "2025Q3", "2025Q4"]
    assert chunks[0].start == first and chunks[-1].stop == len(times)
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    # Q1 2025 has 90 days = 2160 hours; Q2 91 days; Q3 and Q4 92 days
    assert [c.stop - c.start for c in chunks] == [2160, 2184, 2208, 2208]
    assert pd.Timestamp(times[chunks[1].start], tz="UTC") == pd.Timestamp("2025-04-01", tz="UTC")


def test_months_weeks_and_bar_counts():
    times = _hourly("2025-01-01", "2025-03-01")
    months = plan_chunks(times, 0, "month")
    assert [c.label for c in months] == ["2025-01", "2025-02"]
    assert months[0].stop - months[0].start == 31 * 24
    weeks = plan_chunks(times, 0, "week")
    # 2025-01-01 is a Wednesday: the first (partial) ISO week holds 5 days
    assert weeks[0].label == "2025-W01" and weeks[0].stop - weeks[0].start == 5 * 24
    assert weeks[1].stop - weeks[1].start == 7 * 24
    fixed = plan_chunks(times, 0, "1000")
    assert [c.stop - c.start for c in fixed] == [1000, len(times) - 1000]
    single = plan_chunks(times, 10, "all")
    assert len(single) == 1 and (single[0].start, single[0].stop) == (10, len(times))


def test_no_bars_to_trade_is_a_clear_error():
    times = _hourly("2025-01-01", "2025-01-02")
    with pytest.raises(ConfigError, match="no bars to trade"):
        plan_chunks(times, len(times), "quarter")
