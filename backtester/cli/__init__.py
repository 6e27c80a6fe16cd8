"""The `bt` command line: parse, load the config, call the library, render with rich."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backtester.errors import BtError

app = typer.Typer(help="bt: a chunked, memory-learning backtester.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Generate, validate and describe bars.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
error_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file "
                                                "(default: configs/default.toml).")]
YearOpt = Annotated[int | None, typer.Option(help="Calendar year to run (UTC).")]
SymbolsOpt = Annotated[str | None, typer.Option(help="Comma-separated symbols, e.g. BTCUSD,ETHUSD.")]
TimeframeOpt = Annotated[str | None, typer.Option(help="Bar size to resample to, e.g. 15min, 1h.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the embedded market generator.")]


def _fail(error: Exception) -> None:
    """Print one red line and exit 1 (BT_DEBUG=1 re-raises for the traceback)."""
    if os.environ.get("BT_DEBUG"):
        raise error
    error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _symbols(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _load(config: Path | None, overrides: dict[str, Any]):
    from backtester.config import load_config

    return load_config(config, overrides)


def _fmt(value: float | None, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{value:+.2%}"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:.2f}"


@app.command()
def run(
    year: YearOpt = None,
    start: Annotated[str | None, typer.Option(help="Start date (inclusive), with --end.")] = None,
    end: Annotated[str | None, typer.Option(help="End date (exclusive), with --start.")] = None,
    chunk: Annotated[str | None, typer.Option(
        help="Chunking: quarter, month, week, year, all, or a number of bars.")] = None,
    config: ConfigOpt = None,
    data: Annotated[str | None, typer.Option(
        help="Your bars: a CSV/Parquet file or folder (default: the embedded market).")] = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps in --data.")] = None,
    seed: SeedOpt = None,
    out: Annotated[str | None, typer.Option(help="Folder for run results (default runs/).")] = None,
    memory_dir: Annotated[str | None, typer.Option(help="Memory folder.")] = None,
) -> None:
    """Run a backtest chunk by chunk and write results to runs/<run id>/."""
    from backtester.runner import run_backtest

    overrides: dict[str, Any] = {
        "run.year": year, "run.start": start, "run.end": end, "run.chunk": chunk,
        "run.out_dir": out, "data.path": data, "data.timeframe": timeframe, "data.tz": tz,
        "data.seed": seed, "memory.dir": memory_dir, "data.symbols": _symbols(symbols),
    }
    if data and symbols is None:
        overrides["data.symbols"] = []  # every symbol in the user's data
    try:
        cfg = _load(config, overrides)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            tasks: dict[int, Any] = {}
            stages = ("candidates", "votes", "simulate", "done")

            def on_progress(c, stage: str) -> None:
                if c.index not in tasks:
                    tasks[c.index] = progress.add_task(c.label, total=len(stages), stage="")
                progress.update(tasks[c.index], completed=stages.index(stage) + 1, stage=stage)

            result = run_backtest(cfg, progress=on_progress)
    except BtError as e:
        _fail(e)
    _render_run(result)


def _period(start, end) -> str:
    return f"{start:%Y-%m-%d}..{end:%m-%d}" if start.year == end.year else \
        f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"


def _render_run(result) -> None:
    table = Table(title=f"bt run {result.run_id}", title_justify="left")
    for name in ("chunk", "period", "trades", "win rate", "return", "sharpe", "max DD"):
        table.add_column(name, justify="left" if name in ("chunk", "period") else "right")
    for c in result.chunks:
        m = c.metrics
        table.add_row(c.chunk.label, _period(c.start_time, c.end_time),
                      _fmt(m["trades"], "int"), _fmt(m["win_rate"], "pct").lstrip("+"),
                      _fmt(m["total_return"], "pct"), _fmt(m["sharpe"]),
                      _fmt(m["max_drawdown"], "pct"))
    m = result.metrics
    table.add_section()
    table.add_row("[bold]total", _period(result.chunks[0].start_time, result.chunks[-1].end_time),
                  _fmt(m["trades"], "int"),
                  _fmt(m["win_rate"], "pct").lstrip("+"), _fmt(m["total_return"], "pct"),
                  _fmt(m["sharpe"]), _fmt(m["max_drawdown"], "pct"))
    console.print(table)
    summary = (
        f"final equity {m['final_equity']:,.2f}  CAGR {_fmt(m['cagr'], 'pct')}  "
        f"Sortino {_fmt(m['sortino'])}  Calmar {_fmt(m['calmar'])}  "
        f"profit factor {_fmt(m['profit_factor'])}  SQN {_fmt(m['sqn'])}  "
        f"exposure {_fmt(m['exposure'], 'pct').lstrip('+')}"
    )
    console.print(summary, highlight=False)
    console.print(f"results: {result.out_dir}", highlight=False)


def _bars_for(path: str | None, year: int | None, symbols: str | None, timeframe: str | None,
              tz: str | None, seed: int | None, config: Path | None):
    """Bars from a user file, or the embedded market for a year (cached)."""
    from backtester.data import embedded_bars, load_bars, resample
    import pandas as pd

    if path:
        bars = load_bars(path, symbols=_symbols(symbols), tz=tz)
    else:
        cfg = _load(config, {"data.symbols": _symbols(symbols), "data.seed": seed})
        y = year if year is not None else (cfg.run.year or 2025)
        bars = embedded_bars(pd.Timestamp(f"{y}-01-01", tz="UTC"),
                             pd.Timestamp(f"{y + 1}-01-01", tz="UTC"),
                             cfg.data.symbols, cfg.data.seed, cfg.data.cache_dir)
    return resample(bars, timeframe) if timeframe else bars


@data_app.command("generate")
def data_generate(
    year: YearOpt = 2025,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="Also write the bars to this .parquet or .csv file.")] = None,
) -> None:
    """Generate (and cache) the embedded market for a year."""
    from backtester.data import save_bars

    try:
        bars = _bars_for(None, year, symbols, timeframe, None, seed, config)
        if out is not None:
            save_bars(bars, out)
    except BtError as e:
        _fail(e)
    console.print(f"generated {bars.n_bars:,} bars x {bars.n_assets} symbols "
                  f"({', '.join(bars.symbols)}), timeframe {bars.timeframe}"
                  + (f", written to {out}" if out else ""), highlight=False)


@data_app.command("validate")
def data_validate(
    path: Annotated[str, typer.Argument(help="CSV/Parquet file or folder of files.")],
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
) -> None:
    """Check a data file: columns, NaNs, prices, OHLC consistency, order, duplicates, gaps."""
    from backtester.data import find_gaps, load_bars

    try:
        bars = load_bars(path, tz=tz)
    except BtError as e:
        _fail(e)
    gaps = find_gaps(bars)
    console.print(f"[green]ok[/] {path}: {bars.n_bars:,} bars x {bars.n_assets} symbols, "
                  f"timeframe {bars.timeframe}, {len(gaps)} gaps", highlight=False)
    for first, last in gaps[:10]:
        console.print(f"  gap {first} -> {last}", highlight=False)


@data_app.command("info")
def data_info(
    path: Annotated[str | None, typer.Argument(
        help="CSV/Parquet file or folder (default: the embedded market).")] = None,
    year: YearOpt = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Describe bars: symbols, period, timeframe, price ranges, gaps."""
    from backtester.data import bars_info

    try:
        info = bars_info(_bars_for(path, year, symbols, timeframe, tz, seed, config))
    except BtError as e:
        _fail(e)
    table = Table(title=path or "embedded market", title_justify="left", show_header=False)
    for key, value in info.items():
        if isinstance(value, list) and key != "symbols":
            value = "\n".join(str(v) for v in value) or "-"
        elif isinstance(value, dict):
            value = "\n".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    app()
