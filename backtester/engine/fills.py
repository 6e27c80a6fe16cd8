"""Numba helpers pricing fills: market fills (slippage, spread, impact) and carry costs.

Same contract as ``kernels.py``: NumPy arrays and Numba scalars only, no allocation, no
exception; ``simulate_nb`` calls them (compiled, also from its pure-Python body).

Market impact follows the square-root law of metaorder impact: the price moves against
the order by ``impact * (quantity / volume) ** impact_exponent`` (exponent 0.5), see
Almgren, Thum, Hauptmann and Li, "Direct estimation of equity market impact", Risk
(2005), and Toth et al., "Anomalous price impact and the critical nature of liquidity in
financial markets", Physical Review X 1, 021006 (2011).
"""

from __future__ import annotations

from numba import njit

from backtester.engine.records import ASSET_BORROW_RATE, ASSET_FUNDING_RATE

# Carry rates are annual; elapsed time is in nanoseconds.
YEAR_NS = 365.0 * 86_400.0 * 1e9


@njit(cache=True, error_model="numpy", _nrt=False)
def market_fill_nb(price, side, quantity, slippage, half_spread, impact, exponent, volume):
    """Fill price of a market order of ``quantity`` units, ``side`` +1 buying, -1 selling.

    Adverse by ``slippage + half_spread``, then by the impact of taking ``quantity`` out
    of the bar's ``volume`` (none when ``impact`` is 0 or the volume is 0).
    """
    fill = price * (1.0 + side * (slippage + half_spread))
    if impact > 0.0 and volume > 0.0:
        fill *= 1.0 + side * impact * (quantity / volume) ** exponent
    return fill


@njit(cache=True, error_model="numpy", _nrt=False)
def charge_carry_nb(open_, i, elapsed_ns, units, funding, asset_params):
    """Charge borrow (shorts) and funding (longs) for ``elapsed_ns`` to open positions.

    Each position pays ``|units| * open * annual rate * elapsed / 365 days`` (negative =
    received); the charge accumulates in ``funding`` per asset. Return the total paid.
    """
    total = 0.0
    for a in range(units.shape[0]):
        held = units[a]
        if held == 0.0:
            continue
        column = ASSET_FUNDING_RATE if held > 0.0 else ASSET_BORROW_RATE
        rate = asset_params[a, column]
        if rate == 0.0:
            continue
        charge = abs(held) * open_[i, a] * rate * elapsed_ns / YEAR_NS
        funding[a] += charge
        total += charge
    return total


@njit(cache=True, error_model="numpy", _nrt=False)
def exit_fill_nb(price, held, i, a, slippage, half_spread, has_spread, spread, impact, exponent,
                 has_volume, volume):
    """Market exit of a position of ``held`` units (signed) at ``price`` on bar i, asset a."""
    side = -1.0 if held > 0.0 else 1.0
    return market_fill_nb(
        price, side, abs(held), slippage, spread[i, a] * 0.5 if has_spread else half_spread,
        impact, exponent, volume[i, a] if has_volume else 0.0,
    )
