"""How the engine scales with symbols: 1, 10, 100 x 525,600 one-minute bars (prints figures).

Run: ``python benchmarks/bench_scale.py [--bars 525600] [--symbols 1 10 100] [--repeats 5]
[--run]``

For each symbol count, in a fresh process (so its peak memory is its own):

- the kernel alone, rules off: bar-assets per second (target >= 100 M);
- ``simulate()`` with full input checks (a direct caller), and with prices checked once
  beforehand (``CheckedPrices``, as ``portfolio.Trading`` does for a run): the checks'
  share of simulate();
- peak memory (max RSS) of the process.

``--run`` also times ``bt run --year 2025 --timeframe 1min`` (3 x 525,600 bars, learning
on, an empty scratch memory and the market cache filled first) in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import (  # noqa: E402
    RULES_OFF,
    TARGET_THROUGHPUT,
    decision_arrays,
    kernel_seconds,
    make_decisions,
    make_market,
)

from backtester.engine.rules import Rules  # noqa: E402
from backtester.engine.simulate import Decisions, simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPLEXITY = {
    "kernel": "O(bars x assets) time, O(trades) extra memory (outputs O(bars))",
    "price check": "O(bars x assets), once per run (Trading) or per call (direct callers)",
    "decision check": "O(bars x assets) vectorised numpy passes, once per chunk",
    "market": "O(bars x assets) memory: 4 float64 prices + 33 bytes of decisions per cell",
}


def median_seconds(call, repeats: int) -> float:
    call()  # warm: kernels loaded, pages touched
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def one_scale(n_bars: int, n_assets: int, repeats: int) -> dict:
    """Figures of one symbol count (run in its own process)."""
    prices = make_market(n_bars, n_assets)
    decisions = make_decisions(n_bars, n_assets)
    rules = Rules(**RULES_OFF)
    try:  # the kernel timed with the arrays simulate() passes it (one numba signature)
        from backtester.engine.inputs import as_kernel_array
    except ImportError:  # before inputs.py existed: simulate() passed writable arrays
        kernel_prices, kernel_decisions = prices, decisions
    else:
        kernel_prices = tuple(as_kernel_array(p, np.float64) for p in prices)
        kernel_decisions = Decisions(*(as_kernel_array(a, a.dtype)
                                       for a in decision_arrays(decisions)))
    kernel, _ = kernel_seconds(kernel_prices, kernel_decisions, repeats, rules)
    full = median_seconds(lambda: simulate(*prices, decisions, rules=rules), repeats)
    out = {"assets": n_assets, "bars": n_bars, "kernel_s": kernel, "simulate_s": full}
    try:
        from backtester.engine import CheckedPrices
    except ImportError:  # before CheckedPrices existed
        out["simulate_checked_s"] = None
    else:
        checked = CheckedPrices.of(*prices)
        out["simulate_checked_s"] = median_seconds(
            lambda: simulate(*checked.arrays, decisions, rules=rules, checked_prices=True),
            repeats)
        from backtester.engine.inputs import check_decisions, check_prices

        shape = prices[0].shape
        out["decision_check_s"] = median_seconds(lambda: check_decisions(decisions, shape),
                                                 repeats)
        out["price_check_s"] = median_seconds(lambda: check_prices(prices), repeats)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_seconds(year: int) -> float:
    """Wall time of ``bt run --year <year> --timeframe 1min`` (learning on), cache filled."""
    bt = shutil.which("bt") or sys.exit("bt is not on PATH: pip install -e . first")
    scratch = Path(tempfile.mkdtemp(prefix="bt-scale-"))
    try:
        env = dict(os.environ, BT_CACHE_DIR=str(scratch / "cache"))
        command = [bt, "run", "--year", str(year), "--timeframe", "1min", "--out",
                   str(scratch / "runs"), "--memory-dir", str(scratch / "memory"), "--fresh"]
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)  # fill
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", action="store_true", help="also time bt run at 1min")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_scale(args.bars, args.one, args.repeats)))
        return

    print(f"scale benchmark: {args.bars:,} one-minute bars x {args.symbols} symbols, "
          f"medians of {args.repeats}")
    for step, text in COMPLEXITY.items():
        print(f"  complexity, {step}: {text}")
    rows = []
    for n in args.symbols:
        out = subprocess.run([sys.executable, __file__, "--bars", str(args.bars), "--repeats",
                              str(args.repeats), "--one", str(n)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.splitlines()[-1]))
    print(f"{'symbols':>7} {'kernel ms':>10} {'M bar-assets/s':>15} {'simulate ms':>12} "
          f"{'checks %':>9} {'checked ms':>11} {'checks %':>9} {'peak MiB':>9}")
    for r in rows:
        rate = r["bars"] * r["assets"] / r["kernel_s"]
        share = 1.0 - r["kernel_s"] / r["simulate_s"]
        checked = r["simulate_checked_s"]
        cshare = "-" if checked is None else f"{100 * (1.0 - r['kernel_s'] / checked):.0f}"
        ctext = "-" if checked is None else f"{checked * 1e3:.1f}"
        print(f"{r['assets']:>7} {r['kernel_s'] * 1e3:>10.1f} {rate / 1e6:>15.0f} "
              f"{r['simulate_s'] * 1e3:>12.1f} {100 * share:>9.0f} {ctext:>11} {cshare:>9} "
              f"{r['peak_mib']:>9.0f}"
              f"   {'ok' if rate >= TARGET_THROUGHPUT else 'MISSED'} (>= 100 M)")
    for r in rows:
        if r.get("decision_check_s") is not None:
            print(f"{r['assets']:>7} symbols, the checks timed alone: decisions "
                  f"{r['decision_check_s'] * 1e3:.1f} ms = "
                  f"{100 * r['decision_check_s'] / r['simulate_checked_s']:.0f}% of simulate() "
                  f"with checked prices (target < 20%); prices {r['price_check_s'] * 1e3:.1f} ms, "
                  f"paid once per run by Trading")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = (last["kernel_s"] / first["kernel_s"]) / (last["assets"] / first["assets"])
        memory = (last["peak_mib"] / first["peak_mib"]) / (last["assets"] / first["assets"])
        print(f"per bar-asset at {last['assets']} vs {first['assets']} symbols: kernel time "
              f"{ratio:.2f}x, peak memory {memory:.2f}x (1.00 = linear; below: a fixed cost "
              f"per bar or per process spread over more assets; above: worse than linear)")
    if args.run:
        print(f"bt run --year 2025 --timeframe 1min (3 x 525,600 bars, learning on, cache "
              f"filled): {run_seconds(2025):.1f} s")


if __name__ == "__main__":
    main()
