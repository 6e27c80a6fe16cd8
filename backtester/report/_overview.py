"""The run at a glance: headline figures, the equity and drawdown charts, the chunks
table and the per-symbol results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backtester.metrics import METRIC_NAMES
from backtester.report._format import (
    METRIC_LABELS,
    SIGNED_PCT,
    absent,
    cell,
    field,
    format_value,
    section,
    sign_class,
    table,
    text,
    time_text,
)
from backtester.report._load import Run, nanoseconds
from backtester.report._svg import MAX_CHART_POINTS, Band, time_chart

HEADLINE = (("total_return", "Total return"), ("cagr", "CAGR"), ("sharpe", "Sharpe"),
            ("sortino", "Sortino"), ("max_drawdown", "Max drawdown"), ("trades", "Trades"),
            ("win_rate", "Win rate"), ("profit_factor", "Profit factor"),
            ("final_equity", "Final equity"))
DECISION_HASH_NOTE = (
    "the config hash of the settings that shape decisions (not the period, the results "
    "folder or the memory folder and mode), the end of the run id; <kbd>bt memory "
    "inspect</kbd> shows the hash its memory folder was created under, which is this one "
    "whenever this run read the memory (learn or frozen) and may differ after a run with "
    "the memory off, with another <kbd>--memory-dir</kbd>, or once the folder was started "
    "again under another config")
"""Why the report's hash may differ from `bt memory inspect`'s (which shows the memory's)."""
_MEMORY_MODES = {"learn": "learn (reads and updates the memory)",
                 "frozen": "frozen (reads the memory, writes nothing)",
                 "off": "off (no memory)"}


def summary_section(run: Run) -> str:
    summary = run.summary
    overall = summary.get("overall") or {}
    period = summary.get("period") or {}
    symbols = summary.get("symbols") or []
    config_hash = str(summary.get("config_hash", "-"))
    facts = [
        ("Period", f"{text(time_text(period.get('start')))} to "
                   f"{text(time_text(period.get('end')))} (end exclusive, UTC)"),
        ("Symbols", text(", ".join(map(str, symbols)) or "-")),
        ("Decision hash", f'<code title="{text(config_hash)}">{text(config_hash[:8])}</code> '
                          f"<small>{DECISION_HASH_NOTE}</small>"),
        ("Chunks", text(len(summary.get("chunks") or []))),
        ("Learning", {True: "on", False: "off"}.get(summary.get("learning"), "-")),
    ]
    mode = summary.get("memory_mode")
    if mode is not None:
        facts.append(("Memory mode", f'<span data-field="memory_mode">'
                                     f"{text(_MEMORY_MODES.get(str(mode), mode))}</span>"))
    if summary.get("in_sample") is True:
        facts.append(("Evaluation", '<strong class="neg" data-field="in_sample">in-sample: the '
                                    "memory learned from this period</strong>"))
    facts.append(("Initial equity", text(format_value(run.initial_equity, "final_equity"))))
    cards = "".join(
        f'<div class="card"><div class="label">{label}</div><div class="value">'
        f"<span{sign_class(overall.get(name)) if name in SIGNED_PCT else ''} "
        f'data-metric="{name}">{text(format_value(overall.get(name), name))}</span></div></div>'
        for name, label in HEADLINE)
    fact_list = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    sentence = (run.books_summary.get("significance") or {})
    sentence = sentence.get("sentence") if isinstance(sentence, dict) else None
    verdict = (f'<p class="verdict">{text(sentence)}</p>' if isinstance(sentence, str)
               and sentence else "")
    return (f'<header id="summary">\n<h1>bt run <span class="run-id">'
            f"{text(summary.get('run_id', run.folder.name))}</span></h1>\n"
            f'<dl class="facts">{fact_list}</dl>\n<div class="cards">{cards}</div>\n'
            f"{verdict}</header>")


def equity_section(run: Run) -> str:
    equity = run.equity
    if equity is None or not len(equity):
        return section("equity", "Equity and drawdown", absent("Equity curve"))
    times = nanoseconds(equity["time"])
    values = equity["equity"].to_numpy(dtype=np.float64)
    start = run.initial_equity if run.initial_equity is not None else values[0]
    peak = np.maximum.accumulate(np.concatenate(([start], values)))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, values / peak - 1.0, np.nan)
    bands = chunk_bands(run.summary.get("chunks") or [], times)
    equity_chart = time_chart(times, values, bands, height=320, reference=start,
                              label=f"Equity (dashed: initial {format_value(start, 'pnl')})",
                              tick_text=lambda tick: f"{tick:,.0f}", labels_on_top=True)
    drawdown_chart = time_chart(times, drawdown, bands, height=170, reference=0.0,
                                label="Drawdown", area=True,
                                tick_text=lambda tick: format_value(tick, "max_drawdown"))
    note = (f'<p class="note">{len(values):,} bars; drawn with at most {MAX_CHART_POINTS:,} '
            "points per line (each stretch keeps its low and its high). Shaded bands are "
            "chunks; hover for their return.</p>")
    return section("equity", "Equity and drawdown", equity_chart + drawdown_chart + note)


def chunk_bands(chunks: list[dict[str, Any]], times: np.ndarray) -> list[Band]:
    """One shaded band per chunk, from its start to the next chunk's start (or the end)."""
    starts = []
    for chunk in chunks:
        try:
            stamp = pd.Timestamp(chunk.get("start"))
        except (ValueError, TypeError):
            return []
        if pd.isna(stamp):
            return []
        starts.append(stamp.as_unit("ns").value)
    bands = []
    for k, chunk in enumerate(chunks):
        stop = starts[k + 1] if k + 1 < len(chunks) else int(times[-1])
        metrics = chunk.get("metrics") or {}
        tooltip = (f"{chunk.get('label', k)}: return "
                   f"{format_value(metrics.get('total_return'), 'total_return')}, "
                   f"{format_value(metrics.get('trades'), 'trades')} trades")
        bands.append(Band(starts[k], stop, str(chunk.get("label", k)), tooltip))
    return bands


RISK_METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
                "max_drawdown_bars", "max_drawdown_duration_days", "calmar", "final_equity")
"""The chunks' first table (returns and risk); every other metric goes to the second."""


def chunks_section(summary: dict[str, Any]) -> str:
    """Two tables, one row per chunk and the whole period in the footer: returns and risk
    (with the chunk's dates), then bars, decisions and trades."""
    chunks = summary.get("chunks") or []
    if not chunks:
        return section("chunks", "Chunks", absent("Chunks"))
    overall = summary.get("overall") or {}
    names = _metric_names([c.get("metrics") or {} for c in chunks] + [overall])
    risk = [n for n in names if n in RISK_METRICS]
    trading = [n for n in names if n not in RISK_METRICS]
    totals = {k: sum(c.get(k) or 0 for c in chunks) for k in ("bars", "candidates", "decisions")}
    whole = {"label": "Whole period", "start": chunks[0].get("start"),
             "end": chunks[-1].get("end"), **totals}
    tables = []
    for counts, metrics, dates in (((), risk, True),
                                   (("bars", "candidates", "decisions"), trading, False)):
        headers = ["Chunk"] + (["Start", "End"] if dates else []) + [
            _label(n) for n in counts] + [_label(n) for n in metrics]

        def row(record: dict[str, Any], values: dict[str, Any], attribute: str) -> str:
            return (f"<tr {attribute}><th>{text(record.get('label', '-'))}</th>"
                    + (_date_cell(record.get("start")) + _date_cell(record.get("end"))
                       if dates else "")
                    + "".join(cell(record.get(k), k) for k in counts)
                    + "".join(cell(values.get(n), n) for n in metrics) + "</tr>")

        rows = [row(c, c.get("metrics") or {}, f'data-chunk="{text(c.get("label", ""))}"')
                for c in chunks]
        tables.append(table(headers, rows, row(whole, overall, 'data-row="overall"'),
                            "numbers chunks"))
    return section("chunks", "Chunks", "<h3>Returns and risk</h3>" + tables[0]
                   + "<h3>Bars, decisions and trades</h3>" + tables[1])


def _label(name: str) -> str:
    return f'<span title="{text(name)}">{text(METRIC_LABELS.get(name, name.capitalize()))}</span>'


def _date_cell(value: Any) -> str:
    """A time as 'YYYY-MM-DD HH:MM' that may break between date and time."""
    return f'<td class="when">{text(time_text(value))}</td>'


def _metric_names(dicts: list[dict[str, Any]]) -> list[str]:
    seen = {k for d in dicts for k in d}
    return [n for n in METRIC_NAMES if n in seen] + sorted(seen.difference(METRIC_NAMES))


def symbols_section(run: Run) -> str:
    trades = run.trades
    if trades is None:
        return section("symbols", "Per symbol", absent("Trades"))
    rows = [_symbol_row(f'data-symbol="{text(s)}"', text(s),
                        trades[trades["symbol"].astype(str) == s], run.initial_equity)
            for s in run_symbols(run)]
    footer = _symbol_row('data-row="total"', "All", trades, run.initial_equity)
    headers = ["Symbol", "Trades", "Long", "Short", "Win rate", "PnL", "Fees", "Avg trade",
               '<span title="PnL / initial equity">Return</span>']
    note = ('<p class="note">From the trades table; return is the symbol\'s PnL over the '
            "initial equity, so the symbols' returns add up to the total.</p>")
    return section("symbols", "Per symbol", table(headers, rows, footer, "numbers") + note)


def run_symbols(run: Run) -> list[str]:
    """The run's symbols in metrics.json order, then any other symbol of the trades."""
    symbols = [str(s) for s in run.summary.get("symbols") or []]
    if run.trades is not None:
        symbols += sorted(set(map(str, run.trades["symbol"])).difference(symbols))
    return symbols


def _symbol_row(attribute: str, name: str, trades: pd.DataFrame,
                initial_equity: float | None) -> str:
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    count = len(trades)
    values = {
        "trades": count,
        "longs": int(np.count_nonzero(trades["direction"].to_numpy() > 0)),
        "shorts": int(np.count_nonzero(trades["direction"].to_numpy() < 0)),
        "win_rate": float(np.count_nonzero(pnl > 0)) / count if count else None,
        "pnl": float(pnl.sum()),
        "fees": float(trades["fees"].to_numpy(dtype=np.float64).sum()),
        "average_trade_return": float(trades["return_pct"].mean()) if count else None,
        "contribution": float(pnl.sum()) / initial_equity if initial_equity else None,
    }
    cells = "".join(field(v, k, signed=k == "pnl") for k, v in values.items())
    return f"<tr {attribute}><th>{name}</th>{cells}</tr>"
