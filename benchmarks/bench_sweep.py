"""Trials per minute of a 16-trial sweep: a Dask LocalCluster (2 workers) vs the local engine.

Run: ``python benchmarks/bench_sweep.py [--trials 16] [--workers 2] [--period year|month]
[--embedder auto|hashing]``

The sweep is the default config (configs/default.toml, the full year 2025 by default)
over a grid of ensemble.learning_rate x ensemble.threshold, each trial a complete chunked
run in its own folder. The market cache is warmed first (both engines then read it). The
local engine runs the trials one at a time in this process; the Dask engine starts a
LocalCluster of ``--workers`` spawned worker processes on 127.0.0.1 (its start-up is
timed apart) and runs the same trials. Dask's overhead per trial is
``(workers x elapsed - sum of the trials' own wall time) / trials``: time a worker spent
on anything but running a trial (scheduling, sending the trial and its result, importing
bt and loading models in a fresh process, idle at the end).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from backtester.config import load_config
from backtester.experiments.engines import DaskEngine, LocalEngine
from backtester.experiments.spec import load_spec
from backtester.experiments.sweep import run_sweep
from backtester.market import load_market

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "default.toml"
RATES = ("0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "1.0", "2.0")
THRESHOLDS = ("0.2", "0.25", "0.3", "0.35")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="a multiple of 2 up to 32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--period", choices=("year", "month"), default="year")
    parser.add_argument("--embedder", choices=("auto", "hashing"), default="auto")
    options = parser.parse_args()
    os.chdir(ROOT)

    flags = [f"memory.embedder={options.embedder}", f'data.cache_dir="{ROOT / "data/cache"}"']
    if options.period == "month":
        flags += ['run.start="2025-01-01"', 'run.end="2025-02-01"', "run.chunk=week"]
    per_rate = 2 if options.trials <= 16 else 4
    rates = RATES[: options.trials // per_rate]
    flags += [f"ensemble.learning_rate={','.join(rates)}",
              f"ensemble.threshold={','.join(THRESHOLDS[:per_rate])}"]
    spec = load_spec(None, flags, config_path=DEFAULT)
    load_market(load_config(DEFAULT, dict(spec.trials[0].overrides)))  # warm the cache
    print(f"{len(spec.trials)} trials of {DEFAULT.name} ({options.period}, embedder "
          f"{options.embedder}), {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="bt-bench-sweep-") as scratch:
        start = time.perf_counter()
        local = run_sweep(spec, engine=LocalEngine(), out=scratch, sweep_id="local")
        local_s = time.perf_counter() - start
        _line("local", local, local_s, 1)

        engine = DaskEngine(workers=options.workers)
        start = time.perf_counter()
        workers = len(engine.client.scheduler_info(n_workers=-1)["workers"])
        startup_s = time.perf_counter() - start
        with engine:
            start = time.perf_counter()
            dask = run_sweep(spec, engine=engine, out=scratch, sweep_id="dask")
            dask_s = time.perf_counter() - start
        _line(f"dask ({workers} workers)", dask, dask_s, workers)
        print(f"LocalCluster start-up: {startup_s:.1f} s (not in the dask figures above)")
        same = local.results.drop(columns="wall_s").equals(dask.results.drop(columns="wall_s"))
        print(f"speed-up {local_s / dask_s:.2f}x; identical results: {same}")


def _line(name: str, outcome, elapsed: float, workers: int) -> None:
    trials = len(outcome.results)
    busy = float(outcome.results["wall_s"].sum())
    overhead = (workers * elapsed - busy) / trials
    print(f"{name:>18}: {trials} trials in {elapsed:6.1f} s = {60 * trials / elapsed:5.1f} "
          f"trials/min; mean trial {busy / trials:.2f} s; overhead {overhead:.2f} s/trial")


if __name__ == "__main__":
    main()
