"""Record dtypes and integer codes shared by the kernels and the Python side."""

from __future__ import annotations

import numpy as np

# One closed trade. Prices are fill prices (slippage, spread and impact included); size is
# in units (> 0); pnl = signed size * (exit - entry) - fees - funding, so it is net of both
# sides' fees and of the borrow/funding paid while open; return_pct = pnl / (entry * size).
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
        ("fees", np.float64),  # entry + exit fee (taker, or maker on a take-profit exit)
        ("funding", np.float64),  # borrow (shorts) or funding (longs) paid; < 0 = received
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
    DAILY_LOSS = 5  # closed at the close that hit Rules.daily_loss_limit (flatten)
    EXIT = 6  # an exit decision (direction EXIT_DIRECTION) closed it at the next open


EXIT_REASON_NAMES = {
    ExitReason.STOP_LOSS: "stop_loss",
    ExitReason.TAKE_PROFIT: "take_profit",
    ExitReason.MAX_HOLD: "max_hold",
    ExitReason.SIGNAL: "signal",
    ExitReason.END: "end",
    ExitReason.DAILY_LOSS: "daily_loss",
    ExitReason.EXIT: "exit",
}

# Decisions.direction value of an exit: close the asset's position at the next open (a
# market order, like an opposite decision) and open nothing; a no-op on a flat asset.
EXIT_DIRECTION = 2


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
ACCOUNT_DAY_START_EQUITY = 2  # equity at the last close before the current session day
ACCOUNT_PEAK_EQUITY = 3  # highest equity at a close since the drawdown peak last reset
ACCOUNT_SIZE = 4

# Layout of the int64 ``clock`` array the kernel updates in place. NO_TIME marks a day or
# time not seen yet (a fresh account).
NO_TIME = np.iinfo(np.int64).min
CLOCK_DAY = 0  # session-day id of the last bar simulated (``days``), NO_TIME before any
CLOCK_DAY_HALTED = 1  # 1 once the day's loss limit was hit: no entries until the next day
CLOCK_DRAWDOWN_HALTED_AT = 2  # global bar of the close that started the halt, -1 for none
CLOCK_LAST_TIME = 3  # bar start time (``times``, ns) of the last bar simulated, or NO_TIME
CLOCK_HISTORY_COUNT = 4  # closes held in the correlation ring (at most window + 1)
CLOCK_HISTORY_POSITION = 5  # ring row the next close goes to (the oldest once full)
CLOCK_SIZE = 6

# Layout of the float64 ``params`` array: the scalar Rules, packed by rules.pack_rules.
# Flags are 0.0 / 1.0; the HAS_* flags say which optional per-bar input was passed.
PARAM_TAKER_FEE = 0
PARAM_MAKER_FEE = 1
PARAM_SLIPPAGE = 2
PARAM_HALF_SPREAD = 3  # half of Rules.spread, used when no per-bar spread is passed
PARAM_TAKE_PROFIT_MARGIN = 4
PARAM_IMPACT = 5
PARAM_IMPACT_EXPONENT = 6
PARAM_MAX_PARTICIPATION = 7
PARAM_MAX_HOLDING_BARS = 8
PARAM_MAX_OPEN_POSITIONS = 9
PARAM_DAILY_LOSS_LIMIT = 10
PARAM_FLATTEN_ON_DAILY_LIMIT = 11
PARAM_MAX_DRAWDOWN = 12
PARAM_DRAWDOWN_RESET_BARS = 13
PARAM_MAX_GROSS_EXPOSURE = 14
PARAM_MAX_SYMBOL_EXPOSURE = 15
PARAM_CORRELATION_WINDOW = 16
PARAM_CORRELATION_THRESHOLD = 17
PARAM_CORRELATION_REFUSE = 18  # 1.0 for correlation_action "refuse", 0.0 for "scale"
PARAM_CASH_ONLY = 19
PARAM_HAS_VOLUME = 20
PARAM_HAS_SPREAD = 21
PARAM_HAS_TIMES = 22
PARAM_HAS_DAYS = 23
PARAM_HAS_CARRY = 24  # some borrow or funding rate is not 0 (and times were passed)
PARAM_HAS_LOT_SIZE = 25
PARAM_SIZE = 26

# Columns of the float64 (n_assets, ASSET_PARAM_SIZE) ``asset_params`` array.
ASSET_LOT_SIZE = 0
ASSET_BORROW_RATE = 1  # annual, charged on shorts
ASSET_FUNDING_RATE = 2  # annual, charged on longs (negative = received)
ASSET_PARAM_SIZE = 3

# Why an entry was refused or resized: rows of the int64 (RISK_SIZE, 2) ``risk_out`` array
# (columns RISK_REFUSED, RISK_RESIZED), counted per call; names in RISK_REASON_NAMES.
RISK_MAX_OPEN_POSITIONS = 0
RISK_DAILY_LOSS = 1
RISK_DRAWDOWN = 2
RISK_CORRELATION = 3
RISK_SYMBOL_EXPOSURE = 4
RISK_GROSS_EXPOSURE = 5
RISK_PARTICIPATION = 6
RISK_CASH = 7
RISK_LOT_SIZE = 8
RISK_SIZE = 9
RISK_REFUSED = 0
RISK_RESIZED = 1
RISK_REASON_NAMES = (
    "max_open_positions",
    "daily_loss",
    "drawdown",
    "correlation",
    "symbol_exposure",
    "gross_exposure",
    "participation",
    "cash",
    "lot_size",
)

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
    ("funding", np.float64),  # borrow/funding paid by the open position so far
)
