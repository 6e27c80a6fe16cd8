"""Higher-timeframe features: the 12 features of coarser bars, aligned causally to the
traded bars (``features.timeframes``).

Each asset's bars are resampled to the timeframe (``data.resample``: bins of fixed length
anchored on the Unix epoch, labelled by their left edge, empty bins dropped), the 12
``FEATURE_NAMES`` features are computed on the coarse bars, and traded bar t shows the
features of the last coarse bar that had closed when bar t closed: coarse bar k, covering
``[s_k, s_k + H)``, is visible at bar t only once ``s_k + H <= times[t] + bar length``.
Before the first coarse bar closes the columns are NaN. The bar in progress never shows,
so row t depends on bars <= t alone.
"""

from __future__ import annotations

import numpy as np

from backtester.data.bars import Bars
from backtester.data.resample import format_timeframe, parse_timeframe, resample
from backtester.errors import ConfigError
from backtester.features import FEATURE_NAMES, WARMUP_BARS, compute_features

FIELD = "features.timeframes"
N_FEATURES = len(FEATURE_NAMES)
# Coarse bars loaded before the first traded bar: every feature needs WARMUP_BARS + 1
# closed coarse bars (SMA50: 50); one more stands in for the first, partly loaded one.
HIGHER_WARMUP_BARS = WARMUP_BARS + 2


def timeframe_lengths(timeframes: tuple[str, ...] | list[str], bar: str | None = None
                      ) -> tuple[tuple[str, int], ...]:
    """The (canonical name, length in ns) of each higher timeframe, in the given order.

    Checks each parses ("1h", "4h", "1d", "30min"), that no two have one length and, with
    ``bar`` (the traded bars' timeframe), that each is a whole multiple of it longer than
    it. One-line ConfigError naming ``features.timeframes`` otherwise.
    """
    out: list[tuple[str, int]] = []
    base_ns = int(parse_timeframe(bar).value) if bar is not None else None
    for i, text in enumerate(timeframes):
        try:
            length = int(parse_timeframe(text).value)
        except ConfigError:
            raise ConfigError(f"{FIELD}[{i}] is not a bar length, was {text!r}; use a count "
                              "and a unit like 1h, 4h or 1d") from None
        name = format_timeframe(parse_timeframe(text))
        if any(length == seen for _, seen in out):
            raise ConfigError(f"{FIELD} lists {name} twice, was {list(timeframes)!r}; list "
                              "each timeframe once")
        if base_ns is not None and (length <= base_ns or length % base_ns):
            raise ConfigError(f"{FIELD}[{i}] must be a whole multiple of the data's {bar} bars "
                              f"and longer than them, was {text!r}; choose e.g. "
                              f"{format_timeframe(parse_timeframe(bar) * 4)}")
        out.append((name, length))
    return tuple(out)


def higher_feature_names(timeframes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The column names of all features: FEATURE_NAMES, then ``<name>_<tf>`` per timeframe."""
    return FEATURE_NAMES + tuple(f"{name}_{tf}" for tf, _ in timeframe_lengths(timeframes)
                                 for name in FEATURE_NAMES)


def timeframe_blocks(feature_names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    """(timeframe, first column) of each higher-timeframe block of ``feature_names``.

    A block is 12 consecutive columns named ``<FEATURE_NAMES[i]>_<tf>``; other columns
    (the base 12, a plugin's own) are not blocks.
    """
    blocks = []
    for first in range(0, len(feature_names) - N_FEATURES + 1):
        head = feature_names[first]
        if not head.startswith(f"{FEATURE_NAMES[0]}_"):
            continue
        tf = head[len(FEATURE_NAMES[0]) + 1:]
        if feature_names[first:first + N_FEATURES] == tuple(f"{n}_{tf}" for n in FEATURE_NAMES):
            blocks.append((tf, first))
    return tuple(blocks)


def last_closed(times: np.ndarray, bar_ns: int, starts: np.ndarray, length_ns: int) -> np.ndarray:
    """(n_bars,) int64: for each traded bar, the last coarse bar closed by its close, or -1.

    ``times`` are the traded bars' starts, ``starts`` the coarse bars' (both ascending ns);
    coarse bar k counts once ``starts[k] + length_ns <= times[t] + bar_ns``.
    """
    ends = np.asarray(starts, dtype=np.int64) + np.int64(length_ns)
    closes = np.asarray(times, dtype=np.int64) + np.int64(bar_ns)
    return np.searchsorted(ends, closes, side="right").astype(np.int64) - 1


def higher_features(bars: Bars, timeframe: str) -> np.ndarray:
    """The 12 features of ``bars`` resampled to ``timeframe``, aligned to ``bars``' rows.

    Returns float64 (n_bars, n_assets, 12); a row shows the last coarse bar closed by the
    close of that traded bar (NaN before the first closes).
    """
    coarse = resample(bars, timeframe)
    values = compute_features(coarse)
    index = last_closed(bars.times, int(parse_timeframe(bars.timeframe).value), coarse.times,
                        int(parse_timeframe(timeframe).value))
    out = values[np.maximum(index, 0)] if coarse.n_bars else np.empty(
        (bars.n_bars, bars.n_assets, N_FEATURES))
    out[index < 0] = np.nan
    return out


def market_features(bars: Bars, timeframes: tuple[str, ...] | list[str] = ()
                    ) -> tuple[np.ndarray, tuple[str, ...]]:
    """All features of every bar and asset: the traded bars' 12, then 12 per timeframe.

    Parameters
    ----------
    bars : Bars
        The traded bars (their ``timeframe`` is the base bar length).
    timeframes : tuple of str
        ``features.timeframes``, e.g. ("1h", "4h", "1d"); empty: only the 12.

    Returns
    -------
    (numpy.ndarray, tuple of str)
        float64 (n_bars, n_assets, 12 * (1 + len(timeframes))), the first 12 columns
        exactly ``compute_features(bars)``; and the column names (``higher_feature_names``).

    Raises
    ------
    ConfigError
        One line naming ``features.timeframes``: a timeframe that does not parse, is not
        longer than the bars or not a whole multiple of them, or is listed twice.
    """
    lengths = timeframe_lengths(tuple(timeframes), bars.timeframe)
    base = compute_features(bars)
    if not lengths:
        return base, FEATURE_NAMES
    blocks = [base] + [higher_features(bars, name) for name, _ in lengths]
    return np.concatenate(blocks, axis=2), higher_feature_names(tuple(timeframes))


def higher_warmup_bars(timeframes: tuple[str, ...] | list[str], bar: str) -> int:
    """Traded bars to load before the period so that every higher-timeframe feature is
    defined at its first bar: HIGHER_WARMUP_BARS coarse bars of the longest timeframe
    (0 without timeframes). Counts bars of a 24/7 market; session data needs more."""
    lengths = timeframe_lengths(tuple(timeframes), bar)
    base_ns = int(parse_timeframe(bar).value)
    return max((HIGHER_WARMUP_BARS * (length // base_ns) for _, length in lengths), default=0)
