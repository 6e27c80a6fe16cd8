"""`bt run` and `bt report`."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from backtester.cli.common import (
    ConfigOpt,
    SeedOpt,
    SymbolsOpt,
    TimeframeOpt,
    YearOpt,
    console,
    error_console,
    fail,
    fmt,
    load,
    print_paths,
    print_table,
    split_symbols,
    where,
)
from backtester.errors import BtError, ConfigError


RUN_FLAGS = {"run.year": "--year", "run.start": "--start", "run.end": "--end",
             "run.chunk": "--chunk", "run.out_dir": "--out", "data.path": "--data",
             "data.timeframe": "--timeframe", "data.tz": "--tz", "data.seed": "--seed",
             "memory.dir": "--memory-dir", "data.symbols": "--symbols",
             "memory.mode": "--memory-mode", "data.on_duplicate": "--on-duplicate"}
"""The config key each `bt run` flag sets, so that a bad value names the flag."""


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
    on_duplicate: Annotated[str | None, typer.Option(
        "--on-duplicate", help="Rows of one symbol at one time in --data: error (default), "
        "first, last or mean.")] = None,
    seed: SeedOpt = None,
    out: Annotated[str | None, typer.Option(help="Folder for run results (default runs/).")] = None,
    memory_dir: Annotated[str | None, typer.Option(
        help="Memory folder (default data/memory).")] = None,
    memory_mode: Annotated[str | None, typer.Option(
        "--memory-mode", help="learn (default): decide with the memory and commit each chunk "
        "to it; frozen: decide with it, write nothing (out-of-sample evaluation); off: equal "
        "weights, nothing read or written.")] = None,
    no_memory: Annotated[bool, typer.Option(
        "--no-memory", help="The same as --memory-mode off.")] = False,
    in_sample: Annotated[bool, typer.Option(
        "--in-sample", help="Let a frozen run decide over a period the memory learned from "
        "(the summary then says the evaluation is in-sample).")] = False,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="Name of the run folder under --out (default: the start time and "
        "the config hash).")] = None,
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="Set any config key, e.g. --set ensemble.learning_rate=0.05 "
        "(repeatable; checked like the file).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say how many candidates and LLM calls the run would make (and "
        "how many are cached, and how long it would take), then stop.")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Move the memory folder aside to a timestamped backup first.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the unfinished run recorded in the memory.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print only the results folder line (errors still go to "
        "stderr).")] = False,
    json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (run id, folder, overall metrics, books "
        "summary) and nothing else on stdout.")] = False,
) -> None:
    """Run a backtest chunk by chunk, learning between chunks; results in runs/<run id>/."""
    from backtester.runner import run_backtest

    overrides: dict[str, Any] = {
        "run.year": year, "run.start": start, "run.end": end, "run.chunk": chunk,
        "run.out_dir": out, "data.path": data, "data.timeframe": timeframe, "data.tz": tz,
        "data.seed": seed, "memory.dir": memory_dir, "data.symbols": split_symbols(symbols),
        "memory.mode": memory_mode, "data.on_duplicate": on_duplicate,
    }
    flags = dict(RUN_FLAGS)
    if data and symbols is None:
        overrides["data.symbols"] = []  # every symbol in the user's data
        flags["data.symbols"] = "--data"
    try:
        if year is not None and (start is not None or end is not None):
            raise ConfigError("--year and --start/--end contradict each other; give a year "
                              "or a start and an end")
        if no_memory and memory_mode not in (None, "off"):
            raise ConfigError(f"--no-memory and --memory-mode {memory_mode} contradict each "
                              "other; choose one")
        if no_memory:
            overrides["memory.mode"] = "off"
            flags["memory.mode"] = "--no-memory"
        from backtester.config import parse_assignment

        for text in assignments or ():
            key, value = parse_assignment(text)
            overrides[key] = value
            flags[key] = f"--set {key}"
        cfg = load(config, overrides, flags)
        if fresh and resume:
            raise ConfigError("--fresh and --resume contradict each other; choose one")
        if fresh and not cfg.memory.learns:
            raise ConfigError(f"--fresh empties the memory a learning run fills; with "
                              f"--memory-mode {cfg.memory.mode} drop --fresh")
        if in_sample and cfg.memory.mode != "frozen":
            raise ConfigError("--in-sample goes with --memory-mode frozen")
        if quiet and json:
            raise ConfigError("--quiet and --json contradict each other; choose one")
        if dry_run and (quiet or json):
            raise ConfigError("--dry-run prints a plan, not a summary; drop --quiet/--json")
        if dry_run:
            _render_plan(cfg)
            return
        scripted = quiet or json  # stdout holds the one line or the one JSON object
        if fresh:
            from backtester.memory.store import backup_aside

            moved = backup_aside(Path(cfg.memory.dir))
            if moved is not None:
                (error_console if scripted else console).print(
                    f"memory moved aside to {moved}", highlight=False, markup=False)
        with nullcontext() if scripted else \
                Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                         TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                         console=console, transient=True) as progress:
            tasks: dict[int, Any] = {}
            stages = ("prepare", "candidates", "votes", "simulate", "learn", "done")

            def on_progress(c, stage: str) -> None:
                if scripted:
                    return
                if not console.is_terminal:  # logs and pipes get one plain line a stage
                    console.print(f"{c.label}: {stage}", highlight=False, markup=False)
                    return
                if c.index not in tasks:
                    tasks[c.index] = progress.add_task(c.label, total=len(stages), stage="")
                progress.update(tasks[c.index], completed=stages.index(stage) + 1, stage=stage)

            def on_notice(line: str) -> None:
                if scripted:  # notices still reach stderr, stdout stays parseable
                    error_console.print(line, highlight=False, markup=False)
                else:
                    console.print(line, highlight=False, markup=False)

            with _few_collections():
                result = run_backtest(cfg, progress=on_progress, notice=on_notice,
                                      resume=resume, in_sample=in_sample, run_id=run_id)
    except BtError as e:
        fail(e)
    if json:
        typer.echo(orjson.dumps(run_json(result), option=orjson.OPT_INDENT_2).decode())
    elif quiet:
        typer.echo(f"results: {where(result.out_dir)}")
    else:
        _render_run(result)


@contextmanager
def _few_collections() -> Iterator[None]:
    """Python's cyclic collector, tuned for a run: it allocates hundreds of thousands of
    long-lived, acyclic objects (decisions kept until their trades close, outcome dicts,
    vector rows), and every full collection rescans all of them. Freeze what exists (the
    imported modules, the config) and collect the youngest objects every 10,000
    allocations instead of 700: a one-minute year spends 1.6 s collecting instead of
    5.7 s. The settings are restored afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def run_json(result) -> dict[str, Any]:
    """`bt run --json`: the run id, its folder, the overall metrics and the books summary,
    with the figures exactly as metrics.json holds them."""
    from backtester.results import run_summary

    summary = run_summary(result)
    books = summary["books"] or {}
    overall = books.get("overall", {})

    def total_return(name: str | None) -> float | None:
        return overall.get(name, {}).get("total_return") if name else None

    best = books.get("best_single")
    return {
        "run_id": summary["run_id"],
        "results": where(result.out_dir),
        "report": where(result.out_dir / "report.html"),
        "config_hash": summary["config_hash"],
        "period": summary["period"],
        "memory_mode": summary["memory_mode"],
        "in_sample": summary["in_sample"],
        "metrics": summary["overall"],
        "books": {
            "learned": total_return("learned"),
            "equal_weight": total_return("equal_weight"),
            "best_single": None if best is None else {"name": best,
                                                      "total_return": total_return(best)},
            "buy_and_hold": total_return("buy_and_hold"),
            "learned_minus_equal": books.get("learned_minus_equal"),
            "regret": books.get("regret"),
            "significance": books.get("significance", {}).get("sentence"),
        } if books else None,
    }


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
    print_table(table)
    summary = (
        f"final equity {m['final_equity']:,.2f}  CAGR {fmt(m['cagr'], 'pct')}  "
        f"Sortino {fmt(m['sortino'])}  Calmar {fmt(m['calmar'])}  "
        f"profit factor {fmt(m['profit_factor'])}  SQN {fmt(m['sqn'])}  "
        f"exposure {fmt(m['exposure'], 'rate')}"
    )
    console.print(summary, highlight=False, markup=False)
    console.print(risk_line(result), highlight=False, markup=False)
    _render_books(result)
    _render_llm(result)
    lines = [("results", where(result.out_dir)),
             ("report", where(result.out_dir / "report.html"))]
    if result.memory_mode in MEMORY_USE:  # not with --memory-mode off
        lines.append(("memory", f"{where(result.config.memory.dir)} "
                                f"({MEMORY_USE[result.memory_mode]})"))
    print_paths(lines)


MEMORY_USE = {"learn": "read and updated", "frozen": "read only"}
"""What a run did with the memory folder, for the "memory:" line."""


def risk_line(result) -> str:
    """Exits by reason, then what the risk manager refused or resized, by reason."""
    from backtester.results import total_risk

    total = total_risk(result.chunks)

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda x: -x[1]))

    parts = [f"exits: {listed(total['exits']) or 'none'}"]
    for kind in ("refused", "resized"):
        if total[kind]:
            parts.append(f"risk manager {kind} {sum(total[kind].values()):,} entries "
                         f"({listed(total[kind])})")
    return "; ".join(parts)


def _render_books(result) -> None:
    """Per chunk: learned / equal weight / best single provider / buy and hold, then
    whether learning beat equal weights by more than noise."""
    books = result.books
    if not books:
        return
    table = Table(title="did the learning help? (return per chunk)", title_justify="left")
    for name in ("chunk", "learned", "equal weight", "best single", "buy & hold",
                 "learned - equal", "regret"):
        table.add_column(name, justify="left" if name in ("chunk", "best single") else "right")

    def row(label: str, figures: dict, attribution: dict) -> list[str]:
        best = attribution.get("best_single")
        best_text = "-" if best is None else \
            f"{best} {fmt(figures[best]['total_return'], 'pct')}"
        return [label, fmt(figures["learned"]["total_return"], "pct"),
                fmt(figures["equal_weight"]["total_return"], "pct"), best_text,
                fmt(figures["buy_and_hold"]["total_return"], "pct"),
                fmt(attribution.get("learned_minus_equal"), "pct"),
                fmt(attribution.get("regret"), "pct")]

    for c in result.chunks:
        if c.books:
            table.add_row(*row(c.chunk.label, c.books["figures"], c.books))
    table.add_section()
    table.add_row(*row("[bold]total", books["overall"], books))
    print_table(table)
    mode = {"frozen": "frozen memory (nothing learned during this run)",
            "off": "memory off (equal weights)"}.get(result.memory_mode)
    notes = [mode] if mode else []
    if result.in_sample:
        notes.append("IN-SAMPLE: the memory learned from this period")
    b = books["benchmark"]
    console.print(
        f"{books['significance']['sentence']}; probabilistic Sharpe ratio of learned "
        f"{fmt(books['significance']['psr'], 'rate')}; vs buy & hold: alpha "
        f"{fmt(b['alpha'], 'pct')}/yr, beta {fmt(b['beta'])}, information ratio "
        f"{fmt(b['information_ratio'])}, correlation {fmt(b['correlation'])}"
        + (f" [{'; '.join(notes)}]" if notes else ""), highlight=False, markup=False)


def _render_plan(cfg) -> None:
    """--dry-run: candidates per chunk, calls per provider (cached), estimated time."""
    from backtester.runner import plan_line, plan_run

    plan, preflight, providers = plan_run(cfg)
    table = Table(title="bt run --dry-run", title_justify="left")
    callers = list(plan["providers"])
    table.add_column("chunk")
    table.add_column("candidates", justify="right")
    for name in callers:
        table.add_column(f"{name}: calls to make (cached)", justify="right")
    for c in plan["chunks"]:
        table.add_row(c["label"], fmt(c["candidates"], "int"),
                      *(f"{c['providers'][n]['calls']:,} ({c['providers'][n]['cached']:,})"
                        for n in callers))
    print_table(table)
    console.print(plan_line(plan, preflight, providers), highlight=False, markup=False)
    for name, figures in preflight.items():
        if figures.get("latency_s") is not None:
            console.print(f"preflight {name}: answered in {figures['latency_s']:.2f} s",
                          highlight=False, markup=False)


def _render_llm(result) -> None:
    """LLM calls of the run: requests, cache, abstentions, failures, tokens, cost."""
    from backtester.results import llm_usage

    usage = llm_usage(result)
    if not usage:
        return
    table = Table(title="LLM providers", title_justify="left")
    columns = {"requests": "requests", "cache_hits": "cache hits", "cache_misses": "misses",
               "abstentions_malformed": "malformed", "abstentions_error": "failed",
               "abstentions_breaker": "breaker", "abstentions_replay_miss": "replay miss",
               "timeouts": "timeouts", "retries": "retries", "rate_limited": "429s",
               "prompt_tokens": "tokens in", "completion_tokens": "tokens out"}
    table.add_column("provider")
    for label in [*columns.values(), "cost"]:
        table.add_column(label, justify="right")
    for name, counts in usage["providers"].items():
        table.add_row(name, *(fmt(counts.get(k, 0), "int") for k in columns),
                      f"{counts.get('cost', 0.0):.4f}")
    print_table(table)
    per_trade = usage["cost_per_trade"]
    console.print(f"LLM cost {usage['cost']:.4f} in all, "
                  f"{'-' if per_trade is None else f'{per_trade:.5f}'} per trade",
                  highlight=False, markup=False)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, e.g. runs/<run id>.")],
) -> None:
    """Write (again) the self-contained HTML report of a run: RUN_DIR/report.html."""
    from backtester.report import write_report

    try:
        path = write_report(run_dir)
    except BtError as e:
        fail(e)
    console.print(f"report: {path}", highlight=False, markup=False)


def regress(
    config: Annotated[Path, typer.Option("--config", "-c", help="The regression config.")] =
    Path("configs/ci.toml"),
    update: Annotated[bool, typer.Option(
        "--update", help="Rewrite the baseline with this run's figures and show what changed.")]
    = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    all_rows: Annotated[bool, typer.Option(
        "--all", help="List every compared figure, not only the overall ones and drifts.")]
    = False,
) -> None:
    """Run the regression backtest and compare it with the stored baseline.

    Exit code 0: every figure within tolerance; 1: drift; 2: error.
    """
    import orjson

    from backtester.regress import compare, measure, read_baseline, write_baseline

    try:
        cfg = load(config, {})
        path = Path(cfg.regress.baseline)
        now = measure(cfg)
        baseline = read_baseline(path) if not update else _old_baseline(path)
        rows = compare(baseline, now, cfg) if baseline else []
        if update:
            write_baseline(path, now)
    except BtError as e:
        fail(e, code=2)
    drifted = [r for r in rows if not r.passed]
    if json:
        typer.echo(orjson.dumps({
            "baseline": str(path), "updated": update, "drifted": len(drifted),
            "compared": len(rows), "config_changed": bool(baseline) and
            baseline.get("config_hash") != now["config_hash"],
            "rows": [{"scope": r.scope, "metric": r.metric, "baseline": r.baseline,
                      "now": r.now, "delta": r.delta, "passed": r.passed} for r in rows],
        }, option=orjson.OPT_INDENT_2).decode())
    else:
        _render_regress(rows, drifted, all_rows or update, baseline, now)
        if update:
            changed = f"{len(drifted)} of {len(rows)} figures changed" if baseline else "created"
            console.print(f"baseline written: {path} ({changed})", highlight=False, markup=False)
        else:
            verdict = "[red]DRIFT[/]" if drifted else "[green]ok[/]"
            console.print(f"{verdict}: {len(drifted)} of {len(rows)} figures outside tolerance "
                          f"(baseline {escape(str(path))})", highlight=False)
    if drifted and not update:
        raise typer.Exit(code=1)


def _old_baseline(path: Path) -> dict:
    """The baseline --update replaces: {} when there is none, or one this bt cannot read
    (an older version), which is said once."""
    from backtester.regress import read_baseline

    if not path.exists():
        return {}
    try:
        return read_baseline(path)
    except BtError as e:
        console.print(f"replacing it: {e}", highlight=False, markup=False)
        return {}


def _render_regress(rows, drifted, show_all: bool, baseline, now) -> None:
    if baseline and baseline.get("config_hash") != now["config_hash"]:
        console.print(f"note: the config changed since the baseline (decision hash "
                      f"{baseline.get('config_hash', '?')[:8]} -> {now['config_hash'][:8]})",
                      highlight=False, markup=False)
    shown = [r for r in rows if show_all or r.scope == "overall" or not r.passed]
    if not shown:
        return
    table = Table(title="bt regress", title_justify="left")
    for name in ("scope", "metric", "baseline", "now", "delta", "verdict"):
        table.add_column(name, justify="left" if name in ("scope", "metric", "verdict")
                         else "right")
    for r in shown:
        table.add_row(r.scope, r.metric, _number(r.baseline), _number(r.now), _number(r.delta),
                      "[green]ok[/]" if r.passed else "[red]drift[/]")
    print_table(table, keys=2)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
