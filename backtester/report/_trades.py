"""The trades themselves: a price chart per symbol with every entry and exit marked, the
trades table, and the config the run used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backtester.report._format import (
    absent,
    finite,
    format_value,
    section,
    sign_class,
    significant,
    table,
    text,
    time_text,
)
from backtester.report._load import TRADE_COLUMNS, Run, nanoseconds, numeric_column
from backtester.report._overview import run_symbols
from backtester.report._svg import MAX_CHART_POINTS, Marker, price_chart

MAX_TRADE_ROWS = 5000
"""Beyond this many trades the list shows the first and the last half of it."""


def prices_section(run: Run) -> str:
    prices = run.prices
    if prices is None or not len(prices):
        return section("prices", "Prices and trades", absent("Prices (prices.parquet)"))
    times = nanoseconds(prices["time"])
    symbols = [s for s in run_symbols(run) if s in prices.columns]
    symbols += [str(c) for c in prices.columns if c != "time" and str(c) not in symbols]
    parts = ['<p class="note">Close of every traded bar (at most '
             f"{MAX_CHART_POINTS:,} points per line, each stretch keeps its low and its high) "
             "and every trade, each mark at its fill price: "
             '<span class="key long">&#9650; long entry</span>, '
             '<span class="key short">&#9660; short entry</span>, '
             '<span class="key exit">&#9675; exit</span>. '
             "Hover a mark for its trade (the number is its row in the trades table).</p>"]
    for symbol in symbols:
        close = numeric_column(prices, symbol)
        if close is None:
            parts.append(absent(f"Prices of {text(symbol)}"))
            continue
        markers = _markers(run.trades, symbol)
        entries = sum(m.kind != "exit" for m in markers)
        label = (f"{symbol}: {entries:,} trades, "
                 f"{sum(m.kind == 'long' for m in markers):,} long and "
                 f"{sum(m.kind == 'short' for m in markers):,} short")
        parts.append(f'<div class="symbol-chart" data-symbol="{text(symbol)}">'
                     + price_chart(times, close, markers, height=260, label=label,
                                   tick_text=lambda tick: significant(tick, 4)) + "</div>")
    return section("prices", "Prices and trades", "".join(parts))


def _markers(trades: pd.DataFrame | None, symbol: str) -> list[Marker]:
    """An entry and an exit marker for every trade of ``symbol`` (``trade``: its row)."""
    if trades is None or not len(trades):
        return []
    rows = np.flatnonzero(trades["symbol"].astype(str).to_numpy() == symbol)
    if not rows.size:
        return []
    of = trades.iloc[rows]
    entry_times, exit_times = nanoseconds(of["entry_time"]), nanoseconds(of["exit_time"])
    long = pd.to_numeric(of["direction"], errors="coerce").to_numpy(dtype=np.float64) > 0
    entry_prices = pd.to_numeric(of["entry_price"], errors="coerce").to_numpy(dtype=np.float64)
    exit_prices = pd.to_numeric(of["exit_price"], errors="coerce").to_numpy(dtype=np.float64)
    entry_text, exit_text = _stamps(entry_times), _stamps(exit_times)
    returns = [format_value(v, "return_pct") for v in of["return_pct"].tolist()]
    reasons = of["exit_reason"].astype(str).tolist()
    markers = []
    for k, row in enumerate(rows.tolist()):
        side = "long" if long[k] else "short"
        markers.append(Marker(int(entry_times[k]), float(entry_prices[k]), side, row,
                              f"#{row + 1} {side} in {entry_text[k]} at "
                              f"{_price(entry_prices[k])}"))
        markers.append(Marker(int(exit_times[k]), float(exit_prices[k]), "exit", row,
                              f"#{row + 1} out {exit_text[k]} at {_price(exit_prices[k])}: "
                              f"{returns[k]}, {reasons[k]}"))
    return markers


def _stamps(nanos: np.ndarray) -> list[str]:
    return list(pd.DatetimeIndex(nanos.astype("datetime64[ns]")).strftime("%Y-%m-%d %H:%M"))


def trades_section(trades: pd.DataFrame | None) -> str:
    if trades is None:
        return section("trades", "Trades", absent("Trades"))
    count = len(trades)
    if count > MAX_TRADE_ROWS:
        half = MAX_TRADE_ROWS // 2
        shown = np.concatenate([np.arange(half), np.arange(count - half, count)])
        note = (f'<p class="note">{count:,} trades: showing the first {half:,} and the last '
                f"{half:,}; all of them are in trades.parquet.</p>")
    else:
        shown, note = np.arange(count), f'<p class="note">{count:,} trades.</p>'
    rows_of = trades.iloc[shown]
    extra = [c for c in trades.columns
             if c not in (*TRADE_COLUMNS, "entry_bar", "exit_bar", "decision_id", "regime")]
    columns = [
        [text(v) for v in rows_of["symbol"]],
        [text(_side(v)) for v in rows_of["direction"]],
        _time_column(rows_of["entry_time"]),
        _time_column(rows_of["exit_time"]),
        [_price(v) for v in rows_of["entry_price"]],
        [_price(v) for v in rows_of["exit_price"]],
        [_size(v) for v in rows_of["size"]],
        [f"<td{sign_class(v)}>{format_value(v, 'pnl')}</td>" for v in rows_of["pnl"]],
        [format_value(v, "return_pct") for v in rows_of["return_pct"]],
        [format_value(v, "fees") for v in rows_of["fees"]],
        [text(v) for v in rows_of["exit_reason"]],
    ]
    headers = ["#", "Symbol", "Side", "Entry (UTC)", "Exit (UTC)", "Entry price", "Exit price",
               "Size", "PnL", "Return", "Fees", "Exit reason"]
    if "regime" in trades.columns:
        columns.append([text(v) for v in rows_of["regime"]])
        headers.append("Regime")
    if "decision_id" in trades.columns:
        columns.append([f'<td class="id">{text(v)}</td>' for v in rows_of["decision_id"]])
        headers.append("Decision id")
    for name in extra:
        columns.append([text(format_value(v, name)) for v in rows_of[name]])
        headers.append(text(name))
    cells = ("".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
             for row in zip(*columns))
    rows = [f'<tr data-trade="{i}"><th>{i + 1}</th>{row}</tr>'
            for i, row in zip(shown.tolist(), cells)]
    if count > MAX_TRADE_ROWS:
        rows.insert(MAX_TRADE_ROWS // 2, f'<tr class="gap"><td colspan="{len(headers)}">&#8942; '
                                         f"{count - MAX_TRADE_ROWS:,} trades not shown</td></tr>")
    return section("trades", "Trades", note + table(headers, rows, table_class="trades"))


def _time_column(column: pd.Series) -> list[str]:
    try:
        index = pd.DatetimeIndex(column)
    except (TypeError, ValueError):
        return [text(time_text(v)) for v in column]
    if index.tz is not None:
        index = index.tz_convert("UTC")
    return [v if isinstance(v, str) else "-" for v in index.strftime("%Y-%m-%d %H:%M")]


def _side(direction: Any) -> str:
    return {1: "long", -1: "short"}.get(int(direction), str(direction)) \
        if finite(direction) else str(direction)


def _price(value: Any) -> str:
    return significant(float(value), 6, minimum_decimals=2) if finite(value) else "-"


def _size(value: Any) -> str:
    return significant(float(value), 6) if finite(value) else "-"


def config_section(config_text: str | None) -> str:
    body = (f"<pre>{text(config_text)}</pre>" if config_text is not None
            else absent("config.toml"))
    return section("config", "Config used", body)
