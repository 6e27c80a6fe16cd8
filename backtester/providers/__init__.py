"""Decision providers: anything that votes on candidate entries."""

from backtester.providers.base import Candidates, MarketContext, Provider, Votes

__all__ = ["Candidates", "MarketContext", "Provider", "Votes"]
