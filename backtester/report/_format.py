"""How the report writes values and builds its tables: one place for number formats,
escaping and the table, section and "not recorded" markup every section shares."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pandas as pd

NOT_RECORDED = "not recorded in this run"
METRIC_LABELS = {
    "total_return": "Return", "cagr": "CAGR", "volatility": "Volatility", "sharpe": "Sharpe",
    "sortino": "Sortino", "max_drawdown": "Max DD", "max_drawdown_bars": "DD bars",
    "max_drawdown_duration_days": "DD days", "calmar": "Calmar", "trades": "Trades",
    "win_rate": "Win rate", "profit_factor": "Profit factor", "expectancy": "Expectancy",
    "average_trade_return": "Avg trade", "best_trade": "Best trade",
    "worst_trade": "Worst trade", "sqn": "SQN", "exposure": "Exposure",
    "final_equity": "Final equity",
}
SIGNED_PCT = {"total_return", "cagr", "average_trade_return", "best_trade", "worst_trade",
              "return_pct", "contribution", "shadow_pnl",  # shadow pnl: a sum of returns
              "return_contribution", "learned_minus_equal", "regret", "difference", "low",
              "high", "alpha", "monthly_return"}
UNCOLOURED = {"regret"}
"""Signed returns not coloured green/red: a positive regret is bad news."""
_PCT = {"volatility", "max_drawdown", "win_rate", "exposure", "hit_rate", "psr", "confidence",
        "tracking_error", "depth"}
"""Also every name ending in "_rate" or starting with "win_rate_" (abstention_rate, ...)."""
_COUNT = {"trades", "max_drawdown_bars", "bars", "candidates", "decisions", "votes", "hits",
          "wins", "losses", "longs", "shorts", "resamples", "seed", "abstentions"}
"""Also every name starting with "trades_" (trades_with, trades_against, ...)."""
_MONEY = {"expectancy", "final_equity", "pnl", "fees"}
_RATIO = {"beta", "information_ratio", "correlation", "mean_block"}


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
    if not finite(value):
        return "-"
    value = float(value) + 0.0  # no "-0.00"
    if name in SIGNED_PCT:
        return f"{value * 100:+,.2f}%"
    if name in _PCT or name.endswith("_rate") or name.startswith("win_rate_"):
        return f"{value * 100:,.2f}%"
    if name in _COUNT or name.startswith("trades_"):
        return f"{round(value):,}"
    if name in _MONEY:
        return f"{value:,.2f}"
    if name == "max_drawdown_duration_days":
        return f"{value:,.1f}"
    if name == "weight":
        return f"{value:.4f}"
    if name in METRIC_LABELS or name in _RATIO:  # sharpe, sortino, calmar, profit factor, sqn
        return f"{value:,.2f}"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return significant(value, 4)


def significant(value: float, digits: int, minimum_decimals: int = 0) -> str:
    if not math.isfinite(value):
        return "-"
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = min(10, max(minimum_decimals, digits - 1 - magnitude))
    return f"{value:,.{decimals}f}"


def text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def time_text(value: Any) -> str:
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


def sign_class(value: Any) -> str:
    """' class="pos"' / ' class="neg"' for a positive / negative number, else ''."""
    if not finite(value) or value == 0:
        return ""
    return ' class="pos"' if value > 0 else ' class="neg"'


def cell(value: Any, name: str, attributes: str | None = None, signed: bool = False) -> str:
    """One formatted cell; ``attributes`` default to ``data-metric="<name>"``."""
    coloured = (signed or name in SIGNED_PCT) and name not in UNCOLOURED
    style = sign_class(value) if coloured else ""
    attributes = f'data-metric="{text(name)}"' if attributes is None else attributes
    return f"<td{style} {attributes}>{text(format_value(value, name))}</td>"


def field(value: Any, name: str, signed: bool = False) -> str:
    return cell(value, name, f'data-field="{text(name)}"', signed)


def table(headers: Iterable[str], body: Iterable[str], footer: str = "",
          table_class: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    cls = f' class="{table_class}"' if table_class else ""
    foot = f"<tfoot>{footer}</tfoot>" if footer else ""
    return (f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody>{foot}</table></div>")


def section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}">\n<h2>{title}</h2>\n{body}\n</section>'


def absent(what: str) -> str:
    return f'<p class="absent">{what}: {NOT_RECORDED}.</p>'


def heading(name: str) -> str:
    """A field name as an escaped column heading: "shadow_pnl" -> "Shadow PnL"."""
    words = name.replace("_", " ").capitalize().split(" ")
    return text(" ".join("PnL" if w.lower() == "pnl" else w for w in words))


def ordered_keys(dicts: Iterable[Any]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        if isinstance(d, dict):
            keys.update(dict.fromkeys(map(str, d)))
    return list(keys)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def record_table(title: str, attribute: str, records: dict[str, Any],
                 known: Sequence[str]) -> str:
    """One row per record (``attribute="<key>"``), one ``data-field`` column per field."""
    fields = [k for k in known if any(isinstance(r, dict) and k in r for r in records.values())]
    fields += [k for k in ordered_keys(records.values()) if k not in fields]
    rows = [f'<tr {attribute}="{text(key)}"><th>{text(key)}</th>'
            + "".join(field((record if isinstance(record, dict) else {}).get(f), f,
                            signed=f in ("pnl", "shadow_pnl")) for f in fields) + "</tr>"
            for key, record in records.items()]
    headers = [title] + [heading(f) for f in fields]
    return table(headers, rows, table_class="numbers")
