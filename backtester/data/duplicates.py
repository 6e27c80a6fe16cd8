"""Duplicate times of one symbol: refused (the default) or resolved by a policy."""

from __future__ import annotations

import numpy as np

from backtester.errors import ConfigError

ON_DUPLICATE = ("error", "first", "last", "mean")
_HOW = {"first": "keeping the first row of each time", "last": "keeping the last row of each time",
        "mean": "averaging each time's rows (open, high, low, close, volume)"}


def check_on_duplicate(policy: str) -> str:
    """Return the policy, refusing anything but error, first, last and mean."""
    if policy not in ON_DUPLICATE:
        raise ConfigError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}, was "
                          f"{policy!r}; use --on-duplicate first|last|mean or "
                          "data.on_duplicate = \"first\"")
    return policy


def describe(policy: str) -> str:
    """How a policy resolves duplicates, for the info line."""
    return _HOW[policy]


def resolve_duplicates(times: np.ndarray, values: tuple[np.ndarray, ...], policy: str
                       ) -> tuple[np.ndarray, tuple[np.ndarray, ...], int]:
    """One row per distinct time, in file order: (kept row positions, their values, the
    number of rows dropped). "first"/"last" keep a row of each time; "mean" keeps the
    first row's position with every value averaged over the time's rows."""
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    dropped = int(times.shape[0] - new.sum())
    if dropped == 0 or policy == "error":
        return np.arange(times.shape[0]), values, dropped
    if policy in ("first", "last"):
        pick = new if policy == "first" else np.r_[new[1:], True]
        keep = np.sort(order[pick])
        return keep, tuple(v[keep] for v in values), dropped
    starts = np.flatnonzero(new)
    counts = np.diff(np.r_[starts, ordered.shape[0]])
    positions = order[starts]
    by_file = np.argsort(positions, kind="stable")
    means = tuple((np.add.reduceat(v[order], starts) / counts)[by_file] for v in values)
    return positions[by_file], means, dropped
