"""Risk and costs: exits by reason, what the risk manager refused or resized (per chunk
and for the whole period), what trading cost, and the monitor's parameter changes."""

from __future__ import annotations

from typing import Any

from backtester.report._format import absent, cell, section, table, text
from backtester.report._load import Run

KINDS = (("exits", "Exits"), ("refused", "Entries refused"), ("resized", "Entries resized"))


def risk_section(run: Run) -> str:
    summary = run.summary
    chunks = summary.get("chunks") or []
    parts = []
    if not any("risk" in c for c in chunks):
        parts.append(absent("Exits and risk manager counts"))
    else:
        total = summary.get("risk") or {}
        for kind, title in KINDS:
            reasons = sorted({r for c in chunks for r in (c.get("risk") or {}).get(kind, {})})
            parts.append(f"<h3>{title} by reason</h3>")
            if not reasons:
                parts.append(f"<p class=\"note\">{title}: none.</p>")
                continue
            rows = [f'<tr data-chunk="{text(c.get("label", ""))}" data-kind="{kind}">'
                    f'<th>{text(c.get("label", "-"))}</th>'
                    + "".join(cell((c.get("risk") or {}).get(kind, {}).get(r, 0), "trades",
                                   f'data-field="{text(r)}"') for r in reasons) + "</tr>"
                    for c in chunks]
            footer = (f'<tr data-row="overall" data-kind="{kind}"><th>Whole period</th>'
                      + "".join(cell(total.get(kind, {}).get(r, 0), "trades",
                                     f'data-field="{text(r)}"') for r in reasons) + "</tr>")
            parts.append(table(["Chunk"] + [text(r) for r in reasons], rows, footer,
                               "numbers"))
    parts.append("<h3>Costs</h3>")
    parts.append(_costs(run))
    parts.append("<h3>Parameter changes</h3>")
    parts.append(_changes(summary.get("parameter_changes")))
    return section("risk", "Risk and costs", "".join(parts))


def _costs(run: Run) -> str:
    trades = run.trades
    if trades is None or "fees" not in trades:
        return absent("Trade costs")
    fees = float(trades["fees"].sum())
    funding = float(trades["funding"].sum()) if "funding" in trades else 0.0
    gross = float(trades["pnl"].sum()) + fees + funding
    rows = [f'<tr data-field="{key}"><th>{label}</th>{cell(value, "pnl", signed=True)}</tr>'
            for key, label, value in (("gross_pnl", "Gross PnL (before costs)", gross),
                                      ("fees", "Fees (maker and taker)", -fees),
                                      ("funding", "Borrow and funding", -funding),
                                      ("net_pnl", "Net PnL", gross - fees - funding))]
    return table(["", "Amount"], rows, table_class="numbers")


def _changes(changes: Any) -> str:
    if not changes:
        return '<p class="note">The monitor changed no parameter during this run.</p>'
    rows = [f'<tr data-chunk="{text(c.get("chunk", ""))}"><th>{text(c.get("chunk", "-"))}</th>'
            f'<td>{text(c.get("parameter", ""))}</td><td>{text(_number(c.get("old")))}</td>'
            f'<td>{text(_number(c.get("new")))}</td><td>{text(c.get("reason", ""))}</td></tr>'
            for c in changes if isinstance(c, dict)]
    return (table(["After chunk", "Parameter", "From", "To", "Reason"], rows)
            + '<p class="note">A change made after a chunk applies from the next chunk.</p>')


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
