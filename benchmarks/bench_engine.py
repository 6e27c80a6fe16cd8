"""Speed and memory of the event loop (a script that prints figures, not a test).

Run: ``python benchmarks/bench_engine.py [--bars 525600] [--assets 3] [--repeats 5]``

Market: a seeded random walk of one-minute bars; about one decision per 200 bars per
asset, with stop-loss, take-profit, max holding time, commission and slippage set; the
kernel is timed with the portfolio rules off, then with every one of them on.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

from backtester.engine.kernels import simulate_nb
from backtester.engine.records import ACCOUNT_SIZE, NO_TIME, RISK_SIZE, STATE_ARRAY_FIELDS, trade_dt
from backtester.engine.rules import Rules, pack_rules
from backtester.engine.simulate import Decisions, EngineState, simulate

DECISION_FIELDS = ("direction", "size", "stop_loss", "take_profit", "decision_id")
TARGET_THROUGHPUT = 100e6  # bar-assets per second
TARGET_SIMULATE_MS = 30.0  # one symbol's year through simulate(), warm
TARGET_COLD_S = 3.0
TARGET_CACHED_S = 0.3

SETTINGS = dict(commission=0.0005, slippage=0.0002, max_holding_bars=240, max_open_positions=2)
RULES_OFF = dict(taker_fee=0.0005, maker_fee=0.0005, slippage=0.0002, max_holding_bars=240,
                 max_open_positions=2)  # fmt: skip
# Every rule on (volume, spread, times and days passed as well).
RULES_ON = dict(
    RULES_OFF, maker_fee=0.0002, spread=1e-4, take_profit_margin=1e-4, impact=0.01,
    max_participation=0.2, daily_loss_limit=0.02, flatten_on_daily_limit=True,
    max_drawdown=0.1, drawdown_reset_bars=1_440, max_gross_exposure=1.0,
    max_symbol_exposure=0.3, correlation_window=50, correlation_threshold=0.5,
    cash_only=True, lot_size=0.01, borrow_rate=0.05, funding_rate=0.1,
)  # fmt: skip

# Run in a fresh interpreter: time the first call of the kernel (compile or cache load).
FIRST_CALL = textwrap.dedent(
    """
    import time
    start = time.perf_counter()
    import numpy as np
    {warm_up}
    from backtester.engine.simulate import Decisions, simulate
    imported = time.perf_counter()
    prices = np.full((4, 2), 100.0)
    simulate(prices, prices, prices, prices, Decisions.empty(4, 2))
    print(imported - start, time.perf_counter() - imported)
    """
)
# Numba's one-off start-up in a process (its type registries, and its BLAS probe that
# imports scipy.linalg, about 0.2 s) is paid by the first jitted function of any kind.
# In `bt run` scipy is already imported (scikit-learn imports it).
SCIPY_IMPORTED = "import scipy.linalg"
NUMBA_WARM_UP = textwrap.dedent(
    """
    from numba import njit
    njit(lambda x: x + 1)(1)
    """
)


def make_market(n_bars: int, n_assets: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Return open, high, low, close (n_bars, n_assets) of a random walk near 100."""
    rng = np.random.default_rng(seed)
    log_close = np.log(100.0) + np.cumsum(rng.normal(0.0, 5e-4, (n_bars, n_assets)), axis=0)
    close = np.exp(log_close)
    open_ = np.empty_like(close)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 1e-4, (n_bars - 1, n_assets)))
    wick = np.abs(rng.normal(0.0, 3e-4, (2, n_bars, n_assets)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    return open_, high, low, close


def make_decisions(n_bars: int, n_assets: int, seed: int = 11) -> Decisions:
    """About one decision per 200 bars per asset, long or short, 0.5% stop, 1% target."""
    rng = np.random.default_rng(seed)
    decisions = Decisions.empty(n_bars, n_assets)
    mask = rng.random((n_bars, n_assets)) < 1.0 / 200.0
    count = int(mask.sum())
    decisions.direction[mask] = rng.choice(np.array([-1, 1], dtype=np.int8), count)
    decisions.size[mask] = 0.2
    decisions.stop_loss[mask] = 0.005
    decisions.take_profit[mask] = 0.01
    decisions.decision_id[mask] = np.arange(count)
    return decisions


def first_call_seconds(cache_dir: str, warm_up: str = "") -> tuple[float, float]:
    """(import s, first call s) of simulate() in a fresh process using ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = FIRST_CALL.format(warm_up=warm_up)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    imported, first = (float(x) for x in out.stdout.split())
    return imported, first


def decision_arrays(decisions: Decisions) -> list[np.ndarray]:
    return [getattr(decisions, name) for name in DECISION_FIELDS]


def make_rule_inputs(n_bars: int, n_assets: int, seed: int = 13) -> dict[str, np.ndarray]:
    """Per-bar volume and spread, one-minute times from 2024-01-01 and their UTC days."""
    rng = np.random.default_rng(seed)
    times = np.datetime64("2024-01-01", "ns").astype(np.int64) + np.arange(n_bars) * 60 * 10**9
    return {
        "volume": rng.lognormal(np.log(50_000.0), 0.5, (n_bars, n_assets)),
        "spread": rng.uniform(1e-5, 3e-4, (n_bars, n_assets)),
        "times": times.astype(np.int64),
        "days": times // (86_400 * 10**9),
    }


def kernel_seconds(
    prices: tuple[np.ndarray, ...],
    decisions: Decisions,
    repeats: int,
    rules: Rules,
    inputs: dict[str, np.ndarray] | None = None,
) -> tuple[float, float]:
    """(median, best) wall time of simulate_nb over ``repeats`` warm runs (outputs ready)."""
    n_bars, n_assets = prices[0].shape
    inputs = inputs or {}
    initial = EngineState.initial(n_assets, 100_000.0, rules.correlation_window)
    arrays = decision_arrays(decisions)
    params, asset_params = pack_rules(
        rules, n_assets, **{f"has_{name}": name in inputs
                            for name in ("volume", "spread", "times", "days")},
    )  # fmt: skip
    per_bar = [
        inputs.get("volume", np.zeros((1, 1))),
        inputs.get("spread", np.zeros((1, 1))),
        inputs.get("times", np.zeros(1, dtype=np.int64)),
        inputs.get("days", np.zeros(1, dtype=np.int64)),
    ]
    trades = np.zeros(int(np.count_nonzero(decisions.direction)) + 1, dtype=trade_dt)
    equity = np.empty(n_bars)
    open_positions = np.empty(n_bars, dtype=np.int64)
    seconds = []
    for _ in range(repeats + 1):  # the first run loads the kernel
        account = np.full(ACCOUNT_SIZE, 100_000.0)
        clock = np.array([NO_TIME, 0, -1, NO_TIME, 0, 0], dtype=np.int64)
        state = [np.array(getattr(initial, name), dtype=dt) for name, dt in STATE_ARRAY_FIELDS]
        history = np.array(initial.correlation_history)
        risk = np.zeros((RISK_SIZE, 2), dtype=np.int64)
        start = time.perf_counter()
        n_trades, status = simulate_nb(
            *prices, *arrays, params, asset_params, *per_bar, True, 0, account, clock, *state,
            history, equity, open_positions, trades, risk,
        )  # fmt: skip
        seconds.append(time.perf_counter() - start)
    print(
        f"  trades: {n_trades}, status {status}, final equity {equity[-1]:,.2f}, "
        f"refused {int(risk[:, 0].sum())}, resized {int(risk[:, 1].sum())}"
    )
    return float(np.median(seconds[1:])), min(seconds[1:])


def simulate_seconds(
    prices: tuple[np.ndarray, ...], decisions: Decisions, repeats: int
) -> tuple[float, int]:
    """Best wall time of the Python entry point simulate() over warm runs."""
    best, n_trades = np.inf, 0
    for _ in range(repeats + 1):
        start = time.perf_counter()
        result = simulate(*prices, decisions, **SETTINGS)
        best = min(best, time.perf_counter() - start)
        n_trades = len(result.trades)
    return best, n_trades


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=525_600)
    parser.add_argument("--assets", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    start_mib = peak_rss_mib()

    print(f"engine benchmark: {args.assets} assets x {args.bars:,} one-minute bars")
    with tempfile.TemporaryDirectory(prefix="bt-numba-cache-") as cache_dir:
        imported, cold = first_call_seconds(cache_dir)
        _, cached = first_call_seconds(cache_dir)
        _, cached_after_scipy = first_call_seconds(cache_dir, SCIPY_IMPORTED)
        _, cached_after_numba = first_call_seconds(cache_dir, NUMBA_WARM_UP)
    print(f"import backtester.engine:            {imported:7.3f} s")
    print(
        f"first call, cold (compile):          {cold:7.3f} s   "
        f"target <= {TARGET_COLD_S} s   {verdict(cold <= TARGET_COLD_S)}"
    )
    print(
        f"first call, from the on-disk cache:  {cached:7.3f} s   "
        f"target <= {TARGET_CACHED_S} s   {verdict(cached <= TARGET_CACHED_S)}"
    )
    print(
        f"  same, scipy already imported:      {cached_after_scipy:7.3f} s   "
        f"(as in `bt run`)   {verdict(cached_after_scipy <= TARGET_CACHED_S)}"
    )
    print(
        f"  the kernel's own load:             {cached_after_numba:7.3f} s   "
        "(the rest is Numba's one-off start-up, paid by any jitted function)"
    )

    prices = make_market(args.bars, args.assets)
    decisions = make_decisions(args.bars, args.assets)
    market_mib = sum(a.nbytes for a in (*prices, *decision_arrays(decisions))) / 2**20
    seconds, best = kernel_seconds(prices, decisions, args.repeats, Rules(**RULES_OFF))
    throughput = args.bars * args.assets / seconds
    print(
        f"kernel, rules off, warm median of {args.repeats}: {seconds * 1e3:7.2f} ms = "
        f"{throughput / 1e6:,.0f} M bar-assets/s (best {best * 1e3:.2f} ms)   target >= "
        f"{TARGET_THROUGHPUT / 1e6:.0f} M   {verdict(throughput >= TARGET_THROUGHPUT)}"
    )
    inputs = make_rule_inputs(args.bars, args.assets)
    ruled, best = kernel_seconds(prices, decisions, args.repeats, Rules(**RULES_ON), inputs)
    print(
        f"kernel, every rule on, median of {args.repeats}: {ruled * 1e3:7.2f} ms = "
        f"{args.bars * args.assets / ruled / 1e6:,.0f} M bar-assets/s (best {best * 1e3:.2f} ms), "
        f"{ruled / seconds:.2f}x the time with rules off"
    )

    one = tuple(np.ascontiguousarray(p[:, :1]) for p in prices)
    one_decisions = Decisions(*(np.ascontiguousarray(a[:, :1]) for a in decision_arrays(decisions)))
    seconds, n_trades = simulate_seconds(one, one_decisions, args.repeats)
    print(
        f"simulate(), one symbol, warm:        {seconds * 1e3:7.2f} ms ({n_trades} trades)   "
        f"target <= {TARGET_SIMULATE_MS:.0f} ms   {verdict(seconds * 1e3 <= TARGET_SIMULATE_MS)}"
    )
    print(
        f"peak memory (ru_maxrss):             {peak_rss_mib():7.1f} MiB "
        f"({start_mib:.1f} MiB after imports; the market and decisions are "
        f"{market_mib:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
