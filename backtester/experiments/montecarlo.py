"""Monte Carlo paths of the market: the configured bars with their traded period rebuilt from
a stationary block bootstrap of the bars, seeded, in consistent OHLC.

For path ``p`` of seed ``s`` (``rng = np.random.default_rng([s, p])``):

- The warm-up bars (before the first traded bar) are kept as they are, so features,
  regimes and model training are defined at the start of the period as in the real market.
- The traded bars' close-to-close log returns are resampled with the stationary bootstrap
  (Politis and Romano 1994, "The Stationary Bootstrap", JASA 89(428); blocks of geometric
  length with mean ``mean_block``, wrapping around), the same source bars for every symbol,
  so cross-sectional correlation and, within blocks, volatility clustering are kept; the
  new close path compounds them from the last warm-up close.
- Each new bar takes its source bar's open, high and low as log offsets from that bar's
  close (``ln(O/C)``, ``ln(H/C)``, ``ln(L/C)``, clipped so ``L <= O, C <= H``) and its
  volume, so every bar is consistent OHLC with positive prices.
- ``noise > 0`` multiplies all four prices of each traded bar by one ``exp(e)``,
  ``e ~ N(0, noise)`` per bar and symbol (noise on the price level, the bar kept
  consistent).

Every path, path 0 included, is a resampled market; the configured market itself is
``Trial(market=None)`` (`bt montecarlo` runs it too, as the reference).

Across paths, `summarise_paths` gives the percentiles (linear interpolation, numpy's
default) of each path's total return, Sharpe ratio, maximum drawdown and learned minus
equal weight, beside the configured market's own figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from backtester.checks import is_integer, is_real
from backtester.data.bars import Bars
from backtester.errors import ConfigError
from backtester.evaluation import stationary_bootstrap_indices
from backtester.experiments.trial import STATUS_OK, Trial

ORIGINAL = "original"
"""Trial id of the configured market's own run in a Monte Carlo experiment."""

FIGURES: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "learned_minus_equal")
"""The per-path figures whose distribution `summarise_paths` gives."""

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)


def perturbed_market(config: Any, *, path: int, seed: int, mean_block: float,
                     noise: float = 0.0) -> tuple[Bars, int]:
    """Return the configured market with its traded bars resampled (module docstring).

    Parameters
    ----------
    config : Config
        The run's config (period, data, warm-up).
    path : int
        Index of the path, >= 0.
    seed : int
        Seed of the Monte Carlo experiment, >= 0; with `path` it seeds the generator.
    mean_block : float
        Mean block length of the stationary bootstrap in bars, >= 1 (1: iid bars).
    noise : float, default 0.0
        Standard deviation of the log noise on each traded bar's prices, >= 0.

    Returns
    -------
    tuple[Bars, int]
        The bars (times, symbols and warm-up unchanged) and the index of the first traded
        bar, as ``backtester.market.load_market`` returns them.
    """
    from backtester.market import load_market

    check_market(path=path, seed=seed, mean_block=mean_block, noise=noise)
    bars, first = load_market(config)
    return resample_bars(bars, first, np.random.default_rng([int(seed), int(path)]),
                         mean_block=float(mean_block), noise=float(noise)), first


def check_market(*, path: Any, seed: Any, mean_block: Any, noise: Any = 0.0) -> None:
    """Raise ConfigError unless the Monte Carlo settings are usable."""
    for name, value in (("path", path), ("seed", seed)):
        if not (is_integer(value) and value >= 0):
            raise ConfigError(f"montecarlo {name} must be an integer >= 0, was {value!r}")
    if not (is_real(mean_block) and math.isfinite(mean_block) and mean_block >= 1):
        raise ConfigError(f"montecarlo mean_block must be a number of bars >= 1, was "
                          f"{mean_block!r}")
    if not (is_real(noise) and math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"montecarlo noise must be a number >= 0 (std of log noise), was "
                          f"{noise!r}")


def resample_bars(bars: Bars, first: int, rng: np.random.Generator, *, mean_block: float,
                  noise: float = 0.0) -> Bars:
    """Rebuild bars [max(first, 1), n) from a stationary bootstrap of themselves.

    Missing prices (nan) count as a zero return and zero offsets; a market with fewer than
    two bars after the warm-up is returned unchanged.
    """
    start, n = max(int(first), 1), bars.n_bars
    if n - start < 2:
        return bars
    log_close = np.log(bars.close)
    returns = np.nan_to_num(np.diff(log_close, axis=0)[start - 1:])  # bar t: ln C_t / C_t-1
    source = stationary_bootstrap_indices(n - start, mean_block, 1, rng)[0]
    traded = slice(start, n)
    offsets = {f: np.nan_to_num(np.log(getattr(bars, f)[traded]) - log_close[traded])
               for f in ("open", "high", "low")}
    o = offsets["open"][source]
    h = np.maximum(offsets["high"][source], np.maximum(o, 0.0))
    lo = np.minimum(offsets["low"][source], np.minimum(o, 0.0))
    anchor = log_close[start - 1]
    if np.isnan(anchor).any():
        anchor = np.where(np.isnan(anchor), np.nanmean(log_close, axis=0), anchor)
    new_close = anchor + np.cumsum(returns[source], axis=0)
    if noise > 0.0:
        new_close = new_close + rng.normal(0.0, noise, new_close.shape)
    fields = {"close": new_close, "open": new_close + o, "high": new_close + h,
              "low": new_close + lo}
    out = {}
    for name in ("open", "high", "low", "close"):
        column = getattr(bars, name).copy()
        column[traded] = np.exp(fields[name])
        out[name] = column
    volume = bars.volume.copy()
    volume[traded] = bars.volume[traded][source]
    spread = None
    if bars.spread is not None:  # the source bar's spread, relative to its close
        spread = bars.spread.copy()
        spread[traded] = (bars.spread[traded] / bars.close[traded])[source] * out["close"][traded]
    return Bars(bars.times, bars.symbols, out["open"], out["high"], out["low"], out["close"],
                volume, timeframe=bars.timeframe, spread=spread)


def default_mean_block(timeframe: str) -> float:
    """One day of bars of ``timeframe`` (at least 1): blocks keep intraday patterns and
    the day's volatility together."""
    import pandas as pd

    from backtester.data import parse_timeframe

    return max(1.0, float(pd.Timedelta("1D") / parse_timeframe(timeframe)))


def path_trials(paths: int, *, seed: int, mean_block: float, noise: float = 0.0,
                overrides: dict[str, Any] | None = None,
                config_path: str | None = None) -> list[Trial]:
    """The trials of a Monte Carlo experiment: the configured market ("original") first,
    then paths 0 .. paths-1 ("path0000", ...), all of the same config."""
    if not (is_integer(paths) and paths >= 1):
        raise ConfigError(f"--paths must be an integer >= 1, was {paths!r}")
    check_market(path=0, seed=seed, mean_block=mean_block, noise=noise)
    overrides = dict(overrides or {})
    width = max(4, len(str(paths - 1)))
    return [Trial(ORIGINAL, overrides, config_path)] + [
        Trial(f"path{p:0{width}d}", overrides, config_path,
              {"path": p, "seed": int(seed), "mean_block": float(mean_block),
               "noise": float(noise)})
        for p in range(paths)]


def path_figures(result: dict[str, Any]) -> dict[str, float]:
    """`FIGURES` of one trial's result dict (nan where the run has none or failed)."""
    if result.get("status") != STATUS_OK:
        return dict.fromkeys(FIGURES, math.nan)
    overall, books = result.get("overall") or {}, result.get("books") or {}
    figures = {name: overall.get(name) for name in FIGURES[:3]}
    figures["learned_minus_equal"] = books.get("learned_minus_equal")
    return {k: math.nan if v is None else float(v) for k, v in figures.items()}


def summarise_paths(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The distribution of `FIGURES` across the paths' results, and the original's.

    Returns {"paths" (paths that ran), "failed" (paths that failed), "percentiles"
    (`PERCENTILES`), "figures": {figure: {"p5", "p25", "p50", "p75", "p95", "mean",
    "original"}}}; a figure that no path has is nan throughout.
    """
    results = list(results)
    paths = [r for r in results if r.get("trial_id") != ORIGINAL]
    original = next((path_figures(r) for r in results if r.get("trial_id") == ORIGINAL),
                    dict.fromkeys(FIGURES, math.nan))
    ok = [path_figures(r) for r in paths if r.get("status") == STATUS_OK]
    figures = {}
    for name in FIGURES:
        values = np.array([f[name] for f in ok], dtype=np.float64)
        values = values[np.isfinite(values)]
        quantiles = np.percentile(values, PERCENTILES) if values.size else \
            np.full(len(PERCENTILES), math.nan)
        figures[name] = {f"p{q}": float(v) for q, v in zip(PERCENTILES, quantiles)} | {
            "mean": float(values.mean()) if values.size else math.nan,
            "original": original[name]}
    return {"paths": len(ok), "failed": len(paths) - len(ok), "percentiles": list(PERCENTILES),
            "figures": figures}


def montecarlo_spec(paths: int, *, seed: int, mean_block: float, noise: float = 0.0,
                    overrides: dict[str, Any] | None = None,
                    config_path: str | None = None) -> Any:
    """A sweep (``experiments.spec.SweepSpec``) of `path_trials`: the market path is the
    swept dimension, the config the same in every trial (checked once, here)."""
    from backtester.experiments.spec import SweepSpec, validate_trials

    trials = path_trials(paths, seed=seed, mean_block=mean_block, noise=noise,
                         overrides=overrides, config_path=config_path)
    validate_trials(trials[:1], "bt montecarlo")
    return SweepSpec(source="montecarlo", config_path=config_path, fixed=dict(overrides or {}),
                     trials=tuple(trials))


def run_montecarlo(spec: Any, *, engine: Any, out: str | Path = "sweeps",
                   resume: bool = False, sweep_id: str | None = None,
                   progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
                   ) -> tuple[Any, dict[str, Any]]:
    """Run a `montecarlo_spec` as a sweep (``experiments.sweep.run_sweep``: its folder,
    trials/<id>/result.json, results.parquet, --resume) and write ``montecarlo.json``.

    Returns the ``SweepResult`` and the summary of `summarise_paths`; montecarlo.json holds
    {"settings" (paths, seed, mean_block, noise, overrides, config), "summary"}.
    """
    import orjson

    from backtester.experiments.sweep import read_result, run_sweep
    from backtester.memory.io import atomic_write_bytes
    from backtester.results import json_ready

    swept = run_sweep(spec, engine=engine, out=out, resume=resume, sweep_id=sweep_id,
                      progress=progress)
    results = [read_result(swept.sweep_dir, t.trial_id) or
               {"trial_id": t.trial_id, "status": "missing"} for t in spec.trials]
    summary = summarise_paths(results)
    atomic_write_bytes(Path(swept.sweep_dir) / "montecarlo.json", orjson.dumps(
        json_ready({"settings": montecarlo_settings(spec), "summary": summary}),
        option=orjson.OPT_INDENT_2))
    from backtester.experiments.sweep_report import write_sweep_report

    write_sweep_report(swept.sweep_dir)  # again, now with the paths' percentiles
    return swept, summary


def montecarlo_settings(spec: Any) -> dict[str, Any]:
    """paths, seed, mean_block, noise, overrides and config of a `montecarlo_spec`."""
    markets = [t.market for t in spec.trials if t.market is not None]
    first = markets[0] if markets else {}
    return {"paths": len(markets), "seed": first.get("seed"),
            "mean_block": first.get("mean_block"), "noise": first.get("noise"),
            "overrides": dict(spec.fixed), "config": spec.config_path}
