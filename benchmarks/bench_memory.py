"""Speed of the memory folder store (a script that prints figures, not a test).

Run: ``python benchmarks/bench_memory.py [--outcomes 1000] [--chunks 10] [--repeats 5]
[--dir /path/on/the/disk/to/measure]``

Store half (this file's own):
- commit: one chunk of ``--outcomes`` outcome files (each atomic and fsynced), the three
  stats files, the snapshot and the manifest, into an empty memory and into one already
  holding ``--chunks`` chunks;
- open: ``MemoryStore.open`` of a folder of ``--chunks`` x ``--outcomes`` outcomes (it
  reads the manifest and the stats files only);
- read_outcomes, summary and doctor over that folder (``bt memory inspect|doctor``).

Vector half (``vector_half``, marked below): the same commit with the vector index
written through ``backtester.memory.vectors`` (hashing embedder), and the open of store +
vector index together. Prints "vectors pending" where that module is absent.

Scaling (``--held 1000,10000[,100000]``): as a run does it (the text index not read nor
embedded, one sync per chunk), the commit of one chunk of ``--chunk-outcomes`` and the
open (store + state index + outcome check) against the outcomes the memory holds; the
target is flat within 2x from the smallest to the largest. Each commit runs on a copy of
the folder, flushed to disk before the clock starts (the commit's one sync would
otherwise write the copy's bytes too, a cost that grows with the folder but is the
copy's, not the commit's).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.memory.doctor import doctor
from backtester.memory.store import MemoryStore

TARGET_COMMIT_S = 1.0  # 1,000 outcomes
TARGET_OPEN_MS = 5.0  # the store part of loading, 10,000 outcomes
TARGET_OPEN_WITH_VECTORS_MS = 150.0
HASH = "0" * 64
PROVIDERS = ("momentum", "mean_reversion", "breakout", "gbm_reversal", "lstm")
REGIMES = ("TRENDING", "RANGING", "VOLATILE")
STATE_DIM = 15


def make_outcomes(chunk: int, count: int, generation: int, rng: np.random.Generator) -> list[dict]:
    """Outcome dicts shaped like the runner's (15-d state, five providers' votes)."""
    start = pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=90 * chunk)
    outcomes = []
    for i in range(count):
        entry = start + pd.Timedelta(minutes=int(rng.integers(0, 90 * 1440)))
        direction = int(rng.choice((-1, 1)))
        pnl = float(rng.normal(0.0, 5.0))
        outcomes.append({
            "schema_version": 1, "decision_id": int(rng.integers(-(2**62), 2**62)),
            "symbol": "BTCUSDT", "direction": direction, "entry_time": entry.isoformat(),
            "exit_time": (entry + pd.Timedelta(minutes=45)).isoformat(), "bars_held": 45,
            "entry_price": 100.0, "exit_price": 100.0 + pnl, "size": 1.0, "pnl": pnl,
            "return_pct": pnl / 100.0, "fees": 0.1, "exit_reason": "take_profit",
            "regime": REGIMES[i % 3], "volatility": 0.02,
            "votes": {p: {"vote": int(rng.integers(-1, 2)), "confidence": float(rng.random())}
                      for p in PROVIDERS},
            "ensemble_score": 0.4, "memory_vote": 0.1,
            "description": "BTCUSDT long in a trending market: RSI 61, close 1.2% above its "
                           "50-bar average, MACD momentum rising. Closed by take profit.",
            "reasoning": "", "state": [float(x) for x in rng.normal(size=STATE_DIM)],
            "generation": generation, "chunk": f"C{chunk}",
        })
    return outcomes


def stats(chunk: int) -> tuple[dict, dict, dict, dict]:
    """Provider/regime stats, parameters and snapshot shaped like the lead's."""
    row = {"votes": 900 * chunk, "hits": 480 * chunk, "shadow_pnl": 1.5 * chunk, "trades": 300,
           "wins": 150, "losses": 150, "weight": 0.2,
           "weight_history": [{"chunk": f"C{c}", "weight": 0.2} for c in range(chunk + 1)]}
    providers = {"providers": {p: dict(row) for p in PROVIDERS}}
    regimes = {"regimes": {
        r: {"scored": 300 * chunk, "providers": {p: dict(row) for p in PROVIDERS}} for r in REGIMES
    }}
    parameters = {"size_multiplier": 1.0, "history": []}
    counts = {p: {"votes": 900, "hits": 480, "shadow_pnl": 1.5} for p in PROVIDERS}
    snapshot = {"pnl": 12.5, "sharpe": 1.1, "weights": {p: 0.2 for p in PROVIDERS},
                "chunk_provider_counts": counts,
                "chunk_regime_counts": {r: counts for r in REGIMES}}
    return providers, regimes, parameters, snapshot


def commit(store: MemoryStore, chunk: int, outcomes: list[dict],
           vectors: Callable[[Path, int], None] | None = None) -> float:
    """Commit one chunk; return the seconds it took."""
    providers, regimes, parameters, snapshot = stats(chunk)
    begin = time.perf_counter()
    store.commit_chunk(
        label=f"C{chunk}", start=f"start {chunk}", end=f"end {chunk}",
        last_bar_time=pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=90 * chunk + 89),
        run_id="bench", outcomes=outcomes, provider_stats=providers, regime_stats=regimes,
        parameters=parameters, snapshot=snapshot, run_state={"chunks_done": chunk},
        vectors=vectors,
    )
    return time.perf_counter() - begin


def timed(function: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return times


def line(label: str, seconds: list[float], unit: str = "ms", target: float | None = None) -> None:
    scale = 1e3 if unit == "ms" else 1.0
    median, worst = statistics.median(seconds) * scale, max(seconds) * scale
    verdict = "" if target is None else f"  target <= {target:g} {unit}: " + (
        "met" if median <= target else "MISSED")
    print(f"  {label:<46} median {median:9.2f} {unit}, max {worst:9.2f} {unit}{verdict}")


def store_half(root: Path, n_outcomes: int, n_chunks: int, repeats: int) -> Path:
    """Commit, open, read, summary and doctor timings; return the big folder built."""
    rng = np.random.default_rng(7)
    print(f"store: commit of {n_outcomes:,} outcomes (files, stats, snapshot, manifest)")
    fresh = []
    for repeat in range(repeats):
        store = MemoryStore.open(root / f"fresh{repeat}", config_hash=HASH)
        fresh.append(commit(store, 0, make_outcomes(0, n_outcomes, 1, rng)))
    line("into an empty memory", fresh, "s", TARGET_COMMIT_S)

    folder = root / "big"
    store = MemoryStore.open(folder, config_hash=HASH)
    for chunk in range(n_chunks):
        commit(store, chunk, make_outcomes(chunk, n_outcomes, chunk + 1, rng))
    later = []
    for repeat in range(repeats):
        copy = root / f"later{repeat}"
        shutil.copytree(folder, copy)
        grown = MemoryStore.open(copy, config_hash=HASH)
        outcomes = make_outcomes(n_chunks, n_outcomes, n_chunks + 1, rng)
        later.append(commit(grown, n_chunks, outcomes))
    line(f"into a memory of {n_chunks * n_outcomes:,} outcomes", later, "s", TARGET_COMMIT_S)

    total = n_chunks * n_outcomes
    print(f"store: a folder of {total:,} outcomes in {n_chunks} chunks")
    line("MemoryStore.open (manifest + stats files)",
         timed(lambda: MemoryStore.open(folder, config_hash=HASH), max(repeats, 20)),
         "ms", TARGET_OPEN_MS)
    opened = MemoryStore.open(folder, config_hash=HASH)
    line("read_outcomes (every outcome file)", timed(opened.read_outcomes, repeats))
    line("summary (bt memory inspect)", timed(opened.summary, repeats))
    line("doctor (checks every file)", timed(lambda: doctor(folder), min(repeats, 3)))
    return folder


# ---------------------------------------------------------------- vector half
# The vector index is backtester/memory/vectors.py's (another helper's); its own benchmark
# is benchmarks/bench_vectors.py. Here only: what it adds to a commit and to loading.


def vector_half(root: Path, folder: Path, n_outcomes: int, repeats: int) -> None:
    if importlib.util.find_spec("backtester.memory.vectors") is None:
        print("vectors: pending (backtester/memory/vectors.py not there yet)")
        return
    from backtester.memory.embedders import HashingEmbedder
    from backtester.memory.vectors import VectorMemory, rebuild

    embedder = HashingEmbedder()
    rng = np.random.default_rng(11)
    store = MemoryStore.open(folder, config_hash=HASH)
    rebuild(folder, store.read_outcomes(), store.generation, embedder)

    def load(path: Path) -> tuple[MemoryStore, VectorMemory]:
        opened = MemoryStore.open(path, config_hash=HASH)
        return opened, VectorMemory.load(path, committed_generation=opened.generation,
                                         max_size=1000, embedder=embedder)

    print("vectors (hashing embedder): the same folder with its vector index")
    line("MemoryStore.open + VectorMemory.load", timed(lambda: load(folder), max(repeats, 10)),
         "ms", TARGET_OPEN_WITH_VECTORS_MS)
    times = []
    for repeat in range(repeats):
        copy = root / f"vectors{repeat}"
        shutil.copytree(folder, copy)
        grown, memory = load(copy)
        outcomes = make_outcomes(99, n_outcomes, grown.generation + 1, rng)

        def write_vectors(path: Path, generation: int) -> None:
            states = np.array([o["state"] for o in outcomes], dtype=np.float32)
            rows = [{k: o[k] for k in ("decision_id", "symbol", "direction", "return_pct", "pnl",
                                       "exit_reason", "regime", "entry_time", "description")}
                    for o in outcomes]
            memory.add(states, [o["description"] for o in outcomes], rows, generation)
            memory.save(path, generation)

        times.append(commit(grown, 99, outcomes, write_vectors))
    line(f"commit of {n_outcomes:,} outcomes with vectors", times, "s")


def scaling(root: Path, held: list[int], chunk: int, repeats: int) -> None:
    """Commit and open times against the outcomes held, as a run does them."""
    from backtester.memory.embedders import HashingEmbedder
    from backtester.memory.integrity import FILES_KEY
    from backtester.memory.vectors import VectorMemory

    embedder, rng = HashingEmbedder(), np.random.default_rng(5)

    def open_as_run(path: Path) -> tuple[MemoryStore, VectorMemory]:
        store = MemoryStore.open(path, config_hash=HASH)
        memory = VectorMemory.load(path, committed_generation=store.generation, max_size=1000,
                                   embedder=embedder, files=store.manifest.get(FILES_KEY),
                                   text=False)
        store.check_outcomes(memory.searched_ids())
        return store, memory

    def commit_as_run(path: Path, outcomes: list[dict]) -> float:
        store, memory = open_as_run(path)

        def write_vectors(folder: Path, generation: int) -> dict:
            states = np.array([o["state"] for o in outcomes], dtype=np.float32)
            rows = [{k: o[k] for k in ("decision_id", "symbol", "direction", "return_pct",
                                       "pnl", "exit_reason", "regime", "entry_time",
                                       "description")} for o in outcomes]
            memory.add(states, None, rows, generation)
            return memory.save(folder, generation)

        return commit(store, store.generation + 1, outcomes, write_vectors)

    print(f"scaling (as a run: no text embedding, one sync a chunk), chunks of {chunk:,}")
    figures = {}
    for size in held:
        folder = root / f"held{size}"
        while True:
            store = MemoryStore.open(folder, config_hash=HASH)
            count = sum(c["outcomes"] for c in store.committed_chunks())
            if count >= size:
                break
            # As a run fills it: chunks of --chunk-outcomes, the first (the vector base
            # files) and the last 1,000 outcomes (the rows searched); the bulk in between
            # in batches of 5,000 (appended segments), to build 100,000 in minutes.
            left = size - count
            batch = chunk if count == 0 or left <= 1000 else min(5000, left - 1000)
            commit_as_run(folder, make_outcomes(store.generation + 1, batch,
                                                store.generation + 1, rng))
        opens = timed(lambda: open_as_run(folder), repeats)
        commits = []
        for repeat in range(repeats):
            copy = root / f"held{size}_{repeat}"
            shutil.copytree(folder, copy)
            os.sync()  # the copy's bytes on disk first: the commit syncs only its own
            generation = MemoryStore.open(copy, config_hash=HASH).generation + 1
            commits.append(commit_as_run(copy, make_outcomes(generation, chunk, generation,
                                                             rng)))
            shutil.rmtree(copy)
        figures[size] = (statistics.median(commits), statistics.median(opens))
        line(f"commit of {chunk:,} into {size:,} held", commits, "ms")
        line(f"open with {size:,} held", opens, "ms")
    small, large = figures[min(figures)], figures[max(figures)]
    print(f"  ratio {max(figures):,}/{min(figures):,} held: commit {large[0] / small[0]:.2f}x, "
          f"open {large[1] / small[1]:.2f}x (target <= 2x)")
    for line_ in COMPLEXITY:
        print(f"  {line_}")


# What each step of a run's open and commit costs, with n outcomes held, s searched
# (memory.max_memory_size), c in the chunk, g chunks committed (the manifest lists them).
COMPLEXITY = (
    "open: O(g) manifest + O(1) stats files + O(s + c) vector rows read (the newest rows "
    "files, by the manifest's row counts and newest entry times) + O(s) outcome files "
    "read and validated; no listing of the folder's outcome files",
    "commit: O(c) outcome files, one sync, O(1) stats files and snapshot, O(c) segment "
    "files (nothing earlier rewritten or re-hashed), O(g) manifest written last",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temporary folder)")
    parser.add_argument("--held", default="",
                        help="comma-separated outcomes held, e.g. 1000,10000: scaling only")
    parser.add_argument("--chunk-outcomes", type=int, default=200)
    arguments = parser.parse_args()
    if arguments.held:
        with tempfile.TemporaryDirectory(dir=arguments.dir, prefix="bench_memory_") as temp:
            scaling(Path(temp), [int(n) for n in arguments.held.split(",")],
                    arguments.chunk_outcomes, arguments.repeats)
        return
    with tempfile.TemporaryDirectory(dir=arguments.dir, prefix="bench_memory_") as temporary:
        root = Path(temporary)
        folder = store_half(root, arguments.outcomes, arguments.chunks, arguments.repeats)
        vector_half(root, folder, arguments.outcomes, arguments.repeats)


if __name__ == "__main__":
    main()
