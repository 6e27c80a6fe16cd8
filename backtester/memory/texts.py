"""How a remembered situation is written as text.

Two texts per outcome: ``describe`` is for people (stored in the outcome file, shown by
`bt memory search` and in LLM prompts) and carries the numbers; ``index_text`` is what the
text index embeds: the same situation in words only (symbol, side, regime, trend, momentum,
RSI zone, how it ended), plus any LLM reasoning. A sentence model embeds templated texts
that differ only in numbers almost identically (cosine ~0.999), so numbers add nothing to
text search (the state vectors search on numbers); leaving them out also lets one chunk's
outcomes share a few hundred distinct texts, each embedded once.
"""

from __future__ import annotations

from typing import Any

from backtester.features import FEATURE_NAMES


def _features(outcome: dict[str, Any]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, outcome["state"]))


def describe(outcome: dict[str, Any]) -> str:
    """A short human text of the situation and what came of it."""
    f = _features(outcome)
    side = "long" if outcome["direction"] > 0 else "short"
    trend = "above" if f["sma50"] >= 0 else "below"
    momentum = "rising" if f["macd_hist"] >= 0 else "falling"
    return (
        f"{outcome['symbol']} {side} in a {outcome['regime'].lower()} market: RSI "
        f"{f['rsi14']:.0f}, close {abs(f['sma50']):.1%} {trend} its 50-bar average, MACD "
        f"momentum {momentum}, Bollinger position {f['bb_position']:.2f}, volume "
        f"{f['volume_ratio']:.1f}x average. Closed by {outcome['exit_reason'].replace('_', ' ')} "
        f"after {outcome['bars_held']} bars with {outcome['return_pct']:+.2%}."
    )


def index_text(outcome: dict[str, Any]) -> str:
    """The situation in words only, plus the LLM reasoning when there is one."""
    f = _features(outcome)
    side = "long" if outcome["direction"] > 0 else "short"
    rsi = f["rsi14"]
    zone = "oversold" if rsi < 30 else "overbought" if rsi > 70 else "neutral"
    text = (
        f"{outcome['symbol']} {side} in a {outcome['regime'].lower()} market, price "
        f"{'above' if f['sma50'] >= 0 else 'below'} its 50-bar average, momentum "
        f"{'rising' if f['macd_hist'] >= 0 else 'falling'}, RSI {zone}; closed by "
        f"{outcome['exit_reason'].replace('_', ' ')} with a "
        f"{'gain' if outcome['pnl'] > 0 else 'loss'}."
    )
    reasoning = outcome.get("reasoning")
    return f"{text} {reasoning}" if reasoning else text
