"""What the ensemble learned and where it traded well: provider weights and statistics,
learning figures per chunk, results per regime for every book, LLM counters."""

from __future__ import annotations

from typing import Any

import numpy as np

from backtester.report._format import (
    absent,
    cell,
    field,
    finite,
    flatten,
    format_value,
    heading,
    ordered_keys,
    record_table,
    section,
    table,
    text,
)
from backtester.report._load import Run
from backtester.report._svg import weights_chart

REGIME_FIELDS = ("trades", "win_rate", "pnl", "return_contribution")
BOOK_LABELS = {"learned": "Learned", "equal_weight": "Equal weight",
               "learned_without_memory_vote": "Learned without memory vote",
               "buy_and_hold": "Buy and hold"}


def book_label(name: str) -> str:
    """A book's name for a reader ("equal_weight" -> "Equal weight"; providers as named)."""
    return BOOK_LABELS.get(name, name)


def providers_section(summary: dict[str, Any]) -> str:
    chunks = summary.get("chunks") or []
    parts = ["<h3>Weights across chunks</h3>"]
    weights = [(c.get("label", k), c.get("weights")) for k, c in enumerate(chunks)]
    if any(isinstance(w, dict) and w for _, w in weights):
        providers = ordered_keys(w for _, w in weights)
        shown = [{p: float(v) for p, v in w.items() if finite(v)} if isinstance(w, dict)
                 else {} for _, w in weights]
        parts.append(weights_chart([str(label) for label, _ in weights], providers, shown,
                                   lambda v: format_value(v, "weight")))
        rows = [f'<tr data-chunk="{text(label)}"><th>{text(label)}</th>'
                + "".join(cell((w if isinstance(w, dict) else {}).get(p), "weight",
                               f'data-provider="{text(p)}"')
                          for p in providers) + "</tr>"
                for label, w in weights]
        parts.append(table(["Chunk"] + [text(p) for p in providers], rows,
                           table_class="numbers"))
    else:
        parts.append(absent("Provider weights"))
    parts.append("<h3>Weights per regime</h3>")
    regime_rows, regime_providers = [], ordered_keys(
        w for c in chunks if isinstance(c.get("regime_weights"), dict)
        for w in c["regime_weights"].values())
    for k, chunk in enumerate(chunks):
        for regime, w in (chunk.get("regime_weights") or {}).items():
            w = w if isinstance(w, dict) else {}
            regime_rows.append(
                f'<tr data-chunk="{text(chunk.get("label", k))}" data-regime="{text(regime)}">'
                f'<th>{text(chunk.get("label", k))}</th><td class="text">{text(regime)}</td>'
                + "".join(cell(w.get(p), "weight", f'data-provider="{text(p)}"')
                          for p in regime_providers) + "</tr>")
    parts.append(table(["Chunk", "Regime"] + [text(p) for p in regime_providers], regime_rows,
                       table_class="numbers regime-weights") if regime_rows
                 else absent("Per-regime weights"))
    parts.append("<h3>Provider statistics</h3>")
    providers = summary.get("providers")
    if isinstance(providers, dict) and providers:
        parts.append(record_table("Provider", "data-provider", providers,
                                  ("votes", "hits", "hit_rate", "shadow_pnl", "trades", "wins",
                                   "losses", "weight")))
        parts.append('<p class="note">Shadow PnL: the sum over votes of vote &times; the return '
                     "that followed, whether or not the vote was traded.</p>")
    else:
        parts.append(absent("Provider statistics"))
    parts.append("<h3>Learning figures per chunk</h3>")
    parts.append(_learning_table(chunks))
    return section("providers", "Providers", "".join(parts))


def _learning_table(chunks: list[dict[str, Any]]) -> str:
    """Each chunk's "learning" object (hit rates with and without the memory vote, ...)."""
    flat = [(c.get("label", k), flatten(c["learning"])) for k, c in enumerate(chunks)
            if isinstance(c.get("learning"), dict)]
    flat = [(label, {k: v for k, v in f.items() if v != {} and v != []}) for label, f in flat]
    columns = ordered_keys(f for _, f in flat)
    if not columns:
        return absent("Learning figures")
    rows = [f'<tr data-chunk="{text(label)}"><th>{text(label)}</th>'
            + "".join(cell(f.get(c), c.rsplit(".", 1)[-1], f'data-field="{text(c)}"')
                      for c in columns) + "</tr>" for label, f in flat]
    headers = ["Chunk"] + [heading(c).replace(".", "<br>") for c in columns]
    return table(headers, rows, table_class="numbers wrap")


def regimes_section(run: Run) -> str:
    """Per-regime results of every book (metrics.json "books.regimes"); older runs: the
    run's own "regimes" object, else the trades' regime column, else "not recorded"."""
    books = run.books_summary.get("regimes")
    regimes = run.summary.get("regimes")
    if isinstance(books, dict) and any(isinstance(b, dict) and b for b in books.values()):
        body = _book_regimes_table(books, run.books_summary.get("names"))
    elif isinstance(regimes, dict) and regimes:
        body = record_table("Regime", "data-regime", regimes,
                            ("bars", "trades", "pnl", "win_rate"))
    elif run.trades is not None and "regime" in run.trades.columns and len(run.trades):
        records = {}
        for regime, group in run.trades.groupby(run.trades["regime"].astype(str), sort=True):
            pnl = group["pnl"].to_numpy(dtype=np.float64)
            records[regime] = {
                "trades": len(group), "pnl": float(pnl.sum()),
                "win_rate": float(np.count_nonzero(pnl > 0)) / len(group),
                "average_trade_return": float(group["return_pct"].mean()),
                "return_contribution": (float(pnl.sum()) / run.initial_equity
                                        if run.initial_equity else None)}
        body = (record_table("Regime at entry", "data-regime", records, ()) +
                '<p class="note">Computed from the regime column of the trades table.</p>')
    else:
        body = absent("Regime breakdown")
    return section("regimes", "Regimes", body)


def _book_regimes_table(books: dict[str, Any], names: Any) -> str:
    order = [str(n) for n in names if str(n) in books] if isinstance(names, list) else []
    order += [str(b) for b in books if str(b) not in order]
    regimes = ordered_keys(books[b] for b in order)
    preferred = [r for r in ("TRENDING", "RANGING", "VOLATILE", "UNKNOWN") if r in regimes]
    regimes = preferred + [r for r in regimes if r not in preferred]
    rows = []
    for book in order:
        records = books[book] if isinstance(books[book], dict) else {}
        shown = [r for r in regimes if r in records] or regimes
        for k, regime in enumerate(shown):
            stats = records.get(regime) if isinstance(records.get(regime), dict) else {}
            head = (f'<th rowspan="{len(shown)}" class="book">{text(book_label(book))}</th>'
                    if k == 0 else "")
            first = ' class="first"' if k == 0 else ""
            rows.append(f'<tr data-book="{text(book)}" data-regime="{text(regime)}"{first}>{head}'
                        f'<td class="text">{text(regime)}</td>'
                        + "".join(field(stats.get(f), f, signed=f == "pnl")
                                  for f in REGIME_FIELDS) + "</tr>")
    headers = ["Book", "Regime at entry", "Trades", "Win rate", "PnL",
               '<span title="PnL / initial equity">Return contribution</span>']
    note = ('<p class="note">Each trade counts in the regime of its entry bar; a regime\'s '
            "return contribution is its PnL over the initial equity.</p>")
    return table(headers, rows, table_class="numbers book-regimes").replace(
        'class="scroll"', 'class="scroll full"', 1) + note


def llm_section(summary: dict[str, Any]) -> str:
    counters = summary.get("llm")
    if not isinstance(counters, dict) or not counters:
        return section("llm", "LLM providers", absent("LLM counters"))
    flat = flatten(counters)
    rows = [f'<tr data-counter="{text(k)}"><th>{text(k)}</th>'
            f"<td>{text(format_value(v, k.rsplit('.', 1)[-1]))}</td></tr>"
            for k, v in flat.items()]
    return section("llm", "LLM providers", table(["Counter", "Value"], rows,
                                                 table_class="numbers"))
