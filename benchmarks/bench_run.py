"""Wall time and peak memory of `bt run --year 2025 --chunk quarter` (prints figures).

Run: ``python benchmarks/bench_run.py [--year 2025] [--repeats 3]``

Cold: an empty market cache (the year is generated) and an empty numba cache (every
kernel compiles). Warm: the same command again, with both caches filled, learning on
(from an empty scratch memory each time, so every run learns the same year) and with
--no-memory. Each run is a fresh `bt` process, as a user would start it; peak memory is
that process's max RSS. Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_WARM_S = 10.0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bt-bench-"))
    try:
        config = scratch / "bench.toml"
        default = (ROOT / "configs" / "default.toml").read_text()
        config.write_text(default.replace('cache_dir = "data/cache"',
                                          f'cache_dir = "{scratch / "cache"}"'))
        env = dict(os.environ, NUMBA_CACHE_DIR=str(scratch / "numba"))
        bt = shutil.which("bt") or sys.exit("bt is not on PATH: pip install -e . first")

        def command(*extra: str) -> list[str]:
            # a scratch memory folder, emptied before every run (--fresh), never data/memory
            return [bt, "run", "--year", str(options.year), "--chunk", "quarter", "--config",
                    str(config), "--out", str(scratch / "runs"), "--memory-dir",
                    str(scratch / "memory"), *extra]

        cold, cold_rss = timed_run(command("--fresh"), env)
        learning = [timed_run(command("--fresh"), env) for _ in range(options.repeats)]
        plain = [timed_run(command("--no-memory"), env) for _ in range(options.repeats)]
        peak = max([cold_rss] + [r for _, r in learning + plain])
        best = min(w for w, _ in learning)
        print(f"bt run --year {options.year} --chunk quarter (3 symbols, 15min bars from "
              f"1-minute generated bars)")
        print(f"  cold (market generated, kernels compiled, learning on): {cold:6.2f} s")
        print(f"  warm, learning on (best of {options.repeats}):              {best:6.2f} s   "
              f"target <= {TARGET_WARM_S:.0f} s  {'ok' if best <= TARGET_WARM_S else 'MISSED'}")
        print(f"  warm, --no-memory (best of {options.repeats}):              "
              f"{min(w for w, _ in plain):6.2f} s")
        print(f"  peak memory:                                            {peak:6.0f} MiB "
              f"target <= {TARGET_PEAK_MIB:.0f} MiB {'ok' if peak <= TARGET_PEAK_MIB else 'MISSED'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
