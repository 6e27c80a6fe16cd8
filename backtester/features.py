"""Per-bar, per-asset indicator features: scale-free, causal, computed by numba kernels.

Kernels take NumPy arrays only and work on one column (``_1d_nb``); ``compute_features``
loops over the columns in Python. Every kernel is causal: the value at bar t depends only
on bars <= t. ``.py_func`` on any kernel gives the pure-Python path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtester.data.bars import Bars
from backtester.feature_names import FEATURE_NAMES  # noqa: F401 (re-exported)

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2.0
VOLUME_WINDOW = 20
# MACD, signal and histogram are NaN for the first 26 + 9 - 2 = 33 bars (index 0..32) and
# defined from bar index 33, the 34th bar.
MACD_WARMUP = MACD_SLOW + MACD_SIGNAL - 2
# Bars at index < WARMUP_BARS have at least one NaN feature; from index WARMUP_BARS (49,
# the 50th bar: SMA50 is the longest window) on, every feature is defined for finite bars.
WARMUP_BARS = 49


@njit(cache=True)
def rolling_mean_std_1d_nb(a: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population std (ddof=0), NaN until `window` valid values.

    Same as pandas ``rolling(window).mean()`` and ``rolling(window).std(ddof=0)``: a window
    holding a NaN gives NaN. Welford add/remove updates; a window of identical values
    gives exactly that value and a std of exactly 0.
    """
    n = a.shape[0]
    mean_out = np.full(n, np.nan)
    std_out = np.full(n, np.nan)
    nobs = 0
    mean = 0.0
    ssqdm = 0.0
    same_run = 0  # consecutive identical valid values ending at bar i
    prev = np.nan
    for i in range(n):
        if i >= window:
            y = a[i - window]
            if not np.isnan(y):
                nobs -= 1
                if nobs > 0:
                    delta = y - mean
                    mean -= delta / nobs
                    ssqdm -= delta * (y - mean)
                else:
                    mean = 0.0
                    ssqdm = 0.0
        x = a[i]
        if np.isnan(x):
            same_run = 0
        else:
            nobs += 1
            delta = x - mean
            mean += delta / nobs
            ssqdm += delta * (x - mean)
            same_run = same_run + 1 if x == prev else 1
        prev = x
        if nobs == window:
            if same_run >= window:
                mean_out[i] = x
                std_out[i] = 0.0
            else:
                mean_out[i] = mean
                std_out[i] = np.sqrt(max(ssqdm, 0.0) / window)
    return mean_out, std_out


@njit(cache=True)
def ema_1d_nb(a: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, pandas ``ewm(span=span, adjust=False).mean()``.

    alpha = 2 / (span + 1), seeded with the first valid value. A NaN input gives NaN at
    that bar and leaves the average unchanged.
    """
    n = a.shape[0]
    out = np.full(n, np.nan)
    alpha = 2.0 / (span + 1.0)
    ema = np.nan
    for i in range(n):
        x = a[i]
        if np.isnan(x):
            continue
        if np.isnan(ema):
            ema = x
        else:
            ema = alpha * x + (1.0 - alpha) * ema
        out[i] = ema
    return out


@njit(cache=True)
def rsi_1d_nb(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI in [0, 100], NaN for the first `period` bars.

    The first average gain/loss is the simple mean of the first `period` changes, then
    avg = (prev * (period - 1) + x) / period. 100 when the average loss is 0, 50 when both
    averages are 0. A NaN change gives NaN at that bar and leaves the averages unchanged.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    count = 0
    avg_gain = 0.0
    avg_loss = 0.0
    for i in range(1, n):
        change = close[i] - close[i - 1]
        if np.isnan(change):
            continue
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        if count < period:
            avg_gain += gain
            avg_loss += loss
            count += 1
            if count < period:
                continue
            avg_gain /= period
            avg_loss /= period
        else:
            avg_gain = (avg_gain * (period - 1) + gain) / period
            avg_loss = (avg_loss * (period - 1) + loss) / period
        total = avg_gain + avg_loss
        out[i] = 50.0 if total == 0.0 else 100.0 * avg_gain / total
    return out


@njit(cache=True)
def features_1d_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill `out` (n_bars, 12) with the FEATURE_NAMES features of one asset."""
    n = close.shape[0]
    # Windows as int64 scalars: Numba compiles a kernel once per distinct literal int
    # argument, so Python ints would compile rolling_mean_std_1d_nb and ema_1d_nb 3 times.
    sma5, _ = rolling_mean_std_1d_nb(close, np.int64(5))
    sma20, std20 = rolling_mean_std_1d_nb(close, np.int64(BOLLINGER_WINDOW))
    sma50, _ = rolling_mean_std_1d_nb(close, np.int64(50))
    rsi = rsi_1d_nb(close, np.int64(RSI_PERIOD))
    macd_line = ema_1d_nb(close, np.int64(MACD_FAST)) - ema_1d_nb(close, np.int64(MACD_SLOW))
    signal = ema_1d_nb(macd_line, np.int64(MACD_SIGNAL))
    volume_mean, _ = rolling_mean_std_1d_nb(volume, np.int64(VOLUME_WINDOW))
    for i in range(n):
        c = close[i]
        out[i, 0] = c / sma5[i] - 1.0
        out[i, 1] = c / sma20[i] - 1.0
        out[i, 2] = c / sma50[i] - 1.0
        out[i, 3] = rsi[i]
        if i >= MACD_WARMUP:
            out[i, 4] = macd_line[i] / c
            out[i, 5] = signal[i] / c
            out[i, 6] = (macd_line[i] - signal[i]) / c
        else:
            out[i, 4] = np.nan
            out[i, 5] = np.nan
            out[i, 6] = np.nan
        half_width = BOLLINGER_WIDTH * std20[i]
        if half_width == 0.0:
            out[i, 7] = 0.5
        else:  # NaN during warm-up propagates through the division
            out[i, 7] = (c - (sma20[i] - half_width)) / (2.0 * half_width)
        out[i, 8] = 1.0 if volume_mean[i] == 0.0 else volume[i] / volume_mean[i]
        out[i, 9] = (high[i] - low[i]) / c
        bar_range = high[i] - low[i]
        out[i, 10] = 0.5 if bar_range == 0.0 else (c - low[i]) / bar_range
        out[i, 11] = (c - open_[i]) / open_[i]


def compute_features(bars: Bars) -> np.ndarray:
    """Compute the FEATURE_NAMES features of every bar and asset.

    Parameters
    ----------
    bars : Bars
        Bars of one or more assets.

    Returns
    -------
    numpy.ndarray
        float64 of shape (n_bars, n_assets, 12), last axis in FEATURE_NAMES order. NaN
        while a lookback is not full: sma5 for bars 0..3, sma20, bb_position and
        volume_ratio for 0..18, sma50 for 0..48, rsi14 for 0..13, macd, macd_signal and
        macd_hist for 0..32 (the MACD EMAs are seeded with the first close, pandas
        ``adjust=False``, so they depend on where the series starts). Every feature is
        defined from bar index WARMUP_BARS (49) on.
    """
    fields = [
        np.asarray(getattr(bars, name), dtype=np.float64)
        for name in ("open", "high", "low", "close", "volume")
    ]
    n, n_assets = fields[3].shape
    out = np.empty((n, n_assets, len(FEATURE_NAMES)))
    # A Python loop over the (few) columns: a 2-D kernel would compile the 1-D one again.
    for j in range(n_assets):
        features_1d_nb(*(np.ascontiguousarray(a[:, j]) for a in fields), out[:, j, :])
    return out
