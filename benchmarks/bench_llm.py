"""Added time of LLM providers per chunk, and requests/s against a server with N slots
(a script that prints figures, not a test).

Run: ``python benchmarks/bench_llm.py [--candidates 1000] [--latency-ms 50]
[--live-candidates 200] [--slots 4 16] [--concurrency 1 4 16]``

(a) Replay: three LLM providers vote on a chunk of candidates from caches recorded
    against the local test server; the added time per chunk (prompt rendering, hashing,
    cache lookups, parsing), first with the cache files still to load, then warm.
    Target: <= 1 s for 1,000 candidates and three providers.
(b) Throughput: one provider against the local test server (tests/llm_server.py) that
    serves at most N requests at once (llama.cpp ``--parallel N``, ``OLLAMA_NUM_PARALLEL``),
    each after an artificial latency, at several ``max_concurrency`` settings:
    requests/s, the most requests served at once, and the ideal
    min(concurrency, N) / latency. The provider's preflight runs first (it settles the
    structured-output form), as in ``bt run``. At 50 ms and concurrency 1 this takes
    candidates x 50 ms (10 s for 200).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.llm_server

from backtester.data.bars import Bars  # noqa: E402
from backtester.features import FEATURE_NAMES  # noqa: E402
from backtester.providers.base import Candidates, MarketContext  # noqa: E402
from backtester.providers.llm import LLMProvider, LLMProviderConfig  # noqa: E402
from tests.llm_server import LLMTestServer, Reply, answer  # noqa: E402

MODELS = ("llama3.1:8b", "qwen2.5:7b", "mistral:7b")
TARGET_REPLAY_S = 1.0


def make_chunk(n_candidates: int, seed: int = 7) -> tuple[MarketContext, Candidates, list]:
    """A random market of three assets and ``n_candidates`` distinct candidates with 5
    similar past situations each."""
    rng = np.random.default_rng(seed)
    n_bars, n_assets = max(2 * n_candidates, 200), 3
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, (n_bars, n_assets)), axis=0))
    times = (np.datetime64("2025-01-01", "ns").astype(np.int64)
             + np.arange(n_bars, dtype=np.int64) * 15 * 60 * 10**9)
    bars = Bars(times, ("BTCUSD", "ETHUSD", "SOLUSD"), close, close * 1.001, close * 0.999,
                close, rng.uniform(1, 10, (n_bars, n_assets)), timeframe="15min")
    features = rng.normal(0, 1, (n_bars, n_assets, len(FEATURE_NAMES)))
    regimes = rng.integers(0, 3, (n_bars, n_assets)).astype(np.int8)
    flat = rng.choice(np.arange(10 * n_assets, n_bars * n_assets), n_candidates, replace=False)
    flat.sort()
    candidates = Candidates((flat // n_assets).astype(np.int64),
                            (flat % n_assets).astype(np.int32))
    similar = [[{"description": f"{bars.symbols[a]} went long in a trending market", "direction": 1,
                 "return_pct": float(rng.normal()), "exit_reason": int(rng.integers(0, 4)),
                 "regime": int(rng.integers(0, 3))} for _ in range(5)]
               for a in candidates.asset]
    return MarketContext(bars, features, regimes), candidates, similar


def scripted(body: dict, number: int) -> Reply:
    """A varied but deterministic answer per prompt."""
    digest = hashlib.sha256(body["messages"][-1]["content"].encode()).digest()
    action = ("buy", "sell", "hold")[digest[0] % 3]
    return answer(action, round(digest[1] / 255, 3), "scripted reasoning", prompt_tokens=600,
                  completion_tokens=40)


def providers(base_url: str, cache_dir: Path, mode: str, concurrency: int) -> list[LLMProvider]:
    return [
        LLMProvider(LLMProviderConfig(name=f"bench_{i}", base_url=base_url, model=model,
                                      cache_mode=mode, max_concurrency=concurrency,
                                      timeout_s=30.0), cache_dir)
        for i, model in enumerate(MODELS)
    ]


def vote_all(chunk_providers: list[LLMProvider], context, candidates, similar) -> float:
    start = time.perf_counter()
    for provider in chunk_providers:
        provider.prepare(context, 0, context.bars.n_bars)
        provider.vote(context, candidates, similar)
    return time.perf_counter() - start


def bench_replay(n_candidates: int) -> None:
    context, candidates, similar = make_chunk(n_candidates)
    with tempfile.TemporaryDirectory() as folder, LLMTestServer() as server:
        cache_dir = Path(folder)
        server.script = scripted
        recorded = vote_all(providers(server.base_url, cache_dir, "record", 16), context,
                            candidates, similar)
        replayers = providers("http://127.0.0.1:9/v1", cache_dir, "replay", 4)
        cold = vote_all(replayers, context, candidates, similar)
        warm = vote_all(replayers, context, candidates, similar)
        render_start = time.perf_counter()
        for provider in replayers:
            for i in range(n_candidates):
                provider.messages(context, int(candidates.bar[i]), int(candidates.asset[i]),
                                  similar[i])
        render = time.perf_counter() - render_start
        hits = sum(p.report()["cache_hits"] for p in replayers)
        size = sum(f.stat().st_size for f in cache_dir.glob("*.jsonl"))
        assert server.request_count == 3 * n_candidates  # replay sent nothing
    print(f"(a) replay, {n_candidates} candidates x {len(MODELS)} providers "
          f"({hits:.0f} cache hits, cache files {size / 1e6:.1f} MB; recording took "
          f"{recorded:.2f} s)")
    print(f"    added time per chunk, cache files to load: {cold:.3f} s "
          f"(target <= {TARGET_REPLAY_S:.1f} s: {'ok' if cold <= TARGET_REPLAY_S else 'MISSED'})")
    print(f"    added time per chunk, cache loaded:        {warm:.3f} s "
          f"(of which rendering prompts {render:.3f} s)")


def bench_throughput(n_candidates: int, latency_ms: float, slots: list[int],
                     concurrencies: list[int]) -> None:
    context, candidates, similar = make_chunk(n_candidates)
    print(f"(b) throughput, {n_candidates} candidates, one provider, server latency "
          f"{latency_ms:g} ms per request")
    for n_slots in slots:
        with tempfile.TemporaryDirectory() as folder, \
                LLMTestServer(latency_s=latency_ms / 1000, slots=n_slots) as server:
            server.script = scripted
            server.models = [MODELS[0]]
            for concurrency in concurrencies:
                provider = providers(server.base_url, Path(folder), "live", concurrency)[0]
                provider.preflight(context)
                before = server.request_count
                server.max_serving = 0
                wall = vote_all([provider], context, candidates, similar)
                sent = server.request_count - before
                ideal = min(concurrency, n_slots) / (latency_ms / 1000)
                print(f"    {n_slots:>2} slots, max_concurrency {concurrency:>3}: "
                      f"{sent / wall:7.1f} requests/s ({sent} in {wall:.2f} s; at most "
                      f"{server.max_serving} served at once; ideal {ideal:6.1f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--live-candidates", type=int, default=200)
    parser.add_argument("--slots", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    bench_replay(args.candidates)
    bench_throughput(args.live_candidates, args.latency_ms, args.slots, args.concurrency)


if __name__ == "__main__":
    main()
