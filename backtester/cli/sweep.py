"""`bt sweep`: a grid, a list of configs or seeds, each trial a complete chunked run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from backtester.cli.common import (
    ConfigOpt,
    EngineOpt,
    SchedulerOpt,
    SweepsOpt,
    WorkersOpt,
    console,
    fail,
    fmt,
    print_table,
)
from backtester.errors import BtError, ConfigError

BEST_ROWS = 10


def sweep(
    spec: Annotated[Path | None, typer.Argument(
        help="Sweep spec TOML: config, \\[set], \\[grid], \\[\\[trials]], seeds.")] = None,
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="key=value for every trial, or key=v1,v2,v3 for a grid dimension "
        "(repeatable; over the spec file).")] = None,
    config: ConfigOpt = None,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
    out: SweepsOpt = Path("sweeps"),
    resume: Annotated[str | None, typer.Option(
        help="Sweep id to continue: finished trials are kept, the others re-run.")] = None,
    sweep_id: Annotated[str | None, typer.Option(
        "--sweep-id", help="Name of a new sweep's folder (default: time and trial hash).")]
    = None,
    objective: Annotated[str | None, typer.Option(
        help="Metric that ranks trials, higher is better: sharpe (default), calmar, "
             "total_return, sortino, learned_minus_equal, ...")] = None,
    select_on: Annotated[str | None, typer.Option(
        help="chunks: also choose a trial per chunk on the chunks before it only, and "
             "show that out-of-sample result beside the in-sample best.")] = None,
) -> None:
    """Run every trial of a sweep on Dask or locally; results in sweeps/<sweep id>/.

    Exit code 0: at least one trial finished; 1: an error, or every trial failed.
    """
    from backtester.experiments.engines import make_engine
    from backtester.experiments.spec import load_spec
    from backtester.experiments.sweep import new_sweep_id, read_sweep_spec, run_sweep

    try:
        from backtester.experiments.selection import SELECT_ON

        if select_on is not None and select_on not in SELECT_ON:
            raise ConfigError(f"--select-on must be {' or '.join(SELECT_ON)}, was {select_on!r}")
        if spec is None and resume is not None and not assignments and config is None:
            plan = read_sweep_spec(out / resume)
            if objective is not None:
                from dataclasses import replace

                from backtester.experiments.spec import check_objective

                plan = replace(plan, objective=check_objective(objective))
        elif spec is None and not assignments:
            raise ConfigError("give a sweep spec file, --set key=v1,v2 or --resume "
                              "<sweep id>")
        else:
            plan = load_spec(spec, assignments or (), config_path=config, objective=objective)
        name = engine or ("dask" if scheduler or workers or len(plan.trials) > 1 else "local")
        sweep_id = resume or sweep_id or new_sweep_id(plan)
        console.print(f"sweep {out / sweep_id}: {len(plan.trials)} trials on {name}",
                      highlight=False, markup=False)
        with make_engine(name, workers=workers, scheduler=scheduler) as runner, \
                _progress() as progress:
            task = progress.add_task("trials", total=len(plan.trials))

            def on_progress(finished: int, total: int, result: dict[str, Any] | None) -> None:
                progress.update(task, completed=finished)
                if console.is_terminal:
                    return
                if result is None:  # logs and pipes get one plain line a trial
                    console.print(f"{total} trials, {finished} already finished",
                                  highlight=False, markup=False)
                else:
                    console.print(_trial_line(result, plan.objective, finished, total),
                                  highlight=False, markup=False)

            outcome = run_sweep(plan, engine=runner, out=out, resume=resume is not None,
                                sweep_id=sweep_id, progress=on_progress)
        selection = _select(out / sweep_id, plan.objective) if select_on else None
    except BtError as e:
        fail(e)
    except KeyboardInterrupt:
        resume_hint = f": bt sweep --out {out} --resume {sweep_id}" if sweep_id else ""
        fail(BtError(f"interrupted; finished trials are kept{resume_hint}"), code=130)
    _render(outcome, plan)
    if selection is not None:
        from backtester.cli.optimize import _render_selection

        _render_selection(selection)
    if outcome.summary["finished"] == 0:
        raise typer.Exit(code=1)  # every trial failed: each said why above


def _select(sweep_dir: Path, objective: str) -> dict[str, Any]:
    """Walk-forward selection over the sweep's trials, written to selection.json."""
    from backtester.experiments.optimize import SELECTION
    from backtester.experiments.selection import select_in_sweep
    from backtester.memory.io import write_json
    from backtester.results import json_ready

    selection = select_in_sweep(sweep_dir, objective)
    write_json(sweep_dir / SELECTION, json_ready(selection))
    return selection


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console, transient=True)


def _trial_line(result: dict[str, Any], objective: str, finished: int, total: int) -> str:
    head = f"[{finished}/{total}] {result['trial_id']}"
    if result["status"] != "ok":
        return f"{head} failed: {result['error']}"
    value = (result.get("overall") or {}).get(objective)
    if value is None:
        value = (result.get("books") or {}).get(objective)
    return f"{head} {objective} {fmt(value)} ({result.get('wall_s', 0.0):.1f} s)"


def _render(outcome: Any, plan: Any) -> None:
    from backtester.experiments.sweep import objective_column, rank

    frame, summary = outcome.results, outcome.summary
    column = objective_column(frame, summary["objective"])
    table = Table(title=f"bt sweep {outcome.sweep_id}: best of {summary['finished']} "
                  f"finished trials by {summary['objective']}", title_justify="left")
    parameters = [p for p in plan.parameters if p in frame]
    for name in ("trial", summary["objective"], *parameters, "return", "max DD",
                 "learned - equal"):
        table.add_column(escape(name), justify="left" if name == "trial" or name in parameters
                         else "right", overflow="fold")
    if "status" in frame:
        for _, row in rank(frame, summary["objective"]).head(BEST_ROWS).iterrows():
            table.add_row(row["trial_id"], fmt(_number(row.get(column))),
                          *(escape(str(row[p])) for p in parameters),
                          fmt(_number(row.get("total_return")), "pct"),
                          fmt(_number(row.get("max_drawdown")), "pct"),
                          fmt(_number(row.get("books.learned_minus_equal")), "pct"))
    print_table(table)
    best = summary.get("best")
    if best is not None:
        pbo = summary.get("pbo")
        console.print(
            f"best {best['trial_id']}: deflated Sharpe ratio "
            f"{fmt(summary.get('deflated_sharpe'), 'rate')} (the probability its Sharpe beats "
            f"the best of {summary['n_trials']} skill-less trials), probability of backtest "
            f"overfitting {'-' if pbo is None else fmt(pbo, 'rate')}",
            highlight=False, markup=False)
    for note in summary.get("notes", []):
        console.print(f"note: {note}", highlight=False, markup=False)
    failed = frame[frame["status"] != "ok"]
    for _, row in failed.iterrows():
        console.print(f"[red]failed[/] {escape(row['trial_id'])}: {escape(str(row['error']))}",
                      highlight=False)
    kept = f" ({outcome.kept} kept from before)" if outcome.kept else ""
    console.print(f"trials:  {outcome.ran} run{kept}", highlight=False, markup=False)
    for label in ("results", "returns", "report"):
        if label in outcome.paths:
            console.print(f"{label + ':':<8} {outcome.paths[label]}", highlight=False,
                          markup=False)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
