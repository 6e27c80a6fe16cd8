"""The report document: the sections in reading order, the navigation, the page shell."""

from __future__ import annotations

from pathlib import Path

from backtester.memory.io import atomic_write_bytes
from backtester.report._books import books_section
from backtester.report._format import text
from backtester.report._learning import llm_section, providers_section, regimes_section
from backtester.report._load import load_run
from backtester.report._overview import (
    chunks_section,
    equity_section,
    summary_section,
    symbols_section,
)
from backtester.report._page import CSS, SCRIPT
from backtester.report._returns import drawdowns_section, returns_section
from backtester.report._risk import risk_section
from backtester.report._trades import config_section, prices_section, trades_section

NAVIGATION = (("equity", "Equity"), ("books", "Books"), ("returns", "Returns"),
              ("drawdowns", "Drawdowns"), ("chunks", "Chunks"), ("risk", "Risk"), ("symbols", "Symbols"),
              ("prices", "Prices"), ("providers", "Providers"), ("regimes", "Regimes"),
              ("llm", "LLM"), ("trades", "Trades"), ("config", "Config"))
"""Section ids and their links, in page order (the summary header comes first)."""


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
    run = load_run(Path(run_dir))
    title = f"bt run {text(run.summary.get('run_id', run.folder.name))}"
    sections = [
        summary_section(run),
        equity_section(run),
        books_section(run),
        returns_section(run),
        drawdowns_section(run),
        chunks_section(run.summary),
        risk_section(run),
        symbols_section(run),
        prices_section(run),
        providers_section(run.summary),
        regimes_section(run),
        llm_section(run.summary),
        trades_section(run.trades),
        config_section(run.config_text),
    ]
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in NAVIGATION)
    hint = ('<p class="note zoom-hint">Time charts: drag across a chart to zoom into that '
            "stretch, Shift + wheel to zoom around the pointer, sideways scroll to pan, "
            "double-click to reset.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<nav>{nav}</nav>\n<main>\n{sections[0]}\n{hint}\n"
            + "\n".join(sections[1:]) + f"\n</main>\n<script>{SCRIPT}</script>\n"
            "</body>\n</html>\n")


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
