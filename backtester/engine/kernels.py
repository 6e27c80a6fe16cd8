"""Numba kernels of the event loop.

NumPy arrays and Numba types only: prices and decisions are 2-D (bars x assets), the
per-asset state is 1-D (assets,) and is updated in place, so a chunk continues exactly
where the previous one stopped. Kernels report business outcomes through status codes
(``records.SimulationStatus``) and never raise; inputs are checked in ``simulate.py``.

Compile options: ``cache=True`` (a second process loads the machine code from disk);
``error_model="numpy"`` (no Python exceptions from float arithmetic); ``_nrt=False``
(no reference counting: the kernels never allocate, Numba refuses to compile one that
does, and the cold compile is about 0.5 s shorter).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtester.engine.records import (
    ACCOUNT_CASH,
    ACCOUNT_LAST_EQUITY,
    ExitReason,
    SimulationStatus,
)

# Module constants, frozen into the compiled code. Exit reasons are int8 scalars (the
# dtype of trade_dt.exit_reason) rather than Python ints, so that Numba types them int8
# and compiles close_position_nb once instead of once per literal reason.
_NO_EXIT = np.int8(-1)
_STOP_LOSS = np.int8(ExitReason.STOP_LOSS)
_TAKE_PROFIT = np.int8(ExitReason.TAKE_PROFIT)
_MAX_HOLD = np.int8(ExitReason.MAX_HOLD)
_SIGNAL = np.int8(ExitReason.SIGNAL)
_END = np.int8(ExitReason.END)
_OK = SimulationStatus.OK
_TRADES_BUFFER_FULL = SimulationStatus.TRADES_BUFFER_FULL
_CASH = ACCOUNT_CASH
_LAST_EQUITY = ACCOUNT_LAST_EQUITY


@njit(cache=True, error_model="numpy", _nrt=False)
def close_position_nb(
    trade,
    asset,
    bar,
    exit_price,
    reason,
    commission,
    units,
    entry_price,
    entry_bar,
    entry_fee,
    stop_price,
    take_price,
    open_decision_id,
):
    """Close one asset's position at ``exit_price`` into record ``trade``; return the cash flow.

    ``trade`` is a ``trade_dt`` record (an element of the trades array). Flattens the
    asset's state.
    """
    held = units[asset]  # signed: negative for a short
    size = abs(held)
    exit_fee = commission * size * exit_price
    fees = entry_fee[asset] + exit_fee
    pnl = held * (exit_price - entry_price[asset]) - fees
    trade["asset"] = asset
    trade["direction"] = 1 if held > 0.0 else -1
    trade["entry_bar"] = entry_bar[asset]
    trade["exit_bar"] = bar
    trade["entry_price"] = entry_price[asset]
    trade["exit_price"] = exit_price
    trade["size"] = size
    trade["pnl"] = pnl
    trade["return_pct"] = pnl / (entry_price[asset] * size)
    trade["fees"] = fees
    trade["exit_reason"] = reason
    trade["decision_id"] = open_decision_id[asset]
    units[asset] = 0.0
    entry_price[asset] = np.nan
    entry_bar[asset] = -1
    entry_fee[asset] = 0.0
    stop_price[asset] = np.nan
    take_price[asset] = np.nan
    open_decision_id[asset] = -1
    # Long: cash += units * price - fee. Short (units < 0): cash -= |units| * price + fee.
    return held * exit_price - exit_fee


@njit(cache=True, error_model="numpy", _nrt=False)
def simulate_nb(
    open_,
    high,
    low,
    close,
    direction,
    size,
    stop_loss,
    take_profit,
    decision_id,
    commission,
    slippage,
    max_holding_bars,
    max_open_positions,
    close_at_end,
    bar_offset,
    account,
    units,
    entry_price,
    entry_bar,
    entry_fee,
    stop_price,
    take_price,
    open_decision_id,
    pending_direction,
    pending_size,
    pending_stop_loss,
    pending_take_profit,
    pending_decision_id,
    equity_out,
    open_positions_out,
    trades_out,
):
    """Replay bars x assets, filling decisions at the next open; return (n_trades, status).

    Per bar, in this order (each step loops the assets in column order):

    1. at the open, a pending decision opposite to the open position closes it (SIGNAL);
    2. at the open, a pending decision on a flat asset opens a position of
       ``size * equity at the previous close / fill`` units, unless ``max_open_positions``
       are already open; one in the direction of the open position is dropped;
    3. inside the bar, stop-loss / take-profit from high and low (a gap through either
       fills at the open; if both lie inside the range the stop is taken first), else
       the close when the position has been held ``max_holding_bars`` bars (MAX_HOLD);
    4. equity at the close and the count of open positions are recorded;
    5. this bar's decisions become pending for the next open.

    With ``close_at_end`` every position left is closed at the last close (END), the
    last equity is restated and pending decisions are dropped.
    ``account`` ([cash, last equity]) and the per-asset state arrays are updated in
    place; ``equity_out``, ``open_positions_out`` and ``trades_out`` are written.
    """
    n_bars, n_assets = close.shape
    capacity = trades_out.shape[0]
    cash = account[_CASH]
    last_equity = account[_LAST_EQUITY]
    n_trades = 0
    n_open = 0
    n_pending = 0
    for a in range(n_assets):
        if units[a] != 0.0:
            n_open += 1
        if pending_direction[a] != 0:
            n_pending += 1

    for i in range(n_bars):
        bar = bar_offset + i

        if n_pending > 0:
            # 1. Opposite decisions close the open position at this open (market order).
            for a in range(n_assets):
                d = pending_direction[a]
                held = units[a]
                if d != 0 and held * d < 0.0:
                    if n_trades >= capacity:
                        account[_CASH], account[_LAST_EQUITY] = cash, last_equity
                        return n_trades, _TRADES_BUFFER_FULL
                    side = 1.0 if held > 0.0 else -1.0
                    cash += close_position_nb(
                        trades_out[n_trades], a, bar, open_[i, a] * (1.0 - side * slippage),
                        _SIGNAL, commission, units, entry_price, entry_bar, entry_fee,
                        stop_price, take_price, open_decision_id,
                    )  # fmt: skip
                    n_trades += 1
                    n_open -= 1

            # 2. Pending decisions on flat assets open positions at this open.
            for a in range(n_assets):
                d = pending_direction[a]
                if d == 0:
                    continue
                if units[a] == 0.0 and (max_open_positions <= 0 or n_open < max_open_positions):
                    fill = open_[i, a] * (1.0 + d * slippage)
                    quantity = pending_size[a] * last_equity / fill
                    if quantity > 0.0:  # no entry once equity is gone
                        fee = commission * quantity * fill
                        held = d * quantity
                        cash -= held * fill + fee
                        units[a] = held
                        entry_price[a] = fill
                        entry_bar[a] = bar
                        entry_fee[a] = fee
                        distance = pending_stop_loss[a]
                        stop_price[a] = fill * (1.0 - d * distance) if distance > 0.0 else np.nan
                        distance = pending_take_profit[a]
                        take_price[a] = fill * (1.0 + d * distance) if distance > 0.0 else np.nan
                        open_decision_id[a] = pending_decision_id[a]
                        n_open += 1
                pending_direction[a] = 0
                pending_size[a] = 0.0
                pending_stop_loss[a] = np.nan
                pending_take_profit[a] = np.nan
                pending_decision_id[a] = -1
            n_pending = 0

        if n_open > 0:
            # 3. Exits inside the bar: stop-loss, take-profit, then max holding time.
            for a in range(n_assets):
                held = units[a]
                if held == 0.0:
                    continue
                price_open = open_[i, a]
                stop = stop_price[a]  # NaN (no stop) makes every comparison False
                take = take_price[a]
                reason = _NO_EXIT
                exit_price = 0.0
                if held > 0.0:
                    if price_open <= stop:
                        reason = _STOP_LOSS
                        exit_price = price_open * (1.0 - slippage)
                    elif price_open >= take:
                        reason = _TAKE_PROFIT
                        exit_price = price_open
                    elif low[i, a] <= stop:
                        reason = _STOP_LOSS
                        exit_price = stop * (1.0 - slippage)
                    elif high[i, a] >= take:
                        reason = _TAKE_PROFIT
                        exit_price = take
                else:
                    if price_open >= stop:
                        reason = _STOP_LOSS
                        exit_price = price_open * (1.0 + slippage)
                    elif price_open <= take:
                        reason = _TAKE_PROFIT
                        exit_price = price_open
                    elif high[i, a] >= stop:
                        reason = _STOP_LOSS
                        exit_price = stop * (1.0 + slippage)
                    elif low[i, a] <= take:
                        reason = _TAKE_PROFIT
                        exit_price = take
                if (
                    reason == _NO_EXIT
                    and max_holding_bars > 0
                    and bar - entry_bar[a] >= max_holding_bars
                ):
                    side = 1.0 if held > 0.0 else -1.0
                    reason = _MAX_HOLD
                    exit_price = close[i, a] * (1.0 - side * slippage)
                if reason != _NO_EXIT:
                    if n_trades >= capacity:
                        account[_CASH], account[_LAST_EQUITY] = cash, last_equity
                        return n_trades, _TRADES_BUFFER_FULL
                    cash += close_position_nb(
                        trades_out[n_trades], a, bar, exit_price, reason, commission, units,
                        entry_price, entry_bar, entry_fee, stop_price, take_price,
                        open_decision_id,
                    )  # fmt: skip
                    n_trades += 1
                    n_open -= 1

        # 4. Equity at the close (units are negative for shorts).
        equity = cash
        if n_open > 0:
            for a in range(n_assets):
                held = units[a]
                if held != 0.0:
                    equity += held * close[i, a]
        equity_out[i] = equity
        open_positions_out[i] = n_open
        last_equity = equity

        # 5. This bar's decisions fill at the next open.
        for a in range(n_assets):
            d = direction[i, a]
            if d != 0:
                pending_direction[a] = d
                pending_size[a] = size[i, a]
                pending_stop_loss[a] = stop_loss[i, a]
                pending_take_profit[a] = take_profit[i, a]
                pending_decision_id[a] = decision_id[i, a]
                n_pending += 1

    if close_at_end and n_bars > 0:
        last = n_bars - 1
        for a in range(n_assets):
            held = units[a]
            if held == 0.0:
                continue
            if n_trades >= capacity:
                account[_CASH], account[_LAST_EQUITY] = cash, last_equity
                return n_trades, _TRADES_BUFFER_FULL
            side = 1.0 if held > 0.0 else -1.0
            cash += close_position_nb(
                trades_out[n_trades], a, bar_offset + last,
                close[last, a] * (1.0 - side * slippage), _END, commission, units,
                entry_price, entry_bar, entry_fee, stop_price, take_price, open_decision_id,
            )  # fmt: skip
            n_trades += 1
        for a in range(n_assets):
            pending_direction[a] = 0
            pending_size[a] = 0.0
            pending_stop_loss[a] = np.nan
            pending_take_profit[a] = np.nan
            pending_decision_id[a] = -1
        equity_out[last] = cash
        open_positions_out[last] = 0
        last_equity = cash

    account[_CASH] = cash
    account[_LAST_EQUITY] = last_equity
    return n_trades, _OK
