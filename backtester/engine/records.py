"""Record dtypes and integer codes shared by the kernels and the Python side."""

from __future__ import annotations

import numpy as np

# One closed trade. Prices are fill prices (slippage included); size is in units (> 0);
# pnl is net of both sides' commission; return_pct = pnl / (entry_price * size).
trade_dt = np.dtype(
    [
        ("asset", np.int32),
        ("direction", np.int8),  # +1 long, -1 short
        ("entry_bar", np.int64),  # global bar index of the entry fill
        ("exit_bar", np.int64),  # global bar index of the exit fill
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("size", np.float64),
        ("pnl", np.float64),
        ("return_pct", np.float64),
        ("fees", np.float64),  # entry + exit commission
        ("exit_reason", np.int8),
        ("decision_id", np.int64),
    ],
    align=True,
)


class ExitReason:
    """Why a trade was closed (codes stored in trade_dt.exit_reason)."""

    STOP_LOSS = 0
    TAKE_PROFIT = 1
    MAX_HOLD = 2
    SIGNAL = 3  # an opposite decision closed it at the next open
    END = 4  # closed at the last bar of the run


EXIT_REASON_NAMES = {
    ExitReason.STOP_LOSS: "stop_loss",
    ExitReason.TAKE_PROFIT: "take_profit",
    ExitReason.MAX_HOLD: "max_hold",
    ExitReason.SIGNAL: "signal",
    ExitReason.END: "end",
}


def exit_reason_names(codes: np.ndarray | list[int]) -> list[str]:
    """Map exit reason codes (e.g. ``trades["exit_reason"]``) to their names.

    Raises
    ------
    KeyError
        If a code is not one of ``ExitReason``'s.
    """
    return [EXIT_REASON_NAMES[int(code)] for code in np.asarray(codes).ravel()]


class SimulationStatus:
    """What the simulation kernel reports back (its return value ``status``)."""

    OK = 0
    TRADES_BUFFER_FULL = 1  # the pre-allocated trades array was too small: a sizing bug


SIMULATION_STATUS_MESSAGES = {
    SimulationStatus.OK: "ok",
    SimulationStatus.TRADES_BUFFER_FULL: (
        "the trades buffer was too small for the trades of this call; this is a bug in bt's "
        "buffer sizing, please report it with the inputs that caused it"
    ),
}

# Layout of the small float64 ``account`` array the kernel updates in place.
ACCOUNT_CASH = 0  # cash after every fill and fee of the bars simulated so far
ACCOUNT_LAST_EQUITY = 1  # equity at the last close, used to size pending decisions
ACCOUNT_SIZE = 2

# The per-asset state arrays of EngineState, each (n_assets,), in the kernel's argument
# order, with their dtypes. A flat asset holds units 0, NaN prices and ids -1.
STATE_ARRAY_FIELDS = (
    ("units", np.float64),  # signed: negative for a short
    ("entry_price", np.float64),
    ("entry_bar", np.int64),  # global bar index
    ("entry_fee", np.float64),
    ("stop_price", np.float64),  # absolute price, NaN for none
    ("take_price", np.float64),
    ("open_decision_id", np.int64),
    ("pending_direction", np.int8),  # the decision waiting for the next open
    ("pending_size", np.float64),
    ("pending_stop_loss", np.float64),  # fractional distance, NaN for none
    ("pending_take_profit", np.float64),
    ("pending_decision_id", np.int64),
)
