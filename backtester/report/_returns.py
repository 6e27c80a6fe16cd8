"""How the returns were spread: monthly returns, rolling Sharpe ratio, the distribution of
trade returns, and the worst drawdowns (calendar views from `backtester.returns`)."""

from __future__ import annotations

import math

import numpy as np

from backtester.returns import drawdown_periods, monthly_returns, rolling_sharpe
from backtester.metrics import periods_per_year
from backtester.report._format import (
    absent,
    field,
    format_value,
    section,
    table,
    text,
    time_text,
)
from backtester.report._load import Run, nanoseconds
from backtester.report._svg import histogram_chart, time_chart

ROLLING_DAYS = 30.0
"""The rolling Sharpe window spans about this many days of bars."""
WORST_DRAWDOWNS = 5
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def returns_section(run: Run) -> str:
    """Monthly returns and rolling Sharpe from the equity curve, trade returns from the
    trades; one "not recorded" line for each file the run lacks."""
    curve = _curve(run)
    if curve is None and run.trades is None:
        return section("returns", "Returns", absent("Equity curve and trades"))
    parts = []
    if curve is None:
        parts.append(absent("Equity curve (monthly returns, rolling Sharpe ratio)"))
    else:
        parts += ["<h3>Monthly returns</h3>", _monthly_table(*curve),
                  "<h3>Rolling Sharpe ratio</h3>", _rolling_sharpe(*curve)]
    parts += ["<h3>Trade returns</h3>", _histogram(run)]
    return section("returns", "Returns", "".join(parts))


def drawdowns_section(run: Run) -> str:
    curve = _curve(run)
    if not curve:
        return section("drawdowns", "Worst drawdowns", absent("Equity curve"))
    times, equity, initial = curve
    periods = drawdown_periods(times, equity, initial, top=WORST_DRAWDOWNS)
    if not periods:
        return section("drawdowns", "Worst drawdowns",
                       '<p class="absent">The equity never closed below its running peak.</p>')
    rows = []
    for rank, period in enumerate(periods, start=1):
        start, trough, recovery = period["start"], period["trough"], period["recovery"]
        end = recovery if recovery is not None else int(times[-1])
        back = text(time_text(_stamp(recovery))) if recovery is not None else "not recovered"
        rows.append(f'<tr data-rank="{rank}"><th>{rank}</th>'
                    f'<td data-field="start">{text(time_text(_stamp(start)))}</td>'
                    f'<td data-field="trough">{text(time_text(_stamp(trough)))}</td>'
                    f'<td data-field="recovery">{back}</td>'
                    + field(period["depth"], "depth", signed=True)
                    + f"<td>{_days(trough - start)}</td><td>{_days(end - start)}"
                    f"{'' if recovery is not None else '+'}</td></tr>")
    headers = ["#", "Start (peak)", "Trough", "Recovery", "Depth", "Days to trough",
               "Days to recovery"]
    note = ('<p class="note">Start: the bar that set the peak; recovery: the first bar back at '
            'it ("+": still under water at the end of the run). Times in UTC.</p>')
    return section("drawdowns", "Worst drawdowns",
                   table(headers, rows, table_class="numbers drawdowns") + note)


def _curve(run: Run) -> tuple[np.ndarray, np.ndarray, float] | None:
    equity = run.equity
    if equity is None or len(equity) < 2:
        return None
    values = equity["equity"].to_numpy(dtype=np.float64)
    initial = run.initial_equity if run.initial_equity and run.initial_equity > 0 else None
    if initial is None:
        initial = float(values[0]) if values[0] > 0 else None
    if initial is None:
        return None
    return nanoseconds(equity["time"]), values, float(initial)


def _stamp(ns: int | None) -> np.datetime64 | None:
    return None if ns is None else np.datetime64(int(ns), "ns")


def _days(ns: int) -> str:
    return f"{ns / 86_400e9:,.1f}"


def _monthly_table(times: np.ndarray, equity: np.ndarray, initial: float) -> str:
    table_ = monthly_returns(times, equity, initial)
    if not len(table_):
        return absent("Monthly returns")
    values = table_.to_numpy(dtype=np.float64)
    scale = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    rows = []
    for year, months in zip(table_.index.tolist(), values):
        year_return = float(np.prod(1.0 + months[np.isfinite(months)]) - 1.0) \
            if np.isfinite(months).any() else None
        cells = "".join(_heat_cell(v, scale, f'data-year="{year}" data-month="{m}"')
                        for m, v in enumerate(months.tolist(), start=1))
        rows.append(f'<tr data-year="{year}"><th>{year}</th>{cells}'
                    + _heat_cell(year_return, None, f'data-year="{year}" data-month="year"',
                                 "year") + "</tr>")
    note = ('<p class="note">Each month\'s compounded return (UTC months), from the last bar '
            "of the month before (the first month from the initial equity); colour depth "
            "follows the size of the return. The year column compounds its months.</p>")
    return table(["Year", *_MONTHS, "Year"], rows, table_class="numbers heatmap") + note


def _heat_cell(value: float | None, scale: float | None, attributes: str,
               css: str = "") -> str:
    shown = text(format_value(value, "monthly_return"))
    if value is None or not math.isfinite(value):
        return f'<td class="{css}" {attributes}>{shown}</td>'.replace(' class=""', "")
    style = ""
    if scale:
        strength = 0.12 + 0.68 * min(abs(value) / scale, 1.0)
        rgb = "19,115,51" if value > 0 else "179,38,30"
        style = f' style="background:rgba({rgb},{strength:.2f})"' if value else ""
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}{style} {attributes}>{shown}</td>"


def _rolling_sharpe(times: np.ndarray, equity: np.ndarray, initial: float) -> str:
    n = equity.size
    if n < 8 or times[-1] <= times[0]:
        return absent("Rolling Sharpe ratio (too few bars)")
    ppy = periods_per_year(times)
    window = max(2, round(ppy * ROLLING_DAYS / 365.25))
    shortened = window > n // 4
    window = max(2, min(window, n // 4))
    previous = np.concatenate(([initial], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(previous > 0, equity / previous - 1.0, np.nan)
    sharpe = rolling_sharpe(returns, window, ppy)
    shown = np.flatnonzero(np.isfinite(sharpe))
    if shown.size < 2:
        return absent("Rolling Sharpe ratio (no full window with varying returns)")
    first = int(shown[0])
    days = window / ppy * 365.25
    label = (f"Rolling Sharpe ratio over {window:,} bars (about {days:,.1f} days), annualised "
             f"with {ppy:,.0f} bars a year")
    chart = time_chart(times[first:], sharpe[first:], [], height=200, reference=0.0,
                       label=label, tick_text=lambda tick: f"{tick:,.1f}")
    note = (f'<p class="note" data-field="rolling_window" data-window="{window}">Window: '
            f"{window:,} bars, about {days:,.1f} days"
            + (f" (shortened from {ROLLING_DAYS:g} days: the run holds {n:,} bars)"
               if shortened else "") + ". Each point is the Sharpe ratio of the bar returns "
            "in the window ending there, computed like the run's Sharpe.</p>")
    return chart + note


def _histogram(run: Run) -> str:
    trades = run.trades
    if trades is None:
        return absent("Trades")
    returns = trades["return_pct"].to_numpy(dtype=np.float64)
    returns = returns[np.isfinite(returns)]
    if not returns.size:
        return '<p class="absent">No closed trades.</p>'
    edges = _bin_edges(float(returns.min()), float(returns.max()))
    counts, _ = np.histogram(returns, bins=edges)
    width = float(edges[1] - edges[0])
    decimals = max(0, -math.floor(math.log10(width * 100)) + (0 if _round(width) else 1))

    def edge_text(value: float) -> str:
        return f"{value * 100 + 0.0:+.{decimals}f}%"

    label = f"Return of each closed trade ({returns.size:,} trades)"
    chart = histogram_chart(edges, counts, label=label, edge_text=edge_text)
    wins = int(np.count_nonzero(returns > 0))
    note = (f'<p class="note" data-field="trade_returns" data-count="{returns.size}">Bins of '
            f"{width * 100:.{decimals}f} points; mean "
            f"{format_value(float(returns.mean()), 'return_pct')}, median "
            f"{format_value(float(np.median(returns)), 'return_pct')}; {wins:,} above zero, "
            f"{returns.size - wins:,} at or below. Red bins lose, green bins gain.</p>")
    return chart + note


def _round(width: float) -> bool:
    """Whether a bin width is a whole power of ten (its edges need no extra decimal)."""
    mantissa = width / 10.0 ** math.floor(math.log10(width))
    return abs(mantissa - round(mantissa)) < 1e-9 and round(mantissa) in (1, 2, 5)


def _bin_edges(low: float, high: float, target: int = 40) -> np.ndarray:
    """Edges at multiples of a round width (so zero is an edge), about ``target`` bins."""
    span = high - low
    if span <= 0:
        span = abs(high) * 0.1 or 0.001
        low, high = low - span / 2, high + span / 2
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    width = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(low / width), math.ceil(high / width)
    if last == first:  # numpy's last bin holds its right edge
        last += 1
    return np.arange(first, last + 1, dtype=np.float64) * width
