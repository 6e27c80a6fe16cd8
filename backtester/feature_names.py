"""The names of the 12 per-bar features, apart from their numba kernels
(``backtester.features``, which re-exports them) so that naming a state vector's
dimensions (``bt memory inspect``, the memory's texts) imports neither numba nor pandas."""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = (
    "sma5",
    "sma20",
    "sma50",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position",
    "volume_ratio",
    "hl_range",
    "close_position",
    "oc_range",
)
