"""Wall time and peak memory of `bt run --year 2025 --chunk quarter` (prints medians).

Run: ``python benchmarks/bench_run.py [--year 2025] [--repeats 3]``

Cold: an empty market cache (the year is generated) and an empty Numba cache (every
kernel compiles), each repeat with new empty ones; its split is the same run again with
the kernels cached but the market not (the rest), the difference being the compiling.
Warm: the same command with both caches filled, learning on (from an empty scratch
memory each time, so every run learns the same year) and with --no-memory. Each run is a
fresh `bt` process, as a user would start it; peak memory is that process's max RSS.
Nothing is written outside a temporary folder (``BT_CACHE_DIR`` and ``NUMBA_CACHE_DIR``
point into it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_COLD_S = 10.0  # issue 15: a cold first run
TARGET_WARM_S = 3.0  # a warm learning run, and at most TARGET_WARM_RATIO x --no-memory
TARGET_WARM_RATIO = 2.0
TARGET_PEAK_MIB = 2048.0


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one bt process; return (wall seconds, peak RSS MiB)."""
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bt run failed: {process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def row(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:<56}{seconds:6.2f} s   {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bt-bench-"))
    try:
        config = ROOT / "configs" / "default.toml"  # its cache_dir defers to BT_CACHE_DIR
        bt = shutil.which("bt") or sys.exit("bt is not on PATH: pip install -e . first")

        def command(*extra: str) -> list[str]:
            # a scratch memory folder, emptied before every run (--fresh), never data/memory
            return [bt, "run", "--year", str(options.year), "--chunk", "quarter", "--config",
                    str(config), "--out", str(scratch / "runs"), "--memory-dir",
                    str(scratch / "memory"), *extra]

        def caches(name: str) -> dict[str, str]:
            return dict(os.environ, BT_CACHE_DIR=str(scratch / name / "market"),
                        NUMBA_CACHE_DIR=str(scratch / name / "numba"))

        cold, rest = [], []
        for k in range(options.repeats):
            env = caches(f"cold{k}")
            cold.append(timed_run(command("--fresh"), env))
            shutil.rmtree(env["BT_CACHE_DIR"])  # the market again, the kernels cached
            rest.append(timed_run(command("--fresh"), env))
        env = caches(f"cold{options.repeats - 1}")  # both caches filled
        learning = [timed_run(command("--fresh"), env) for _ in range(options.repeats)]
        plain = [timed_run(command("--no-memory"), env) for _ in range(options.repeats)]
        peak = max(r for _, r in cold + rest + learning + plain)
        cold_s, rest_s = (statistics.median(w for w, _ in runs) for runs in (cold, rest))
        learning_s, plain_s = (statistics.median(w for w, _ in runs) for runs in (learning, plain))
        warm_ok = learning_s <= TARGET_WARM_S and learning_s <= TARGET_WARM_RATIO * plain_s
        print(f"bt run --year {options.year} --chunk quarter (3 symbols, 15min bars from "
              f"1-minute generated bars), medians of {options.repeats}")
        row("cold (market generated, kernels compiled, learning on)", cold_s,
            f"target <= {TARGET_COLD_S:.0f} s  {verdict(cold_s <= TARGET_COLD_S)}")
        row("  compiling (cold minus the run with kernels cached)", cold_s - rest_s)
        row("  the rest (market generated, kernels cached)", rest_s)
        row("warm, learning on", learning_s,
            f"target <= {TARGET_WARM_S:.0f} s and <= {TARGET_WARM_RATIO:.0f}x --no-memory  "
            f"{verdict(warm_ok)}")
        row("warm, --no-memory", plain_s)
        print(f"  {'peak memory':<56}{peak:6.0f} MiB target <= {TARGET_PEAK_MIB:.0f} MiB "
              f"{verdict(peak <= TARGET_PEAK_MIB)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
