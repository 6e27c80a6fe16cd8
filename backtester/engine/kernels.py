"""Numba kernels of the event loop.

NumPy arrays and Numba types only: prices and decisions are 2-D (bars x assets), the
per-asset state is 1-D (assets,) and is updated in place, so a chunk continues exactly
where the previous one stopped. Kernels report business outcomes through status codes
(``records.SimulationStatus``) and never raise; inputs are checked in ``simulate.py``.

Compile options: ``cache=True`` (a second process loads the machine code from disk);
``error_model="numpy"`` (no Python exceptions from float arithmetic); ``_nrt=False``
(no reference counting: the kernels never allocate, Numba refuses to compile one that
does, and the cold compile is about 0.5 s shorter).

The portfolio rules (``rules.Rules``) reach the kernel packed: scalars in a float64
``params`` array (``records.PARAM_*``), per-asset ones in ``asset_params`` (assets x
``records.ASSET_*``). Optional per-bar inputs (volume, spread, times, days) are dummy
(1, 1) / (1,) arrays when absent, gated by the ``PARAM_HAS_*`` flags read once per call,
so that a run without rules pays for none of them. Small helpers live in ``fills.py``
(prices of fills, carry) and ``risk.py`` (entry sizing, correlation).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtester.engine.fills import charge_carry_nb, exit_fill_nb
from backtester.engine.records import (
    ACCOUNT_CASH,
    ACCOUNT_DAY_START_EQUITY,
    ACCOUNT_LAST_EQUITY,
    ACCOUNT_PEAK_EQUITY,
    CLOCK_DAY,
    CLOCK_DAY_HALTED,
    CLOCK_DRAWDOWN_HALTED_AT,
    CLOCK_HISTORY_COUNT,
    CLOCK_HISTORY_POSITION,
    CLOCK_LAST_TIME,
    NO_TIME,
    PARAM_CASH_ONLY,
    PARAM_CORRELATION_WINDOW,
    PARAM_DAILY_LOSS_LIMIT,
    PARAM_DRAWDOWN_RESET_BARS,
    PARAM_FLATTEN_ON_DAILY_LIMIT,
    PARAM_HALF_SPREAD,
    PARAM_HAS_CARRY,
    PARAM_HAS_DAYS,
    PARAM_HAS_LOT_SIZE,
    PARAM_HAS_SPREAD,
    PARAM_HAS_TIMES,
    PARAM_HAS_VOLUME,
    PARAM_IMPACT,
    PARAM_IMPACT_EXPONENT,
    PARAM_MAKER_FEE,
    PARAM_MAX_DRAWDOWN,
    PARAM_MAX_GROSS_EXPOSURE,
    PARAM_MAX_HOLDING_BARS,
    PARAM_MAX_OPEN_POSITIONS,
    PARAM_MAX_PARTICIPATION,
    PARAM_MAX_SYMBOL_EXPOSURE,
    PARAM_SLIPPAGE,
    PARAM_TAKE_PROFIT_MARGIN,
    PARAM_TAKER_FEE,
    RISK_DAILY_LOSS,
    RISK_DRAWDOWN,
    RISK_MAX_OPEN_POSITIONS,
    RISK_REFUSED,
    EXIT_DIRECTION,
    ExitReason,
    SimulationStatus,
)
from backtester.engine.risk import size_entry_nb

# Module constants, frozen into the compiled code. Exit reasons are int8 scalars (the
# dtype of trade_dt.exit_reason) rather than Python ints, so that Numba types them int8
# and compiles close_position_nb once instead of once per literal reason.
_NO_EXIT = np.int8(-1)
_STOP_LOSS = np.int8(ExitReason.STOP_LOSS)
_TAKE_PROFIT = np.int8(ExitReason.TAKE_PROFIT)
_MAX_HOLD = np.int8(ExitReason.MAX_HOLD)
_SIGNAL = np.int8(ExitReason.SIGNAL)
_END = np.int8(ExitReason.END)
_DAILY_LOSS = np.int8(ExitReason.DAILY_LOSS)
_EXIT = np.int8(ExitReason.EXIT)
_EXIT_DIRECTION = EXIT_DIRECTION
_OK = SimulationStatus.OK
_TRADES_BUFFER_FULL = SimulationStatus.TRADES_BUFFER_FULL
_NO_TIME = NO_TIME


@njit(cache=True, error_model="numpy", _nrt=False)
def close_position_nb(
    trade,
    asset,
    bar,
    exit_price,
    reason,
    fee_rate,
    units,
    entry_price,
    entry_bar,
    entry_fee,
    stop_price,
    take_price,
    open_decision_id,
    funding,
):
    """Close one asset's position at ``exit_price`` into record ``trade``; return the cash flow.

    ``trade`` is a ``trade_dt`` record (an element of the trades array); ``fee_rate`` is
    the exit fee (taker, or maker for a take-profit). The carry paid while open
    (``funding``, already out of cash) is recorded and taken from the pnl. Flattens the
    asset's state.
    """
    held = units[asset]  # signed: negative for a short
    size = abs(held)
    exit_fee = fee_rate * size * exit_price
    fees = entry_fee[asset] + exit_fee
    pnl = held * (exit_price - entry_price[asset]) - fees - funding[asset]
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
    trade["funding"] = funding[asset]
    trade["exit_reason"] = reason
    trade["decision_id"] = open_decision_id[asset]
    units[asset] = 0.0
    entry_price[asset] = np.nan
    entry_bar[asset] = -1
    entry_fee[asset] = 0.0
    stop_price[asset] = np.nan
    take_price[asset] = np.nan
    open_decision_id[asset] = -1
    funding[asset] = 0.0
    # Long: cash += units * price - fee. Short (units < 0): cash -= |units| * price + fee.
    return held * exit_price - exit_fee


@njit(cache=True, error_model="numpy", _nrt=False)
def close_all_nb(
    i, bar, reason, close, trades_out, n_trades, units, entry_price, entry_bar, entry_fee,
    stop_price, take_price, open_decision_id, funding, taker_fee, slippage, half_spread,
    has_spread, spread, impact, exponent, has_volume, volume,
):  # fmt: skip
    """Close every open position at row ``i``'s close (a market order: slippage, spread,
    impact, taker fee) with ``reason``; return (cash flow, trades written, buffer full)."""
    flow = 0.0
    for a in range(units.shape[0]):
        held = units[a]
        if held == 0.0:
            continue
        if n_trades >= trades_out.shape[0]:
            return flow, n_trades, True
        exit_price = exit_fill_nb(
            close[i, a], held, i, a, slippage, half_spread, has_spread, spread, impact,
            exponent, has_volume, volume,
        )  # fmt: skip
        flow += close_position_nb(
            trades_out[n_trades], a, bar, exit_price, reason, taker_fee, units, entry_price,
            entry_bar, entry_fee, stop_price, take_price, open_decision_id, funding,
        )  # fmt: skip
        n_trades += 1
    return flow, n_trades, False


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
    params,
    asset_params,
    volume,
    spread,
    times,
    days,
    close_at_end,
    bar_offset,
    account,
    clock,
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
    funding,
    history,
    equity_out,
    open_positions_out,
    trades_out,
    risk_out,
):
    """Replay bars x assets, filling decisions at the next open; return (n_trades, status).

    Per bar, in this order (each step loops the assets in column order):

    0. a new session day (``days[i]`` differs from the last one) records the equity at
       the last close as the day's start and lifts the daily halt; with ``times``, every
       open position pays borrow (short) or funding (long) of ``|units| * open * annual
       rate * (times[i] - previous bar's time) / 365 days`` out of cash;
    1. at the open, a pending decision opposite to the open position closes it (SIGNAL;
       market fill: slippage, half the spread, impact, taker fee);
    2. at the open, a pending decision on a flat asset opens a position, unless the day
       is halted by its loss limit, or new entries are halted by the drawdown limit, or
       ``max_open_positions`` are already open (refused). Its fill is ``open * (1 +
       direction * (slippage + half spread))`` and its quantity ``size * equity at the
       previous close / fill``, then ``risk.size_entry_nb`` applies correlation, symbol
       and gross exposure, participation, impact, cash and lot size, and the taker fee is
       paid. Entries earlier in the bar count as open for later ones. A decision in the
       direction of the open position is dropped;
    3. inside the bar, stop-loss / take-profit from high and low (a gap through either
       fills at the open; if both lie inside the range the stop is taken first), else
       the close when the position has been held ``max_holding_bars`` bars (MAX_HOLD).
       A take-profit fills at the target (maker fee) once the bar trades through it by
       ``take_profit_margin``; stops and max-hold are market fills (taker fee);
    4. equity at the close and the count of open positions are recorded; the drawdown
       halt starts when equity <= peak * (1 - max_drawdown) and lifts
       ``drawdown_reset_bars`` bars later, resetting the peak to that close's equity;
       equity <= day start * (1 - daily_loss_limit) halts entries for the day and, with
       ``flatten_on_daily_limit``, closes every position at this close (DAILY_LOSS,
       market fill) and restates the equity; the closes enter the correlation ring;
    5. this bar's decisions become pending for the next open.

    With ``close_at_end`` every position left is closed at the last close (END, market
    fill), the last equity is restated and pending decisions are dropped.
    ``account``, ``clock``, ``history`` and the per-asset state arrays are updated in
    place (partly, to be discarded, when the status is not OK); ``equity_out``,
    ``open_positions_out`` and ``trades_out`` are written, and the refusals / resizes
    of entries are added to ``risk_out`` (reasons x refused, resized).
    """
    n_bars, n_assets = close.shape
    capacity = trades_out.shape[0]
    taker_fee = params[PARAM_TAKER_FEE]
    maker_fee = params[PARAM_MAKER_FEE]
    slippage = params[PARAM_SLIPPAGE]
    half_spread = params[PARAM_HALF_SPREAD]
    margin_up = 1.0 + params[PARAM_TAKE_PROFIT_MARGIN]  # a long's target is traded through
    margin_down = 1.0 - params[PARAM_TAKE_PROFIT_MARGIN]
    impact = params[PARAM_IMPACT]
    exponent = params[PARAM_IMPACT_EXPONENT]
    max_holding_bars = int(params[PARAM_MAX_HOLDING_BARS])
    max_open_positions = int(params[PARAM_MAX_OPEN_POSITIONS])
    daily_loss_limit = params[PARAM_DAILY_LOSS_LIMIT]
    flatten = params[PARAM_FLATTEN_ON_DAILY_LIMIT] > 0.0
    max_drawdown = params[PARAM_MAX_DRAWDOWN]
    reset_bars = int(params[PARAM_DRAWDOWN_RESET_BARS])
    window = int(params[PARAM_CORRELATION_WINDOW])
    has_volume = params[PARAM_HAS_VOLUME] > 0.0
    has_spread = params[PARAM_HAS_SPREAD] > 0.0
    has_times = params[PARAM_HAS_TIMES] > 0.0
    has_days = params[PARAM_HAS_DAYS] > 0.0
    has_carry = params[PARAM_HAS_CARRY] > 0.0
    has_clock = has_days or has_times
    guarded = max_drawdown > 0.0 or daily_loss_limit > 0.0
    sizing = (
        window > 0
        or params[PARAM_MAX_SYMBOL_EXPOSURE] > 0.0
        or params[PARAM_MAX_GROSS_EXPOSURE] > 0.0
        or params[PARAM_MAX_PARTICIPATION] > 0.0
        or impact > 0.0
        or params[PARAM_CASH_ONLY] > 0.0
        or params[PARAM_HAS_LOT_SIZE] > 0.0
    )
    rows = history.shape[0]

    cash = account[ACCOUNT_CASH]
    last_equity = account[ACCOUNT_LAST_EQUITY]
    # The rules' own running values stay in ``account`` and ``clock`` (read and written
    # there, behind their flags): fewer values carried by the loop keep the fast path fast.
    # An int64 zero, not a literal 0: Numba would compile close_all_nb twice.
    n_trades = np.int64(0)
    n_open = 0
    n_pending = 0
    for a in range(n_assets):
        if units[a] != 0.0:
            n_open += 1
        if pending_direction[a] != 0:
            n_pending += 1

    for i in range(n_bars):
        bar = bar_offset + i

        if has_clock:
            # 0. Session day and carry.
            if has_days and days[i] != clock[CLOCK_DAY]:
                clock[CLOCK_DAY] = days[i]
                clock[CLOCK_DAY_HALTED] = 0
                account[ACCOUNT_DAY_START_EQUITY] = last_equity
            if has_times:
                last_time = clock[CLOCK_LAST_TIME]
                if has_carry and n_open > 0 and last_time != _NO_TIME:
                    elapsed = float(times[i] - last_time)
                    cash -= charge_carry_nb(open_, i, elapsed, units, funding, asset_params)
                clock[CLOCK_LAST_TIME] = times[i]

        if n_pending > 0:
            # 1. Opposite decisions and exits close the open position at this open
            #    (market order).
            for a in range(n_assets):
                d = pending_direction[a]
                held = units[a]
                if held != 0.0 and (d == _EXIT_DIRECTION or (d != 0 and held * d < 0.0)):
                    if n_trades >= capacity:
                        return n_trades, _TRADES_BUFFER_FULL
                    exit_price = exit_fill_nb(
                        open_[i, a], held, i, a, slippage, half_spread, has_spread, spread, impact,
                        exponent, has_volume, volume,
                    )  # fmt: skip
                    reason = _EXIT if d == _EXIT_DIRECTION else _SIGNAL
                    cash += close_position_nb(
                        trades_out[n_trades], a, bar, exit_price, reason, taker_fee, units,
                        entry_price, entry_bar, entry_fee, stop_price, take_price,
                        open_decision_id, funding,
                    )  # fmt: skip
                    n_trades += 1
                    n_open -= 1

            # 2. Pending decisions on flat assets open positions at this open (an exit
            #    opens nothing).
            for a in range(n_assets):
                d = pending_direction[a]
                if d == 0:
                    continue
                if units[a] == 0.0 and d != _EXIT_DIRECTION:
                    if clock[CLOCK_DAY_HALTED] != 0:
                        risk_out[RISK_DAILY_LOSS, RISK_REFUSED] += 1
                    elif clock[CLOCK_DRAWDOWN_HALTED_AT] >= 0:
                        risk_out[RISK_DRAWDOWN, RISK_REFUSED] += 1
                    elif max_open_positions > 0 and n_open >= max_open_positions:
                        risk_out[RISK_MAX_OPEN_POSITIONS, RISK_REFUSED] += 1
                    else:
                        costs = slippage + (spread[i, a] * 0.5 if has_spread else half_spread)
                        fill = open_[i, a] * (1.0 + d * costs)
                        quantity = pending_size[a] * last_equity / fill
                        if sizing and quantity > 0.0:
                            quantity, fill = size_entry_nb(
                                i, a, d, quantity, fill, open_, volume, params, asset_params,
                                units, history, clock[CLOCK_HISTORY_COUNT],
                                clock[CLOCK_HISTORY_POSITION], last_equity,
                                cash, risk_out,
                            )  # fmt: skip
                        if quantity > 0.0:  # no entry once equity is gone, or refused
                            fee = taker_fee * quantity * fill
                            held = d * quantity
                            cash -= held * fill + fee
                            units[a] = held
                            entry_price[a] = fill
                            entry_bar[a] = bar
                            entry_fee[a] = fee
                            funding[a] = 0.0
                            distance = pending_stop_loss[a]
                            stop = fill * (1.0 - d * distance) if distance > 0.0 else np.nan
                            stop_price[a] = stop
                            distance = pending_take_profit[a]
                            take = fill * (1.0 + d * distance) if distance > 0.0 else np.nan
                            take_price[a] = take
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
                exit_price = 0.0  # the take-profit price, or the market order's reference
                if held > 0.0:
                    through = take * margin_up
                    if price_open <= stop:
                        reason = _STOP_LOSS
                        exit_price = price_open
                    elif price_open >= through:
                        reason = _TAKE_PROFIT
                        exit_price = price_open
                    elif low[i, a] <= stop:
                        reason = _STOP_LOSS
                        exit_price = stop
                    elif high[i, a] >= through:
                        reason = _TAKE_PROFIT
                        exit_price = take
                else:
                    through = take * margin_down
                    if price_open >= stop:
                        reason = _STOP_LOSS
                        exit_price = price_open
                    elif price_open <= through:
                        reason = _TAKE_PROFIT
                        exit_price = price_open
                    elif high[i, a] >= stop:
                        reason = _STOP_LOSS
                        exit_price = stop
                    elif low[i, a] <= through:
                        reason = _TAKE_PROFIT
                        exit_price = take
                if (
                    reason == _NO_EXIT
                    and max_holding_bars > 0
                    and bar - entry_bar[a] >= max_holding_bars
                ):
                    reason = _MAX_HOLD
                    exit_price = close[i, a]
                if reason != _NO_EXIT:
                    if n_trades >= capacity:
                        return n_trades, _TRADES_BUFFER_FULL
                    fee_rate = maker_fee
                    if reason != _TAKE_PROFIT:  # a market order
                        fee_rate = taker_fee
                        exit_price = exit_fill_nb(
                            exit_price, held, i, a, slippage, half_spread, has_spread, spread,
                            impact, exponent, has_volume, volume,
                        )  # fmt: skip
                    cash += close_position_nb(
                        trades_out[n_trades], a, bar, exit_price, reason, fee_rate, units,
                        entry_price, entry_bar, entry_fee, stop_price, take_price,
                        open_decision_id, funding,
                    )  # fmt: skip
                    n_trades += 1
                    n_open -= 1

        # 4. Equity at the close (units are negative for shorts), then the limits on it.
        equity = cash
        if n_open > 0:
            for a in range(n_assets):
                held = units[a]
                if held != 0.0:
                    equity += held * close[i, a]
        if guarded:
            if max_drawdown > 0.0:
                if equity > account[ACCOUNT_PEAK_EQUITY]:
                    account[ACCOUNT_PEAK_EQUITY] = equity
                halted_at = clock[CLOCK_DRAWDOWN_HALTED_AT]
                if halted_at >= 0:
                    if reset_bars > 0 and bar - halted_at >= reset_bars:
                        clock[CLOCK_DRAWDOWN_HALTED_AT] = -1
                        account[ACCOUNT_PEAK_EQUITY] = equity
                elif equity <= account[ACCOUNT_PEAK_EQUITY] * (1.0 - max_drawdown):
                    clock[CLOCK_DRAWDOWN_HALTED_AT] = bar
            if (
                daily_loss_limit > 0.0
                and clock[CLOCK_DAY_HALTED] == 0
                and equity <= account[ACCOUNT_DAY_START_EQUITY] * (1.0 - daily_loss_limit)
            ):
                clock[CLOCK_DAY_HALTED] = 1
                if flatten and n_open > 0:
                    flow, n_trades, full = close_all_nb(
                        i, bar, _DAILY_LOSS, close, trades_out, n_trades, units, entry_price,
                        entry_bar, entry_fee, stop_price, take_price, open_decision_id,
                        funding, taker_fee, slippage, half_spread, has_spread, spread, impact,
                        exponent, has_volume, volume,
                    )  # fmt: skip
                    if full:
                        return n_trades, _TRADES_BUFFER_FULL
                    cash += flow
                    n_open = 0
                    equity = cash
        equity_out[i] = equity
        open_positions_out[i] = n_open
        last_equity = equity
        if window > 0:
            for a in range(n_assets):
                history[clock[CLOCK_HISTORY_POSITION], a] = close[i, a]
            clock[CLOCK_HISTORY_POSITION] = (clock[CLOCK_HISTORY_POSITION] + 1) % rows
            if clock[CLOCK_HISTORY_COUNT] < rows:
                clock[CLOCK_HISTORY_COUNT] += 1

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
        flow, n_trades, full = close_all_nb(
            last, bar_offset + last, _END, close, trades_out, n_trades, units, entry_price,
            entry_bar, entry_fee, stop_price, take_price, open_decision_id, funding, taker_fee,
            slippage, half_spread, has_spread, spread, impact, exponent, has_volume, volume,
        )  # fmt: skip
        if full:
            return n_trades, _TRADES_BUFFER_FULL
        cash += flow
        for a in range(n_assets):
            pending_direction[a] = 0
            pending_size[a] = 0.0
            pending_stop_loss[a] = np.nan
            pending_take_profit[a] = np.nan
            pending_decision_id[a] = -1
        equity_out[last] = cash
        open_positions_out[last] = 0
        last_equity = cash

    account[ACCOUNT_CASH] = cash
    account[ACCOUNT_LAST_EQUITY] = last_equity
    return n_trades, _OK
