"""`bt run` and `bt report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backtester.cli.common import (
    ConfigOpt,
    SeedOpt,
    SymbolsOpt,
    TimeframeOpt,
    YearOpt,
    console,
    fail,
    fmt,
    load,
    split_symbols,
)
from backtester.errors import BtError, ConfigError


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
    memory_dir: Annotated[str | None, typer.Option(
        help="Memory folder (default data/memory).")] = None,
    no_memory: Annotated[bool, typer.Option(
        "--no-memory", help="Learning off: equal weights, nothing read or written.")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Move the memory folder aside to a timestamped backup first.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the unfinished run recorded in the memory.")] = False,
) -> None:
    """Run a backtest chunk by chunk, learning between chunks; results in runs/<run id>/."""
    from backtester.runner import run_backtest

    overrides: dict[str, Any] = {
        "run.year": year, "run.start": start, "run.end": end, "run.chunk": chunk,
        "run.out_dir": out, "data.path": data, "data.timeframe": timeframe, "data.tz": tz,
        "data.seed": seed, "memory.dir": memory_dir, "data.symbols": split_symbols(symbols),
        "memory.enabled": False if no_memory else None,
    }
    if data and symbols is None:
        overrides["data.symbols"] = []  # every symbol in the user's data
    try:
        cfg = load(config, overrides)
        if fresh and resume:
            raise ConfigError("--fresh and --resume contradict each other; choose one")
        if fresh and cfg.memory.enabled:
            from backtester.memory.store import backup_aside

            moved = backup_aside(Path(cfg.memory.dir))
            if moved is not None:
                console.print(f"memory moved aside to {moved}", highlight=False)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            tasks: dict[int, Any] = {}
            stages = ("prepare", "candidates", "votes", "simulate", "learn", "done")

            def on_progress(c, stage: str) -> None:
                if not console.is_terminal:  # logs and pipes get one plain line a stage
                    console.print(f"{c.label}: {stage}", highlight=False)
                    return
                if c.index not in tasks:
                    tasks[c.index] = progress.add_task(c.label, total=len(stages), stage="")
                progress.update(tasks[c.index], completed=stages.index(stage) + 1, stage=stage)

            result = run_backtest(cfg, progress=on_progress, resume=resume)
    except BtError as e:
        fail(e)
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
                      fmt(m["trades"], "int"), fmt(m["win_rate"], "rate"),
                      fmt(m["total_return"], "pct"), fmt(m["sharpe"]),
                      fmt(m["max_drawdown"], "pct"))
    m = result.metrics
    table.add_section()
    table.add_row("[bold]total", _period(result.chunks[0].start_time, result.chunks[-1].end_time),
                  fmt(m["trades"], "int"),
                  fmt(m["win_rate"], "rate"), fmt(m["total_return"], "pct"),
                  fmt(m["sharpe"]), fmt(m["max_drawdown"], "pct"))
    console.print(table)
    summary = (
        f"final equity {m['final_equity']:,.2f}  CAGR {fmt(m['cagr'], 'pct')}  "
        f"Sortino {fmt(m['sortino'])}  Calmar {fmt(m['calmar'])}  "
        f"profit factor {fmt(m['profit_factor'])}  SQN {fmt(m['sqn'])}  "
        f"exposure {fmt(m['exposure'], 'rate')}"
    )
    console.print(summary, highlight=False)
    console.print(f"results: {result.out_dir}", highlight=False)
    console.print(f"report:  {result.out_dir / 'report.html'}", highlight=False)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, e.g. runs/<run id>.")],
) -> None:
    """Write (again) the self-contained HTML report of a run: RUN_DIR/report.html."""
    from backtester.report import write_report

    try:
        path = write_report(run_dir)
    except BtError as e:
        fail(e)
    console.print(f"report: {path}", highlight=False)
