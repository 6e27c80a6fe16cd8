"""The market a run trades: its period, the bars loaded for it with their warm-up, and
the regime's volatility per bar."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from backtester.config import Config
from backtester.data import embedded_bars, load_bars, parse_timeframe, resample, select_range
from backtester.data.bars import FIELDS, Bars
from backtester.engine import warmup as engine_warmup
from backtester.errors import ConfigError
from backtester.features import WARMUP_BARS
from backtester.regime import (
    MIN_PERCENTILE_VALUES,
    log_return_volatility_1d_nb,
    percentile_bars,
    regime_first_bar,
    regime_warmup,
)


def period_bounds(config: Config) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The traded period [start, end) in UTC, from run.start/end or run.year."""
    run = config.run
    if run.start is not None and run.end is not None:
        try:
            start, end = (_utc(pd.Timestamp(run.start)), _utc(pd.Timestamp(run.end)))
        except ValueError as e:
            raise ConfigError(f"run.start/run.end must be ISO dates, was {run.start!r}, "
                              f"{run.end!r} ({e})") from None
        if end <= start:
            raise ConfigError(f"run.end must be after run.start, was {run.start} .. {run.end}")
        return start, end
    if run.year is None:
        raise ConfigError("run.year is not set; pass --year or --start/--end")
    return pd.Timestamp(f"{run.year}-01-01", tz="UTC"), pd.Timestamp(f"{run.year + 1}-01-01",
                                                                      tz="UTC")


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def warmup_bars(config: Config, timeframes: tuple[str, ...] | None = None) -> int:
    """Bars loaded before the period: every feature and regime defined at its start, and
    the training history the ML providers ask for (train_bars + horizon).

    ``timeframes`` (None: ``config.features.timeframes``, () where the config has none)
    adds the higher timeframes' warm-up: HIGHER_WARMUP_BARS bars of the longest one.
    """
    return max(regime_warmup(config.regime, config.data.timeframe),
               _other_warmup(config, timeframes))


def _other_warmup(config: Config, timeframes: tuple[str, ...] | None = None) -> int:
    """The warm-up bars wanted besides the regime's: features, ML history, timeframes."""
    from backtester.timeframes import higher_warmup_bars

    if timeframes is None:
        timeframes = getattr(getattr(config, "features", None), "timeframes", ())
    history = [getattr(p, "train_bars", 0) + getattr(p, "horizon", 0) for p in config.providers]
    return max([WARMUP_BARS, *history,
                higher_warmup_bars(tuple(timeframes), config.data.timeframe)])


def load_market(config: Config) -> tuple[Bars, int]:
    """Bars for the period plus warm-up, resampled; and the index of the first traded bar.

    On a cold Numba cache the engine kernel compiles in the background meanwhile
    (``engine.warmup``).
    """
    start, end = period_bounds(config)
    engine_warmup.start()
    data, warmup = config.data, warmup_bars(config)
    step = parse_timeframe(data.timeframe)
    if data.path:
        bars = load_bars(data.path, symbols=list(data.symbols) or None, tz=data.tz,
                         on_duplicate=data.on_duplicate, max_rows=data.max_rows)
        source = data.path
    else:
        from backtester.data.embedded import check_embedded_period, check_embedded_symbols
        from backtester.data.generator import GENERATOR_EPOCH

        check_embedded_symbols(data.symbols)
        check_embedded_period(start, end)
        first = max((start - step * (warmup + 1)).floor("D"), GENERATOR_EPOCH)
        bars = embedded_bars(first, end, data.symbols, data.seed, data.cache_dir)
        source = "embedded market"
    return prepare_market(config, bars, source)


def prepare_market(config: Config, bars: Bars, source: str) -> tuple[Bars, int]:
    """Bars already loaded (a file's, the generator's, a caller's DataFrame's) resampled to
    ``data.timeframe`` and cut to the period plus warm-up; and the first traded bar.

    Warns when fewer warm-up bars than wanted precede the period; when only the regime's
    full percentile window is short (daily bars), says in one line that the percentile
    ranks against the volatilities available (``backtester.regime``). ``source`` names
    the bars in messages.
    """
    start, end = period_bounds(config)
    engine_warmup.start()  # no-op when load_market started it, or the kernel is cached
    warmup = warmup_bars(config)
    if parse_timeframe(bars.timeframe) < parse_timeframe(config.data.timeframe):
        bars = resample(bars, config.data.timeframe)  # coarser data than asked: used as it is
    bars, first = select_range(bars, start, end, warmup, source)
    bars = kernel_ready(bars)
    regime = config.regime
    timeframe = config.data.timeframe
    if warmup > first >= max(_other_warmup(config), regime_first_bar(regime, timeframe)):
        window = percentile_bars(regime, timeframe)
        available = first - regime.volatility_window + 1
        warnings.warn(
            f"{source}: only {first} bars before {start:%Y-%m-%d}, {warmup} wanted for a full "
            f"regime percentile window of {window} bars; the percentile ranks against the "
            f"{available} volatilities available (at least {MIN_PERCENTILE_VALUES}) until "
            f"{window} exist", stacklevel=2)
    elif first < warmup:
        warnings.warn(
            f"{source}: only {first} bars before {start:%Y-%m-%d}, {warmup} wanted; features, "
            f"regimes or model training are undefined or short for the first bars of the "
            f"period: load earlier data, or lower regime.percentile_window", stacklevel=2)
    return bars, first


def kernel_ready(bars: Bars) -> Bars:
    """``bars`` with every array writable and C-contiguous (float64; times int64), copying
    only those that are not (pandas 3 and Arrow give read-only arrays): each numba kernel
    then compiles one signature per process, whatever the bars' source."""
    def ready(array: np.ndarray | None, dtype: type) -> np.ndarray | None:
        if array is None:
            return None
        out = np.ascontiguousarray(array, dtype=dtype)
        return out if out.flags.writeable else out.copy()

    names = ("times", *FIELDS, "spread")
    old = [getattr(bars, name) for name in names]
    new = [ready(a, np.int64 if name == "times" else np.float64) for name, a in zip(names, old)]
    if all(a is b for a, b in zip(old, new)):
        return bars
    times, *fields, spread = new
    return Bars(times, bars.symbols, *fields, timeframe=bars.timeframe, spread=spread)


def volatility(bars: Bars, window: int) -> np.ndarray:
    """Rolling std of log returns per asset (the regime's volatility), (n_bars, n_assets)."""
    # Contiguous columns: the one signature compute_regimes compiles too.
    return np.column_stack([log_return_volatility_1d_nb(np.ascontiguousarray(bars.close[:, j]),
                                                        window) for j in range(bars.n_assets)])
