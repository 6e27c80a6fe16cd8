"""Regime-dependent skill of the rule strategies on a market (a script that prints figures).

Run: ``python benchmarks/bench_skill.py [--config configs/default.toml] [--year 2025]
[--seed 7] [--cache-dir DIR]``

For each strategy, its votes are scored the way the ensemble's shadow scoring scores them
(backtester/ensemble.py ``shadow_scores``): a non-zero vote v at bar t hits when
v * (close[min(t + H, last)] / close[t] - 1) > 0, H = the shadow horizon (default
execution.max_holding_bars). Two sets of bars are scored:

- own entries: the bars where the strategy itself proposes an entry, its vote there;
- all candidates: every bar any strategy proposes (the runner's candidates), its vote there.

Each is broken down by the regime label at the bar (backtester.regime.compute_regimes, what
the ensemble learns per regime) and, on the embedded market, by the generator's hidden
regime. Cells read "hit rate, mean shadow return in basis points, n". Votes at nearby bars
share most of their horizon, so the effective sample is far smaller than n.

Then: own-entry returns against the round-trip cost 2 x (commission + slippage); the
confusion between hidden regimes and labels; and how often each strategy's own entries
pass the ensemble threshold under equal weights (which entries can become trades at all).
Unlike the runner, which stops a horizon at its chunk's last bar, the horizon here stops
at the period's last bar only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from backtester.config import load_config
from backtester.data.generator import REGIME_NAMES as HIDDEN_NAMES
from backtester.data.generator import hidden_regimes
from backtester.ensemble import equal_weights, provider_scores
from backtester.features import compute_features
from backtester.providers.base import Candidates, MarketContext
from backtester.regime import RANGING, TRENDING, VOLATILE, compute_regimes
from backtester.market import load_market
from strategies import STRATEGY_REGISTRY, Strategy

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"all": None, "TRENDING": TRENDING, "RANGING": RANGING, "VOLATILE": VOLATILE}
# hidden codes 0 trend_up, 1 trend_down, 2 ranging, 3 volatile; the two trends together
HIDDEN = {"all": None, "trend": (0, 1), "ranging": (2,), "volatile": (3,)}


def cell(vote: np.ndarray, forward: np.ndarray, mask: np.ndarray) -> str:
    """'hit% mean_bp n' of the non-zero votes under mask."""
    voted = mask & (vote != 0)
    n = int(voted.sum())
    if n == 0:
        return f"{'-':>6} {'-':>7} {0:>5}"
    signed = vote[voted] * forward[voted]
    return f"{np.mean(signed > 0):6.1%} {1e4 * signed.mean():+6.1f}bp {n:>5}"


def table(title: str, names: list[str], groups: dict, rows: dict) -> None:
    """Print strategy x group cells; rows maps name -> (vote, forward, group codes)."""
    print(f"\n{title}")
    print(f"  {'strategy':<16}" + "".join(f"{g:>22}" for g in groups))
    for name in names:
        vote, forward, codes = rows[name]
        line = f"  {name:<16}"
        for wanted in groups.values():
            mask = np.ones(len(vote), dtype=bool) if wanted is None else np.isin(codes, wanted)
            line += f"  {cell(vote, forward, mask)}"
        print(line)


def entry_direction(strategy: Strategy, context: MarketContext, c: Candidates) -> np.ndarray:
    """The direction (+1/-1) of the strategy's own proposed entry at each candidate."""
    return strategy.signals(context).entry[c.bar, c.asset].astype(np.float64)


def print_after_costs(names: list[str], own: dict, cost: float, execution) -> None:
    """Net mean shadow return of each strategy's own entries per label, and z of its hits."""
    print(f"\nown entries after costs: mean shadow return less the round trip "
          f"{1e4 * cost:.0f}bp = 2 x (commission {execution.commission} + slippage "
          f"{execution.slippage}); z of the hit rate against 50% (votes overlap: optimistic)")
    print(f"  {'strategy':<16}" + "".join(f"{g:>14}" for g in LABELS) + f"{'z(hit)':>9}")
    for name in names:
        v, forward, codes = own[name]
        signed, voted = v * forward, v != 0
        line = f"  {name:<16}"
        for wanted in LABELS.values():
            mask = voted & (True if wanted is None else codes == wanted)
            net = 1e4 * (signed[mask].mean() - cost) if mask.any() else float("nan")
            line += f"{net:>+12.1f}bp"
        n = int(voted.sum())
        z = (np.mean(signed[voted] > 0) - 0.5) / np.sqrt(0.25 / n) if n else float("nan")
        print(line + f"{z:>+9.1f}")


def print_confusion(labels: np.ndarray, hidden: np.ndarray) -> None:
    """Share of each hidden regime's bars under each label."""
    codes = (TRENDING, RANGING, VOLATILE)
    print("\nhidden regime (rows) vs label (columns), share of the row's bars")
    print(f"  {'':<12}" + "".join(f"{n:>10}" for n in ("TRENDING", "RANGING", "VOLATILE"))
          + f"{'bars':>8}")
    for code, name in enumerate(HIDDEN_NAMES):
        row = labels[hidden == code]
        shares = [np.mean(row == c) if row.size else 0.0 for c in codes]
        print(f"  {name:<12}" + "".join(f"{s:>10.1%}" for s in shares) + f"{row.size:>8}")
    print(f"  {'all bars':<12}" + "".join(f"{np.mean(labels == c):>10.1%}" for c in codes))


def print_threshold(names: list[str], providers: list[Strategy], context: MarketContext,
                    sets: dict, votes: dict, threshold: float) -> None:
    """Which own entries can become trades under equal weights, and who votes against."""
    print(f"\nown entries under equal weights (ensemble.threshold {threshold}): the share whose "
          f"score reaches it in the strategy's direction (its trades) or against it, and "
          f"each strategy's mean vote x confidence there, signed by the entry's direction")
    print(f"  {'strategy':<16}{'entries':>8}{'with':>8}{'against':>9}"
          + "".join(f"{n:>16}" for n in names) + f"{'score':>9}")
    weights = equal_weights(len(names))
    for strategy in providers:
        name = strategy.name
        side = entry_direction(strategy, context, sets[name])
        own_votes = [votes[name][other] for other in names]
        score = provider_scores(own_votes, weights)
        passed = np.abs(score) >= threshold
        with_it = passed & (np.sign(score) == side)
        signed = "".join(f"{np.mean(side * v.vote * v.confidence):>+16.3f}" for v in own_votes)
        print(f"  {name:<16}{len(score):>8}{np.mean(with_it):>8.1%}"
              f"{np.mean(passed & ~with_it):>9.1%}{signed}{np.mean(side * score):>+9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.toml"))
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    options = parser.parse_args()
    overrides = {"run.year": options.year, "data.seed": options.seed,
                 "data.cache_dir": options.cache_dir}
    config = load_config(options.config, overrides)

    started = time.perf_counter()
    bars, first = load_market(config)
    loaded = time.perf_counter() - started
    regimes = compute_regimes(bars, config.regime)
    context = MarketContext(bars, compute_features(bars), regimes)
    providers = [STRATEGY_REGISTRY[c.name](c) for c in config.strategies]
    names = [p.name for p in providers]
    horizon = config.ensemble.shadow_horizon or config.execution.max_holding_bars or 1
    embedded = not config.data.path
    hidden = hidden_regimes(bars.times, bars.symbols, config.data.seed) if embedded else None

    # one candidate set per strategy, and all of them together (the runner's candidates)
    proposals = {p.name: p.propose(context, first, bars.n_bars) for p in providers}
    sets = {name: Candidates.from_mask(mask, first) for name, mask in proposals.items()}
    sets["all"] = Candidates.from_mask(np.logical_or.reduce(list(proposals.values())), first)
    votes = {key: {p.name: p.vote(context, c) for p in providers} for key, c in sets.items()}

    def forward(c: Candidates) -> np.ndarray:
        end = np.minimum(c.bar + horizon, bars.n_bars - 1)
        return bars.close[end, c.asset] / bars.close[c.bar, c.asset] - 1.0

    print(f"{', '.join(bars.symbols)}  {bars.timeframe} bars  {options.year}  "
          f"seed {config.data.seed}  horizon {horizon} bars  ({loaded:.1f} s to load)")
    print("cells: hit rate of the non-zero votes, mean shadow return (vote x forward "
          "return), n votes")
    own = {}
    for key, what in (("own", "own entries"), ("all", "all candidates")):
        label_rows, hidden_rows = {}, {}
        for name in names:
            c = sets[name if key == "own" else "all"]
            v = votes[name if key == "own" else "all"][name].vote.astype(np.float64)
            label_rows[name] = (v, forward(c), regimes[c.bar, c.asset])
            if embedded:
                hidden_rows[name] = (v, forward(c), hidden[c.bar, c.asset])
        own = own or label_rows
        table(f"{what}, by regime label (backtester.regime)", names, LABELS, label_rows)
        if embedded:
            table(f"{what}, by the generator's hidden regime", names, HIDDEN, hidden_rows)

    execution = config.execution
    print_after_costs(names, own, 2.0 * (execution.commission + execution.slippage), execution)
    traded = slice(first, bars.n_bars)
    if embedded:
        print_confusion(regimes[traded].ravel(), hidden[traded].ravel())
    print_threshold(names, providers, context, sets, votes, config.ensemble.threshold)
    buy_hold = bars.close[-1] / bars.close[first] - 1.0
    print("\nbuy and hold over the period: "
          + ", ".join(f"{s} {r:+.1%}" for s, r in zip(bars.symbols, buy_hold)))


if __name__ == "__main__":
    main()
