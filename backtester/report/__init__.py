"""The self-contained HTML report of one run folder (runs/<run id>/).

`render_report` reads what `bt run` wrote (metrics.json, trades.parquet, equity.parquet,
books.parquet, prices.parquet, config.toml) and returns one HTML document: inline CSS,
inline SVG charts, one inline script that only adds zoom to the time charts, and no
script, font, image or style sheet from anywhere else, so it opens offline and reads
completely with scripts off. `write_report` saves it as report.html in the run folder. A
section whose data the run did not record (older run folders lack the books, the prices
and the regimes) says so in one line. Every text read from the files is HTML-escaped.

Modules, one idea each: ``_load`` (reading the folder), ``_format`` (numbers, tables),
``_overview`` (headline, equity, chunks, symbols), ``_books`` (counterfactual books,
significance, benchmark), ``_returns`` (monthly returns, rolling Sharpe, trade returns,
drawdowns), ``_risk`` (exits, risk manager counts, costs, parameter changes),
``_learning`` (providers, regimes, LLM), ``_trades`` (price charts with trade
markers, the trades table, the config), ``_svg`` (the charts), ``_page`` (style and
script), ``_document`` (the page).

Stable hooks for scripts and tests: headline values carry ``data-metric``; chunk rows
``data-chunk`` (the whole period ``data-row="overall"``) with ``data-metric`` cells;
per-symbol rows ``data-symbol`` (total ``data-row="total"``) with ``data-field`` cells;
trade rows ``data-trade`` (the row number in trades.parquet); provider weight cells
``data-provider``; regime rows ``data-regime`` (per book also ``data-book``); book rows
``data-book`` with ``data-metric`` cells; attribution rows ``data-chunk`` with
``data-field`` cells; monthly cells ``data-year`` and ``data-month``; drawdown rows
``data-rank``; trade markers ``data-trade`` inside ``div.symbol-chart[data-symbol]``;
book lines ``data-series``. Sections have ids: summary, equity, books, returns,
drawdowns, chunks, risk, symbols, prices, providers, regimes, llm, trades, config.
"""

from backtester.report._document import NAVIGATION, render_report, write_report
from backtester.report._format import METRIC_LABELS, NOT_RECORDED, format_value
from backtester.report._load import EQUITY_COLUMNS, TRADE_COLUMNS
from backtester.report._overview import HEADLINE
from backtester.report._svg import MAX_CHART_POINTS, downsample_extremes
from backtester.report._trades import MAX_TRADE_ROWS

__all__ = ["EQUITY_COLUMNS", "HEADLINE", "MAX_CHART_POINTS", "MAX_TRADE_ROWS", "METRIC_LABELS",
           "NAVIGATION", "NOT_RECORDED", "TRADE_COLUMNS", "downsample_extremes",
           "format_value", "render_report", "write_report"]
