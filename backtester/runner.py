"""The walk-forward loop: load bars, compute features once, trade chunk after chunk,
learning between chunks from the memory folder and committing what each chunk taught.

One chunk is a fixed walk of steps, each in its own room: decide (candidates, votes,
scores: here), simulate (engine/), the counterfactual books (books.py), learn and commit
(learning.py, memory/); results and the run folder are results.py.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester import learning
from backtester.books import (
    LEARNED,
    BookChunk,
    Books,
    attribution,
    book_figures,
    chunk_figures,
)
from backtester.checks import is_folder_name
from backtester.chunks import Chunk, plan_chunks
from backtester.config import Config
from backtester.data.bars import Bars
from backtester.engine import EngineState
from backtester.ensemble import (
    Weights,
    build_decisions,
    current_weights,
    decision_ids,
    empty_stats,
    equal_weights,
    provider_scores,
)
from backtester.errors import ConfigError, MemoryStoreError, ProviderError
from backtester.finish import OUTPUTS_PENDING, finish, finished_line, folder_error, pending
from backtester.market import load_market, period_bounds, volatility, warmup_bars
from backtester.metrics import compute_metrics, periods_per_year
from backtester.portfolio import Trading
from backtester.providers import build_provider
from backtester.providers.base import Candidates, MarketContext, Provider, Votes
from backtester.regime import compute_regimes
from backtester.timeframes import market_features
from backtester.results import (
    ChunkResult,
    RunResult,
    read_part,
    result_fields,
    risk_counts,
    trades_frame,
    write_part,
)
from strategies import STRATEGY_REGISTRY

__all__ = ["ChunkResult", "RunResult", "load_market", "period_bounds", "run_backtest",
           "warmup_bars"]

ProgressCallback = Callable[[Chunk, str], None]


def build_providers(config: Config) -> list[Provider]:
    """Rule strategies, then [providers.<name>] (ML, LLM), in config order; in debate
    mode the bull, bear and judge LLMs become one debate provider."""
    strategies = [STRATEGY_REGISTRY[c.name](c) for c in config.strategies]
    cache_dir = Path(config.memory.llm_cache_dir or Path(config.memory.dir) / "llm_cache")
    folder = Path(config.origin) if config.origin else None
    built = [build_provider(c, cache_dir=cache_dir, template_folder=folder,
                            explicit_template=bool({f"providers.{c.name}.prompt_template",
                                                    "llm_defaults.prompt_template"}
                                                   & set(config.given)))
             for c in config.providers]
    if config.ensemble.llm_mode == "debate":
        from backtester.providers.debate import assemble

        built = assemble(built, config.ensemble)
    return strategies + built


# ---------------------------------------------------------------- the loop


@dataclass
class _Run:
    """Mutable state of one run across its chunks."""

    run_id: str
    engine: EngineState
    stats: dict[str, Any]
    parameters: dict[str, Any]
    open_decisions: dict[str, dict[str, Any]]  # decision id -> what the outcome needs
    books: Books
    done: list[ChunkResult] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    in_sample: bool = False


class WalkForward:
    """Trades chunks in order; learns from and commits to the memory between them.

    ``memory`` None: learning off (equal weights, nothing read or written). With a memory
    session, weights and the memory vote come from it; chunks are committed to it only
    when ``config.memory.mode`` is "learn" ("frozen" reads and writes nothing).
    """

    def __init__(self, config: Config, bars: Bars, first: int, memory: Any | None,
                 progress: ProgressCallback | None = None,
                 extra_providers: tuple[Provider, ...] = ()) -> None:
        self.config = config
        self.bars = bars
        self.first = first
        self.memory = memory
        self.writes = memory is not None and config.memory.learns
        self.progress = progress
        features, names = market_features(bars, config.features.timeframes)
        self.context = MarketContext(bars, features, compute_regimes(bars, config.regime),
                                     names)
        self.volatility = volatility(bars, config.regime.volatility_window)
        self.trading = Trading(config, bars)
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

    def begin(self, *, resume: bool, in_sample: bool = False, run_id: str | None = None) -> _Run:
        """A fresh run, or the unfinished one recorded in the memory (``resume``).

        ``resume`` with nothing to resume starts the run when the memory has not learned
        its period yet (a run stopped in its first chunk). ``in_sample`` lets a frozen run
        decide over a period the memory learned from. ``run_id`` names the run (default:
        the UTC time it started and the config hash).
        """
        start, end = self._period()
        active = self.memory.store.run_state() if self.writes else None
        if active is not None and not is_folder_name(active.get("run_id")):
            raise MemoryStoreError(  # a folder from someone else never points bt elsewhere
                f"{self.config.memory.dir}/manifest.json: the unfinished run's id "
                f"{str(active.get('run_id'))[:40]!r} is not a run folder name; start over "
                "with --fresh")
        if resume and active is not None:
            if (active["start"], active["end"], active["chunk_kind"]) != (
                    start.isoformat(), end.isoformat(), self.config.run.chunk):
                raise MemoryStoreError(
                    f"{self.config.memory.dir}: the unfinished run {active['run_id']} covers "
                    f"{active['start']} to {active['end']} by {active['chunk_kind']}; resume "
                    f"it with the same --year/--start/--end and --chunk")
            return self._restore(active)
        if resume and not self.writes:
            raise MemoryStoreError("--resume continues a learning run; a run with "
                                   f"--memory-mode {self.config.memory.mode} writes nothing "
                                   "to resume from: run it again without --resume")
        if pending(active):
            raise MemoryStoreError(
                f"{self.config.memory.dir} holds the run {active['run_id']}: all its "
                f"{active['chunks_total']} chunks are committed but its results under "
                f"{self.config.run.out_dir} were not written; finish it with --resume "
                "(nothing is traded again), or start over with --fresh")
        if active is not None:
            raise MemoryStoreError(
                f"{self.config.memory.dir} holds the unfinished run {active['run_id']} "
                f"({active['chunks_done']} of {active['chunks_total']} chunks); continue it "
                f"with --resume, or start over with --fresh")
        learned_to = self._learned_to()
        overlap = learned_to is not None and learned_to >= start
        if overlap and self.writes:
            raise MemoryStoreError(
                f"{self.config.memory.dir} already learned from bars up to "
                f"{learned_to:%Y-%m-%d %H:%M}; a run from {start:%Y-%m-%d} would learn from "
                f"its own future; run a later period, or use --fresh or --memory-dir")
        if overlap and not in_sample:
            raise MemoryStoreError(
                f"{self.config.memory.dir} learned from bars up to {learned_to:%Y-%m-%d %H:%M}"
                f", inside this period from {start:%Y-%m-%d}: a frozen evaluation here is "
                f"in-sample; pass --in-sample to run it anyway, or evaluate a later period")
        stats = self.memory.stats() if self.memory else empty_stats()
        parameters = self.memory.store.parameters() if self.memory else {}
        if run_id is None:
            run_id = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S") + "_" + \
                self.config.decision_hash()[:8]
        elif not is_folder_name(run_id):
            raise ConfigError(f"--run-id must be letters, digits, '_', '.' or '-' (it names "
                              f"a folder under run.out_dir), was {run_id!r}")
        return _Run(run_id, self.trading.initial_state(), stats, parameters, {},
                    self._books(), in_sample=overlap)

    def _learned_to(self) -> pd.Timestamp | None:
        if self.memory is None or not self.memory.generation:
            return None
        return pd.Timestamp(self.memory.store.committed_chunks()[-1]["end"])

    def _books(self, states: dict[str, Any] | None = None) -> Books:
        if states:
            return Books.from_json(self.config, self.names, self.trading, states)
        return Books(self.config, self.names, self.trading)

    def _restore(self, active: dict[str, Any]) -> _Run:
        run_dir = Path(self.config.run.out_dir) / active["run_id"]
        run = _Run(active["run_id"], EngineState.from_json(active["engine_state"]),
                   self.memory.stats(), self.memory.store.parameters(),
                   dict(active["open_decisions"]), self._books(active.get("books")))
        for chunk in self.chunks[: active["chunks_done"]]:
            part = read_part(run_dir, chunk)
            run.parts.append(part)
            run.done.append(ChunkResult(chunk, self._time(chunk.start),
                                        self._time(chunk.stop - 1), **part["result"]))
        return run

    def _period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return period_bounds(self.config)

    def _time(self, index: int) -> pd.Timestamp:
        return pd.Timestamp(int(self.bars.times[index]), tz="UTC")

    # -- before the first chunk

    def preflight(self) -> dict[str, dict[str, Any]]:
        """Check every provider that can be checked (an LLM endpoint answers a real
        request); raises ProviderError with the server's own reason, before any chunk."""
        return {p.name: p.preflight(self.context) for p in self.providers
                if hasattr(p, "preflight")}

    def plan(self, chunks: list[Chunk]) -> dict[str, Any]:
        """Candidates per remaining chunk, and per provider that calls out: the calls the
        run will make and how many answers are already cached (later chunks are counted
        with the memory as it is now, so their prompts' similar situations may differ)."""
        callers = [p for p in self.providers if hasattr(p, "plan")]
        rows, totals = [], {p.name: {"calls": 0, "cached": 0} for p in callers}
        for chunk in chunks:
            candidates = self._candidates(chunk)
            similar = self._similar(candidates, self._states(candidates), callers)
            row = {"label": chunk.label, "candidates": len(candidates), "providers": {}}
            for p in callers:
                counts = p.plan(self.context, candidates, similar)
                row["providers"][p.name] = counts
                for key in ("calls", "cached"):
                    totals[p.name][key] += int(counts.get(key, 0))
            rows.append(row)
        return {"chunks": rows, "providers": totals,
                "candidates": sum(c["candidates"] for c in rows)}

    # -- one chunk

    def trade(self, run: _Run, chunk: Chunk, run_dir: Path | None) -> None:
        """Trade one chunk with the weights learned so far, then learn and commit."""
        config, bars = self.config, self.bars
        notify = (lambda s: self.progress(chunk, s)) if self.progress else (lambda s: None)
        notify("prepare")
        reports = {p.name: p.prepare(self.context, chunk.start, chunk.stop)
                   for p in self.providers}
        notify("candidates")
        candidates = self._candidates(chunk)
        notify("votes")
        decided = self._decide(run, chunk, candidates)
        failures = self._provider_failures(run, chunk)

        notify("simulate")
        initial_equity = run.engine.last_equity
        last = chunk is self.chunks[-1]
        sim = self.trading.simulate(decided.decisions, run.engine, chunk.start, chunk.stop,
                                    last=last)
        run.engine = sim.state
        metrics = compute_metrics(sim.equity, sim.open_positions, sim.trades,
                                  initial_equity=initial_equity, periods_per_year=self.ppy,
                                  bar_seconds=self.bar_seconds)
        book_starts = {n: s.last_equity for n, s in run.books.states.items()}
        books = run.books.trade(start=chunk.start, stop=chunk.stop,
                                candidates=decided.candidates, votes=decided.votes,
                                without_memory=decided.without_memory, ids=decided.ids,
                                regimes=decided.regimes,
                                parameters=decided.parameters,
                                first_chunk=chunk is self.chunks[0], last_chunk=last)
        figures = {LEARNED: book_figures(metrics)}  # the run itself is the learned book
        for name, book in books.items():
            figures[name] = chunk_figures(book, initial_equity=book_starts[name],
                                          periods_per_year=self.ppy,
                                          bar_seconds=self.bar_seconds)
        book_result = {"figures": {n: figures[n] for n in run.books.names},
                       **attribution(figures, self.names)}

        notify("learn")
        learned = learning.hit_rates(decided, bars.close, chunk.stop, self.horizon,
                                     config.ensemble.threshold)
        # what each provider reports for the chunk: its prepare figures (e.g. training
        # accuracy) and its counters after voting (e.g. LLM requests, cache hits, cost)
        learned["provider_reports"], usage = self._reports(reports)
        if failures:
            learned["provider_failures"] = failures
        learned["size_multiplier"] = decided.size_multiplier
        if decided.sizing:
            learned["sizing"] = decided.sizing
        result = ChunkResult(chunk, self._time(chunk.start), self._time(chunk.stop - 1),
                             len(decided.candidates),
                             int(np.count_nonzero(decided.decisions.direction)),
                             metrics, decided.weights.as_dict(), learned, book_result, usage,
                             risk_counts(sim))
        part = {"equity": sim.equity, "open_positions": sim.open_positions,
                "trades": sim.trades, "books": books, "result": result_fields(result)}
        if run_dir is not None:  # before the commit: a committed chunk always has its part
            try:
                write_part(run_dir, chunk, part)
            except OSError as e:
                raise folder_error(run_dir, e, self, run) from None
        if self.writes:
            self._commit(run, chunk, decided, sim.trades, result,
                         sim.equity[-1] - initial_equity)
        run.parts.append(part)
        run.done.append(result)
        notify("done")

    def _reports(self, prepared: dict[str, dict[str, Any]]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Each provider's chunk report (its prepare figures and its counters after voting)
        split into results, which the memory keeps, and telemetry (how an LLM's answers
        were obtained), which only the run's llm_usage.json keeps."""
        results, usage = {}, {}
        for p in self.providers:
            report = {**prepared[p.name], **p.report()}
            telemetry = p.usage(report) if hasattr(p, "usage") else {}
            results[p.name] = {k: v for k, v in report.items() if k not in telemetry}
            if telemetry:
                usage[p.name] = telemetry
        return results, usage

    def _candidates(self, chunk: Chunk) -> Candidates:
        mask = np.zeros((chunk.stop - chunk.start, self.bars.n_assets), dtype=bool)
        for provider in self.providers:
            if hasattr(provider, "propose"):
                mask |= provider.propose(self.context, chunk.start, chunk.stop)
        return Candidates.from_mask(mask, chunk.start)

    def _similar(self, candidates: Candidates, states: np.ndarray,
                 providers: list[Provider]) -> Any:
        """The k nearest past situations, for providers that read them (else None)."""
        if (self.memory is None or not len(self.memory.vectors) or not len(candidates)
                or not any(getattr(p, "uses_similar", False) for p in providers)):
            return None
        return self.memory.vectors.similar(states, self.config.memory.k)

    def _decide(self, run: _Run, chunk: Chunk, candidates: Candidates) -> learning.Decided:
        """Weights learned so far, every provider's votes, the scores and the decisions."""
        config = self.config
        reads = self.memory is not None
        weights = (current_weights(self.names, run.stats, config.ensemble,
                                   self.memory.generation)
                   if reads else Weights(tuple(self.names), equal_weights(len(self.names)),
                                         {}))
        regimes = self.context.regimes[candidates.bar, candidates.asset]
        states = self._states(candidates)
        similar = self._similar(candidates, states, self.providers)
        votes = [p.vote(self.context, candidates, similar) for p in self.providers] \
            if len(candidates) else []
        score, without_memory, memory_vote = self._score(votes, weights, regimes, states,
                                                         len(candidates))
        ids = decision_ids(self.symbols[candidates.asset], self.bars.times[candidates.bar],
                           self.decision_hash)
        parameters = run.parameters if reads else {}  # the monitor's, from earlier chunks
        sizes, sizing = self.trading.size(candidates, score, votes, self.names,
                                          regimes, parameters)
        decisions = build_decisions(candidates, score, ids, start=chunk.start, stop=chunk.stop,
                                    n_assets=self.bars.n_assets, ensemble=config.ensemble,
                                    execution=config.execution, sizes=sizes,
                                    threshold=parameters.get("threshold"))
        decided = learning.Decided(candidates, regimes, states, votes, weights, score,
                                   without_memory, memory_vote, ids, decisions,
                                   parameters.get("size_multiplier", 1.0), parameters, sizing)
        if self.writes:
            learning.remember_decisions(run.open_decisions, self.names, decided, chunk.start,
                                        self.volatility)
        return decided

    def _provider_failures(self, run: _Run, chunk: Chunk) -> dict[str, str]:
        """Providers whose calls failed beyond their policy this chunk. With on_failure
        "stop" the chunk is not committed: ProviderError names the way back (--resume)."""
        failures = {}
        for p in self.providers:
            reason = p.chunk_failure() if hasattr(p, "chunk_failure") else None
            if not reason:
                continue
            if getattr(p, "on_failure", "stop") == "stop":
                if self.writes:
                    kept = (f"the memory stays at {run.done[-1].chunk.label}" if run.done
                            else "the memory stays as it was before this run")
                    after = ("once the server is back, run the same command with --resume "
                             "(answers already recorded are reused)")
                else:
                    kept, after = "nothing was written", "run again once the server is back"
                raise ProviderError(f"{reason}; chunk {chunk.label} was not committed and "
                                    f"{kept}; {after}, or set on_failure = \"abstain\"")
            failures[p.name] = reason
            warnings.warn(f"{reason}; on_failure = \"abstain\": chunk {chunk.label} is "
                          "committed with those candidates abstaining", RuntimeWarning,
                          stacklevel=2)
        return failures

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

    def _commit(self, run: _Run, chunk: Chunk, decided: learning.Decided, trades: np.ndarray,
                result: ChunkResult, pnl: float) -> None:
        """Learn from the chunk and commit it, with what --resume needs, to the memory."""
        generation = self.memory.generation + 1
        closed = learning.outcomes(run.open_decisions, trades, self.symbols, self._time,
                                   chunk.label, generation, self.context.feature_names)
        run.stats, run.parameters, counts = learning.learn_chunk(
            run.stats, run.parameters, self.names, decided, closed, self.bars.close,
            chunk.stop, self.horizon, self.config, chunk.label,
            result.learning.get("provider_reports", {}))
        snapshot = learning.snapshot(chunk.label, run.run_id, pnl, result.metrics,
                                     result.candidates, result.decisions, result.weights,
                                     result.learning, result.books, counts)
        last = chunk is self.chunks[-1]
        start, end = self._period()
        # kept after the last chunk too (outputs pending) until the run folder is written,
        # so --resume can finish a run killed (or out of disk) after its last commit
        run_state = {
            "run_id": run.run_id, "start": start.isoformat(), "end": end.isoformat(),
            "chunk_kind": self.config.run.chunk, "chunks_total": len(self.chunks),
            "chunks_done": len(run.done) + 1, "engine_state": run.engine.to_json(),
            "open_decisions": run.open_decisions, "books": run.books.states_json(),
            **({OUTPUTS_PENDING: True} if last else {}),
        }
        self.memory.commit(label=chunk.label, start=result.start_time, end=result.end_time,
                           run_id=run.run_id, outcomes=closed, stats=run.stats,
                           parameters=run.parameters, snapshot=snapshot, run_state=run_state)

    # -- the end

    def result(self, run: _Run) -> RunResult:
        from backtester.books import summarise

        trades = np.concatenate([p["trades"] for p in run.parts])
        equity = np.concatenate([p["equity"] for p in run.parts])
        positions = np.concatenate([p["open_positions"] for p in run.parts])
        metrics = compute_metrics(equity, positions, trades,
                                  initial_equity=self.config.run.initial_cash,
                                  periods_per_year=self.ppy, bar_seconds=self.bar_seconds)
        times = self.bars.index[self.first:]
        frame = pd.DataFrame({"time": times, "equity": equity, "open_positions": positions})
        book_parts = {LEARNED: [BookChunk(p["equity"], p["open_positions"], p["trades"])
                                for p in run.parts]}
        for name in run.books.simulated:
            book_parts[name] = [p["books"][name] for p in run.parts]
        books, book_equity = summarise(
            book_parts, [(c.chunk.label, c.books) for c in run.done], run.books.names, self.names,
            times=self.bars.times[self.first:], regimes=self.context.regimes,
            config=self.config, periods_per_year=self.ppy, bar_seconds=self.bar_seconds,
            learned_metrics=metrics)
        prices = pd.DataFrame({"time": times, **{
            s: self.bars.close[self.first:, j] for j, s in enumerate(self.bars.symbols)}})
        mode = self.config.memory.mode if self.memory is not None else "off"
        return RunResult(run.run_id, self.config, run.done, metrics,
                         trades_frame(trades, self.bars, self.context.regimes), frame, None,
                         self.bars.symbols,
                         {n: run.stats["providers"][n] for n in self.names  # vote order
                          if n in run.stats["providers"]} if self.memory is not None else {},
                         books, pd.DataFrame({"time": times, **book_equity}), prices,
                         mode, run.in_sample, self._changes(run))

    def _changes(self, run: _Run) -> list[dict[str, Any]]:
        """The monitor's parameter changes made after this run's chunks (keys sorted, as the
        memory keeps them: a resumed run writes the same bytes as an uninterrupted one)."""
        labels = {c.chunk.label for c in run.done}
        return [dict(sorted(c.items())) for c in run.parameters.get("history", [])
                if c.get("chunk") in labels]


def run_backtest(
    config: Config,
    *,
    bars: Bars | None = None,
    first: int | None = None,
    progress: ProgressCallback | None = None,
    notice: Callable[[str], None] | None = None,
    write: bool = True,
    resume: bool = False,
    in_sample: bool = False,
    run_id: str | None = None,
    providers: tuple[Provider, ...] = (),
) -> RunResult:
    """Run the configured period chunk by chunk; write results unless ``write`` is False.

    With ``config.memory.mode`` "learn" the memory folder is locked for the run, each
    chunk's weights come from what earlier chunks (and earlier runs) learned, and every
    chunk is committed to the memory before the next starts; ``resume`` continues the
    unfinished run the memory records. "frozen" decides with the memory and writes
    nothing to it (``in_sample`` allows a period it learned from). Before the first chunk
    every LLM endpoint is checked (a failure raises ProviderError, nothing written) and
    ``notice`` gets a line with the calls the run will make. ``run_id`` names the run
    folder (default: start time and config hash). ``bars``/``first`` bypass
    loading (tests and benchmarks); ``providers`` vote beside the configured ones.
    """
    with _memory(config) as memory:  # first: the lock refuses early; the text model loads
        if bars is None or first is None:
            bars, first = load_market(config)
        loop = WalkForward(config, bars, first, memory, progress, providers)
        run = loop.begin(resume=resume, in_sample=in_sample, run_id=run_id)
        run_dir = Path(config.run.out_dir) / run.run_id  # run ids are folder names
        remaining = loop.chunks[len(run.done):]
        if remaining:
            latency = loop.preflight()
            if notice is not None and any(hasattr(p, "plan") for p in loop.providers):
                notice(plan_line(loop.plan(remaining), latency, loop.providers))
        elif notice is not None:
            notice(finished_line(run, run_dir))
        parts_dir = run_dir if write and loop.writes else None  # for --resume
        if parts_dir is not None:
            try:
                (parts_dir / "chunks").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise folder_error(run_dir, e, loop, run) from None
        for chunk in remaining:
            loop.trade(run, chunk, parts_dir)
        return finish(loop, run, memory, run_dir, write=write, parts_dir=parts_dir)


def plan_run(config: Config) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[Provider]]:
    """What a run would do, without trading: (plan, preflight figures, providers)."""
    with _memory(config) as memory:
        bars, first = load_market(config)
        loop = WalkForward(config, bars, first, memory)
        return loop.plan(loop.chunks), loop.preflight(), loop.providers


def _memory(config: Config) -> Any:
    if not config.memory.enabled:
        return contextlib.nullcontext(None)
    from backtester.memory.session import MemorySession

    return MemorySession.open(config)


def plan_line(plan: dict[str, Any], preflight: dict[str, dict[str, Any]],
              providers: list[Provider]) -> str:
    """One line: candidates, calls per provider (cached), and the estimated time."""
    parts = []
    for p in providers:
        if p.name not in plan["providers"]:
            continue
        counts = plan["providers"][p.name]
        new = counts["calls"]  # calls to make: cached answers are not counted in it
        latency = preflight.get(p.name, {}).get("latency_s")
        slots = getattr(p, "max_concurrency", 1) or 1
        eta = (f", ~{_duration(new * latency / slots)} at {slots} in flight"
               if latency is not None and new else "")
        parts.append(f"{p.name}: {new:,} calls to make{eta}, {counts['cached']:,} answers "
                     f"cached")
    calls = "; ".join(parts) if parts else "no provider calls out"
    return f"{plan['candidates']:,} candidates in {len(plan['chunks'])} chunks; {calls}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
