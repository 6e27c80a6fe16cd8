"""Did the learning help: the counterfactual books (metrics.json "books", books.parquet)
side by side: their equity curves, returns per chunk and over the whole run, the
significance of learned against equal weight, and learned against buy and hold."""

from __future__ import annotations

from typing import Any

from backtester.report._format import (
    absent,
    cell,
    field,
    finite,
    format_value,
    section,
    table,
    text,
)
from backtester.report._learning import book_label
from backtester.report._load import Run, nanoseconds, numeric_column
from backtester.report._overview import chunk_bands
from backtester.report._svg import Line, lines_chart

OVERALL_FIGURES = ("total_return", "cagr", "sharpe", "max_drawdown", "trades", "hit_rate",
                   "win_rate")
BENCHMARK_FIGURES = (("alpha", "Alpha (annualised)"), ("beta", "Beta"),
                     ("information_ratio", "Information ratio"),
                     ("tracking_error", "Tracking error"), ("correlation", "Correlation"))
_LINE_STYLE = {"learned": ("#1f5fa8", 2.2), "equal_weight": ("#ff7f0e", 1.4),
               "best_single": ("#2ca02c", 1.4), "buy_and_hold": ("#9aa5b1", 1.2)}


def books_section(run: Run) -> str:
    books = run.books_summary
    if not books and run.books is None:
        return section("books", "Books compared", absent("Counterfactual books"))
    parts = ['<p class="note">Each book trades the same candidates and votes as the run with '
             "its own rule: <b>learned</b> is what the run traded, <b>equal weight</b> the same "
             "providers equally weighted without the memory vote, a <b>single provider</b> "
             "alone, <b>buy and hold</b> equal capital in every symbol from the first bar.</p>",
             _overlay(run), "<h3>Return per chunk</h3>", _chunks_table(books),
             "<h3>Whole period, every book</h3>", _overall_table(books),
             "<h3>Is it more than noise?</h3>", _significance(books.get("significance")),
             "<h3>Learned against buy and hold</h3>", _benchmark(books.get("benchmark"))]
    return section("books", "Books compared", "".join(parts))


def _overlay(run: Run) -> str:
    frame = run.books
    if frame is None or not len(frame):
        return absent("Book equity curves (books.parquet)")
    best = run.books_summary.get("best_single")
    wanted = [("learned", "Learned"), ("equal_weight", "Equal weight"),
              ("best_single", f"Best single: {best}"), ("buy_and_hold", "Buy and hold")]
    times = nanoseconds(frame["time"])
    lines = []
    for key, name in wanted:
        column = best if key == "best_single" else key
        values = numeric_column(frame, column) if isinstance(column, str) else None
        if values is not None:
            lines.append(Line(name, values, *_LINE_STYLE[key]))
    if not lines:
        return absent("Book equity curves (books.parquet has none of the compared books)")
    start = run.initial_equity if run.initial_equity is not None else float(
        lines[0].values[0])
    bands = chunk_bands(run.summary.get("chunks") or [], times)
    return lines_chart(times, lines, bands, height=340, reference=start,
                       label=f"Equity of the books (dashed: initial "
                             f"{format_value(start, 'pnl')}; learned drawn on top)",
                       tick_text=lambda tick: f"{tick:,.0f}")


def _chunks_table(books: dict[str, Any]) -> str:
    chunks = [c for c in books.get("chunks") or [] if isinstance(c, dict)]
    if not chunks:
        return absent("Book returns per chunk")
    rows = []
    for k, chunk in enumerate(chunks):
        figures = chunk.get("figures") if isinstance(chunk.get("figures"), dict) else {}
        rows.append(_attribution_row(f'data-chunk="{text(chunk.get("label", k))}"',
                                     text(chunk.get("label", k)), figures, chunk, "total_return"))
    overall = books.get("overall") if isinstance(books.get("overall"), dict) else {}
    footer = _attribution_row('data-row="overall"', "Whole period", overall, books,
                              "total_return")
    headers = ["Chunk", "Learned", "Equal weight", "Best single", "Its return", "Buy and hold",
               "Learned &minus; equal",
               '<span title="best single provider in hindsight minus learned">Regret</span>']
    note = ('<p class="note">Best single: the provider whose book returned most in that chunk '
            "(in hindsight); regret: its return minus learned's.</p>")
    return table(headers, rows, footer, "numbers attribution") + note


def _attribution_row(attribute: str, label: str, figures: dict[str, Any],
                     record: dict[str, Any], name: str) -> str:
    def value(book: Any) -> Any:
        stats = figures.get(book) if isinstance(book, str) else None
        return stats.get(name) if isinstance(stats, dict) else None

    best = record.get("best_single")
    cells = [cell(value(book), name, f'data-field="{book}"')
             for book in ("learned", "equal_weight")]
    cells += [f'<td class="text" data-field="best_single_name">'
              f"{text(best) if isinstance(best, str) else '-'}</td>",
              cell(value(best), name, 'data-field="best_single"'),
              cell(value("buy_and_hold"), name, 'data-field="buy_and_hold"'),
              field(record.get("learned_minus_equal"), "learned_minus_equal"),
              field(record.get("regret"), "regret")]
    return f"<tr {attribute}><th>{label}</th>{''.join(cells)}</tr>"


def _overall_table(books: dict[str, Any]) -> str:
    overall = books.get("overall")
    if not isinstance(overall, dict) or not overall:
        return absent("Book figures over the whole period")
    names = books.get("names") if isinstance(books.get("names"), list) else []
    order = [str(n) for n in names if n in overall] + [str(b) for b in overall if b not in names]
    providers = set(map(str, books.get("providers") or []))
    rows = []
    for book in order:
        stats = overall[book] if isinstance(overall[book], dict) else {}
        tags = ("learned" if book == "learned" else
                "best" if book == books.get("best_single") else
                "provider" if book in providers else "")
        note = (' <span class="tag">best single</span>' if tags == "best" else
                ' <span class="tag">provider</span>' if tags == "provider" else "")
        css = f' class="{tags}"' if tags in ("learned", "best") else ""
        rows.append(f'<tr data-book="{text(book)}"{css}><th>{text(book_label(book))}{note}</th>'
                    + "".join(cell(stats.get(f), f) for f in OVERALL_FIGURES) + "</tr>")
    headers = ["Book", "Return", "CAGR", "Sharpe", "Max DD", "Trades",
               '<span title="share of closed trades that won, as the books count it">'
               "Hit rate</span>", "Win rate"]
    return table(headers, rows, table_class="numbers")


def _significance(significance: Any) -> str:
    if not isinstance(significance, dict) or not significance:
        return absent("Significance of learned against equal weight")
    sentence = significance.get("sentence")
    parts = [f'<p class="verdict" data-field="sentence">{text(sentence)}</p>'
             if isinstance(sentence, str) and sentence else ""]
    bootstrap = significance.get("bootstrap")
    bootstrap = bootstrap if isinstance(bootstrap, dict) else {}
    confidence = bootstrap.get("confidence")
    level = (f"{confidence * 100:g}%" if finite(confidence) and 0 < confidence < 1
             else "Confidence")
    facts = [
        ("psr", "Probabilistic Sharpe ratio of learned (P[true Sharpe &gt; 0])",
         _value("psr", significance.get("psr"))),
        ("sharpe", "Sharpe of learned", _value("sharpe", significance.get("sharpe"))),
        ("bootstrap", "Learned &minus; equal weight, annualised return (bootstrap estimate)",
         _value("difference", bootstrap.get("difference"))),
        ("bootstrap", f"{text(level)} interval",
         f'{_value("low", bootstrap.get("low"))} to {_value("high", bootstrap.get("high"))}'),
        ("bootstrap", "Resamples, mean block (days), seed",
         f'{_value("resamples", bootstrap.get("resamples"))}, '
         f'{_value("mean_block", bootstrap.get("mean_block"))}, '
         f'{_value("seed", bootstrap.get("seed"))}'),
    ]
    facts = [(label, shown) for key, label, shown in facts if key in significance]
    parts.append('<dl class="facts figures">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>"
                                                         for k, v in facts) + "</dl>")
    parts.append('<p class="note">Stationary block bootstrap of the daily return differences '
                 "(Politis and Romano 1994); PSR after Bailey and López de Prado (2012), with "
                 "skew and kurtosis.</p>")
    return "".join(parts)


def _value(name: str, value: Any) -> str:
    signed = ""
    if finite(value) and value != 0 and name in ("difference", "low", "high"):
        signed = " pos" if value > 0 else " neg"
    return (f'<span class="figure{signed}" data-field="{name}">'
            f"{text(format_value(value, name))}</span>")


def _benchmark(benchmark: Any) -> str:
    if not isinstance(benchmark, dict) or not benchmark:
        return absent("Benchmark figures")
    cards = "".join(f'<div class="card"><div class="label">{label}</div><div class="value">'
                    f"{_value(name, benchmark.get(name))}</div></div>"
                    for name, label in BENCHMARK_FIGURES)
    return (f'<div class="cards">{cards}</div><p class="note">Daily returns of learned '
            "regressed on buy and hold (OLS); information ratio and tracking error of the "
            "daily active return, annualised.</p>")
