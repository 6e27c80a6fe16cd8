"""Training time per chunk of the ML providers on the default market (prints figures).

Run: ``python benchmarks/bench_ml.py [--year 2025] [--lstm-threads 2] [--gbm-threads 1]``

The default market: 3 symbols of 15-minute bars from the embedded generator (cached under
``--cache-dir``), loaded from the start of the previous year so that every quarter of
``--year`` has the full training window (train_bars = 20,000 per asset) behind it. Each
provider is prepared before each quarter, as the runner does, with its default config
(threads from the options). Target: both models together train in <= 20 s per chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from backtester.data import embedded_bars, resample
from backtester.features import compute_features
from backtester.providers.base import Candidates, MarketContext
from backtester.providers.lstm import LSTMProvider, LSTMProviderConfig
from backtester.providers.ml import GradientBoostingProvider, GradientBoostingProviderConfig
from backtester.regime import compute_regimes

TARGET_CHUNK_S = 20.0


def quarter_starts(times: np.ndarray, year: int) -> list[tuple[str, int, int]]:
    """(label, start, stop) bar indices of the four quarters of ``year``."""
    edges = [pd.Timestamp(f"{year}-{month:02d}-01", tz="UTC").value for month in (1, 4, 7, 10)]
    edges.append(pd.Timestamp(f"{year + 1}-01-01", tz="UTC").value)
    index = np.searchsorted(times, edges)
    return [(f"Q{q + 1}", int(index[q]), int(index[q + 1])) for q in range(4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--gbm-threads", type=int, default=GradientBoostingProviderConfig().threads)
    parser.add_argument("--lstm-threads", type=int, default=LSTMProviderConfig().threads)
    options = parser.parse_args()

    began = time.perf_counter()
    bars = embedded_bars(pd.Timestamp(f"{options.year - 1}-01-01", tz="UTC"),
                         pd.Timestamp(f"{options.year + 1}-01-01", tz="UTC"),
                         cache_dir=options.cache_dir)
    bars = resample(bars, "15min")
    context = MarketContext(bars, compute_features(bars), compute_regimes(bars))
    print(f"market: {bars.n_assets} symbols x {bars.n_bars} 15min bars "
          f"({options.year - 1}-{options.year}), loaded in {time.perf_counter() - began:.1f} s")

    providers = [
        GradientBoostingProvider(GradientBoostingProviderConfig(threads=options.gbm_threads)),
        LSTMProvider(LSTMProviderConfig(threads=options.lstm_threads)),
    ]
    for provider in providers:
        fields = {f.name: getattr(provider.config, f.name)
                  for f in dataclasses.fields(provider.config)}
        print(f"{provider.name}: {fields}")
    print(f"\n{'chunk':5} {'provider':8} {'samples':>8} {'seconds':>8} {'train acc':>9} "
          f"{'valid acc':>9} {'majority':>8} {'epochs':>6} {'capped':>6} {'vote ms':>7}")
    totals = []
    for label, start, stop in quarter_starts(bars.times, options.year):
        total = 0.0
        chunk = Candidates.from_mask(np.ones((stop - start, bars.n_assets), bool), start)
        for provider in providers:
            t0 = time.perf_counter()
            figures = provider.prepare(context, start, stop)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            provider.vote(context, chunk)
            vote_ms = (time.perf_counter() - t0) * 1e3
            total += seconds
            print(f"{label:5} {provider.name:8} {figures['train_samples']:8.0f} {seconds:8.2f} "
                  f"{figures['train_accuracy']:9.3f} {figures['validation_accuracy']:9.3f} "
                  f"{figures['validation_majority_rate']:8.3f} "
                  f"{figures.get('epochs', float('nan')):6.2f} "
                  f"{figures.get('stopped_by_time', float('nan')):6.0f} {vote_ms:7.0f}")
        totals.append(total)
    verdict = "met" if max(totals) <= TARGET_CHUNK_S else "MISSED"
    print(f"\nboth models per chunk: mean {np.mean(totals):.2f} s, max {np.max(totals):.2f} s "
          f"(target <= {TARGET_CHUNK_S:.0f} s: {verdict})")
    print(f"votes timed on every bar x asset of the chunk ({len(chunk)} candidates in the last)")


if __name__ == "__main__":
    main()
