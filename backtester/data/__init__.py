"""Market data: the embedded generator and its cache, loaders, validation, resampling."""

from backtester.data.bars import FIELDS, Bars
from backtester.data.cache import cache_key, embedded_bars
from backtester.data.generator import (
    DEFAULT_SYMBOLS,
    GENERATOR_EPOCH,
    GENERATOR_VERSION,
    REGIME_NAMES,
    generate_market,
)
from backtester.data.loaders import load_bars, save_bars
from backtester.data.resample import (
    format_timeframe,
    infer_timeframe,
    parse_timeframe,
    resample,
    select_range,
    to_utc,
)
from backtester.data.validate import bars_info, find_gaps

__all__ = [
    "DEFAULT_SYMBOLS",
    "FIELDS",
    "GENERATOR_EPOCH",
    "GENERATOR_VERSION",
    "REGIME_NAMES",
    "Bars",
    "bars_info",
    "cache_key",
    "embedded_bars",
    "find_gaps",
    "format_timeframe",
    "generate_market",
    "infer_timeframe",
    "load_bars",
    "parse_timeframe",
    "resample",
    "save_bars",
    "select_range",
    "to_utc",
]
