"""Rule strategies on hand-made feature arrays: where they propose and how they vote."""

from __future__ import annotations

import numpy as np

from backtester.data.bars import Bars
from backtester.features import FEATURE_NAMES
from backtester.providers.base import Candidates, MarketContext
from backtester.regime import RANGING, TRENDING
from strategies import STRATEGY_REGISTRY
from strategies.breakout import Breakout, BreakoutConfig
from strategies.mean_reversion import MeanReversion
from strategies.momentum import Momentum


def _context(n: int, columns: dict[str, list[float]], *, close=None, high=None, low=None,
             regimes=None) -> MarketContext:
    """A one-asset context whose named features take the given values (others NaN)."""
    features = np.full((n, 1, len(FEATURE_NAMES)), np.nan)
    for name, values in columns.items():
        features[:, 0, FEATURE_NAMES.index(name)] = values
    close = np.asarray(close if close is not None else [100.0] * n, dtype=float).reshape(n, 1)
    high = np.asarray(high, dtype=float).reshape(n, 1) if high is not None else close + 1
    low = np.asarray(low, dtype=float).reshape(n, 1) if low is not None else close - 1
    times = np.arange(n, dtype=np.int64) * 60_000_000_000
    bars = Bars(times, ("X",), close.copy(), high, low, close, np.ones((n, 1)))
    regimes = np.full((n, 1), RANGING, np.int8) if regimes is None else np.asarray(
        regimes, np.int8).reshape(n, 1)
    return MarketContext(bars, features, regimes)


def test_registry_discovers_every_strategy_module():
    assert set(STRATEGY_REGISTRY) >= {"momentum", "mean_reversion", "breakout"}
    for name, cls in STRATEGY_REGISTRY.items():
        assert cls.config_class.name == name


def test_momentum_enters_when_macd_histogram_turns_with_the_trend():
    # hist turns positive at bar 2 with price above SMA50; turns negative at bar 5 but
    # price is still above SMA50 there, so no short entry
    ctx = _context(6, {"macd_hist": [-1, -0.5, 0.5, 1, 0.2, -0.1],
                       "sma50": [0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
                       "sma20": [0.0, 0.0, 0.005, 0.02, 0.0, 0.0]})
    strategy = Momentum()
    assert strategy.propose(ctx, 0, 6)[:, 0].tolist() == [False, False, True, False, False, False]
    votes = strategy.vote(ctx, Candidates(np.arange(6), np.zeros(6, np.int32)))
    assert votes.vote.tolist() == [0, 0, 1, 1, 1, 0]
    # confidence = |sma20| / 0.01 clipped to 1, and 0 where the vote is 0
    np.testing.assert_allclose(votes.confidence, [0, 0, 0.5, 1.0, 0.0, 0.0])


def test_mean_reversion_fades_oversold_and_discounts_trends():
    ctx = _context(5, {"rsi14": [45, 32, 25, 20, 75], "bb_position": [0.4, 0.2, -0.1, -0.3, 1.2]},
                   regimes=[RANGING, RANGING, RANGING, TRENDING, RANGING])
    strategy = MeanReversion()
    # RSI crosses below 30 at bar 2 (band below the middle); crosses above 70 at bar 4
    proposals = strategy.propose(ctx, 0, 5)[:, 0]
    assert proposals.tolist() == [False, False, True, False, True]
    assert strategy._signals(ctx).entry[:, 0].tolist() == [0, 0, 1, 0, -1]
    votes = strategy.vote(ctx, Candidates(np.arange(5), np.zeros(5, np.int32)))
    assert votes.vote.tolist() == [0, 0, 1, 1, -1]
    # confidence 0.5 + depth/20: bar 2 depth 5 -> 0.75; bar 3 depth 10 -> 1.0, halved in
    # a trend -> 0.5; bar 4 depth 5 -> 0.75
    np.testing.assert_allclose(votes.confidence, [0, 0, 0.75, 0.5, 0.75])


def test_breakout_uses_only_previous_bars_for_the_channel():
    high = [10, 11, 10.5, 11, 12, 12.5, 9]
    low = [9, 9.5, 9.2, 9.8, 10, 11, 8.0]
    close = [9.5, 10, 10, 10.5, 11.5, 12.4, 8.5]
    ctx = _context(7, {"volume_ratio": [1.0] * 7}, close=close, high=high, low=low)
    strategy = Breakout(BreakoutConfig(lookback=3))
    entry = strategy._signals(ctx).entry[:, 0].tolist()
    # bar 4: close 11.5 > max(high[1:4]) = 11 -> long entry; bar 5: 12.4 < max(11, 10.5... )?
    # max(high[2:5]) = 12 and 12.4 > 12 but bar 4 was already above -> no new entry;
    # bar 6: 8.5 < min(low[3:6]) = 9.8 -> short entry
    assert entry == [0, 0, 0, 0, 1, 0, -1]
    votes = strategy.vote(ctx, Candidates(np.array([4, 6]), np.zeros(2, np.int32)))
    assert votes.vote.tolist() == [1, -1]
    np.testing.assert_allclose(votes.confidence, [0.75, 0.75])  # 0.25 + ratio / 2


def test_strategies_are_causal():
    rng = np.random.default_rng(3)
    n = 300
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    cols = {name: rng.normal(0, 1, n) for name in FEATURE_NAMES}
    cols["rsi14"] = rng.uniform(0, 100, n)
    base = _context(n, cols, close=close, high=close * 1.01, low=close * 0.99)
    cut = 200
    changed_cols = {k: np.concatenate([v[:cut], rng.normal(0, 1, n - cut)]) for k, v in cols.items()}
    changed_close = np.concatenate([close[:cut], close[cut:] * 1.5])
    changed = _context(n, changed_cols, close=changed_close, high=changed_close * 1.01,
                       low=changed_close * 0.99)
    for cls in STRATEGY_REGISTRY.values():
        a, b = cls().signals(base), cls().signals(changed)
        for field in ("entry", "view", "confidence"):
            np.testing.assert_array_equal(getattr(a, field)[:cut], getattr(b, field)[:cut])
