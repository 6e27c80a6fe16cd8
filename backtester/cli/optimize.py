"""`bt optimize`: an Optuna search over config ranges, each trial a complete run."""

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
    TimeRemainingColumn,
)
from rich.table import Table

from backtester.cli.common import (
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

PERCENT = frozenset({"total_return", "cagr", "max_drawdown", "learned_minus_equal",
                     "average_trade_return", "best_trade", "worst_trade"})


def optimize(
    spec: Annotated[Path, typer.Argument(
        help="Search spec TOML: a base config, set and search tables.")],
    trials: Annotated[int, typer.Option(
        help="Finished trials wanted in all (a resumed search counts its earlier ones).")] = 20,
    objective: Annotated[str, typer.Option(
        help="Metric to optimise: sharpe, calmar, total_return, sortino, "
             "learned_minus_equal, ...")] = "sharpe",
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    out: SweepsOpt = Path("sweeps"),
    resume: Annotated[str | None, typer.Option(
        help="Sweep id of a search to go on with (same spec and objective).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    select_on: Annotated[str | None, typer.Option(
        help="chunks: also choose a trial per chunk on the chunks before it only, and "
             "show that out-of-sample result beside the in-sample best.")] = None,
) -> None:
    """Search config ranges with Optuna's TPE; print the best trial and its deflated Sharpe."""
    from backtester.experiments.engines import make_engine
    from backtester.experiments.optimize import load_search_spec, run_search
    from backtester.experiments.selection import SELECT_ON
    from backtester.experiments.spec import check_objective

    try:
        if select_on is not None and select_on not in SELECT_ON:
            raise ConfigError(f"--select-on must be {' or '.join(SELECT_ON)}, was {select_on!r}")
        check_objective(objective)
        search = load_search_spec(spec)
        name = engine or ("dask" if scheduler or workers or trials > 1 else "local")
        with make_engine(name, workers=workers, scheduler=scheduler) as runner, \
                _progress() as progress:
            task = progress.add_task("trials", total=trials)

            def on_result(result: dict[str, Any], finished: int) -> None:
                progress.update(task, completed=finished)
                if not console.is_terminal:
                    console.print(_trial_line(result, objective), highlight=False,
                                  markup=False)

            outcome = run_search(search, trials=trials, objective=objective, engine=runner,
                                 out=out, resume=resume, seed=seed, select_on=select_on,
                                 on_result=on_result)
    except BtError as e:
        fail(e)
    _render(outcome)
    if outcome["selection"] is not None:
        _render_selection(outcome["selection"])


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def _trial_line(result: dict[str, Any], objective: str) -> str:
    if result["status"] != "ok":
        return f"{result['trial_id']} failed: {result['error']}"
    return f"{result['trial_id']} {objective} {fmt(result['value'])}"


def _render(outcome: dict[str, Any]) -> None:
    from backtester.experiments.spec import MINIMISED

    results, best, objective = outcome["results"], outcome["best"], outcome["objective"]
    summary = outcome["summary"]
    failed = [r for r in results if r["status"] != "ok"]
    done = sorted((r for r in results if r["status"] == "ok"), key=lambda r: r["value"],
                  reverse=objective not in MINIMISED)
    keys = list(best["params"]) if best else []
    searched = [k for k in keys if len({repr(r["params"].get(k)) for r in results}) > 1]
    table = Table(title=f"bt optimize {outcome['sweep_id']}: best of {len(results)} trials "
                        f"by {objective}", title_justify="left")
    for name in ("trial", objective, *_short_names(searched), "return", "sharpe", "max DD",
                 "trades"):
        table.add_column(escape(name), justify="left" if name == "trial" else "right")
    for r in done[:10]:
        m = r["overall"]
        table.add_row(r["trial_id"], fmt(r["value"], _kind(objective)),
                      *(_param(r["params"][k]) for k in searched),
                      fmt(m.get("total_return"), "pct"), fmt(m.get("sharpe")),
                      fmt(m.get("max_drawdown"), "pct"), fmt(m.get("trades"), "int"))
    print_table(table)
    if best is None:
        _line(f"no trial finished with a {objective}; {len(failed)} failed")
    else:
        params = ", ".join(f"{k}={_param(best['params'][k])}" for k in searched) or "-"
        _line(f"best {best['trial_id']}: {objective} {fmt(best['value'], _kind(objective))} "
              f"with {params}")
        variance = summary.get("sharpe_variance")
        _line(f"deflated Sharpe ratio of the best: {fmt(summary.get('deflated_sharpe'))} "
              f"({summary['n_trials']} finished trials, variance of their daily Sharpe "
              f"ratios {'-' if variance is None else f'{variance:.3g}'});  PBO "
              f"{fmt(summary.get('pbo'), 'rate')}")
    for note in summary.get("notes") or []:
        _line(f"note: {note}")
    for r in failed[:5]:
        _line(f"failed {r['trial_id']}: {r['error']}")
    if len(failed) > 5:
        _line(f"... and {len(failed) - 5} more failed trials (see results.parquet)")
    ran = outcome["ran"]
    _line(f"{ran} trial{'s' if ran != 1 else ''} run now; search: {outcome['sweep_dir']} "
          f"(resume with --resume {outcome['sweep_id']})")


def _render_selection(selection: dict[str, Any]) -> None:
    note = f" ({selection['note']})" if selection["note"] else ""
    table = Table(title=f"walk-forward selection on {selection['objective']}{note}",
                  title_justify="left")
    for name in ("chunk", "chosen", "in-sample before", "out-of-sample return"):
        table.add_column(name, justify="left" if name in ("chunk", "chosen") else "right")
    for row in selection["chunks"]:
        table.add_row(row["label"], row["chosen"], fmt(row["in_sample"], "pct"),
                      fmt(row["return"], "pct"))
    print_table(table)
    best, objective = selection["in_sample_best"], selection["objective"]
    _line(f"in-sample best {best['trial_id']} ({objective} {fmt(best['objective'], 'pct')} "
          f"over all chunks): return {fmt(best['total_return'], 'pct')}  vs  out-of-sample, "
          f"chosen on past chunks only: {fmt(selection['out_of_sample_total'], 'pct')} "
          f"(the first chunk trades the first trial)")


def _kind(objective: str) -> str:
    """Returns and drawdowns as signed percentages, other figures as numbers."""
    return "pct" if objective in PERCENT else "num"


def _short_names(keys: list[str]) -> list[str]:
    """Column names: the last part of each dotted key, the whole key where two share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [s if last.count(s) == 1 else k for k, s in zip(keys, last)]


def _line(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
