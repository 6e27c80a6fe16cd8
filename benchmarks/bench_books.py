"""What the counterfactual books add to a run (prints figures; target: under 5%).

Run: ``python benchmarks/bench_books.py [--year 2025] [--repeats 3]``

Runs `bt run --year 2025 --chunk quarter` in this process (learning on, a scratch memory
each time, hashing embedder so the sentence model's import does not blur the figure;
market and numba caches warmed first) and times the books' own work: simulating every
counterfactual book per chunk (``Books.trade``), their per-chunk figures
(``books.chunk_figures``) and the run's summary (``books.summarise``: overall figures,
regimes, bootstrap, benchmark). The share is the median over the repeats of books time /
run time, measured side by side in the same runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from backtester import books, runner
from backtester.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TARGET_SHARE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()

    spent = [0.0]

    def timed(function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    books.Books.trade = timed(books.Books.trade)
    runner.chunk_figures = timed(runner.chunk_figures)
    books.summarise = timed(books.summarise)

    shares, walls = [], []
    with tempfile.TemporaryDirectory(prefix="bt-bench-books-") as scratch:
        def config(i: int):
            return load_config(ROOT / "configs" / "default.toml", {
                "run.year": options.year, "run.out_dir": f"{scratch}/runs",
                "memory.dir": f"{scratch}/memory{i}", "memory.embedder": "hashing",
                "data.cache_dir": str(ROOT / "data" / "cache")})

        runner.run_backtest(config(-1), write=False)  # warm: market cache and kernels
        for i in range(options.repeats):
            spent[0] = 0.0
            start = time.perf_counter()
            runner.run_backtest(config(i), write=False)
            wall = time.perf_counter() - start
            walls.append(wall)
            shares.append(spent[0] / wall)
            print(f"run {i + 1}: {wall:.2f} s, books {spent[0]:.3f} s ({spent[0] / wall:.1%})")
    share = statistics.median(shares)
    print(f"books: median {share:.1%} of a warm run ({statistics.median(walls):.2f} s); "
          f"target < {TARGET_SHARE:.0%}: {'ok' if share < TARGET_SHARE else 'MISSED'}")


if __name__ == "__main__":
    main()
