"""The self-contained HTML report of one run folder (runs/<run id>/).

`render_report` reads what `bt run` wrote (metrics.json, trades.parquet, equity.parquet,
config.toml) and returns one HTML document: inline CSS, inline SVG charts (drawn by
`backtester._svg`), no script, font, image or style sheet from anywhere else, so it opens
offline.
`write_report` saves it as report.html in the run folder. A section whose data the run
did not record says so. Every text read from the files is HTML-escaped.

Stable hooks for scripts and tests: headline values carry ``data-metric``; chunk rows
``data-chunk`` (the whole period ``data-row="overall"``) with ``data-metric`` cells;
per-symbol rows ``data-symbol`` (total ``data-row="total"``) with ``data-field`` cells;
trade rows ``data-trade`` (the row number in trades.parquet); provider weight cells
``data-provider``; regime rows ``data-regime``. Sections have ids: summary, equity,
chunks, symbols, providers, regimes, llm, trades, config.
"""

from __future__ import annotations

import html
import math
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester._svg import (
    MAX_CHART_POINTS,
    Band,
    downsample_extremes,  # noqa: F401  (re-exported: public in this module)
    time_chart,
    weights_chart,
)
from backtester.errors import DataError
from backtester.memory.io import atomic_write_bytes
from backtester.metrics import METRIC_NAMES

NOT_RECORDED = "not recorded in this run"
MAX_TRADE_ROWS = 5000
"""Beyond this many trades the list shows the first and the last half of it."""

TRADE_COLUMNS = ("symbol", "entry_time", "exit_time", "direction", "entry_price", "exit_price",
                 "size", "pnl", "return_pct", "fees", "exit_reason")
EQUITY_COLUMNS = ("time", "equity")
HEADLINE = (("total_return", "Total return"), ("cagr", "CAGR"), ("sharpe", "Sharpe"),
            ("sortino", "Sortino"), ("max_drawdown", "Max drawdown"), ("trades", "Trades"),
            ("win_rate", "Win rate"), ("profit_factor", "Profit factor"),
            ("final_equity", "Final equity"))
METRIC_LABELS = {
    "total_return": "Return", "cagr": "CAGR", "volatility": "Volatility", "sharpe": "Sharpe",
    "sortino": "Sortino", "max_drawdown": "Max DD", "max_drawdown_bars": "DD bars",
    "max_drawdown_duration_days": "DD days", "calmar": "Calmar", "trades": "Trades",
    "win_rate": "Win rate", "profit_factor": "Profit factor", "expectancy": "Expectancy",
    "average_trade_return": "Avg trade", "best_trade": "Best trade",
    "worst_trade": "Worst trade", "sqn": "SQN", "exposure": "Exposure",
    "final_equity": "Final equity",
}
_SIGNED_PCT = {"total_return", "cagr", "average_trade_return", "best_trade", "worst_trade",
               "return_pct", "contribution", "shadow_pnl"}  # shadow pnl: a sum of returns
_PCT = {"volatility", "max_drawdown", "win_rate", "exposure", "hit_rate"}
_COUNT = {"trades", "max_drawdown_bars", "bars", "candidates", "decisions", "votes", "hits",
          "wins", "losses", "longs", "shorts"}
_MONEY = {"expectancy", "final_equity", "pnl", "fees"}

def render_report(run_dir: Path) -> str:
    """Return the HTML report of a run folder written by `bt run`.

    Parameters
    ----------
    run_dir : Path
        The run folder (runs/<run id>/); metrics.json is required, the other files are
        reported as not recorded when absent.

    Returns
    -------
    str
        One self-contained HTML document.

    Raises
    ------
    DataError
        When the folder or metrics.json is missing, or a file is malformed.
    """
    run = _load_run(Path(run_dir))
    summary = run.summary
    title = f"bt run {_text(summary.get('run_id', run.folder.name))}"
    sections = [
        _summary_section(run),
        _equity_section(run),
        _chunks_section(summary),
        _symbols_section(run),
        _providers_section(summary),
        _regimes_section(run),
        _llm_section(summary),
        _trades_section(run.trades),
        _config_section(run.config_text),
    ]
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in (
        ("equity", "Equity"), ("chunks", "Chunks"), ("symbols", "Symbols"),
        ("providers", "Providers"), ("regimes", "Regimes"), ("llm", "LLM"),
        ("trades", "Trades"), ("config", "Config")))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<nav>{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n")


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html atomically (temporary file, fsync, rename).

    Parameters
    ----------
    run_dir : Path
        The run folder (runs/<run id>/).

    Returns
    -------
    Path
        The path of the written report.

    Raises
    ------
    DataError
        As `render_report`.
    """
    path = Path(run_dir) / "report.html"
    atomic_write_bytes(path, render_report(run_dir).encode("utf-8"))
    return path


# ---------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class _Run:
    folder: Path
    summary: dict[str, Any]
    trades: pd.DataFrame | None
    equity: pd.DataFrame | None
    config_text: str | None
    initial_equity: float | None


def _load_run(folder: Path) -> _Run:
    if not folder.is_dir():
        raise DataError(f"run folder {folder} does not exist or is not a folder; pass a folder "
                        "written by `bt run` (runs/<run id>/)")
    path = folder / "metrics.json"
    if not path.is_file():
        raise DataError(f"{path} is missing; pass a run folder written by `bt run` "
                        "(runs/<run id>/)")
    try:
        summary = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); re-run the backtest to rewrite it") \
            from None
    if not isinstance(summary, dict):
        raise DataError(f"{path} must hold a JSON object, was {type(summary).__name__}; "
                        "re-run the backtest to rewrite it")
    trades = _read_table(folder / "trades.parquet", TRADE_COLUMNS)
    equity = _read_table(folder / "equity.parquet", EQUITY_COLUMNS)
    config_path = folder / "config.toml"
    config_text = (config_path.read_text(encoding="utf-8", errors="replace")
                   if config_path.is_file() else None)
    return _Run(folder, summary, trades, equity, config_text,
                _initial_equity(config_text, summary.get("overall") or {}, equity))


def _read_table(path: Path, required: Sequence[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} could not be read ({type(e).__name__}: {e}); re-run the "
                        "backtest to rewrite it") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the columns {missing}, was {list(frame.columns)}; "
                        "re-run the backtest to rewrite it")
    return frame


def _initial_equity(config_text: str | None, overall: dict[str, Any],
                    equity: pd.DataFrame | None) -> float | None:
    try:
        return float(tomllib.loads(config_text or "")["run"]["initial_cash"])
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        pass
    final, total = overall.get("final_equity"), overall.get("total_return")
    if _finite(final) and _finite(total) and total > -1.0:
        return float(final) / (1.0 + float(total))
    if equity is not None and len(equity):
        return float(equity["equity"].iloc[0])
    return None


# ---------------------------------------------------------------- formatting


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def format_value(value: Any, name: str = "") -> str:
    """Format one value for a reader; ``None``/NaN as "-" (the result is not escaped).

    The field ``name`` picks the format: returns as signed percentages, rates as
    percentages, counts with thousands separators, money with two decimals, ratios with
    two; other numbers with four significant digits; lists and objects as compact JSON.
    """
    if value is None or isinstance(value, str):
        return "-" if value is None else value
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _finite(value):
        return "-"
    value = float(value) + 0.0  # no "-0.00"
    if name in _SIGNED_PCT:
        return f"{value * 100:+,.2f}%"
    if name in _PCT:
        return f"{value * 100:,.2f}%"
    if name in _COUNT:
        return f"{round(value):,}"
    if name in _MONEY:
        return f"{value:,.2f}"
    if name == "max_drawdown_duration_days":
        return f"{value:,.1f}"
    if name == "weight":
        return f"{value:.4f}"
    if name in METRIC_LABELS:  # ratios: sharpe, sortino, calmar, profit factor, sqn
        return f"{value:,.2f}"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return _significant(value, 4)


def _significant(value: float, digits: int, minimum_decimals: int = 0) -> str:
    if not math.isfinite(value):
        return "-"
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = min(10, max(minimum_decimals, digits - 1 - magnitude))
    return f"{value:,.{decimals}f}"


def _time_text(value: Any) -> str:
    """An ISO string or timestamp as 'YYYY-MM-DD HH:MM' (UTC); anything else as it is."""
    if value is None:
        return "-"
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return str(value)
    if pd.isna(stamp):
        return "-"
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


def _sign_class(value: Any) -> str:
    """' class="pos"' / ' class="neg"' for a positive / negative number, else ''."""
    if not _finite(value) or value == 0:
        return ""
    return ' class="pos"' if value > 0 else ' class="neg"'


def _cell(value: Any, name: str, attributes: str | None = None, signed: bool = False) -> str:
    """One formatted cell; ``attributes`` default to ``data-metric="<name>"``."""
    style = _sign_class(value) if signed or name in _SIGNED_PCT else ""
    attributes = f'data-metric="{_text(name)}"' if attributes is None else attributes
    return f"<td{style} {attributes}>{_text(format_value(value, name))}</td>"


def _field(value: Any, name: str, signed: bool = False) -> str:
    return _cell(value, name, f'data-field="{_text(name)}"', signed)


def _table(headers: Iterable[str], body: Iterable[str], footer: str = "",
           table_class: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    cls = f' class="{table_class}"' if table_class else ""
    foot = f"<tfoot>{footer}</tfoot>" if footer else ""
    return (f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody>{foot}</table></div>")


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}">\n<h2>{title}</h2>\n{body}\n</section>'


def _absent(what: str) -> str:
    return f'<p class="absent">{what}: {NOT_RECORDED}.</p>'


# ---------------------------------------------------------------- sections


def _summary_section(run: _Run) -> str:
    summary = run.summary
    overall = summary.get("overall") or {}
    period = summary.get("period") or {}
    symbols = summary.get("symbols") or []
    config_hash = str(summary.get("config_hash", "-"))
    facts = (
        ("Period", f"{_text(_time_text(period.get('start')))} to "
                   f"{_text(_time_text(period.get('end')))} (end exclusive, UTC)"),
        ("Symbols", _text(", ".join(map(str, symbols)) or "-")),
        ("Config hash", f'<code title="{_text(config_hash)}">{_text(config_hash[:16])}</code>'),
        ("Chunks", _text(len(summary.get("chunks") or []))),
        ("Learning", {True: "on", False: "off"}.get(summary.get("learning"), "-")),
        ("Initial equity", _text(format_value(run.initial_equity, "final_equity"))),
    )
    cards = "".join(
        f'<div class="card"><div class="label">{label}</div><div class="value">'
        f"<span{_sign_class(overall.get(name)) if name in _SIGNED_PCT else ''} "
        f'data-metric="{name}">{_text(format_value(overall.get(name), name))}</span></div></div>'
        for name, label in HEADLINE)
    fact_list = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (f'<header id="summary">\n<h1>bt run <span class="run-id">'
            f"{_text(summary.get('run_id', run.folder.name))}</span></h1>\n"
            f'<dl class="facts">{fact_list}</dl>\n<div class="cards">{cards}</div>\n</header>')


def _equity_section(run: _Run) -> str:
    equity = run.equity
    if equity is None or not len(equity):
        return _section("equity", "Equity and drawdown", _absent("Equity curve"))
    times = _nanoseconds(equity["time"])
    values = equity["equity"].to_numpy(dtype=np.float64)
    start = run.initial_equity if run.initial_equity is not None else values[0]
    peak = np.maximum.accumulate(np.concatenate(([start], values)))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, values / peak - 1.0, np.nan)
    bands = _chunk_bands(run.summary.get("chunks") or [], times)
    equity_chart = time_chart(times, values, bands, height=320, reference=start,
                              label=f"Equity (dashed: initial {format_value(start, 'pnl')})",
                              tick_text=lambda tick: f"{tick:,.0f}", labels_on_top=True)
    drawdown_chart = time_chart(times, drawdown, bands, height=170, reference=0.0,
                                label="Drawdown", area=True,
                                tick_text=lambda tick: format_value(tick, "max_drawdown"))
    note = (f'<p class="note">{len(values):,} bars; drawn with at most {MAX_CHART_POINTS:,} '
            "points per line (each stretch keeps its low and its high). Shaded bands are "
            "chunks; hover for their return.</p>")
    return _section("equity", "Equity and drawdown", equity_chart + drawdown_chart + note)


def _nanoseconds(column: pd.Series) -> np.ndarray:
    index = pd.DatetimeIndex(column)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("ns").asi8.astype(np.int64)


def _chunk_bands(chunks: list[dict[str, Any]], times: np.ndarray) -> list[Band]:
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


def _chunks_section(summary: dict[str, Any]) -> str:
    chunks = summary.get("chunks") or []
    if not chunks:
        return _section("chunks", "Chunks", _absent("Chunks"))
    names = _metric_names([c.get("metrics") or {} for c in chunks] + [summary.get("overall") or {}])
    headers = ["Chunk", "Start", "End", "Bars", "Candidates", "Decisions"] + [
        f'<span title="{_text(n)}">{_text(METRIC_LABELS.get(n, n))}</span>' for n in names]
    rows = []
    for chunk in chunks:
        metrics = chunk.get("metrics") or {}
        rows.append(f'<tr data-chunk="{_text(chunk.get("label", ""))}">'
                    f"<th>{_text(chunk.get('label', '-'))}</th>"
                    f"<td>{_text(_time_text(chunk.get('start')))}</td>"
                    f"<td>{_text(_time_text(chunk.get('end')))}</td>"
                    + "".join(_cell(chunk.get(k), k) for k in ("bars", "candidates", "decisions"))
                    + "".join(_cell(metrics.get(n), n) for n in names) + "</tr>")
    overall = summary.get("overall") or {}
    totals = {k: sum(c.get(k) or 0 for c in chunks) for k in ("bars", "candidates", "decisions")}
    footer = ('<tr data-row="overall"><th>Whole period</th>'
              f"<td>{_text(_time_text(chunks[0].get('start')))}</td>"
              f"<td>{_text(_time_text(chunks[-1].get('end')))}</td>"
              + "".join(_cell(totals[k], k) for k in ("bars", "candidates", "decisions"))
              + "".join(_cell(overall.get(n), n) for n in names) + "</tr>")
    return _section("chunks", "Chunks", _table(headers, rows, footer, "numbers"))


def _metric_names(dicts: list[dict[str, Any]]) -> list[str]:
    seen = {k for d in dicts for k in d}
    return [n for n in METRIC_NAMES if n in seen] + sorted(seen.difference(METRIC_NAMES))


def _symbols_section(run: _Run) -> str:
    trades = run.trades
    if trades is None:
        return _section("symbols", "Per symbol", _absent("Trades"))
    symbols = [str(s) for s in run.summary.get("symbols") or []]
    symbols += sorted(set(map(str, trades["symbol"])).difference(symbols))
    rows = [_symbol_row(f'data-symbol="{_text(s)}"', _text(s),
                        trades[trades["symbol"].astype(str) == s], run.initial_equity)
            for s in symbols]
    footer = _symbol_row('data-row="total"', "All", trades, run.initial_equity)
    headers = ["Symbol", "Trades", "Long", "Short", "Win rate", "PnL", "Fees", "Avg trade",
               '<span title="PnL / initial equity">Return</span>']
    note = ('<p class="note">From the trades table; return is the symbol\'s PnL over the '
            "initial equity, so the symbols' returns add up to the total.</p>")
    return _section("symbols", "Per symbol", _table(headers, rows, footer, "numbers") + note)


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
    cells = "".join(_field(v, k, signed=k == "pnl") for k, v in values.items())
    return f"<tr {attribute}><th>{name}</th>{cells}</tr>"


def _providers_section(summary: dict[str, Any]) -> str:
    chunks = summary.get("chunks") or []
    parts = ["<h3>Weights across chunks</h3>"]
    weights = [(c.get("label", k), c.get("weights")) for k, c in enumerate(chunks)]
    if any(isinstance(w, dict) and w for _, w in weights):
        providers = _ordered_keys(w for _, w in weights)
        finite = [{p: float(v) for p, v in w.items() if _finite(v)} if isinstance(w, dict)
                  else {} for _, w in weights]
        parts.append(weights_chart([str(label) for label, _ in weights], providers, finite,
                                   lambda v: format_value(v, "weight")))
        rows = [f'<tr data-chunk="{_text(label)}"><th>{_text(label)}</th>'
                + "".join(_cell((w if isinstance(w, dict) else {}).get(p), "weight",
                                f'data-provider="{_text(p)}"')
                          for p in providers) + "</tr>"
                for label, w in weights]
        parts.append(_table(["Chunk"] + [_text(p) for p in providers], rows,
                            table_class="numbers"))
    else:
        parts.append(_absent("Provider weights"))
    parts.append("<h3>Weights per regime</h3>")
    regime_rows, regime_providers = [], _ordered_keys(
        w for c in chunks if isinstance(c.get("regime_weights"), dict)
        for w in c["regime_weights"].values())
    for k, chunk in enumerate(chunks):
        for regime, w in (chunk.get("regime_weights") or {}).items():
            w = w if isinstance(w, dict) else {}
            regime_rows.append(
                f'<tr data-chunk="{_text(chunk.get("label", k))}" data-regime="{_text(regime)}">'
                f'<th>{_text(chunk.get("label", k))}</th><td class="text">{_text(regime)}</td>'
                + "".join(_cell(w.get(p), "weight", f'data-provider="{_text(p)}"')
                          for p in regime_providers) + "</tr>")
    parts.append(_table(["Chunk", "Regime"] + [_text(p) for p in regime_providers], regime_rows,
                        table_class="numbers regime-weights") if regime_rows
                 else _absent("Per-regime weights"))
    parts.append("<h3>Provider statistics</h3>")
    providers = summary.get("providers")
    if isinstance(providers, dict) and providers:
        parts.append(_record_table("Provider", "data-provider", providers,
                                   ("votes", "hits", "hit_rate", "shadow_pnl", "trades", "wins",
                                    "losses", "weight")))
        parts.append('<p class="note">Shadow PnL: the sum over votes of vote &times; the return '
                     "that followed, whether or not the vote was traded.</p>")
    else:
        parts.append(_absent("Provider statistics"))
    parts.append("<h3>Learning figures per chunk</h3>")
    parts.append(_learning_table(chunks))
    return _section("providers", "Providers", "".join(parts))


def _learning_table(chunks: list[dict[str, Any]]) -> str:
    """Each chunk's "learning" object (hit rates with and without the memory vote, ...)."""
    flat = [(c.get("label", k), _flatten(c["learning"])) for k, c in enumerate(chunks)
            if isinstance(c.get("learning"), dict)]
    flat = [(label, {k: v for k, v in f.items() if v != {} and v != []}) for label, f in flat]
    columns = _ordered_keys(f for _, f in flat)
    if not columns:
        return _absent("Learning figures")
    rows = [f'<tr data-chunk="{_text(label)}"><th>{_text(label)}</th>'
            + "".join(_cell(f.get(c), c.rsplit(".", 1)[-1], f'data-field="{_text(c)}"')
                      for c in columns) + "</tr>" for label, f in flat]
    headers = ["Chunk"] + [_heading(c).replace(".", "<br>") for c in columns]
    return _table(headers, rows, table_class="numbers")


def _heading(name: str) -> str:
    """A field name as an escaped column heading: "shadow_pnl" -> "Shadow PnL"."""
    words = name.replace("_", " ").capitalize().split(" ")
    return _text(" ".join("PnL" if w.lower() == "pnl" else w for w in words))


def _ordered_keys(dicts: Iterable[Any]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        if isinstance(d, dict):
            keys.update(dict.fromkeys(map(str, d)))
    return list(keys)


def _record_table(title: str, attribute: str, records: dict[str, Any],
                  known: Sequence[str]) -> str:
    fields = [k for k in known if any(isinstance(r, dict) and k in r for r in records.values())]
    fields += [k for k in _ordered_keys(records.values()) if k not in fields]
    rows = [f'<tr {attribute}="{_text(key)}"><th>{_text(key)}</th>'
            + "".join(_field((record if isinstance(record, dict) else {}).get(f), f,
                             signed=f in ("pnl", "shadow_pnl")) for f in fields) + "</tr>"
            for key, record in records.items()]
    headers = [title] + [_heading(f) for f in fields]
    return _table(headers, rows, table_class="numbers")


def _regimes_section(run: _Run) -> str:
    regimes = run.summary.get("regimes")
    if isinstance(regimes, dict) and regimes:
        body = _record_table("Regime", "data-regime", regimes,
                             ("bars", "trades", "pnl", "win_rate"))
    elif run.trades is not None and "regime" in run.trades.columns:
        records = {}
        for regime, group in run.trades.groupby(run.trades["regime"].astype(str), sort=True):
            pnl = group["pnl"].to_numpy(dtype=np.float64)
            records[regime] = {"trades": len(group), "pnl": float(pnl.sum()),
                               "win_rate": float(np.count_nonzero(pnl > 0)) / len(group),
                               "average_trade_return": float(group["return_pct"].mean())}
        body = (_record_table("Regime at entry", "data-regime", records, ()) +
                '<p class="note">Computed from the regime column of the trades table.</p>')
    else:
        body = _absent("Regime breakdown")
    return _section("regimes", "Regimes", body)


def _llm_section(summary: dict[str, Any]) -> str:
    counters = summary.get("llm")
    if not isinstance(counters, dict) or not counters:
        return _section("llm", "LLM providers", _absent("LLM counters"))
    flat = _flatten(counters)
    rows = [f'<tr data-counter="{_text(k)}"><th>{_text(k)}</th>'
            f"<td>{_text(format_value(v, k.rsplit('.', 1)[-1]))}</td></tr>"
            for k, v in flat.items()]
    return _section("llm", "LLM providers", _table(["Counter", "Value"], rows,
                                                   table_class="numbers"))


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _trades_section(trades: pd.DataFrame | None) -> str:
    if trades is None:
        return _section("trades", "Trades", _absent("Trades"))
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
             if c not in (*TRADE_COLUMNS, "entry_bar", "exit_bar", "decision_id")]
    columns = [
        [_text(v) for v in rows_of["symbol"]],
        [_side(v) for v in rows_of["direction"]],
        _time_column(rows_of["entry_time"]),
        _time_column(rows_of["exit_time"]),
        [_price(v) for v in rows_of["entry_price"]],
        [_price(v) for v in rows_of["exit_price"]],
        [_size(v) for v in rows_of["size"]],
        [f"<td{_sign_class(v)}>{format_value(v, 'pnl')}</td>" for v in rows_of["pnl"]],
        [format_value(v, "return_pct") for v in rows_of["return_pct"]],
        [format_value(v, "fees") for v in rows_of["fees"]],
        [_text(v) for v in rows_of["exit_reason"]],
    ]
    headers = ["#", "Symbol", "Side", "Entry (UTC)", "Exit (UTC)", "Entry price", "Exit price",
               "Size", "PnL", "Return", "Fees", "Exit reason"]
    if "decision_id" in trades.columns:
        columns.append([_text(v) for v in rows_of["decision_id"]])
        headers.append("Decision id")
    for name in extra:
        columns.append([_text(format_value(v, name)) for v in rows_of[name]])
        headers.append(_text(name))
    cells = ("".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
             for row in zip(*columns))
    rows = [f'<tr data-trade="{i}"><th>{i + 1}</th>{row}</tr>'
            for i, row in zip(shown.tolist(), cells)]
    if count > MAX_TRADE_ROWS:
        rows.insert(MAX_TRADE_ROWS // 2, f'<tr class="gap"><td colspan="{len(headers)}">&#8942; '
                                         f"{count - MAX_TRADE_ROWS:,} trades not shown</td></tr>")
    return _section("trades", "Trades", note + _table(headers, rows, table_class="trades"))


def _time_column(column: pd.Series) -> list[str]:
    try:
        index = pd.DatetimeIndex(column)
    except (TypeError, ValueError):
        return [_text(_time_text(v)) for v in column]
    if index.tz is not None:
        index = index.tz_convert("UTC")
    return [_text(v) if isinstance(v, str) else "-" for v in index.strftime("%Y-%m-%d %H:%M")]


def _side(direction: Any) -> str:
    return {1: "long", -1: "short"}.get(int(direction), _text(direction)) \
        if _finite(direction) else _text(direction)


def _price(value: Any) -> str:
    return _significant(float(value), 6, minimum_decimals=2) if _finite(value) else "-"


def _size(value: Any) -> str:
    return _significant(float(value), 6) if _finite(value) else "-"


def _config_section(config_text: str | None) -> str:
    body = (f"<pre>{_text(config_text)}</pre>" if config_text is not None
            else _absent("config.toml"))
    return _section("config", "Config used", body)


_CSS = """
:root{--ink:#1d232a;--muted:#5f6b76;--line:#d9dee3;--bg:#f6f7f9;--pos:#137333;--neg:#b3261e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
nav{position:sticky;top:0;z-index:2;background:#1d232a;padding:6px 24px}
nav a{color:#e8edf2;text-decoration:none;margin-right:18px;font-size:13px}
nav a:hover{text-decoration:underline}
main{max-width:1180px;margin:0 auto;padding:8px 24px 48px}
header,section{background:#fff;border:1px solid var(--line);border-radius:8px;
padding:14px 18px;margin:16px 0}
h1{font-size:20px;margin:0 0 8px}h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:16px 0 6px;color:var(--muted)}
.run-id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 12px}
.facts dt{color:var(--muted)}.facts dd{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:#fbfcfd}
.card .label{color:var(--muted);font-size:12px}
.card .value{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.pos{color:var(--pos)}.neg{color:var(--neg)}
.scroll{overflow:auto;max-height:640px;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
thead th{position:sticky;top:0;background:#eef1f4;text-align:right;font-weight:600;z-index:1}
thead th:first-child,tbody th,tfoot th{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
tbody tr:hover{background:#eef5ff}
tbody th,tfoot th{font-weight:600}
tfoot td,tfoot th{border-top:2px solid var(--line);font-weight:600;background:#f3f5f7}
table.numbers td{text-align:right}
table.numbers td.text,table.regime-weights thead th:nth-child(2){text-align:left}
table.trades td{text-align:right}
table.trades td:nth-child(2),table.trades td:nth-child(3),table.trades td:nth-child(12),
table.trades thead th:nth-child(2),table.trades thead th:nth-child(3),
table.trades thead th:nth-child(12){text-align:left}
table.trades th{color:var(--muted);font-weight:400}
tr.gap td{text-align:center;color:var(--muted);background:#f3f5f7}
.chart{width:100%;height:auto;display:block;margin:4px 0}
.chart .grid{stroke:#e6e9ed;stroke-width:1}
.chart .tick{fill:var(--muted);font-size:11px}
.chart .line{fill:none;stroke:#1f5fa8;stroke-width:1.4;stroke-linejoin:round}
.chart .series{fill:none;stroke-linejoin:round}
.chart .area{fill:rgba(179,38,30,.22);stroke:none}
.chart .area-line{fill:none;stroke:var(--neg);stroke-width:1.2}
.chart .reference{stroke:#9aa5b1;stroke-dasharray:4 3}
.chart .band{fill:#fff}.chart .band.odd{fill:#f1f4f8}
.chart .band:hover{fill:#e3ecf7}
.chart .boundary{stroke:#b8c1cb;stroke-dasharray:3 3}
.chart .band-label{fill:var(--muted);font-size:11px}
.chart-title{font-size:12px;font-weight:600;margin:10px 0 0}
.legend span{margin-right:16px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.note{color:var(--muted);font-size:12px;margin:6px 0}
.absent{color:var(--muted);font-style:italic}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px;
overflow:auto;font-size:12px;margin:0}
"""
