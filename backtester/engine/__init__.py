"""The event loop: numba kernels (kernels.py) behind one Python entry point (simulate)."""

from backtester.engine.records import (
    EXIT_DIRECTION,
    EXIT_REASON_NAMES,
    RISK_REASON_NAMES,
    ExitReason,
    SimulationStatus,
    exit_reason_names,
    trade_dt,
)
from backtester.engine.rules import Rules
from backtester.engine.simulate import CheckedPrices, Decisions, SimulationResult, simulate
from backtester.engine.state import EngineState

__all__ = [
    "EXIT_DIRECTION",
    "EXIT_REASON_NAMES",
    "RISK_REASON_NAMES",
    "CheckedPrices",
    "Decisions",
    "EngineState",
    "ExitReason",
    "Rules",
    "SimulationResult",
    "SimulationStatus",
    "exit_reason_names",
    "simulate",
    "trade_dt",
]
