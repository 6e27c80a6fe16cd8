"""The walk-forward loop: load bars, compute features once, trade chunk after chunk."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.chunks import Chunk, plan_chunks
from backtester.config import Config, dump_toml
from backtester.data import embedded_bars, load_bars, parse_timeframe, resample, select_range
from backtester.data.bars import Bars
from backtester.engine import EngineState, simulate
from backtester.engine.records import EXIT_REASON_NAMES
from backtester.ensemble import build_decisions, decision_ids, ensemble_scores, equal_weights
from backtester.errors import ConfigError
from backtester.features import WARMUP_BARS, compute_features
from backtester.metrics import compute_metrics, periods_per_year
from backtester.providers.base import Candidates, MarketContext
from backtester.regime import compute_regimes, regime_warmup
from strategies import STRATEGY_REGISTRY, Strategy


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk's outcome."""

    chunk: Chunk
    start_time: pd.Timestamp
    end_time: pd.Timestamp  # time of the chunk's last bar
    candidates: int
    decisions: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class RunResult:
    """A whole run: per-chunk results, overall metrics, trades and equity."""

    run_id: str
    config: Config
    chunks: list[ChunkResult]
    metrics: dict[str, float]
    trades: pd.DataFrame
    equity: pd.DataFrame
    out_dir: Path | None


ProgressCallback = Callable[[Chunk, str], None]


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


def warmup_bars(config: Config) -> int:
    """Bars needed before the period so every feature and regime is defined at its start."""
    return max(WARMUP_BARS, regime_warmup(config.regime))


def load_market(config: Config) -> tuple[Bars, int]:
    """Bars for the period plus warm-up, resampled; and the index of the first traded bar."""
    start, end = period_bounds(config)
    data, warmup = config.data, warmup_bars(config)
    step = parse_timeframe(data.timeframe)
    if data.path:
        bars = load_bars(data.path, symbols=list(data.symbols) or None, tz=data.tz)
        source = data.path
    else:
        from backtester.data.generator import GENERATOR_EPOCH

        first = max((start - step * (warmup + 1)).floor("D"), GENERATOR_EPOCH)
        bars = embedded_bars(first, end, data.symbols, data.seed, data.cache_dir)
        source = "embedded market"
    if parse_timeframe(bars.timeframe) != step:
        bars = resample(bars, data.timeframe)
    return select_range(bars, start, end, warmup, source)


def build_strategies(config: Config) -> list[Strategy]:
    """One strategy object per enabled [strategies.<name>] table."""
    return [STRATEGY_REGISTRY[c.name](c) for c in config.strategies]


def run_backtest(
    config: Config,
    *,
    bars: Bars | None = None,
    first: int | None = None,
    progress: ProgressCallback | None = None,
    write: bool = True,
) -> RunResult:
    """Run the configured period chunk by chunk; write results unless ``write`` is False.

    ``bars``/``first`` bypass loading (tests and benchmarks pass prepared bars).
    """
    if bars is None or first is None:
        bars, first = load_market(config)
    context = MarketContext(bars, compute_features(bars), compute_regimes(bars, config.regime))
    strategies = build_strategies(config)
    weights = equal_weights(len(strategies))
    chunks = plan_chunks(bars.times, first, config.run.chunk)
    symbols = np.array(bars.symbols, dtype=object)
    decision_hash = config.decision_hash()
    execution = config.execution
    state = EngineState.initial(bars.n_assets, config.run.initial_cash)
    ppy = periods_per_year(bars.times[first:]) if bars.n_bars - first > 1 else 1.0
    bar_seconds = float(np.median(np.diff(bars.times[first:]))) / 1e9 if ppy != 1.0 else None

    results, trade_parts, equity_parts, positions_parts = [], [], [], []
    for chunk in chunks:
        notify = (lambda stage, c=chunk: progress(c, stage)) if progress else (lambda stage: None)
        notify("candidates")
        mask = np.zeros((chunk.stop - chunk.start, bars.n_assets), dtype=bool)
        for strategy in strategies:
            mask |= strategy.propose(context, chunk.start, chunk.stop)
        candidates = Candidates.from_mask(mask, chunk.start)
        notify("votes")
        decisions_count = 0
        if len(candidates):
            votes = [s.vote(context, candidates) for s in strategies]
            scores = ensemble_scores(votes, weights)
            ids = decision_ids(symbols[candidates.asset], bars.times[candidates.bar], decision_hash)
        else:
            scores, ids = np.zeros(0), np.zeros(0, dtype=np.int64)
        decisions = build_decisions(
            candidates, scores, ids, start=chunk.start, stop=chunk.stop,
            n_assets=bars.n_assets, ensemble=config.ensemble, execution=execution,
        )
        decisions_count = int(np.count_nonzero(decisions.direction))
        notify("simulate")
        window = bars.slice(chunk.start, chunk.stop)
        initial_equity = state.last_equity
        sim = simulate(
            window.open, window.high, window.low, window.close, decisions, state=state,
            commission=execution.commission, slippage=execution.slippage,
            max_holding_bars=execution.max_holding_bars,
            max_open_positions=execution.max_open_positions,
            close_at_end=chunk is chunks[-1], bar_offset=chunk.start,
        )
        state = sim.state
        metrics = compute_metrics(sim.equity, sim.open_positions, sim.trades,
                                  initial_equity=initial_equity, periods_per_year=ppy,
                                  bar_seconds=bar_seconds)
        results.append(ChunkResult(chunk, _time(bars, chunk.start), _time(bars, chunk.stop - 1),
                                   len(candidates), decisions_count, metrics))
        trade_parts.append(sim.trades)
        equity_parts.append(sim.equity)
        positions_parts.append(sim.open_positions)
        notify("done")

    trades = np.concatenate(trade_parts)
    equity = np.concatenate(equity_parts)
    metrics = compute_metrics(equity, np.concatenate(positions_parts), trades,
                              initial_equity=config.run.initial_cash, periods_per_year=ppy,
                              bar_seconds=bar_seconds)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S") + "_" + config.hash()[:8]
    result = RunResult(
        run_id, config, results, metrics, trades_frame(trades, bars),
        pd.DataFrame({"time": bars.index[first:], "equity": equity,
                      "open_positions": np.concatenate(positions_parts)}),
        None,
    )
    return write_run(result) if write else result


def _time(bars: Bars, index: int) -> pd.Timestamp:
    return pd.Timestamp(int(bars.times[index]), tz="UTC")


def trades_frame(trades: np.ndarray, bars: Bars) -> pd.DataFrame:
    """The trades record array as a table with symbols, times and exit reason names."""
    frame = pd.DataFrame(trades)
    frame.insert(0, "symbol", np.array(bars.symbols, dtype=object)[trades["asset"]])
    frame.insert(1, "entry_time", bars.index[trades["entry_bar"]])
    frame.insert(2, "exit_time", bars.index[trades["exit_bar"]])
    frame["exit_reason"] = [EXIT_REASON_NAMES[int(c)] for c in trades["exit_reason"]]
    return frame.drop(columns=["asset"])


def _json_ready(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in metrics.items()}


def run_summary(result: RunResult) -> dict[str, Any]:
    """What metrics.json holds: the run, each chunk, and the whole-period metrics."""
    start, end = period_bounds(result.config)
    return {
        "run_id": result.run_id,
        "config_hash": result.config.hash(),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "symbols": list(result.config.data.symbols),
        "chunks": [
            {
                "label": c.chunk.label,
                "start": c.start_time.isoformat(),
                "end": c.end_time.isoformat(),
                "bars": c.chunk.stop - c.chunk.start,
                "candidates": c.candidates,
                "decisions": c.decisions,
                "metrics": _json_ready(c.metrics),
            }
            for c in result.chunks
        ],
        "overall": _json_ready(result.metrics),
    }


def write_run(result: RunResult) -> RunResult:
    """Write metrics.json, trades.parquet, equity.parquet and config.toml under out_dir/run_id."""
    root = Path(result.config.run.out_dir)
    out = root / result.run_id
    suffix = 1
    while out.exists():
        out = root / f"{result.run_id}_{suffix}"
        suffix += 1
    out.mkdir(parents=True)
    _atomic_write(out / "metrics.json",
                  orjson.dumps(run_summary(result), option=orjson.OPT_INDENT_2))
    result.trades.to_parquet(out / "trades.parquet", index=False)
    result.equity.to_parquet(out / "equity.parquet", index=False)
    _atomic_write(out / "config.toml", dump_toml(result.config.to_dict()).encode())
    return replace(result, out_dir=out)


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
