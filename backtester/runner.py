"""The walk-forward loop: load bars, compute features once, trade chunk after chunk,
learning between chunks from the memory folder and committing what each chunk taught."""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from backtester.ensemble import (
    ShadowScores,
    Weights,
    build_decisions,
    current_weights,
    decision_ids,
    empty_stats,
    equal_weights,
    learn,
    monitor_size,
    provider_scores,
    shadow_scores,
)
from backtester.errors import ConfigError, MemoryStoreError
from backtester.features import WARMUP_BARS, compute_features
from backtester.memory.io import atomic_write_bytes
from backtester.metrics import compute_metrics, periods_per_year
from backtester.providers import build_provider, provider_kind
from backtester.providers.base import Candidates, MarketContext, Provider, Votes
from backtester.report import write_report
from backtester.regime import REGIME_NAMES, compute_regimes, log_return_volatility_1d_nb, \
    regime_warmup
from strategies import STRATEGY_REGISTRY


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk's outcome."""

    chunk: Chunk
    start_time: pd.Timestamp
    end_time: pd.Timestamp  # time of the chunk's last bar
    candidates: int
    decisions: int
    metrics: dict[str, float]
    weights: dict[str, Any] = field(default_factory=dict)  # Weights.as_dict() used
    learning: dict[str, Any] = field(default_factory=dict)  # hit rates, memory vote, reports


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
    symbols: tuple[str, ...] = ()
    providers: dict[str, Any] = field(default_factory=dict)  # learned stats at the end


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
    """Bars loaded before the period: every feature and regime defined at its start, and
    the training history the ML providers ask for (train_bars + horizon)."""
    history = [getattr(p, "train_bars", 0) + getattr(p, "horizon", 0) for p in config.providers]
    return max([WARMUP_BARS, regime_warmup(config.regime), *history])


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
    if parse_timeframe(bars.timeframe) < step:  # coarser data than asked is used as it is
        bars = resample(bars, data.timeframe)
    bars, first = select_range(bars, start, end, warmup, source)
    if first < warmup:
        warnings.warn(
            f"{source}: only {first} bars before {start:%Y-%m-%d}, {warmup} wanted; features, "
            f"regimes or model training are undefined or short for the first bars of the "
            f"period: load earlier data, or lower regime.percentile_window", stacklevel=2)
    return bars, first


def build_providers(config: Config) -> list[Provider]:
    """Rule strategies, then [providers.<name>] (ML, LLM), in config order."""
    strategies = [STRATEGY_REGISTRY[c.name](c) for c in config.strategies]
    cache_dir = Path(config.memory.llm_cache_dir or Path(config.memory.dir) / "llm_cache")
    return strategies + [build_provider(c, cache_dir=cache_dir) for c in config.providers]


def volatility(bars: Bars, window: int) -> np.ndarray:
    """Rolling std of log returns per asset (the regime's volatility), (n_bars, n_assets)."""
    return np.column_stack([log_return_volatility_1d_nb(bars.close[:, j], window)
                            for j in range(bars.n_assets)])


# ---------------------------------------------------------------- the loop


@dataclass
class _Run:
    """Mutable state of one run across its chunks."""

    run_id: str
    engine: EngineState
    stats: dict[str, Any]
    parameters: dict[str, Any]
    open_decisions: dict[str, dict[str, Any]]  # decision id -> what the outcome needs
    done: list[ChunkResult] = field(default_factory=list)
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)


class WalkForward:
    """Trades chunks in order; learns from and commits to the memory between them."""

    def __init__(self, config: Config, bars: Bars, first: int, memory: Any | None,
                 progress: ProgressCallback | None = None,
                 extra_providers: tuple[Provider, ...] = ()) -> None:
        self.config = config
        self.bars = bars
        self.first = first
        self.memory = memory
        self.progress = progress
        self.context = MarketContext(bars, compute_features(bars),
                                     compute_regimes(bars, config.regime))
        self.volatility = volatility(bars, config.regime.volatility_window)
        self.providers = build_providers(config) + list(extra_providers)
        self.names = [p.name for p in self.providers]
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"provider names must be unique, were {', '.join(self.names)}")
        self.chunks = plan_chunks(bars.times, first, config.run.chunk)
        self.symbols = np.array(bars.symbols, dtype=object)
        self.decision_hash = config.decision_hash()
        self.ppy = periods_per_year(bars.times[first:]) if bars.n_bars - first > 1 else 1.0
        self.bar_seconds = (float(np.median(np.diff(bars.times[first:]))) / 1e9
                            if bars.n_bars - first > 1 else None)
        self.horizon = config.ensemble.shadow_horizon or config.execution.max_holding_bars or 1

    # -- start or resume

    def begin(self, *, resume: bool) -> _Run:
        """A fresh run, or the unfinished one recorded in the memory (``resume``)."""
        start, end = self._period()
        active = self.memory.store.run_state() if self.memory else None
        if resume:
            if active is None:
                raise MemoryStoreError(f"{self.config.memory.dir}: there is no unfinished run "
                                       f"to resume; run without --resume")
            if (active["start"], active["end"], active["chunk_kind"]) != (
                    start.isoformat(), end.isoformat(), self.config.run.chunk):
                raise MemoryStoreError(
                    f"{self.config.memory.dir}: the unfinished run {active['run_id']} covers "
                    f"{active['start']} to {active['end']} by {active['chunk_kind']}; resume "
                    f"it with the same --year/--start/--end and --chunk")
            return self._restore(active)
        if active is not None:
            raise MemoryStoreError(
                f"{self.config.memory.dir} holds the unfinished run {active['run_id']} "
                f"({active['chunks_done']} of {active['chunks_total']} chunks); continue it "
                f"with --resume, or start over with --fresh")
        if self.memory and self.memory.generation:
            learned_to = pd.Timestamp(self.memory.store.committed_chunks()[-1]["end"])
            if learned_to >= start:
                raise MemoryStoreError(
                    f"{self.config.memory.dir} already learned from bars up to "
                    f"{learned_to:%Y-%m-%d %H:%M}; a run from {start:%Y-%m-%d} would learn "
                    f"from its own future; run a later period, or use --fresh or --memory-dir")
        stats = self.memory.stats() if self.memory else empty_stats()
        parameters = self.memory.store.parameters() if self.memory else {}
        run_id = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S") + "_" + \
            self.config.hash()[:8]
        return _Run(run_id, EngineState.initial(self.bars.n_assets,
                                                self.config.run.initial_cash),
                    stats, parameters, {})

    def _restore(self, active: dict[str, Any]) -> _Run:
        run_dir = Path(self.config.run.out_dir) / active["run_id"]
        run = _Run(active["run_id"], EngineState.from_json(active["engine_state"]),
                   self.memory.stats(), self.memory.store.parameters(),
                   dict(active["open_decisions"]))
        for chunk in self.chunks[: active["chunks_done"]]:
            part = _read_part(run_dir, chunk)
            run.parts.append(part)
            run.done.append(ChunkResult(chunk, self._time(chunk.start),
                                        self._time(chunk.stop - 1), **part["result"]))
        return run

    def _period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return period_bounds(self.config)

    def _time(self, index: int) -> pd.Timestamp:
        return pd.Timestamp(int(self.bars.times[index]), tz="UTC")

    # -- one chunk

    def trade(self, run: _Run, chunk: Chunk, run_dir: Path | None) -> None:
        """Trade one chunk with the weights learned so far, then learn and commit."""
        config, bars, context = self.config, self.bars, self.context
        notify = (lambda s: self.progress(chunk, s)) if self.progress else (lambda s: None)
        learning = self.memory is not None
        generation = self.memory.generation if learning else 0
        weights = (current_weights(self.names, run.stats, config.ensemble, generation)
                   if learning else Weights(tuple(self.names), equal_weights(len(self.names)),
                                            {}))
        notify("prepare")
        reports = {p.name: p.prepare(context, chunk.start, chunk.stop) for p in self.providers}

        notify("candidates")
        mask = np.zeros((chunk.stop - chunk.start, bars.n_assets), dtype=bool)
        for provider in self.providers:
            if hasattr(provider, "propose"):
                mask |= provider.propose(context, chunk.start, chunk.stop)
        candidates = Candidates.from_mask(mask, chunk.start)
        regimes = context.regimes[candidates.bar, candidates.asset]
        states = self._states(candidates)

        notify("votes")
        similar = None  # the k nearest past situations, for providers that read them
        if (learning and len(self.memory.vectors) and len(candidates)
                and any(getattr(p, "uses_similar", False) for p in self.providers)):
            similar = self.memory.vectors.similar(states, config.memory.k)
        votes = [p.vote(context, candidates, similar) for p in self.providers] \
            if len(candidates) else []
        score, without_memory, memory_vote = self._score(votes, weights, regimes, states,
                                                         len(candidates))
        ids = decision_ids(self.symbols[candidates.asset], bars.times[candidates.bar],
                           self.decision_hash)
        size_multiplier = run.parameters.get("size_multiplier", 1.0) if learning else 1.0
        decisions = build_decisions(candidates, score, ids, start=chunk.start, stop=chunk.stop,
                                    n_assets=bars.n_assets, ensemble=config.ensemble,
                                    execution=config.execution, size_multiplier=size_multiplier)
        self._remember_decisions(run, candidates, decisions, votes, score, memory_vote, states,
                                 regimes, chunk)

        notify("simulate")
        window = bars.slice(chunk.start, chunk.stop)
        initial_equity = run.engine.last_equity
        execution = config.execution
        sim = simulate(
            window.open, window.high, window.low, window.close, decisions, state=run.engine,
            commission=execution.commission, slippage=execution.slippage,
            max_holding_bars=execution.max_holding_bars,
            max_open_positions=execution.max_open_positions,
            close_at_end=chunk is self.chunks[-1], bar_offset=chunk.start,
        )
        run.engine = sim.state
        metrics = compute_metrics(sim.equity, sim.open_positions, sim.trades,
                                  initial_equity=initial_equity, periods_per_year=self.ppy,
                                  bar_seconds=self.bar_seconds)

        notify("learn")
        outcomes = self._outcomes(run, sim.trades, chunk, generation + 1)
        learned = self._learning_figures(votes, candidates, score, without_memory, memory_vote,
                                         chunk)
        # what each provider reports for the chunk: its prepare figures (e.g. training
        # accuracy) and its counters after voting (e.g. LLM requests, cache hits, cost)
        learned["provider_reports"] = {p.name: {**reports[p.name], **p.report()}
                                       for p in self.providers}
        learned["size_multiplier"] = size_multiplier
        result = ChunkResult(chunk, self._time(chunk.start), self._time(chunk.stop - 1),
                             len(candidates), int(np.count_nonzero(decisions.direction)),
                             metrics, weights.as_dict(), learned)
        part = {"equity": sim.equity, "open_positions": sim.open_positions,
                "trades": sim.trades, "result": _result_fields(result)}
        if run_dir is not None:
            _write_part(run_dir, chunk, part)
        if learning:
            self._learn_and_commit(run, chunk, votes, candidates, regimes, weights, outcomes,
                                   result, sim.equity[-1] - initial_equity)
        run.parts.append(part)
        run.done.append(result)
        notify("done")

    def _states(self, candidates: Candidates) -> np.ndarray:
        if self.memory is None:
            return np.zeros((len(candidates), 0), dtype=np.float32)
        from backtester.memory.session import state_vectors

        return state_vectors(self.context, candidates)

    def _score(self, votes: list[Votes], weights: Weights, regimes: np.ndarray,
               states: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ensemble score, the same without the memory vote, and the memory vote itself."""
        if k == 0:
            empty = np.zeros(0)
            return empty, empty, empty
        providers = provider_scores(votes, weights.for_candidates(regimes))
        memory_vote = np.zeros(k)
        cfg = self.config.memory
        if self.memory is not None and len(self.memory.vectors) >= cfg.min_neighbours:
            edge = self.memory.vectors.memory_vote(states, cfg.k)
            memory_vote = np.clip(edge / cfg.vote_scale, -1.0, 1.0)
            return (1 - cfg.vote_weight) * providers + cfg.vote_weight * memory_vote, \
                providers, memory_vote
        return providers, providers, memory_vote

    def _remember_decisions(self, run: _Run, candidates: Candidates, decisions: Any,
                            votes: list[Votes], score: np.ndarray, memory_vote: np.ndarray,
                            states: np.ndarray, regimes: np.ndarray, chunk: Chunk) -> None:
        """Keep what each decision's outcome file will need once its trade closes."""
        if self.memory is None or not len(candidates):
            return
        rows, cols = candidates.bar - chunk.start, candidates.asset
        taken = np.flatnonzero(decisions.direction[rows, cols] != 0)
        ids = decisions.decision_id[rows, cols]
        for k in taken:
            run.open_decisions[str(int(ids[k]))] = {
                "regime": REGIME_NAMES[int(regimes[k])],
                "volatility": float(np.nan_to_num(self.volatility[candidates.bar[k],
                                                                  candidates.asset[k]])),
                "votes": {name: {"vote": int(v.vote[k]), "confidence": float(v.confidence[k])}
                          for name, v in zip(self.names, votes)},
                "reasoning": " ".join(v.reasoning[k] for v in votes
                                      if v.reasoning and v.reasoning[k]),
                "ensemble_score": float(score[k]),
                "memory_vote": float(memory_vote[k]),
                "state": [float(x) for x in states[k]],
            }

    def _outcomes(self, run: _Run, trades: np.ndarray, chunk: Chunk,
                  generation: int) -> list[dict[str, Any]]:
        """Outcome dicts for the trades closed in this chunk (memory only)."""
        if self.memory is None:
            return []
        from backtester.memory.texts import describe
        from backtester.memory.store import SCHEMA_VERSION

        outcomes = []
        for trade in trades:
            info = run.open_decisions.pop(str(int(trade["decision_id"])), None)
            if info is None:  # opened under another config; cannot be described
                continue
            outcome = {
                "schema_version": SCHEMA_VERSION,
                "decision_id": int(trade["decision_id"]),
                "symbol": str(self.symbols[trade["asset"]]),
                "direction": int(trade["direction"]),
                "entry_time": self._time(int(trade["entry_bar"])).isoformat(),
                "exit_time": self._time(int(trade["exit_bar"])).isoformat(),
                "bars_held": int(trade["exit_bar"] - trade["entry_bar"]),
                "entry_price": float(trade["entry_price"]),
                "exit_price": float(trade["exit_price"]),
                "size": float(trade["size"]),
                "pnl": float(trade["pnl"]),
                "return_pct": float(trade["return_pct"]),
                "fees": float(trade["fees"]),
                "exit_reason": EXIT_REASON_NAMES[int(trade["exit_reason"])],
                "generation": generation,
                "chunk": chunk.label,
                **info,
            }
            outcome["description"] = describe(outcome)
            outcomes.append(outcome)
        return outcomes

    def _learning_figures(self, votes: list[Votes], candidates: Candidates, score: np.ndarray,
                          without_memory: np.ndarray, memory_vote: np.ndarray,
                          chunk: Chunk) -> dict[str, Any]:
        """Hit rates of the ensemble's decisions with and without the memory vote."""
        if not len(candidates):
            return {}
        threshold = self.config.ensemble.threshold
        rows = [Votes(np.where(np.abs(s) >= threshold, np.sign(s), 0).astype(np.int8),
                      np.ones(len(s))) for s in (score, without_memory)]
        rows.append(Votes(np.sign(memory_vote).astype(np.int8), np.abs(memory_vote)))
        scored = shadow_scores(rows, candidates, self.bars.close, chunk.stop, self.horizon)
        figures = {}
        for i, name in enumerate(("ensemble", "ensemble_without_memory", "memory_vote")):
            n = int(scored.voted[i].sum())
            figures[name] = {"votes": n, "hits": int(scored.hit[i].sum()),
                             "hit_rate": float(scored.hit[i].sum() / n) if n else None,
                             "shadow_pnl": float(scored.shadow_return[i].sum())}
        return figures

    def _learn_and_commit(self, run: _Run, chunk: Chunk, votes: list[Votes],
                          candidates: Candidates, regimes: np.ndarray, weights: Weights,
                          outcomes: list[dict[str, Any]], result: ChunkResult,
                          pnl: float) -> None:
        cfg = self.config
        if len(candidates):
            scores = shadow_scores(votes, candidates, self.bars.close, chunk.stop, self.horizon)
        else:
            empty = np.zeros((len(self.names), 0), dtype=bool)
            scores = ShadowScores(empty, empty, np.zeros(empty.shape), np.zeros(0, dtype=bool))
        traded = [({n: v["vote"] for n, v in o["votes"].items()}, o["direction"], o["pnl"])
                  for o in outcomes]
        run.stats, counts = learn(run.stats, self.names, scores, regimes, weights, traded,
                                  cfg.ensemble, chunk.label)
        for name, report in result.learning.get("provider_reports", {}).items():
            if report:
                run.stats["providers"][name].setdefault("reports", []).append(
                    {"chunk": chunk.label, **report})
        run.parameters = monitor_size(run.parameters, [o["pnl"] > 0 for o in outcomes],
                                      cfg.monitor, chunk.label)
        m = result.metrics
        snapshot = {
            "chunk": chunk.label, "run_id": run.run_id, "pnl": float(pnl),
            "return": m["total_return"], "sharpe": m["sharpe"], "win_rate": m["win_rate"],
            "trades": m["trades"], "max_drawdown": m["max_drawdown"],
            "candidates": result.candidates, "decisions": result.decisions,
            "weights": result.weights, "size_multiplier": result.learning["size_multiplier"],
            "learning": {k: v for k, v in result.learning.items() if k != "size_multiplier"},
            "chunk_provider_counts": counts["providers"],
            "chunk_regime_counts": counts["regimes"],
        }
        last = chunk is self.chunks[-1]
        start, end = self._period()
        run_state = None if last else {
            "run_id": run.run_id, "start": start.isoformat(), "end": end.isoformat(),
            "chunk_kind": cfg.run.chunk, "chunks_total": len(self.chunks),
            "chunks_done": len(run.done) + 1, "engine_state": run.engine.to_json(),
            "open_decisions": run.open_decisions,
        }
        self.memory.commit(label=chunk.label, start=result.start_time, end=result.end_time,
                           run_id=run.run_id, outcomes=outcomes, stats=run.stats,
                           parameters=run.parameters, snapshot=snapshot, run_state=run_state)

    # -- the end

    def result(self, run: _Run) -> RunResult:
        trades = np.concatenate([p["trades"] for p in run.parts])
        equity = np.concatenate([p["equity"] for p in run.parts])
        positions = np.concatenate([p["open_positions"] for p in run.parts])
        metrics = compute_metrics(equity, positions, trades,
                                  initial_equity=self.config.run.initial_cash,
                                  periods_per_year=self.ppy, bar_seconds=self.bar_seconds)
        frame = pd.DataFrame({"time": self.bars.index[self.first:], "equity": equity,
                              "open_positions": positions})
        return RunResult(run.run_id, self.config, run.done, metrics,
                         trades_frame(trades, self.bars), frame, None, self.bars.symbols,
                         run.stats["providers"] if self.memory is not None else {})


def run_backtest(
    config: Config,
    *,
    bars: Bars | None = None,
    first: int | None = None,
    progress: ProgressCallback | None = None,
    write: bool = True,
    resume: bool = False,
    providers: tuple[Provider, ...] = (),
) -> RunResult:
    """Run the configured period chunk by chunk; write results unless ``write`` is False.

    With ``config.memory.enabled`` the memory folder is locked for the run, each chunk's
    weights come from what earlier chunks (and earlier runs) learned, and every chunk is
    committed to the memory before the next starts; ``resume`` continues the unfinished
    run the memory records. ``bars``/``first`` bypass loading (tests and benchmarks);
    ``providers`` are provider objects voting beside the configured ones.
    """
    opener = contextlib.nullcontext(None)
    if config.memory.enabled:
        from backtester.memory.session import MemorySession

        opener = MemorySession.open(config)
    with opener as memory:  # first: the lock refuses early; the text model loads meanwhile
        if bars is None or first is None:
            bars, first = load_market(config)
        loop = WalkForward(config, bars, first, memory, progress, providers)
        run = loop.begin(resume=resume)
        run_dir = Path(config.run.out_dir) / run.run_id
        parts_dir = run_dir if write and memory is not None else None  # for --resume
        if parts_dir is not None:
            (parts_dir / "chunks").mkdir(parents=True, exist_ok=True)
        for chunk in loop.chunks[len(run.done):]:
            loop.trade(run, chunk, parts_dir)
        result = loop.result(run)
        if write:
            write_run(replace(result, out_dir=run_dir))
            write_report(run_dir)
        if memory is not None:
            memory.store.finish_run()
        if parts_dir is not None:
            shutil.rmtree(parts_dir / "chunks")
    return replace(result, out_dir=run_dir) if write else result


# ---------------------------------------------------------------- outputs


def _part_path(run_dir: Path, chunk: Chunk) -> Path:
    return run_dir / "chunks" / f"{chunk.index:04d}.npz"


def _result_fields(result: ChunkResult) -> dict[str, Any]:
    return {"candidates": result.candidates, "decisions": result.decisions,
            "metrics": result.metrics, "weights": result.weights, "learning": result.learning}


def _write_part(run_dir: Path, chunk: Chunk, part: dict[str, Any]) -> None:
    """One chunk's arrays (no pickle: plain and structured numeric arrays) and figures."""
    buffer = io.BytesIO()
    np.savez(buffer, equity=part["equity"], open_positions=part["open_positions"],
             trades=part["trades"],
             result=np.frombuffer(orjson.dumps(part["result"], option=orjson.OPT_SERIALIZE_NUMPY),
                                  dtype=np.uint8))
    atomic_write_bytes(_part_path(run_dir, chunk), buffer.getvalue())


def _read_part(run_dir: Path, chunk: Chunk) -> dict[str, Any]:
    path = _part_path(run_dir, chunk)
    try:
        with np.load(path, allow_pickle=False) as data:
            part = {k: data[k] for k in ("equity", "open_positions", "trades")}
            result = orjson.loads(data["result"].tobytes())
    except (OSError, ValueError, KeyError) as e:
        raise MemoryStoreError(f"{path}: cannot resume, the chunk results are unreadable ({e}); "
                               f"start over with --fresh") from None
    result["metrics"] = {k: (np.nan if v is None else v) for k, v in result["metrics"].items()}
    part["result"] = result
    return part


def trades_frame(trades: np.ndarray, bars: Bars) -> pd.DataFrame:
    """The trades record array as a table with symbols, times and exit reason names."""
    frame = pd.DataFrame(trades)
    frame.insert(0, "symbol", np.array(bars.symbols, dtype=object)[trades["asset"]])
    frame.insert(1, "entry_time", bars.index[trades["entry_bar"]])
    frame.insert(2, "exit_time", bars.index[trades["exit_bar"]])
    frame["exit_reason"] = [EXIT_REASON_NAMES[int(c)] for c in trades["exit_reason"]]
    return frame.drop(columns=["asset"])


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def llm_usage(result: RunResult) -> dict[str, Any]:
    """LLM providers' counters summed over the chunks, with cost per chunk and per trade."""
    names = [p.name for p in result.config.providers if provider_kind(p) == "llm"]
    if not names:
        return {}
    providers: dict[str, dict[str, float]] = {n: {} for n in names}
    per_chunk = {}
    for c in result.chunks:
        reports = c.learning.get("provider_reports", {})
        per_chunk[c.chunk.label] = sum(reports.get(n, {}).get("cost", 0.0) for n in names)
        for name in names:
            for key, value in reports.get(name, {}).items():
                providers[name][key] = providers[name].get(key, 0) + value
    cost = sum(per_chunk.values())
    trades = len(result.trades)
    return {"providers": providers, "cost": cost, "cost_per_chunk": per_chunk,
            "cost_per_trade": cost / trades if trades else None}


def run_summary(result: RunResult) -> dict[str, Any]:
    """What metrics.json holds: the run, each chunk, the learned weights, overall metrics."""
    start, end = period_bounds(result.config)
    providers = {
        name: {**{k: row.get(k) for k in ("votes", "hits", "shadow_pnl", "trades", "wins",
                                          "losses", "weight")},
               "hit_rate": row["hits"] / row["votes"] if row.get("votes") else None}
        for name, row in result.providers.items()
    }
    return _json_ready({
        "run_id": result.run_id,
        "config_hash": result.config.hash(),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "symbols": list(result.symbols),
        "learning": result.config.memory.enabled,
        "chunks": [
            {
                "label": c.chunk.label,
                "start": c.start_time.isoformat(),
                "end": c.end_time.isoformat(),
                "bars": c.chunk.stop - c.chunk.start,
                "candidates": c.candidates,
                "decisions": c.decisions,
                "metrics": c.metrics,
                "weights": c.weights.get("overall", {}),
                "regime_weights": c.weights.get("by_regime", {}),
                "learning": c.learning,
            }
            for c in result.chunks
        ],
        "providers": providers,
        "llm": llm_usage(result),
        "overall": result.metrics,
    })


def write_run(result: RunResult) -> RunResult:
    """Write metrics.json, trades.parquet, equity.parquet and config.toml in the run folder."""
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "metrics.json",
                  orjson.dumps(run_summary(result), option=orjson.OPT_INDENT_2))
    result.trades.to_parquet(out / "trades.parquet", index=False)
    result.equity.to_parquet(out / "equity.parquet", index=False)
    atomic_write_bytes(out / "config.toml", dump_toml(result.config.to_dict()).encode())
    return result
