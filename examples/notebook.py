"""A notebook as a script: run a config with a user strategy and provider, compare the
books, look at the trades and the equity, write the report and inspect the memory.

Uses the public API (``import backtester as bt``); each ``# %%`` block is one cell.

    python examples/notebook.py                       # the year 2025, 15-minute bars
    python examples/notebook.py --start 2025-01-01 --end 2025-02-01 --timeframe 1h \\
        --out /tmp/bt/runs --memory-dir /tmp/bt/memory
"""

# %%
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import backtester as bt

# in Jupyter (no __file__), start the kernel in the repository root
HERE = Path(globals().get("__file__", "examples/notebook.py")).resolve().parent

parser = argparse.ArgumentParser(description="Run examples/custom.toml and inspect it.")
parser.add_argument("--start", help="first day (with --end; default: the year 2025)")
parser.add_argument("--end", help="day after the last (with --start)")
parser.add_argument("--timeframe", default="15min", help="bar size, e.g. 15min or 1h")
parser.add_argument("--chunk", default="quarter", help="quarter, month, week or N bars")
parser.add_argument("--out", default="runs", help="folder of run folders")
parser.add_argument("--memory-dir", default="data/memory_notebook", help="memory folder")
parser.add_argument("--embedder", default="auto", help="auto, sentence or hashing")
parser.add_argument("--cache-dir", default="data/cache", help="generated market cache")
args, _ = parser.parse_known_args()  # a Jupyter kernel adds arguments of its own

# %% [markdown]
# The config names `RsiExtremes` (examples/custom_strategy.py) and `LogisticProvider`
# (examples/custom_provider.py) by class; keyword options override its keys.

# %%
config = bt.configure(HERE / "custom.toml", start=args.start, end=args.end,
                      timeframe=args.timeframe, chunk=args.chunk, out=args.out,
                      memory_dir=args.memory_dir, embedder=args.embedder,
                      cache_dir=args.cache_dir)
print("strategies:", [s.name for s in config.strategies])
print("providers: ", [p.name for p in config.providers])

# %%
result = bt.run(config)
print(f"run {result.run_id}: total return {result.metrics['total_return']:+.2%}, "
      f"sharpe {result.metrics['sharpe']:.2f}, trades {result.metrics['trades']}")

# %% [markdown]
# The books: the learned ensemble against equal weights, each provider alone and buy &
# hold, over the same bars.

# %%
books = pd.DataFrame(result.books_summary["overall"]).T
print(books[["total_return", "sharpe", "max_drawdown", "trades"]].to_string())
print("learned - equal weight per chunk:")
print(result.chunks[["learned_minus_equal"]].to_string())

# %%
print(result.trades.head().to_string())
print(result.equity.head().to_string())

# %% [markdown]
# The report holds the equity, drawdown and books charts.

# %%
report = result.report()
print("report:", report)

# %% [markdown]
# The memory the run learned into: weights per provider, the outcomes of past
# decisions, and a search over their descriptions.

# %%
memory = bt.open_memory(args.memory_dir)
print("weights:", {name: round(float(w), 3)
                   for name, w in memory.weights.get("overall", memory.weights).items()
                   if isinstance(w, (int, float))})
outcomes = memory.outcomes()
print(f"{len(outcomes)} outcomes; columns: {', '.join(map(str, outcomes.columns[:8]))}")
print(memory.search("a long stopped out in a volatile market", k=3).to_string())
