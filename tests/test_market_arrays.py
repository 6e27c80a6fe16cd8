"""The run's bars reach the kernels in one form (one numba signature per kernel)."""

from __future__ import annotations

import numpy as np

from backtester.data import generate_market
from backtester.market import kernel_ready


def test_kernel_ready_copies_only_read_only_or_strided_arrays():
    bars = generate_market(np.datetime64("2025-01-01"), np.datetime64("2025-01-01T02:00"))
    assert kernel_ready(bars) is bars
    bars.close.flags.writeable = False
    ready = kernel_ready(bars)
    assert ready.close.flags.writeable and ready.close.flags.c_contiguous
    np.testing.assert_array_equal(ready.close, bars.close)
    assert ready.open is bars.open and ready.times is bars.times
