"""Shared pieces of the CLI: consoles, option types, the one-line error exit, formatting."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape


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


def load(config: Path | None, overrides: dict[str, Any]):
    from backtester.config import load_config

    return load_config(config, overrides)


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
