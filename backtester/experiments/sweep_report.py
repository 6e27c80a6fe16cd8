"""The sweep report: ``sweeps/<sweep id>/report.html``, one self-contained HTML file.

Sections: the summary (the best trial, the deflated Sharpe ratio and the probability of
backtest overfitting), the trials (a table sorted by the objective; click a heading to
sort by it), a heatmap of the objective for each pair of swept parameters, the
distributions of the main metrics across trials, and the overfitting figures. It reads
only the sweep folder (spec.json, results.parquet, summary.json) and shares the run
report's styles and formatting (``backtester.report``).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.errors import DataError
from backtester.memory.io import atomic_write_bytes
from backtester.report._format import METRIC_LABELS, cell, format_value, section, table, text
from backtester.report._page import CSS
from backtester.report._svg import histogram_chart

REPORT_FILE = "report.html"
MAX_HEATMAPS = 6  # parameter pairs drawn (the first ones in spec order)
TABLE_METRICS = ("total_return", "sharpe", "sortino", "calmar", "max_drawdown", "trades",
                 "win_rate", "books.learned_minus_equal")
DISTRIBUTIONS = ("total_return", "sharpe", "max_drawdown", "books.learned_minus_equal")
NAVIGATION = (("trials", "Trials"), ("heatmaps", "Heatmaps"),
              ("distributions", "Distributions"), ("overfitting", "Overfitting"),
              ("montecarlo", "Monte Carlo"))
SORT_SCRIPT = r"""
(function () {
  "use strict";
  var t = document.querySelector("table.sortable");
  if (!t) { return; }
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.style.cursor = "pointer";
    th.title = "sort";
    th.addEventListener("click", function () {
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows),
        down = th.getAttribute("data-sort") !== "desc";
      rows.sort(function (a, b) {
        var x = a.cells[i].getAttribute("data-value"), y = b.cells[i].getAttribute("data-value"),
          nx = parseFloat(x), ny = parseFloat(y);
        if (x === "" || x === null) { return 1; }
        if (y === "" || y === null) { return -1; }
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return down ? -c : c;
      });
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-sort"); });
      th.setAttribute("data-sort", down ? "desc" : "asc");
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write ``<sweep_dir>/report.html`` atomically; return its path.

    Raises
    ------
    DataError
        When the folder has no results.parquet or summary.json (the sweep never finished
        collecting: resume it).
    """
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / REPORT_FILE
    atomic_write_bytes(path, render_sweep_report(sweep_dir).encode("utf-8"))
    return path


def render_sweep_report(sweep_dir: Path) -> str:
    """The report's HTML (see the module docstring)."""
    try:
        frame = pd.read_parquet(sweep_dir / "results.parquet")
        summary = orjson.loads((sweep_dir / "summary.json").read_bytes())
        spec = orjson.loads((sweep_dir / "spec.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError, OSError) as e:
        raise DataError(f"{sweep_dir}: cannot read the sweep's results ({e}); run "
                        f"bt sweep --resume {sweep_dir.name} to finish it") from None
    parameters = [p for p in spec.get("parameters", []) if p in frame]
    objective = summary["objective"]
    column = objective if objective in frame else f"books.{objective}"
    ok = frame[frame["status"] == "ok"]
    sections = [_summary(sweep_dir.name, spec, summary),
                _trials(frame, parameters, objective, column),
                _heatmaps(ok, parameters, objective, column),
                _distributions(ok, column),
                _overfitting(summary),
                _montecarlo(sweep_dir / "montecarlo.json")]
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in NAVIGATION)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>bt sweep {text(sweep_dir.name)}</title>\n<style>{CSS}</style>\n"
            f"</head>\n<body>\n<nav>{nav}</nav>\n<main>\n" + "\n".join(sections)
            + f"\n</main>\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")


def _label(name: str) -> str:
    short = name.removeprefix("books.")
    return METRIC_LABELS.get(short, short.replace("_", " "))


def _summary(sweep_id: str, spec: dict[str, Any], summary: dict[str, Any]) -> str:
    best = summary.get("best") or {}
    facts = {
        "spec": spec.get("source", "-"), "base config": spec.get("config") or "default",
        "trials": f"{summary['trials']} ({summary['finished']} finished, "
                  f"{summary['failed']} failed)",
        "objective": summary["objective"],
        "best trial": best.get("trial_id", "-"),
        "its parameters": ", ".join(f"{k} = {v}" for k, v in best.get("params", {}).items())
        or "-",
    }
    cards = {"best " + summary["objective"]: format_value(best.get("value"),
                                                          summary["objective"]),
             "deflated Sharpe ratio": format_value(summary.get("deflated_sharpe"), "psr"),
             "PBO": format_value(summary.get("pbo"), "psr")}
    facts_html = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in facts.items())
    cards_html = "".join(f'<div class="card"><div class="label">{text(k)}</div>'
                         f'<div class="value">{text(v)}</div></div>' for k, v in cards.items())
    return (f'<header><h1>bt sweep <span class="run-id">{text(sweep_id)}</span></h1>'
            f'<dl class="facts">{facts_html}</dl><div class="cards">{cards_html}</div>'
            + "".join(f'<p class="note">{text(n)}</p>' for n in summary.get("notes", []))
            + "</header>")


def _trials(frame: pd.DataFrame, parameters: list[str], objective: str, column: str) -> str:
    metrics = [column] + [m for m in TABLE_METRICS if m != column and m in frame]
    ascending = objective in ("volatility", "max_drawdown_bars", "max_drawdown_duration_days")
    if column in frame:
        order = pd.to_numeric(frame[column], errors="coerce").sort_values(
            ascending=ascending, na_position="last").index
        frame = frame.loc[order]
    headers = ["Trial", "Status", *map(text, parameters), *(text(_label(m)) for m in metrics),
               "Wall s", "Error"]
    rows = []
    for _, row in frame.iterrows():
        cells = [_sort_cell(row["trial_id"], text(row["trial_id"])),
                 _sort_cell(row["status"], text(row["status"]))]
        cells += [_sort_cell(row[p], text(row[p])) for p in parameters]
        for m in metrics:
            value = _float(row.get(m))
            cells.append(cell(value, m.removeprefix("books."),
                              f'data-value="{"" if value is None else repr(value)}"'))
        wall = _float(row.get("wall_s"))
        cells.append(_sort_cell(wall, "-" if wall is None else f"{wall:.1f}"))
        cells.append(_sort_cell(row.get("error") or "", text(row.get("error") or "")))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    note = (f'<p class="note">Best first by {text(objective)}; click a heading to sort by '
            "it (a second click reverses).</p>")
    return section("trials", "Trials", note + table(headers, rows,
                                                    table_class="numbers sortable"))


def _sort_cell(value: Any, shown: str) -> str:
    raw = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return f'<td data-value="{text(raw)}">{shown}</td>'


def _heatmaps(ok: pd.DataFrame, parameters: list[str], objective: str, column: str) -> str:
    pairs = [(a, b) for a, b in itertools.combinations(parameters, 2)
             if ok[a].nunique() > 1 and ok[b].nunique() > 1][:MAX_HEATMAPS]
    if column not in ok or not pairs:
        return section("heatmaps", "Heatmaps", '<p class="absent">A heatmap needs two swept '
                       "parameters with finished trials.</p>")
    values = pd.to_numeric(ok[column], errors="coerce")
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    parts = []
    for rows_key, columns_key in pairs:
        grid = values.groupby([ok[rows_key], ok[columns_key]]).mean().unstack()
        body = []
        for row_value, line in grid.iterrows():
            cells = "".join(_heat_cell(v, low, high, objective) for v in line.tolist())
            body.append(f"<tr><th>{text(row_value)}</th>{cells}</tr>")
        headers = [f"{text(rows_key)} \\ {text(columns_key)}",
                   *(text(v) for v in grid.columns)]
        parts.append(f"<h3>{text(objective)} by {text(rows_key)} and {text(columns_key)}</h3>"
                     + table(headers, body, table_class="numbers heatmap"))
    note = ('<p class="note">Each cell: the mean of the objective over the finished trials '
            "with those two values (over every other swept parameter and seed); greener is "
            "better.</p>")
    return section("heatmaps", "Heatmaps", note + "".join(parts))


def _heat_cell(value: Any, low: float, high: float, objective: str) -> str:
    value = _float(value)
    if value is None:
        return "<td>-</td>"
    share = 0.5 if high <= low else (value - low) / (high - low)
    if objective in ("volatility", "max_drawdown_bars", "max_drawdown_duration_days"):
        share = 1.0 - share
    hue = 120.0 * share  # red (worst) .. green (best)
    return (f'<td style="background:hsl({hue:.0f},70%,85%)" data-value="{value!r}">'
            f"{text(format_value(value, objective))}</td>")


def _distributions(ok: pd.DataFrame, column: str) -> str:
    charts = []
    for metric in dict.fromkeys([column, *DISTRIBUTIONS]):
        if metric not in ok:
            continue
        values = pd.to_numeric(ok[metric], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values) < 2:
            continue
        bins = int(min(30, max(5, math.ceil(math.sqrt(len(values))))))
        low, high = float(values.min()), float(values.max())
        if high <= low:
            low, high = low - 0.5 * (abs(low) or 1.0), high + 0.5 * (abs(high) or 1.0)
        counts, edges = np.histogram(values, bins=bins, range=(low, high))
        name = metric.removeprefix("books.")
        charts.append(histogram_chart(edges, counts, label=f"{_label(metric)} across trials",
                                      edge_text=lambda v, n=name: format_value(v, n)))
    if not charts:
        return section("distributions", "Distributions", '<p class="absent">Distributions '
                       "need two finished trials.</p>")
    return section("distributions", "Distributions", "".join(charts))


def _overfitting(summary: dict[str, Any]) -> str:
    facts = {
        "trials selected from (N)": summary.get("n_trials"),
        "variance of their per-period Sharpe ratios (V)": summary.get("sharpe_variance"),
        "expected maximum per-period Sharpe of N skill-less trials":
            summary.get("expected_max_sharpe"),
        "best trial's per-period Sharpe ratio": summary.get("best_period_sharpe"),
        "deflated Sharpe ratio": summary.get("deflated_sharpe"),
        "probability of backtest overfitting (PBO)": summary.get("pbo"),
    }
    rows = "".join(f"<dt>{text(k)}</dt><dd>{text(_fact(v))}</dd>" for k, v in facts.items())
    explain = (
        '<p class="note">The deflated Sharpe ratio is the probability that the best trial\'s '
        "Sharpe ratio beats the highest one N trials without skill would reach by luck, "
        "given the variance V of the trials' Sharpe ratios (Bailey and Lopez de Prado, 2014); "
        "Sharpe ratios here are per period (daily mean / standard deviation). The PBO is "
        "the share of combinatorially symmetric cross-validation splits of the daily returns "
        "where the in-sample best trial ranks below the out-of-sample median (Bailey, "
        "Borwein, Lopez de Prado and Zhu, 2017): near 0 the selection generalises, near 1 "
        "it is noise.</p>")
    chart = ""
    logits = [v for v in summary.get("pbo_logits") or [] if v is not None and math.isfinite(v)]
    if len(logits) >= 2:
        counts, edges = np.histogram(logits, bins=min(20, max(5, len(logits) // 3)))
        chart = histogram_chart(edges, counts, label="logit of the best in-sample trial's "
                                "out-of-sample rank (below 0: below the median)",
                                edge_text=lambda v: f"{v:.2f}")
    return section("overfitting", "Overfitting", f'<dl class="facts">{rows}</dl>'
                   + explain + chart)


def _montecarlo(path: Path) -> str:
    """The paths' percentiles of each figure beside the original market's (bt montecarlo)."""
    if not path.is_file():
        return section("montecarlo", "Monte Carlo", '<p class="absent">Not a Monte Carlo '
                       "sweep (bt montecarlo writes montecarlo.json).</p>")
    try:
        document = orjson.loads(path.read_bytes())
        summary, settings = document["summary"], document["settings"]
        figures = summary["figures"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a Monte Carlo summary ({e}); re-run bt montecarlo "
                        "with --resume to rewrite it") from None
    keys = [f"p{p}" for p in summary["percentiles"]] + ["mean", "original"]
    rows = [f"<tr><th>{text(METRIC_LABELS.get(name, name))}</th>"
            + "".join(cell(values.get(k), name) for k in keys) + "</tr>"
            for name, values in figures.items()]
    note = (f'<p class="note">{summary["paths"]} paths ({summary.get("failed", 0)} failed), '
            f"stationary block bootstrap of the traded bars' log returns, mean block "
            f"{text(str(settings.get('mean_block')))} bars, noise "
            f"{text(str(settings.get('noise')))}, seed {text(str(settings.get('seed')))}; "
            "original: the market itself.</p>")
    return section("montecarlo", "Monte Carlo", table(["Figure", *keys], rows,
                                                      table_class="numbers") + note)


def _fact(value: Any) -> str:
    value = _float(value)
    return "-" if value is None else f"{value:.4g}"


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
