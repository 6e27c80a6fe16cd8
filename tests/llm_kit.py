"""Shared pieces of the LLM provider tests: a tiny market, candidates, providers, scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from llm_server import Reply  # tests/llm_server.py

from backtester.data.bars import Bars
from backtester.features import FEATURE_NAMES
from backtester.providers.base import Candidates, MarketContext
from backtester.providers.llm import LLMProvider, LLMProviderConfig
from backtester.regime import TRENDING

SYMBOLS = ("BTCUSD", "ETHUSD", "SOLUSD")
START_NS = np.datetime64("1987-10-19T09:30", "ns").astype(np.int64)
MINUTES_15 = 15 * 60 * 10**9
DEAD_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


def make_context(n_bars: int = 30) -> MarketContext:
    """Three assets with distinctive price levels: close[t, a] = 30000 + 1000 a + 12.34 t."""
    t = np.arange(n_bars, dtype=np.float64)[:, None]
    close = 30000.0 + 1000.0 * np.arange(3)[None, :] + 12.34 * t
    bars = Bars(START_NS + MINUTES_15 * np.arange(n_bars, dtype=np.int64), SYMBOLS,
                close - 1.0, close + 2.0, close - 3.0, np.ascontiguousarray(close),
                np.full((n_bars, 3), 5.0), timeframe="15min")
    features = np.full((n_bars, 3, len(FEATURE_NAMES)), 0.5)
    features[:, :, FEATURE_NAMES.index("rsi14")] = 61.0
    regimes = np.full((n_bars, 3), TRENDING, dtype=np.int8)
    return MarketContext(bars, features, regimes)


def candidates(*pairs: tuple[int, int]) -> Candidates:
    """Candidates from (bar, asset) pairs."""
    return Candidates(np.array([p[0] for p in pairs], dtype=np.int64),
                      np.array([p[1] for p in pairs], dtype=np.int32))


def by_symbol(replies: dict[str, Reply]):
    """A script answering by which symbol (or ASSET_<i>) the user prompt names."""
    def script(body: dict, number: int) -> Reply:
        prompt = body["messages"][-1]["content"]
        return next(r for name, r in replies.items() if f"Asset: {name}\n" in prompt)
    return script


def make_provider(server_or_url, tmp_path: Path, **overrides) -> LLMProvider:
    """An LLM provider for the test server (or a URL), live mode, no retries by default."""
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    settings = dict(name="test_llm", base_url=url, model="test-model", timeout_s=2.0,
                    max_retries=0, backoff_s=0.0, cache_mode="live")
    settings.update(overrides)
    return LLMProvider(LLMProviderConfig(**settings), tmp_path / "llm_cache")
