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

from backtester.feature_names import FEATURE_NAMES
from backtester.regime_config import RANGING, REGIME_NAMES, TRENDING, VOLATILE

STATE_REGIMES = (RANGING, TRENDING, VOLATILE)
REGIME_STATE_NAMES = tuple(f"regime_{REGIME_NAMES[r].lower()}" for r in STATE_REGIMES)
# What a state vector is made of: the features at entry, then the regime one-hot.
STATE_NAMES = FEATURE_NAMES + REGIME_STATE_NAMES


def state_names(feature_names: tuple[str, ...] = FEATURE_NAMES) -> tuple[str, ...]:
    """The names of a state vector's dimensions for the given feature columns."""
    return tuple(feature_names) + REGIME_STATE_NAMES


def state_names_mismatch(recorded: tuple[str, ...] | None, dim: int,
                         expected: tuple[str, ...]) -> str | None:
    """Why state vectors of ``recorded`` names (None: unknown, ``dim`` long) must not mix
    with ``expected`` ones; None when they may."""
    if recorded == expected or (recorded is None and dim == len(expected)):
        return None
    return (f"its state vectors were built with {_describe_names(recorded, dim)}, this run's "
            f"have {_describe_names(expected, len(expected))}; state vectors of different "
            "features are never mixed: use a fresh --memory-dir, or the same "
            "features.timeframes")


def _describe_names(names: tuple[str, ...] | None, dim: int) -> str:
    from backtester.timeframes import timeframe_blocks  # pandas, numba: not for inspect

    if names is None:
        return f"{dim} unnamed dimensions"
    blocks = [tf for tf, _ in timeframe_blocks(names)]
    return (f"features.timeframes = [{', '.join(blocks)}]" if blocks
            else "no features.timeframes") + f" ({len(names)} dimensions)"


def _features(outcome: dict[str, Any]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, outcome["state"]))


def _higher(outcome: dict[str, Any], names: tuple[str, ...]) -> list[tuple[str, dict]]:
    """(timeframe, {feature: value}) of each higher-timeframe block of the state."""
    from backtester.timeframes import timeframe_blocks

    state = list(outcome["state"])
    return [(tf, dict(zip(FEATURE_NAMES, state[first:first + len(FEATURE_NAMES)])))
            for tf, first in timeframe_blocks(tuple(names)[:len(state)])]


def describe(outcome: dict[str, Any], names: tuple[str, ...] = STATE_NAMES) -> str:
    """A short human text of the situation and what came of it.

    ``names`` (``state_names``) tells the state's higher-timeframe blocks, each described
    in a sentence of its own after the traded bars' (nothing more without them).
    """
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
    ) + "".join(
        f" {tf}: RSI {h['rsi14']:.0f}, close {abs(h['sma50']):.1%} "
        f"{'above' if h['sma50'] >= 0 else 'below'} its 50-bar average, MACD momentum "
        f"{'rising' if h['macd_hist'] >= 0 else 'falling'}."
        for tf, h in _higher(outcome, names))


def index_text(outcome: dict[str, Any], names: tuple[str, ...] = STATE_NAMES) -> str:
    """The situation in words only, plus the LLM reasoning when there is one.

    With higher timeframes in ``names`` each adds its trend and momentum in words.
    """
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
    ) + "".join(
        f" {tf}: price {'above' if h['sma50'] >= 0 else 'below'} its 50-bar average, "
        f"momentum {'rising' if h['macd_hist'] >= 0 else 'falling'}."
        for tf, h in _higher(outcome, names))
    reasoning = outcome.get("reasoning")
    return f"{text} {reasoning}" if reasoning else text
