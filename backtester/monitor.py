"""The performance monitor: parameters that adapt between chunks, with their reasons.

After each chunk the monitor reads the win rate of the last ``monitor.window`` closed
trades. While it is below ``monitor.min_win_rate`` the next chunk trades
``monitor.size_multiplier`` x the size and, where the config allows it, raises the
ensemble threshold by ``threshold_step`` (up to ``threshold_max``) and multiplies the
sizing volatility target by ``volatility_target_step`` (down to
``volatility_target_min``), one step per chunk. Once the win rate is back at or above
the floor, each returns one step per chunk towards its configured value. Every change is
appended to the memory's parameters.json ``history`` as {chunk, parameter, old, new,
reason}; the report lists them. The parameters in force are read by the next chunk only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backtester.checks import require as _check


@dataclass(frozen=True, kw_only=True, slots=True)
class MonitorConfig:
    """Performance monitor: scale position size down after a losing streak."""

    enabled: bool = True
    window: int = 50  # the last N closed trades
    min_win_rate: float = 0.25  # below this, the next chunk trades smaller
    size_multiplier: float = 0.5  # applied to position_size while below
    adapt_threshold: bool = False  # and raise ensemble.threshold one step per chunk
    threshold_step: float = 0.05
    threshold_max: float = 0.6
    adapt_volatility_target: bool = False  # and scale sizing.volatility_target down
    volatility_target_step: float = 0.5  # x per chunk while below; / per chunk once back
    volatility_target_min: float = 0.0025

    def __post_init__(self) -> None:
        _check(0 < self.threshold_step <= 1, "monitor.threshold_step", self.threshold_step,
               "in (0, 1]")
        _check(0 < self.threshold_max <= 1, "monitor.threshold_max", self.threshold_max,
               "in (0, 1]")
        _check(0 < self.volatility_target_step < 1, "monitor.volatility_target_step",
               self.volatility_target_step, "in (0, 1)")
        _check(0 < self.volatility_target_min <= 1, "monitor.volatility_target_min",
               self.volatility_target_min, "in (0, 1]")
        _check(self.window >= 1, "monitor.window", self.window, ">= 1")
        _check(0 <= self.min_win_rate <= 1, "monitor.min_win_rate", self.min_win_rate,
               "in [0, 1]")
        _check(0 < self.size_multiplier <= 1, "monitor.size_multiplier", self.size_multiplier,
               "in (0, 1]")


def _changed(history: list[dict[str, Any]], label: str, name: str, old: float, new: float,
             reason: str) -> float:
    if new != old:
        history.append({"chunk": label, "parameter": name, "old": old, "new": new,
                        "reason": reason})
    return new


def adapt(parameters: dict[str, Any], wins: list[bool], config: Any,
          label: str) -> dict[str, Any]:
    """Parameters after a chunk whose closed trades won or lost as ``wins``."""
    monitor = config.monitor
    recent = (parameters.get("recent_wins", []) + [bool(w) for w in wins])[-monitor.window:]
    out = {**parameters, "recent_wins": recent}
    history = list(parameters.get("history", []))
    multiplier = parameters.get("size_multiplier", 1.0)
    if monitor.enabled and len(recent) >= monitor.window:
        rate = sum(recent) / len(recent)
        low = rate < monitor.min_win_rate
        comparison = "below" if low else "back at or above"
        reason = (f"win rate of the last {len(recent)} trades {rate:.1%} is {comparison} "
                  f"{monitor.min_win_rate:.0%}")
        multiplier = _changed(history, label, "size_multiplier", multiplier,
                              monitor.size_multiplier if low else 1.0, reason)
        if monitor.adapt_threshold:
            base = config.ensemble.threshold
            old = parameters.get("threshold", base)
            new = min(old + monitor.threshold_step, monitor.threshold_max) if low \
                else max(old - monitor.threshold_step, base)
            out["threshold"] = _changed(history, label, "threshold", old, round(new, 12),
                                        reason)
        if monitor.adapt_volatility_target and config.sizing.method == "volatility_target":
            base = config.sizing.volatility_target
            old = parameters.get("volatility_target", base)
            step = monitor.volatility_target_step
            new = max(old * step, monitor.volatility_target_min) if low \
                else min(old / step, base)
            out["volatility_target"] = _changed(history, label, "volatility_target", old,
                                                round(new, 12), reason)
    out["size_multiplier"] = multiplier
    out["history"] = history
    return out
