"""Shared pieces of the CLI: consoles, option types, the one-line error exit, formatting."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def make_console(*, stderr: bool = False, force_terminal: bool | None = None) -> Console:
    """A rich console that honours NO_COLOR (https://no-color.org): set and not empty, it
    writes no ANSI styling at all, not even bold (rich alone drops only the colours)."""
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, force_terminal=force_terminal,
                   color_system=None if plain else "auto", no_color=plain or None)


console = make_console()
error_console = make_console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file "
                                                "(default: configs/default.toml).")]
YearOpt = Annotated[int | None, typer.Option(help="Calendar year to run (UTC).")]
SymbolsOpt = Annotated[str | None, typer.Option(
    help="Comma-separated symbols, e.g. BTCUSD,ETHUSD.")]
TimeframeOpt = Annotated[str | None, typer.Option(help="Bar size to resample to, e.g. 15min, 1h.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the embedded market generator.")]
# experiments (bt sweep, optimize, montecarlo)
EngineOpt = Annotated[str | None, typer.Option(
    help="local (in-process, one trial at a time) or dask (default with more than one trial, "
         "--workers or --scheduler): up to one trial per worker in flight.")]
WorkersOpt = Annotated[int | None, typer.Option(
    help="Dask LocalCluster workers (default: the CPU count).")]
SchedulerOpt = Annotated[str | None, typer.Option(
    help="Address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786.")]
SweepsOpt = Annotated[Path, typer.Option(help="Folder of sweep folders.")]


def fail(error: Exception, code: int = 1) -> None:
    """Print one red line and exit with ``code`` (BT_DEBUG=1 re-raises for the traceback)."""
    if os.environ.get("BT_DEBUG"):
        raise error
    error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False,
                        soft_wrap=True)
    raise typer.Exit(code=code)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one yellow line (no source path), for every command."""
    error_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False,
                        soft_wrap=True)


def split_symbols(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def load(config: Path | None, overrides: dict[str, Any], flags: dict[str, str] | None = None):
    """The config: ``overrides`` ({"run.chunk": value}) over the file; ``flags`` names the
    flag behind each key, so that a bad value is blamed on the flag, not the file."""
    from backtester.config import load_config

    return load_config(config, overrides, flags=flags)


def where(path: str | Path) -> str:
    """A path as an absolute one (symbolic links kept), for "results:" and the like."""
    return os.path.abspath(path)


def print_paths(lines: list[tuple[str, str | Path]], out: Console | None = None) -> None:
    """``label: path`` lines, labels padded to one width; a long path is never broken
    (the terminal wraps it, so it can be copied whole)."""
    width = max(len(label) for label, _ in lines) + 1
    for label, path in lines:
        (out or console).print(f"{label + ':':<{width}} {path}", highlight=False, markup=False,
                               soft_wrap=True)


def print_table(table: Table, *, keys: int = 1, out: Console | None = None) -> None:
    """Print ``table`` as it is when it fits the console's width; on a narrower one (an
    80-column terminal or CI log) split its columns over several tables that each fit,
    every one repeating the first ``keys`` columns (the row labels), so that no cell is
    wrapped or cut to "…". A compact form (horizontal rules only, one space between
    columns) comes first when it fits. A single column too wide for the console is still
    printed (rich wraps it)."""
    out = out or console
    width = out.width
    if _table_width(out, table) <= width:
        out.print(table)
        return
    compact = _columns_of(table, keys, list(range(keys, len(table.columns))), compact=True)
    if _table_width(out, compact) <= width:  # lines between sections, no vertical rules
        out.print(compact)
        return
    groups: list[list[int]] = [[]]
    for index in range(keys, len(table.columns)):
        if groups[-1] and _table_width(out, _columns_of(table, keys, [*groups[-1], index])) \
                > width:
            groups.append([])
        groups[-1].append(index)
    parts = [_columns_of(table, keys, group, continued=number > 0)
             for number, group in enumerate(groups)]
    if any(_table_width(out, part) > width for part in parts):
        _print_records(table, keys, out)  # even the row labels and one column are too wide
        return
    for part in parts:
        out.print(part)


def _print_records(table: Table, keys: int, out: Console) -> None:
    """The last resort of `print_table`: the title, then one line a row, ``label  header
    value  header value ...``, wrapped between words like prose."""
    if table.title:
        out.print(table.title, highlight=False)

    def plain(cell: Any) -> Text:
        return Text.from_markup(cell) if isinstance(cell, str) else Text(str(cell))

    for number, row in enumerate(table.rows):
        line = Text(" ").join(plain(c._cells[number]) for c in table.columns[:keys])
        for column in table.columns[keys:]:
            line.append("  ")
            line.append_text(plain(column.header))
            line.append(" ")
            line.append_text(plain(column._cells[number]))
        out.print(line, highlight=False)


def _table_width(out: Console, table: Table) -> int:
    """The width ``table`` takes with no cell wrapped."""
    return Measurement.get(out, out.options.update(max_width=100_000), table).maximum


def _columns_of(table: Table, keys: int, picked: list[int], *, continued: bool = False,
                compact: bool = False) -> Table:
    """A copy of ``table`` with its first ``keys`` columns and those at ``picked``
    (``compact``: horizontal rules only and one space between columns)."""
    title = table.title
    if continued and isinstance(title, str):
        title = f"{title} (continued)"
    part = Table(title=title, title_justify=table.title_justify,
                 box=box.HORIZONTALS if compact else table.box, collapse_padding=compact,
                 pad_edge=table.pad_edge and not compact,
                 show_header=table.show_header, show_lines=table.show_lines,
                 header_style=table.header_style, title_style=table.title_style,
                 caption=table.caption if not continued else None, style=table.style,
                 border_style=table.border_style, expand=table.expand)
    columns = [table.columns[i] for i in [*range(min(keys, len(table.columns))), *picked]]
    for column in columns:
        part.add_column(column.header, footer=column.footer, justify=column.justify,
                        style=column.style, header_style=column.header_style,
                        overflow=column.overflow, no_wrap=column.no_wrap,
                        min_width=column.min_width, max_width=column.max_width,
                        vertical=column.vertical)
    for number, row in enumerate(table.rows):
        part.add_row(*(column._cells[number] for column in columns), style=row.style,
                     end_section=row.end_section)
    return part


def fmt(value: float | None, kind: str = "num") -> str:
    """A number for a table: pct (signed %), rate (%), int, weight (3 decimals), num."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{value:+.2%}"
    if kind == "rate":
        return f"{value:.2%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "weight":
        return f"{value:.3f}"
    return f"{value:.2f}"
