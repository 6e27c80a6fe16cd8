"""Decision providers: anything that votes on candidate entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backtester.providers.base import Candidates, MarketContext, Provider, Votes


def build_provider(config: Any, *, cache_dir: Path) -> Provider:
    """The provider a [providers.<name>] config describes (LLMs cache under cache_dir)."""
    from backtester.config import PROVIDER_KINDS, provider_kind, provider_module

    kind = provider_kind(config)
    cls = getattr(provider_module(kind), PROVIDER_KINDS[kind][1])
    return cls(config, cache_dir) if kind == "llm" else cls(config)


__all__ = ["Candidates", "MarketContext", "Provider", "Votes", "build_provider"]
