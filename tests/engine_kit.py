"""Shared helpers of the engine tests (importable as `engine_kit`): tiny hand-written
bars, decisions from order tuples, and one simulate() call with the tests' cash."""

from __future__ import annotations

import numpy as np

from backtester.engine import Decisions, SimulationResult, simulate

CASH = 10_000.0


def bars(*rows: tuple[float, float, float, float] | list[tuple[float, float, float, float]]):
    """OHLC arrays from rows; a row is (o, h, l, c) for one asset or a list of them."""
    table = np.array([row if isinstance(row, list) else [row] for row in rows], dtype=float)
    return tuple(np.ascontiguousarray(table[:, :, k]) for k in range(4))


def decide(n_bars: int, n_assets: int, *orders: tuple) -> Decisions:
    """Decisions from (bar, asset, direction, size[, stop_loss, take_profit, id]) tuples;
    the id defaults to the order's position."""
    decisions = Decisions.empty(n_bars, n_assets)
    for number, order in enumerate(orders):
        bar, asset, direction, size, *rest = order
        defaults = (0.0, 0.0, number)  # stop_loss, take_profit, decision_id
        stop_loss, take_profit, decision_id = (*rest, *defaults[len(rest) :])
        decisions.direction[bar, asset] = direction
        decisions.size[bar, asset] = size
        decisions.stop_loss[bar, asset] = stop_loss
        decisions.take_profit[bar, asset] = take_profit
        decisions.decision_id[bar, asset] = decision_id
    return decisions


def run(prices, decisions, use_numba, **options) -> SimulationResult:
    """simulate() of ``prices`` (open, high, low, close) with CASH unless told otherwise."""
    options.setdefault("initial_cash", CASH)
    return simulate(*prices, decisions, use_numba=use_numba, **options)
