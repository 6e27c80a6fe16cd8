"""Speed of the vector memory and the text embedders (a script that prints figures).

Run: ``python benchmarks/bench_vectors.py [--rows 10000] [--repeats 7] [--sentences 640]``

- load: ``VectorMemory.load`` of a folder holding ``--rows`` rows (states.faiss,
  text.faiss of 384-d vectors, index.json), searching the newest 1,000 and all of them;
- add + save: 1,000 new rows staged, committed and written (embedding excluded), into an
  empty memory and into one already holding ``--rows`` rows (save rewrites every row);
- search: nearest_states + memory_vote for a chunk's candidates, search_text;
- embedding throughput of HashingEmbedder and SentenceEmbedder (batch 32, model load
  timed apart) on realistic outcome descriptions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from backtester.features import FEATURE_NAMES
from backtester.memory.embedders import HashingEmbedder, SentenceEmbedder
from backtester.memory.texts import describe
from backtester.memory.vectors import VectorMemory, rebuild

TARGET_LOAD_MS = 150.0
TARGET_HASHING_PER_S = 20_000.0
DESIGN_SENTENCE_PER_S = 280.0  # DESIGN.md, 2 cores
STATE_DIM = 15  # 12 features + 3 regime one-hot
T0 = 1_735_689_600_000_000_000  # 2025-01-01 UTC, ns
MINUTE = 60_000_000_000

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
REGIMES = ("trending", "ranging", "volatile")
EXITS = ("stop_loss", "take_profit", "max_hold", "signal")


class PrecomputedEmbedder(HashingEmbedder):
    """Returns stored vectors without any work: isolates add + save from embedding."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectors[: len(texts)]


def descriptions(n: int, seed: int = 0) -> list[str]:
    """Outcome descriptions as the runner writes them (``texts.describe``; the text index embeds the shorter ``texts.index_text``)."""
    rng = np.random.default_rng(seed)
    features = {name: rng.normal(0, 0.01, n) for name in FEATURE_NAMES}
    features["rsi14"] = rng.uniform(15, 85, n)
    features["bb_position"] = rng.uniform(-0.2, 1.2, n)
    features["volume_ratio"] = rng.lognormal(0, 0.5, n)
    return [
        describe({
            "state": [float(features[name][i]) for name in FEATURE_NAMES],
            "symbol": SYMBOLS[i % 3], "direction": int(rng.choice([-1, 1])),
            "regime": REGIMES[rng.integers(3)], "exit_reason": EXITS[rng.integers(4)],
            "bars_held": int(rng.integers(1, 240)), "return_pct": float(rng.normal(0, 0.015)),
        })
        for i in range(n)
    ]


def outcomes(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n, STATE_DIM))
    states[:, 12:] = np.eye(3)[rng.integers(0, 3, n)]
    texts = descriptions(n, seed)
    return [
        {
            "decision_id": int(rng.integers(0, 2**62)),
            "symbol": SYMBOLS[i % 3],
            "direction": int(rng.choice([-1, 1])),
            "return_pct": float(rng.normal(0, 0.015)),
            "pnl": float(rng.normal(0, 150)),
            "exit_reason": EXITS[rng.integers(4)],
            "regime": REGIMES[rng.integers(3)],
            "entry_time": (np.datetime64(T0 + i * 37 * MINUTE, "ns").astype(str)[:19] + "Z"),
            "generation": 1,
            "description": texts[i],
            "state": states[i].tolist(),
        }
        for i in range(n)
    ]


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def report(label: str, seconds: list[float], target_ms: float | None = None) -> None:
    median, first = statistics.median(seconds) * 1e3, seconds[0] * 1e3
    verdict = "" if target_ms is None else (
        f"   target <= {target_ms:.0f} ms: {'ok' if median <= target_ms else 'MISSED'}")
    print(f"  {label:<44} median {median:8.1f} ms   first {first:8.1f} ms{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sentences", type=int, default=640)
    parser.add_argument("--skip-model", action="store_true", help="no SentenceEmbedder figures")
    args = parser.parse_args()
    hashing = HashingEmbedder()

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        stored = outcomes(args.rows)
        rebuild(folder, stored, 1, hashing)
        sizes = {path.name: path.stat().st_size for path in (folder / "vectors").iterdir()}
        print(f"load of {args.rows:,} rows ("
              + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(sizes.items()))
              + ")")
        for max_size in (1_000, args.rows):
            seconds = timed(lambda: VectorMemory.load(folder, committed_generation=1,
                                                      max_size=max_size, embedder=hashing),
                            args.repeats)
            report(f"max_size {max_size:,}", seconds, TARGET_LOAD_MS)

        new = outcomes(1_000, seed=1)
        states = np.array([outcome["state"] for outcome in new], dtype=np.float32)
        texts = [outcome["description"] for outcome in new]
        precomputed = PrecomputedEmbedder(hashing.encode(texts))
        print("add + save of 1,000 rows (embedding excluded, fsync included)")
        for label, base in (("into an empty memory", None), (f"into {args.rows:,} rows", folder)):
            target = Path(tempfile.mkdtemp(dir=folder_name))

            def add_and_save() -> float:
                if base is None:
                    memory = VectorMemory(max_size=1_000, embedder=precomputed)
                else:
                    memory = VectorMemory.load(base, committed_generation=1, max_size=1_000,
                                               embedder=precomputed)
                start = time.perf_counter()
                memory.add(states, texts, new, 2)
                memory.save(target, 2)
                return time.perf_counter() - start

            seconds = [add_and_save() for _ in range(args.repeats)]
            report(label, seconds)

        memory = VectorMemory.load(folder, committed_generation=1, max_size=1_000,
                                   embedder=hashing)
        queries = np.array([outcome["state"] for outcome in outcomes(300, seed=2)])
        print("search (memory of 1,000 kept rows, k 10)")
        report("memory_vote of 300 candidates", timed(lambda: memory.memory_vote(queries, 10),
                                                      args.repeats))
        report("similar of 300 candidates", timed(lambda: memory.similar(queries, 10),
                                                  args.repeats))
        report("search_text (hashing)", timed(lambda: memory.search_text(
            "stop loss hit in a volatile market", 10), args.repeats))

    print("embedding throughput (realistic outcome descriptions)")
    sentences = descriptions(max(args.sentences, 10_000), seed=3)
    hashing.encode(sentences[:100])
    seconds = min(timed(lambda: hashing.encode(sentences[:10_000]), 3))
    per_second = 10_000 / seconds
    verdict = "ok" if per_second >= TARGET_HASHING_PER_S else "MISSED"
    print(f"  {'HashingEmbedder':<44} {per_second:10,.0f} sentences/s   target >= "
          f"{TARGET_HASHING_PER_S:,.0f}: {verdict}")
    if args.skip_model:
        return
    sentence = SentenceEmbedder()
    start = time.perf_counter()
    sentence.encode(sentences[:32])  # import + model load + one batch
    print(f"  {'SentenceEmbedder first call (import + load)':<44} "
          f"{time.perf_counter() - start:10.2f} s")
    batch = sentences[: args.sentences]
    tokens = np.mean([len(ids) for ids in sentence_tokens(batch)])
    seconds = min(timed(lambda: sentence.encode(batch), 2))
    print(f"  {f'SentenceEmbedder, batch 32, {tokens:.0f} tokens':<44} "
          f"{len(batch) / seconds:10,.0f} sentences/s   "
          f"(DESIGN.md: about {DESIGN_SENTENCE_PER_S:.0f} on 2 cores)")
    short = [text.split(":")[0] + ", stopped out" for text in batch]  # "BTCUSDT long in a..."
    tokens = np.mean([len(ids) for ids in sentence_tokens(short)])
    seconds = min(timed(lambda: sentence.encode(short), 2))
    print(f"  {f'SentenceEmbedder, batch 32, {tokens:.0f} tokens':<44} "
          f"{len(short) / seconds:10,.0f} sentences/s")


def sentence_tokens(texts: list[str]) -> list[list[int]]:
    from backtester.memory import embedders

    return embedders._load_sentence_model().tokenize(texts)


if __name__ == "__main__":
    main()
