"""What a run produces: chunk and run results, the per-chunk parts kept for --resume, and
the run folder (metrics.json, trades, equity, books, prices, config)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.chunks import Chunk
from backtester.config import Config, dump_toml
from backtester.data.bars import Bars
from backtester.engine.records import EXIT_REASON_NAMES
from backtester.errors import MemoryStoreError
from backtester.memory.io import atomic_write_bytes
from backtester.regime import REGIME_NAMES


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
    books: dict[str, Any] = field(default_factory=dict)  # figures per book, attribution
    usage: dict[str, Any] = field(default_factory=dict)  # provider -> telemetry (LLM calls)
    risk: dict[str, Any] = field(default_factory=dict)  # exits and risk refusals by reason


@dataclass(frozen=True, slots=True)
class RunResult:
    """A whole run: per-chunk results, overall metrics, trades and equity, the books."""

    run_id: str
    config: Config
    chunks: list[ChunkResult]
    metrics: dict[str, float]
    trades: pd.DataFrame
    equity: pd.DataFrame
    out_dir: Path | None
    symbols: tuple[str, ...] = ()
    providers: dict[str, Any] = field(default_factory=dict)  # learned stats at the end
    books: dict[str, Any] = field(default_factory=dict)  # books.summarise output
    book_equity: pd.DataFrame | None = None  # time + one equity column per book
    prices: pd.DataFrame | None = None  # time + one close column per symbol
    memory_mode: str = "off"
    in_sample: bool = False
    parameter_changes: list[dict[str, Any]] = field(default_factory=list)  # the monitor's


# ---------------------------------------------------------------- parts (for --resume)


def _part_path(run_dir: Path, chunk: Chunk) -> Path:
    return run_dir / "chunks" / f"{chunk.index:04d}.npz"


def result_fields(result: ChunkResult) -> dict[str, Any]:
    """The JSON-ready figures of a chunk result (what a part keeps beside its arrays)."""
    return {"candidates": result.candidates, "decisions": result.decisions,
            "metrics": result.metrics, "weights": result.weights, "learning": result.learning,
            "books": result.books, "usage": result.usage, "risk": result.risk}


def write_part(run_dir: Path, chunk: Chunk, part: dict[str, Any]) -> None:
    """One chunk's arrays (no pickle: plain and structured numeric arrays) and figures.

    ``part["books"]`` maps each simulated book to its (equity, open_positions, trades).
    """
    buffer = io.BytesIO()
    books = part.get("books", {})
    arrays = {f"book{i}_{key}": getattr(b, key) for i, b in enumerate(books.values())
              for key in ("equity", "open_positions", "trades")}
    result = {**part["result"], "book_names": list(books)}
    np.savez(buffer, equity=part["equity"], open_positions=part["open_positions"],
             trades=part["trades"], **arrays,
             result=np.frombuffer(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY),
                                  dtype=np.uint8))
    atomic_write_bytes(_part_path(run_dir, chunk), buffer.getvalue())


def read_part(run_dir: Path, chunk: Chunk) -> dict[str, Any]:
    """A part written by ``write_part``; unreadable parts name the file and the way out."""
    from backtester.books import BookChunk

    path = _part_path(run_dir, chunk)
    try:
        with np.load(path, allow_pickle=False) as data:
            part = {k: data[k] for k in ("equity", "open_positions", "trades")}
            result = orjson.loads(data["result"].tobytes())
            names = result.pop("book_names", [])
            part["books"] = {name: BookChunk(*(data[f"book{i}_{key}"] for key in
                                               ("equity", "open_positions", "trades")))
                             for i, name in enumerate(names)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MemoryStoreError(f"{path}: cannot resume, the chunk results are unreadable ({e}); "
                               f"start over with --fresh") from None
    result["metrics"] = {k: (np.nan if v is None else v) for k, v in result["metrics"].items()}
    part["result"] = result
    return part


# ---------------------------------------------------------------- tables


def trades_frame(trades: np.ndarray, bars: Bars, regimes: np.ndarray | None = None
                 ) -> pd.DataFrame:
    """The trades record array as a table with symbols, times, exit reason names and the
    regime at entry (the decision bar's regime, when ``regimes`` is given)."""
    frame = pd.DataFrame(trades)
    frame.insert(0, "symbol", np.array(bars.symbols, dtype=object)[trades["asset"]])
    frame.insert(1, "entry_time", bars.index[trades["entry_bar"]])
    frame.insert(2, "exit_time", bars.index[trades["exit_bar"]])
    frame["exit_reason"] = [EXIT_REASON_NAMES[int(c)] for c in trades["exit_reason"]]
    if regimes is not None:
        from backtester.books import regime_at_entry

        frame["regime"] = [REGIME_NAMES.get(int(c), "UNKNOWN")
                           for c in regime_at_entry(trades, regimes)]
    return frame.drop(columns=["asset"])


def risk_counts(sim: Any) -> dict[str, Any]:
    """One chunk's exits by reason and the risk manager's refusals and resizes by reason
    (only reasons that occurred)."""
    names, counts = np.unique(sim.trades["exit_reason"], return_counts=True)
    return {"exits": {EXIT_REASON_NAMES[int(n)]: int(c) for n, c in zip(names, counts)},
            "refused": {k: v["refused"] for k, v in sim.risk.items() if v["refused"]},
            "resized": {k: v["resized"] for k, v in sim.risk.items() if v["resized"]}}


def total_risk(chunks: list[ChunkResult]) -> dict[str, dict[str, int]]:
    """``risk_counts`` summed over the chunks."""
    total: dict[str, dict[str, int]] = {"exits": {}, "refused": {}, "resized": {}}
    for c in chunks:
        for kind, counts in c.risk.items():
            for reason, n in counts.items():
                total[kind][reason] = total[kind].get(reason, 0) + n
    return {kind: dict(sorted(v.items())) for kind, v in total.items()}


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python's, recursively."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def llm_usage(result: RunResult) -> dict[str, Any]:
    """What the LLM providers' calls took, over the chunks: each provider's telemetry
    (requests, cache hits, tokens, cost ...) and result counters (abstentions by reason)
    summed, text values (the structured-output form used, sample answers) as last
    reported; the cost per chunk and per trade. {} without LLM providers."""
    names = list(dict.fromkeys(n for c in result.chunks for n in c.usage))
    if not names:
        return {}
    providers: dict[str, dict[str, Any]] = {n: {} for n in names}
    per_chunk = {}
    for c in result.chunks:
        per_chunk[c.chunk.label] = sum(c.usage.get(n, {}).get("cost", 0.0) or 0.0
                                       for n in names)
        reports = c.learning.get("provider_reports", {})
        for name in names:
            for key, value in {**reports.get(name, {}), **c.usage.get(name, {})}.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    providers[name][key] = providers[name].get(key, 0) + value
                elif value not in (None, [], ""):
                    providers[name][key] = value
    cost = sum(per_chunk.values())
    trades = len(result.trades)
    return {"providers": providers, "cost": cost, "cost_per_chunk": per_chunk,
            "cost_per_trade": cost / trades if trades else None}


def run_summary(result: RunResult) -> dict[str, Any]:
    """What metrics.json holds: the run, each chunk, the learned weights, overall metrics,
    the counterfactual books."""
    from backtester.ensemble import provider_credit
    from backtester.market import period_bounds

    start, end = period_bounds(result.config)
    credit = provider_credit({"providers": result.providers})
    providers = {name: {**{k: row.get(k) for k in ("votes", "hits", "shadow_pnl", "trades",
                                                   "wins", "losses")}, **credit[name]}
                 for name, row in result.providers.items()}
    return json_ready({
        "run_id": result.run_id,
        "config_hash": result.config.decision_hash(),
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "symbols": list(result.symbols),
        "learning": result.memory_mode == "learn",
        "memory_mode": result.memory_mode,
        "in_sample": result.in_sample,
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
                "books": c.books,
                "risk": c.risk,
            }
            for c in result.chunks
        ],
        "risk": total_risk(result.chunks),
        "parameter_changes": result.parameter_changes,
        "providers": providers,
        "books": result.books,
        "overall": result.metrics,
    })


def write_run(result: RunResult) -> RunResult:
    """Write metrics.json, trades/equity/books/prices parquet, config.toml and, with LLM
    providers, llm_usage.json (how the answers were obtained: the one output a record run
    and its replay differ in, besides the cache mode in config.toml)."""
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "metrics.json",
                       orjson.dumps(run_summary(result), option=orjson.OPT_INDENT_2))
    usage = llm_usage(result)
    if usage:
        atomic_write_bytes(out / "llm_usage.json",
                           orjson.dumps(json_ready(usage), option=orjson.OPT_INDENT_2))
    tables = {"trades": result.trades, "equity": result.equity, "books": result.book_equity,
              "prices": result.prices}
    for name, table in tables.items():
        if table is not None:
            buffer = io.BytesIO()
            table.to_parquet(buffer, index=False)
            atomic_write_bytes(out / f"{name}.parquet", buffer.getvalue())
    atomic_write_bytes(out / "config.toml", dump_toml(result.config.to_dict()).encode())
    return result
