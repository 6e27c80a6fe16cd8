"""The embedded market: deterministic, seeded 1-minute bars of a crypto-like market.

Each symbol follows one continuous path from ``GENERATOR_EPOCH``, built in two layers:

- an hourly skeleton, computed in order from the epoch: a chain of regimes (trending
  up, trending down, ranging, volatile) with persistent spells, each rewarding a
  different kind of trading (trends: fading drift, momentum pays; ranging: a pull back
  to the spell's starting level, mean reversion pays; volatile: a burst of drift that
  follows through, breakouts pay; see ``MarketModel``), an AR(1) log-volatility and the
  regimes' volatilities (volatility clustering), a shared market shock (assets co-move)
  and a mild pull of the log price toward the symbol's long-run level (half-life of a
  year, so prices stay plausible for decades);
- minute bars inside each hour: a Gaussian bridge from one hourly log price to the
  next with bursty minute volatility, then open, wicks and volume around it.

Random numbers come from a counter-based generator: splitmix64 of a key plus the draw's
position, the keys derived with SHA-256 from (seed, symbol) (one for the hours, one for
the minutes) and from the seed alone (the market shock). Any minute is computed without
its predecessors' noise, so a window [start, end) is the same numbers however it was
requested, and a symbol's bars do not depend on which other symbols are generated.
Bump ``GENERATOR_VERSION`` whenever the output changes (version 3: regimes that give the
rule strategies regime-dependent skill; benchmarks/bench_skill.py measures it).
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numba import njit

from backtester.data._random import normal_nb as _normal_nb
from backtester.data._random import uniform_nb as _uniform_nb
from backtester.data.bars import Bars
from backtester.data.resample import to_utc
from backtester.errors import ConfigError, DataError

GENERATOR_VERSION = 3
GENERATOR_EPOCH = pd.Timestamp("2020-01-01", tz="UTC")
DEFAULT_SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD")
REGIME_NAMES = ("trend_up", "trend_down", "ranging", "volatile")

MINUTE_NS = 60_000_000_000
_EPOCH_NS = int(GENERATOR_EPOCH.value)
_HOURS_PER_YEAR = 24 * 365.25


@dataclass(frozen=True, slots=True)
class MarketModel:
    """Parameters shared by every symbol of the embedded market (part of the cache key).

    Drifts are per hour in units of the symbol's hourly volatility; regime volatilities
    multiply it. Each regime gives one rule strategy its edge, as in real markets:

    - trends (momentum): a drift of ``regime_drift`` on average, strongest when the spell
      begins and fading to (1 - ``trend_fade``) of it by its end, over a spell of
      ``regime_mean_hours`` x (1 +- ``trend_spread``) hours (uniform, not memoryless: a
      trend that has run a while is nearer its end); quiet volatility, so the
      efficiency ratio of backtester.regime sees it;
    - ranging spells (mean reversion): the log price is pulled toward the level where
      the spell began by ``range_pull_per_hour`` of the distance each hour;
    - volatile spells (breakout): high volatility and a burst of drift in a random
      direction, ``regime_drift`` at first and decaying with an e-folding time of
      ``volatile_drift_hours``; a trend that follows keeps the burst's direction with
      probability ``follow_through``.

    ``regime_next[i]`` gives the chances that a spell of regime i is followed by a trend,
    a ranging or a volatile spell; a new trend (and a new burst) points up with
    probability 1 / (1 + exp(trend_reversion * d)), d being the log price's distance above
    the symbol's long-run level, so they lean back toward it. The regime volatilities are
    scaled so the realised daily volatility is about the symbol's ``daily_volatility``.
    """

    regime_drift: tuple[float, ...] = (0.24, -0.24, 0.0, 0.8)
    regime_volatility: tuple[float, ...] = (0.4, 0.44, 0.87, 1.9)
    regime_mean_hours: tuple[float, ...] = (20.0, 20.0, 60.0, 12.0)
    regime_next: tuple[tuple[float, ...], ...] = (
        (0.10, 0.70, 0.20),
        (0.10, 0.70, 0.20),
        (0.55, 0.0, 0.45),
        (0.75, 0.25, 0.0),
    )
    trend_reversion: float = 2.0
    trend_spread: float = 0.5
    trend_fade: float = 0.9
    range_pull_per_hour: float = 0.1
    volatile_drift_hours: float = 8.0
    follow_through: float = 0.85
    level_half_life_years: float = 1.0
    volatility_persistence: float = 0.985
    volatility_of_volatility: float = 0.03
    market_loading: float = 0.6
    intraday_amplitude: float = 0.2
    burst_persistence: float = 0.85
    burst_scale: float = 0.6
    open_noise: float = 0.05
    wick_scale: float = 0.8
    volume_noise: float = 0.5
    volume_move_weight: float = 0.6


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """Long-run price level, daily volatility and dollar volume per minute of a symbol."""

    level: float
    daily_volatility: float
    dollar_volume: float


MARKET_MODEL = MarketModel()

_KNOWN_PROFILES = {
    "BTC": SymbolProfile(level=40_000.0, daily_volatility=0.032, dollar_volume=3.0e6),
    "ETH": SymbolProfile(level=2_500.0, daily_volatility=0.042, dollar_volume=1.5e6),
    "SOL": SymbolProfile(level=100.0, daily_volatility=0.058, dollar_volume=4.0e5),
}


def _stable_hash(text: str) -> int:
    """64-bit hash of a text that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def symbol_profile(symbol: str) -> SymbolProfile:
    """Return the profile of a symbol: BTC/ETH/SOL quoted in USD(T/C) get crypto levels,
    any other name a level, volatility and volume derived from a stable hash of it."""
    base = re.sub(r"[^A-Z0-9]", "", symbol.upper())
    base = re.sub(r"(USDT|USDC|USD)$", "", base) or base
    if base in _KNOWN_PROFILES:
        return _KNOWN_PROFILES[base]
    h = _stable_hash(f"bt-profile/{symbol}")
    u1, u2, u3 = (((h >> shift) & 0xFFFF) / 65536.0 for shift in (0, 16, 32))
    level = float(f"{10 ** (0.5 + 3.5 * u1):.4g}")
    return SymbolProfile(
        level=level,
        daily_volatility=round(0.015 + 0.035 * u2, 4),
        dollar_volume=float(f"{10 ** (4.5 + 1.5 * u3):.3g}"),
    )


def generator_parameters(symbol: str) -> dict:
    """Everything that shapes a symbol's path besides the seed (for the cache key)."""
    return {"model": asdict(MARKET_MODEL), "profile": asdict(symbol_profile(symbol))}


def _stream_key(seed: int, name: str) -> np.uint64:
    return np.uint64(_stable_hash(f"bt-market/{seed}/{name}"))


# ----------------------------------------------------------------------------- kernels

_TREND_UP, _TREND_DOWN, _RANGING, _VOLATILE = range(len(REGIME_NAMES))
# Draw streams (the hours' are listed in _skeleton_nb's docstring) and the initial steps, as
# int64 scalars: Numba compiles a function once per distinct literal int argument, so
# Python ints would compile uniform_nb nine times.
_VOL_SHOCK, _PRICE_SHOCK, _LEAVE, _NEXT, _DIRECTION, _LENGTH, _INITIAL = (
    np.int64(k) for k in (0, 1, 2, 3, 4, 6, 7)
)
_MARKET_SHOCK = np.int64(0)  # of the market's own key
_INITIAL_STATE, _INITIAL_DIRECTION, _INITIAL_LENGTH = np.int64(0), np.int64(1), np.int64(2)
_RETURN, _BURST, _OPEN, _WICK, _SHARE, _VOLUME = (np.int64(k) for k in (0, 2, 3, 4, 5, 6))
_TWO_PI = 2.0 * math.pi
_SQRT12 = math.sqrt(12.0)


@njit(cache=True)
def _up_probability_nb(x, log_level, trend_reversion):
    """Chance that a new trend or burst points up: 1 / (1 + exp(k * (x - level)))."""
    return 1.0 / (1.0 + math.exp(trend_reversion * (x - log_level)))


@njit(cache=True)
def _trend_hours_nb(u, leave, spread):
    """Hours of a trend spell from a uniform u: (1 + spread * (2u - 1)) / leave, at least 1."""
    return max(1, int(round((1.0 + spread * (2.0 * u - 1.0)) / leave)))


@njit(cache=True, nogil=True)
def _skeleton_nb(
    symbol_key,
    market_key,
    n_hours,
    log_level,
    sigma_hour,
    regime_drift,
    regime_volatility,
    regime_leave,
    regime_next_cumulative,
    trend_reversion,
    trend_spread,
    trend_fade,
    range_pull,
    volatile_drift_decay,
    follow_through,
    level_pull,
    volatility_persistence,
    volatility_of_volatility,
    market_loading,
    intraday_amplitude,
):
    """Hourly log prices (n_hours + 1), hourly volatility and regime codes from the epoch.

    Drift of hour t of a spell (log price x): in a trend of L hours
    regime_drift * sigma_hour * (1 + trend_fade * (1 - 2 (t + 1/2) / L)); in a ranging
    spell -range_pull * (x - anchor), anchor being x where the spell began; in a volatile
    spell direction * regime_drift * sigma_hour * volatile_drift_decay ** t; always plus
    -level_pull * (x - log_level). Draws of hour t: 0 volatility shock, 1 price shock,
    2 leaving the spell (ranging and volatile), 3 the next regime, 4 its direction,
    6 a trend's length; 7 at hours 0..2 the initial state, direction and length.
    """
    log_price = np.empty(n_hours + 1)
    sigma = np.empty(n_hours)
    regime = np.empty(n_hours, dtype=np.int8)
    idiosyncratic = math.sqrt(1.0 - market_loading * market_loading)
    log_vol_var = volatility_of_volatility**2 / (1.0 - volatility_persistence**2)
    n_regimes = regime_drift.shape[0]
    initial = _uniform_nb(symbol_key, _INITIAL_STATE, _INITIAL)
    state = min(int(initial * n_regimes), n_regimes - 1)
    x = log_level
    anchor = log_level
    direction = 1.0 if _uniform_nb(symbol_key, _INITIAL_DIRECTION, _INITIAL) < 0.5 else -1.0
    burst = 1.0
    age = 0
    length = _trend_hours_nb(_uniform_nb(symbol_key, _INITIAL_LENGTH, _INITIAL),
                             regime_leave[state], trend_spread)
    log_vol = 0.0
    for t in range(n_hours):
        vol_shock = _normal_nb(symbol_key, t, _VOL_SHOCK)
        price_shock = _normal_nb(symbol_key, t, _PRICE_SHOCK)
        market_shock = _normal_nb(market_key, t, _MARKET_SHOCK)
        log_vol = volatility_persistence * log_vol + volatility_of_volatility * vol_shock
        hour_of_day = t % 24
        season = 1.0 + intraday_amplitude * math.cos(_TWO_PI * (hour_of_day - 15) / 24.0)
        s = sigma_hour * regime_volatility[state] * math.exp(log_vol - log_vol_var) * season
        drift = -level_pull * (x - log_level)
        if state == _RANGING:
            drift -= range_pull * (x - anchor)
        elif state == _VOLATILE:
            drift += direction * burst * regime_drift[state] * sigma_hour
            burst *= volatile_drift_decay
        else:
            fade = trend_fade * (1.0 - 2.0 * (age + 0.5) / length)
            drift += regime_drift[state] * (1.0 + fade) * sigma_hour
        shock = market_loading * market_shock + idiosyncratic * price_shock
        log_price[t] = x
        sigma[t] = s
        regime[t] = state
        x = x + drift + s * shock
        age += 1
        if state == _TREND_UP or state == _TREND_DOWN:
            leave = age >= length
        else:
            leave = _uniform_nb(symbol_key, t, _LEAVE) < regime_leave[state]
        if not leave:
            continue
        age = 0
        u = _uniform_nb(symbol_key, t, _NEXT)
        v = _uniform_nb(symbol_key, t, _DIRECTION)
        up = v < _up_probability_nb(x, log_level, trend_reversion)
        if u < regime_next_cumulative[state, 0]:
            if state == _VOLATILE:  # the burst's direction, or (v rescaled) a fresh one
                if v < follow_through:
                    up = direction > 0.0
                else:
                    w = (v - follow_through) / (1.0 - follow_through)
                    up = w < _up_probability_nb(x, log_level, trend_reversion)
            state = _TREND_UP if up else _TREND_DOWN
            length = _trend_hours_nb(_uniform_nb(symbol_key, t, _LENGTH), regime_leave[state],
                                     trend_spread)
        elif u < regime_next_cumulative[state, 1]:
            state = _RANGING
            anchor = x
        else:
            state = _VOLATILE
            direction = 1.0 if up else -1.0
            burst = 1.0
    log_price[n_hours] = x
    return log_price, sigma, regime


@njit(cache=True, nogil=True)
def _minutes_nb(
    symbol_key,
    first_minute,
    stop_minute,
    log_price,
    sigma,
    base_volume,
    base_sigma_minute,
    burst_persistence,
    burst_scale,
    open_noise,
    wick_scale,
    volume_noise,
    volume_move_weight,
    out_open,
    out_high,
    out_low,
    out_close,
    out_volume,
    column,
):
    """Fill rows [0, stop - first) of column `column` with the minute bars of the path.

    Each hour is a Gaussian bridge from log_price[h] to log_price[h + 1] whose minute
    variances follow an AR(1) burst factor; the hour's last close is log_price[h + 1].
    """
    minute_sigma = np.empty(60)
    minute_return = np.empty(60)
    burst_innovation = math.sqrt(1.0 - burst_persistence * burst_persistence)
    for hour in range(first_minute // 60, (stop_minute - 1) // 60 + 1):
        base = hour * 60
        burst = 0.0
        weight_sum = 0.0
        for i in range(60):
            z_return = _normal_nb(symbol_key, base + i, _RETURN)
            n = (_uniform_nb(symbol_key, base + i, _BURST) - 0.5) * _SQRT12
            burst = n if i == 0 else burst_persistence * burst + burst_innovation * n
            b = math.exp(burst_scale * burst)
            minute_sigma[i] = b
            minute_return[i] = b * z_return
            weight_sum += b * b
        scale = sigma[hour] * math.sqrt(1.0 / weight_sum)
        raw_sum = 0.0
        for i in range(60):
            minute_sigma[i] *= scale
            minute_return[i] *= scale
            raw_sum += minute_return[i]
        hour_variance = sigma[hour] * sigma[hour]
        correction = (log_price[hour + 1] - log_price[hour] - raw_sum) / hour_variance
        x = log_price[hour]
        previous_close = math.exp(x)
        for i in range(60):
            m = base + i
            s = minute_sigma[i]
            r = minute_return[i] + s * s * correction
            x = log_price[hour + 1] if i == 59 else x + r
            close = math.exp(x)
            if m >= first_minute and m < stop_minute:
                row = m - first_minute
                n_open = (_uniform_nb(symbol_key, m, _OPEN) - 0.5) * _SQRT12
                opening = previous_close * (1.0 + open_noise * s * n_open)
                # An exponential excursion shared out between the upper and lower wick.
                excursion = -wick_scale * s * math.log(_uniform_nb(symbol_key, m, _WICK))
                share = _uniform_nb(symbol_key, m, _SHARE)
                out_open[row, column] = opening
                out_close[row, column] = close
                out_high[row, column] = max(opening, close) * (1.0 + excursion * share)
                out_low[row, column] = min(opening, close) / (1.0 + excursion * (1.0 - share))
                move = volume_move_weight * abs(r) / s + (1.0 - volume_move_weight)
                out_volume[row, column] = (
                    base_volume
                    * (s / base_sigma_minute)
                    * move
                    * (1.0 + volume_noise * (2.0 * _uniform_nb(symbol_key, m, _VOLUME) - 1.0))
                )
            previous_close = close


# ----------------------------------------------------------------------------- Python side


def _fill_symbol(
    symbol: str,
    seed: int,
    first_minute: int,
    stop_minute: int,
    out: tuple[np.ndarray, ...],
    column: int,
) -> np.ndarray:
    """Write minutes [first, stop) of the symbol into column `column` of the five out
    arrays (open, high, low, close, volume); return the hourly regime codes from the epoch."""
    model = MARKET_MODEL
    profile = symbol_profile(symbol)
    sigma_hour = profile.daily_volatility / math.sqrt(24.0)
    log_price, sigma, regime = _hourly_path(symbol, seed, -(-stop_minute // 60))
    _minutes_nb(
        _stream_key(seed, f"minutes/{symbol}"),
        first_minute,
        stop_minute,
        log_price,
        sigma,
        profile.dollar_volume / profile.level,
        sigma_hour / math.sqrt(60.0),
        model.burst_persistence,
        model.burst_scale,
        model.open_noise,
        model.wick_scale,
        model.volume_noise,
        model.volume_move_weight,
        *out,
        column,
    )
    return regime


def _hourly_path(symbol: str, seed: int, n_hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hourly skeleton from the epoch: log prices at each hour's start (n_hours + 1),
    each hour's volatility and regime code."""
    model = MARKET_MODEL
    profile = symbol_profile(symbol)
    sigma_hour = profile.daily_volatility / math.sqrt(24.0)
    next_matrix = np.array(model.regime_next, dtype=np.float64)
    next_matrix /= next_matrix.sum(axis=1, keepdims=True)
    return _skeleton_nb(
        _stream_key(seed, f"hours/{symbol}"),
        _stream_key(seed, "market"),
        n_hours,
        math.log(profile.level),
        sigma_hour,
        np.array(model.regime_drift, dtype=np.float64),
        np.array(model.regime_volatility, dtype=np.float64),
        1.0 / np.array(model.regime_mean_hours, dtype=np.float64),
        np.cumsum(next_matrix, axis=1),
        model.trend_reversion,
        model.trend_spread,
        model.trend_fade,
        model.range_pull_per_hour,
        math.exp(-1.0 / model.volatile_drift_hours),
        model.follow_through,
        math.log(2.0) / (model.level_half_life_years * _HOURS_PER_YEAR),
        model.volatility_persistence,
        model.volatility_of_volatility,
        model.market_loading,
        model.intraday_amplitude,
    )


def _fill_symbols(
    symbols: tuple[str, ...],
    seed: int,
    first_minute: int,
    stop_minute: int,
    out: tuple[np.ndarray, ...],
) -> None:
    """Write minutes [first, stop) of symbol j into column j of the out arrays, one
    thread per symbol (the kernels release the GIL)."""
    workers = min(len(symbols), os.cpu_count() or 1)
    if workers <= 1:
        for column, symbol in enumerate(symbols):
            _fill_symbol(symbol, seed, first_minute, stop_minute, out, column)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [
            pool.submit(_fill_symbol, symbol, seed, first_minute, stop_minute, out, column)
            for column, symbol in enumerate(symbols)
        ]
        for job in jobs:
            job.result()


def _generate_symbol(
    symbol: str, first_minute: int, stop_minute: int, seed: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minutes [first, stop) since the epoch of one symbol: open, high, low, close, volume
    (float64) and the regime code of each minute (int8, see REGIME_NAMES)."""
    n = stop_minute - first_minute
    out = tuple(np.empty((n, 1)) for _ in range(5))
    regime = _fill_symbol(symbol, seed, first_minute, stop_minute, out, 0)
    minutes = np.arange(first_minute, stop_minute)
    return (*(a[:, 0] for a in out), regime[minutes // 60])


def hidden_regimes(times: np.ndarray, symbols: Sequence[str], seed: int = 7) -> np.ndarray:
    """Return the generator's own regime code (see REGIME_NAMES) at each time and symbol.

    Parameters
    ----------
    times : numpy.ndarray
        int64 ns UTC bar start times, at or after ``GENERATOR_EPOCH``.
    symbols : sequence of str
        Symbols of the columns.
    seed : int
        Seed of the market.

    Returns
    -------
    numpy.ndarray
        int8 of shape (len(times), len(symbols)): the regime of the hour holding each time.
        The regimes are hidden from the bars; this is for diagnostics and tests only.
    """
    names = check_symbols(symbols)
    seed = check_seed(seed)
    hours = (np.asarray(times, dtype=np.int64) - _EPOCH_NS) // (60 * MINUTE_NS)
    if hours.size and hours.min() < 0:
        raise DataError(
            f"times start at {pd.Timestamp(int(np.min(times)), tz='UTC')}, before the embedded "
            f"market, which starts at {GENERATOR_EPOCH.date()}; pass times from then on"
        )
    n_hours = int(hours.max()) + 1 if hours.size else 0
    out = np.empty((hours.shape[0], len(names)), dtype=np.int8)
    for column, symbol in enumerate(names):
        out[:, column] = _hourly_path(symbol, seed, n_hours)[2][hours]
    return out


def minute_range(start: pd.Timestamp, end: pd.Timestamp) -> tuple[int, int]:
    """Return [first, stop) minute indices since the epoch of the bars in [start, end)."""
    start_ns = to_utc(start, "start").value
    end_ns = to_utc(end, "end").value
    if start_ns < _EPOCH_NS:
        raise DataError(
            f"start {pd.Timestamp(start_ns, tz='UTC')} is before the embedded market, "
            f"which starts at {GENERATOR_EPOCH.date()}; choose a later start or pass --data "
            "with bars for earlier dates"
        )
    if end_ns <= start_ns:
        raise DataError(
            f"end {pd.Timestamp(end_ns, tz='UTC')} is not after start "
            f"{pd.Timestamp(start_ns, tz='UTC')}; choose an end after the start"
        )
    first = -(-(start_ns - _EPOCH_NS) // MINUTE_NS)
    stop = -(-(end_ns - _EPOCH_NS) // MINUTE_NS)
    if stop <= first:
        raise DataError(
            f"no minute starts between {pd.Timestamp(start_ns, tz='UTC')} and "
            f"{pd.Timestamp(end_ns, tz='UTC')}; widen the range to at least one minute"
        )
    return int(first), int(stop)


def check_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """Return the symbols as a tuple, refusing an empty list, duplicates and non-strings."""
    names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    if not names:
        raise ConfigError("symbols is empty; name at least one symbol, e.g. BTCUSD")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"symbols has an invalid entry, was {name!r}; use names like BTCUSD")
    duplicates = sorted({s for s in names if names.count(s) > 1})
    if duplicates:
        raise ConfigError(f"symbols lists {', '.join(duplicates)} twice; name each symbol once")
    return names


def check_seed(seed: int) -> int:
    """Return the seed as an int, refusing floats, strings and booleans."""
    if isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, was {seed!r}")
    try:
        return operator.index(seed)
    except TypeError:
        raise ConfigError(f"seed must be an integer, was {seed!r}") from None


def minute_times(first_minute: int, stop_minute: int) -> np.ndarray:
    """int64 ns UTC times of minutes [first, stop) since the epoch."""
    return _EPOCH_NS + np.arange(first_minute, stop_minute, dtype=np.int64) * MINUTE_NS


def generate_market(
    start: pd.Timestamp,
    end: pd.Timestamp,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    seed: int = 7,
) -> Bars:
    """Generate the embedded market's 1-minute bars in [start, end) (UTC, 24/7).

    Parameters
    ----------
    start, end : pd.Timestamp
        Window; naive timestamps are UTC. ``start`` must not precede 2020-01-01.
    symbols : sequence of str
        Any names; BTCUSD, ETHUSD, SOLUSD get crypto-like levels, others a level
        derived from the name.
    seed : int
        Selects the market; the same seed gives the same numbers for any window.
    """
    names = check_symbols(symbols)
    seed = check_seed(seed)
    first, stop = minute_range(start, end)
    n = stop - first
    out = tuple(np.empty((n, len(names))) for _ in range(5))
    _fill_symbols(names, seed, first, stop, out)
    return Bars(minute_times(first, stop), names, *out, timeframe="1min")
