"""Numba helpers of the portfolio rules: entry sizing checks and the correlation test.

Same contract as ``kernels.py``: NumPy arrays and Numba scalars only, no allocation, no
exception. Every refusal or resize is counted in ``risk_out`` (rows ``records.RISK_*``,
columns refused / resized).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from backtester.engine.fills import market_fill_nb
from backtester.engine.records import (
    ASSET_LOT_SIZE,
    PARAM_CASH_ONLY,
    PARAM_CORRELATION_REFUSE,
    PARAM_CORRELATION_THRESHOLD,
    PARAM_CORRELATION_WINDOW,
    PARAM_HAS_LOT_SIZE,
    PARAM_IMPACT,
    PARAM_IMPACT_EXPONENT,
    PARAM_MAX_GROSS_EXPOSURE,
    PARAM_MAX_PARTICIPATION,
    PARAM_MAX_SYMBOL_EXPOSURE,
    PARAM_TAKER_FEE,
    RISK_CASH,
    RISK_CORRELATION,
    RISK_GROSS_EXPOSURE,
    RISK_LOT_SIZE,
    RISK_PARTICIPATION,
    RISK_REFUSED,
    RISK_RESIZED,
    RISK_SYMBOL_EXPOSURE,
)

# Quantities within this relative distance below a whole number of lots round up to it,
# so that 0.3 units in lots of 0.1 stay 3 lots despite binary floating point.
LOT_TOLERANCE = 1e-9


@njit(cache=True, error_model="numpy", _nrt=False)
def correlation_nb(history, count, position, a, b):
    """Pearson correlation of assets a and b's log close-to-close returns in the ring.

    ``history`` holds the last ``window + 1`` closes (rows), ``position`` is the row of
    the oldest once full; NaN until ``count`` reaches ``window + 1`` or when a series is
    constant.
    """
    rows = history.shape[0]
    window = rows - 1
    if window < 2 or count < rows:
        return np.nan
    sum_a = 0.0
    sum_b = 0.0
    for k in range(window):
        older = (position + k) % rows
        newer = (position + k + 1) % rows
        sum_a += math.log(history[newer, a] / history[older, a])
        sum_b += math.log(history[newer, b] / history[older, b])
    mean_a = sum_a / window
    mean_b = sum_b / window
    cov = 0.0
    var_a = 0.0
    var_b = 0.0
    for k in range(window):
        older = (position + k) % rows
        newer = (position + k + 1) % rows
        da = math.log(history[newer, a] / history[older, a]) - mean_a
        db = math.log(history[newer, b] / history[older, b]) - mean_b
        cov += da * db
        var_a += da * da
        var_b += db * db
    if var_a <= 0.0 or var_b <= 0.0:
        return np.nan
    return cov / math.sqrt(var_a * var_b)


@njit(cache=True, error_model="numpy", _nrt=False)
def size_entry_nb(
    i, a, d, quantity, fill, open_, volume, params, asset_params, units, history,
    history_count, history_position, last_equity, cash, risk_out,
):  # fmt: skip
    """Apply the sizing rules to an entry of ``quantity`` units at ``fill``; return both.

    Checks in this order: correlation with open positions in the same direction (scale
    or refuse), symbol exposure (resize), gross exposure valued at this bar's open
    (resize or refuse), participation in the bar's volume (resize, refused on no volume),
    impact (worsens the fill, quantity kept), cash (long entries; resize), lot size
    (round down, refused at 0). A refusal returns quantity 0.
    """
    window = int(params[PARAM_CORRELATION_WINDOW])
    if window > 0:
        rho_max = -np.inf
        for b in range(units.shape[0]):
            if b != a and units[b] * d > 0.0:
                rho = correlation_nb(history, history_count, history_position, a, b)
                if rho > rho_max:
                    rho_max = rho
        threshold = params[PARAM_CORRELATION_THRESHOLD]
        if rho_max > threshold:
            factor = (1.0 - rho_max) / (1.0 - threshold)
            if params[PARAM_CORRELATION_REFUSE] > 0.0 or factor <= 0.0:
                risk_out[RISK_CORRELATION, RISK_REFUSED] += 1
                return 0.0, fill
            quantity *= factor
            risk_out[RISK_CORRELATION, RISK_RESIZED] += 1

    limit = params[PARAM_MAX_SYMBOL_EXPOSURE]
    if limit > 0.0 and quantity * fill > limit * last_equity:
        quantity = limit * last_equity / fill
        risk_out[RISK_SYMBOL_EXPOSURE, RISK_RESIZED] += 1

    limit = params[PARAM_MAX_GROSS_EXPOSURE]
    if limit > 0.0:
        room = limit * last_equity
        for b in range(units.shape[0]):
            if units[b] != 0.0:
                room -= abs(units[b]) * open_[i, b]
        if room <= 0.0:
            risk_out[RISK_GROSS_EXPOSURE, RISK_REFUSED] += 1
            return 0.0, fill
        if quantity * fill > room:
            quantity = room / fill
            risk_out[RISK_GROSS_EXPOSURE, RISK_RESIZED] += 1

    impact = params[PARAM_IMPACT]
    participation = params[PARAM_MAX_PARTICIPATION]
    if participation > 0.0 or impact > 0.0:
        bar_volume = volume[i, a]
        if not bar_volume > 0.0:
            risk_out[RISK_PARTICIPATION, RISK_REFUSED] += 1
            return 0.0, fill
        if participation > 0.0 and quantity > participation * bar_volume:
            quantity = participation * bar_volume
            risk_out[RISK_PARTICIPATION, RISK_RESIZED] += 1
        if impact > 0.0:
            exponent = params[PARAM_IMPACT_EXPONENT]
            fill = market_fill_nb(fill, float(d), quantity, 0.0, 0.0, impact, exponent, bar_volume)

    if params[PARAM_CASH_ONLY] > 0.0 and d > 0:
        cost = fill * (1.0 + params[PARAM_TAKER_FEE])
        if cash <= 0.0:
            risk_out[RISK_CASH, RISK_REFUSED] += 1
            return 0.0, fill
        if quantity * cost > cash:
            quantity = cash / cost
            risk_out[RISK_CASH, RISK_RESIZED] += 1

    if params[PARAM_HAS_LOT_SIZE] > 0.0:
        lot = asset_params[a, ASSET_LOT_SIZE]
        if lot > 0.0:
            lots = math.floor(quantity / lot * (1.0 + LOT_TOLERANCE))
            rounded = lots * lot
            if rounded <= 0.0:
                risk_out[RISK_LOT_SIZE, RISK_REFUSED] += 1
                return 0.0, fill
            quantity = rounded  # rounding to whole lots is not counted as a resize
    return quantity, fill
