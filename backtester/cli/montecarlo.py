"""`bt montecarlo`: the same config on N resampled markets, and the spread of its results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from backtester.cli.common import ConfigOpt, console, fail, fmt, load, print_table
from backtester.cli.sweep import _progress, _trial_line
from backtester.errors import BtError, ConfigError

_KINDS = {"total_return": "pct", "sharpe": "num", "max_drawdown": "pct",
          "learned_minus_equal": "pct"}
_NAMES = {"total_return": "total return", "sharpe": "Sharpe", "max_drawdown": "max drawdown",
          "learned_minus_equal": "learned - equal"}


def montecarlo(
    paths: Annotated[int | None, typer.Option(
        "--paths", help="Number of resampled markets (the real one runs too).")] = None,
    config: ConfigOpt = None,
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="Set any config key, e.g. --set run.chunk=month (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the resampling (with the path index).")] = 0,
    mean_block: Annotated[float | None, typer.Option(
        "--mean-block", help="Mean block length of the bootstrap in bars (default: one day "
        "of bars).")] = None,
    noise: Annotated[float, typer.Option(
        help="Std of log noise on each bar's prices (0: none).")] = 0.0,
    engine: Annotated[str, typer.Option(
        help="local (in this process, one at a time) or dask (a LocalCluster, or "
        "--scheduler).")] = "dask",
    workers: Annotated[int | None, typer.Option(
        help="Workers of the Dask LocalCluster (default: the CPU count).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786.")] = None,
    out: Annotated[str, typer.Option(help="Folder for sweeps.")] = "sweeps",
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Continue the Monte Carlo sweep with this id (its finished paths "
        "are kept).")] = None,
) -> None:
    """Run the config on N block-bootstrapped markets and on the real one, as a sweep;
    results in <out>/<id>/ (results.parquet, montecarlo.json, trials/)."""
    from backtester.config import parse_assignment
    from backtester.experiments.engines import make_engine
    from backtester.experiments.montecarlo import (default_mean_block, montecarlo_settings,
                                                   montecarlo_spec, run_montecarlo)
    from backtester.experiments.sweep import new_sweep_id, read_sweep_spec

    try:
        if resume is not None:
            spec = read_sweep_spec(Path(out) / resume)
            sweep_id = resume
        elif paths is None:
            raise ConfigError("--paths N is needed (or --resume <sweep id>)")
        else:
            overrides: dict[str, Any] = dict(parse_assignment(a) for a in assignments or ())
            block = mean_block if mean_block is not None else \
                default_mean_block(load(config, overrides).data.timeframe)
            spec = montecarlo_spec(paths, seed=seed, mean_block=block, noise=noise,
                                   overrides=overrides,
                                   config_path=None if config is None else str(config))
            sweep_id = f"mc-{new_sweep_id(spec)}"
        with make_engine(engine, workers=workers, scheduler=scheduler) as runner, \
                _progress() as progress:  # the bar and plain lines of `bt sweep`
            task = progress.add_task("paths", total=len(spec.trials))

            def on_progress(finished: int, total: int, result: dict[str, Any] | None) -> None:
                progress.update(task, completed=finished)
                if result is not None and (result["status"] != "ok" or
                                           not console.is_terminal):
                    console.print(_trial_line(result, "sharpe", finished, total),
                                  highlight=False, markup=False)

            swept, summary = run_montecarlo(spec, engine=runner, out=out,
                                            resume=resume is not None, sweep_id=sweep_id,
                                            progress=on_progress)
    except BtError as e:
        fail(e)
    _render(summary, montecarlo_settings(spec), swept)


def _render(summary: dict[str, Any], settings: dict[str, Any], swept: Any) -> None:
    table = Table(title=f"bt montecarlo: {summary['paths']} of {settings['paths']} paths "
                  f"(mean block {settings['mean_block']:g} bars, noise {settings['noise']:g})",
                  title_justify="left")
    table.add_column("figure", justify="left")
    for q in summary["percentiles"]:
        table.add_column(f"p{q}", justify="right")
    table.add_column("original", justify="right")
    for name, row in summary["figures"].items():
        kind = _KINDS[name]
        table.add_row(_NAMES[name], *(fmt(row[f"p{q}"], kind) for q in summary["percentiles"]),
                      fmt(row["original"], kind))
    print_table(table)
    if summary["failed"]:
        console.print(f"{summary['failed']} paths failed (see results.parquet)",
                      highlight=False, markup=False)
    if swept.kept:
        console.print(f"{swept.kept} finished trials kept, {swept.ran} run",
                      highlight=False, markup=False)
    console.print(f"results: {swept.sweep_dir}", highlight=False, markup=False)
