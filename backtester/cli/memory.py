"""`bt memory inspect|search|doctor|reset`: what the memory holds and what it learned."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from backtester.cli.common import ConfigOpt, console, error_console, fail, fmt, load
from backtester.errors import BtError, ConfigError, MemoryStoreError

app = typer.Typer(help="Inspect, search, repair and reset the memory folder.",
                  no_args_is_help=True)

MemoryDirOpt = Annotated[str | None, typer.Option(
    "--memory-dir", help="Memory folder (default: memory.dir of the config, data/memory).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _folder(config: Path | None, memory_dir: str | None) -> Path:
    """The memory folder: --memory-dir, else memory.dir of the config file (read as TOML
    only: building the whole config imports the strategies, pandas and numba)."""
    if memory_dir:
        return Path(memory_dir)
    from backtester.config import DEFAULT_CONFIG_PATH, MemoryConfig, read_toml

    path = config if config is not None else (
        DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    data = read_toml(path, missing="config file not found; pass --config with an existing "
                     "file such as configs/default.toml") if path is not None else {}
    section = data.get("memory", {})
    folder = section.get("dir", MemoryConfig().dir) if isinstance(section, dict) else None
    if not isinstance(folder, str) or not folder:
        raise ConfigError(f"{path}: memory.dir must be a folder path, was {folder!r}")
    return Path(folder)


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                            | orjson.OPT_NON_STR_KEYS).decode())


def memory_report(folder: Path) -> dict[str, Any]:
    """Everything `inspect` shows, as one JSON-ready dict."""
    from backtester.ensemble import provider_credit
    from backtester.memory.io import read_json
    from backtester.memory.store import MemoryStore

    from backtester.memory.integrity import check_inside, doctor_hint

    if not folder.exists():
        return {"folder": str(folder), "empty": True, "exists": False}
    if not (folder / "manifest.json").exists():
        MemoryStore.open(folder, config_hash=None, create=True)  # refuses a lost manifest
        return {"folder": str(folder), "empty": True, "exists": True}
    store = MemoryStore.open(folder, config_hash=None, create=False)
    summary = store.summary()
    snapshots, missing = [], []
    for chunk in store.committed_chunks():
        try:
            snap = read_json(check_inside(folder, folder / chunk["snapshot"]), folder=folder)
        except FileNotFoundError:
            missing.append(chunk["snapshot"])
            snap = {}
        learning = snap.get("learning", {})
        snapshots.append({
            "chunk": chunk["label"], "generation": chunk["generation"],
            "return": snap.get("return"), "sharpe": snap.get("sharpe"),
            "win_rate": snap.get("win_rate"), "trades": snap.get("trades"),
            "pnl": snap.get("pnl"), "size_multiplier": snap.get("size_multiplier"),
            "ensemble_hit_rate": learning.get("ensemble", {}).get("hit_rate"),
            "hit_rate_without_memory":
                learning.get("ensemble_without_memory", {}).get("hit_rate"),
            "memory_vote_hit_rate": learning.get("memory_vote", {}).get("hit_rate"),
            "weights": snap.get("weights", {}),
            "books": snap.get("books", {}),
        })
    vectors = None
    index = folder / "vectors" / "index.json"
    if index.exists():
        header = read_json(index, folder=folder)
        if not isinstance(header, dict):
            header = {}
        from backtester.memory.census import vector_rows

        vectors = {"rows": vector_rows(folder, header, store.manifest),
                   "generation": header.get("generation"),
                   "state_dim": header.get("state_dim"),
                   "text_embedder": header.get("text_embedder"),
                   "state_embedder": header.get("state_embedder")}
    return {
        "folder": str(folder), "empty": False,
        "size_bytes": summary["size_bytes"], "files": summary["files"],
        "config_hash": summary["config_hash"], "chunks_committed": summary["generation"],
        "outcomes_per_chunk": summary["outcomes_per_chunk"],
        "active_run": summary["active_run"] and {
            k: summary["active_run"][k] for k in ("run_id", "chunks_done", "chunks_total")},
        "providers": store.provider_stats().get("providers", {}),
        "credit": provider_credit(store.provider_stats()),
        "regimes": store.regime_stats().get("regimes", {}),
        "snapshots": snapshots,
        "vectors": vectors,
        "parameters": {k: v for k, v in store.parameters().items() if k != "recent_wins"},
        "problems": [f"{name}: missing (a committed chunk's snapshot); "
                     f"{doctor_hint(folder, 'to check the folder')}" for name in missing],
    }


@app.command()
def inspect(memory_dir: MemoryDirOpt = None, config: ConfigOpt = None,
            json: JsonOpt = False) -> None:
    """Show what the memory holds and what it learned.

    Reads the manifest, the stats files and the snapshots: counts come from what the
    manifest records, and no outcome file is read; `bt memory doctor` reads and verifies
    every file."""
    try:
        folder = _folder(config, memory_dir)
        data = memory_report(folder)
    except BtError as e:
        fail(e)
    if json:
        _print_json(data)
        return
    if data["empty"]:
        line = (f"{folder}: empty memory (nothing committed yet)" if data["exists"] else
                f"no memory folder at {folder} (check the path; `bt run` creates it)")
        console.print(line, highlight=False, markup=False)
        return
    for line in data["problems"]:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    files = ", ".join(f"{n} {k}" for k, n in sorted(data["files"].items()))
    console.print(f"[bold]{escape(str(folder))}[/]  {data['size_bytes'] / 1e6:.1f} MB  ({files})  "
                  f"chunks {data['chunks_committed']}", highlight=False)
    console.print(f"decision hash {data['config_hash'][:8]}: the folder was created under it; "
                  "only a run with the same decision hash (in its run id and report) can read "
                  "it", highlight=False, markup=False)
    if data["active_run"]:
        run = data["active_run"]
        console.print(f"unfinished run {run['run_id']}: {run['chunks_done']} of "
                      f"{run['chunks_total']} chunks (bt run --resume continues it)",
                      highlight=False, markup=False)
    providers = Table(title="providers (trades voted with / against / no opinion; won: win "
                      "rate of those with)", title_justify="left")
    for name in ("provider", "votes", "hit rate", "avg return", "abstained", "with",
                 "against", "no opinion", "won", "weight"):
        providers.add_column(name, justify="left" if name == "provider" else "right",
                             no_wrap=name == "provider")
    for name, row in data["providers"].items():
        credit = data["credit"][name]
        providers.add_row(name, fmt(row["votes"], "int"), fmt(credit["hit_rate"], "rate"),
                          fmt(row["shadow_pnl"] / row["votes"] if row["votes"] else None,
                              "pct"), fmt(credit["abstention_rate"], "rate"),
                          fmt(credit["trades_with"], "int"),
                          fmt(credit["trades_against"], "int"),
                          fmt(credit["trades_abstained"], "int"),
                          fmt(credit["win_rate_with"], "rate"), fmt(credit["weight"], "weight"))
    console.print(providers)
    _render_books(data["snapshots"])
    weights = Table(title="weights used, chunk by chunk (overall)", title_justify="left")
    weights.add_column("chunk")
    for name in data["providers"]:
        weights.add_column(name, justify="right")
    for snap in data["snapshots"]:
        overall = snap["weights"].get("overall", {})
        weights.add_row(snap["chunk"], *(fmt(overall.get(n), "weight") for n in data["providers"]))
    console.print(weights)
    names = list(data["providers"])
    regimes = Table(title="regime x provider: hit rate (weight)", title_justify="left")
    for name in ("regime", "scored", *names):
        regimes.add_column(name, justify="left" if name == "regime" else "right")
    for regime, table in data["regimes"].items():
        cells = []
        for name in names:
            row = table["providers"].get(name)
            rate = row["hits"] / row["votes"] if row and row["votes"] else None
            cells.append(f"{fmt(rate, 'rate')} ({fmt(row and row.get('weight'), 'weight')})")
        regimes.add_row(regime, fmt(table["scored"], "int"), *cells)
    console.print(regimes)
    trajectory = Table(title="snapshots, chunk by chunk (hit rates: ensemble, without the "
                       "memory vote, memory vote alone)", title_justify="left")
    for name in ("chunk", "outcomes", "trades", "win rate", "return", "sharpe", "size",
                 "hits", "no memory", "memory"):
        trajectory.add_column(name, justify="left" if name == "chunk" else "right")
    outcomes = {c["generation"]: c["outcomes"] for c in data["outcomes_per_chunk"]}
    for snap in data["snapshots"]:
        trajectory.add_row(snap["chunk"], fmt(outcomes.get(snap["generation"]), "int"),
                           fmt(snap["trades"], "int"),
                           fmt(snap["win_rate"], "rate"), fmt(snap["return"], "pct"),
                           fmt(snap["sharpe"]), fmt(snap["size_multiplier"]),
                           fmt(snap["ensemble_hit_rate"], "rate"),
                           fmt(snap["hit_rate_without_memory"], "rate"),
                           fmt(snap["memory_vote_hit_rate"], "rate"))
    console.print(trajectory)
    vectors = data["vectors"]
    if vectors:
        text = vectors["text_embedder"]
        console.print(f"vectors: {vectors['rows']:,} situations; states {vectors['state_dim']}-d "
                      f"({vectors['state_embedder']['name']}), text {text['dim']}-d "
                      f"({text['name']})", highlight=False, markup=False)
    parameters = data["parameters"]
    history = parameters.get("history", [])
    adapted = "".join(f"; {name.replace('_', ' ')} {parameters[name]}"
                      for name in ("threshold", "volatility_target") if name in parameters)
    kelly = parameters.get("kelly", {}).get("all")
    sizing = (f"; Kelly tallies from {kelly['trades']:,} trades" if kelly else "")
    console.print(f"position size multiplier {parameters.get('size_multiplier', 1.0)}{adapted}"
                  f"{sizing}; {len(history)} adjustment(s)", highlight=False, markup=False)
    for change in history:
        console.print(f"  {change['chunk']}: {change['parameter']} {change['old']} -> "
                      f"{change['new']} ({change['reason']})", highlight=False, markup=False)


def _render_books(snapshots: list[dict[str, Any]]) -> None:
    """Across every chunk the memory learned: learned / equal / best single / buy & hold."""
    rows = [s for s in snapshots if s["books"].get("figures")]
    if not rows:
        return
    table = Table(title="did the learning help? (return per chunk: learned / equal weight / "
                  "best single provider / buy & hold)", title_justify="left")
    for name in ("chunk", "learned", "equal weight", "best single", "buy & hold",
                 "learned - equal", "regret"):
        table.add_column(name, justify="left" if name in ("chunk", "best single") else "right")
    total = {"learned_minus_equal": 0.0, "regret": 0.0}
    for snap in rows:
        books = snap["books"]
        figures, best = books["figures"], books.get("best_single")
        table.add_row(snap["chunk"], fmt(figures["learned"]["total_return"], "pct"),
                      fmt(figures["equal_weight"]["total_return"], "pct"),
                      "-" if best is None else
                      f"{best} {fmt(figures[best]['total_return'], 'pct')}",
                      fmt(figures["buy_and_hold"]["total_return"], "pct"),
                      fmt(books["learned_minus_equal"], "pct"), fmt(books["regret"], "pct"))
        for key in total:
            total[key] += books[key] or 0.0
    table.add_section()
    table.add_row(f"sum of {len(rows)}", "", "", "", "", fmt(total["learned_minus_equal"], "pct"),
                  fmt(total["regret"], "pct"))
    console.print(table)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for, e.g. 'stopped out in a "
                                             "volatile market'.")],
    k: Annotated[int, typer.Option("-k", help="How many situations.")] = 5,
    memory_dir: MemoryDirOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The past situations most similar to TEXT, with their outcomes.

    Rows the text index lacks (a run embeds no text) are embedded first and stored in the
    folder for the next search, unless a run holds the folder's lock."""
    try:
        folder = _folder(config, memory_dir)
        from backtester.memory.embedders import HashingEmbedder, index_embedder
        from backtester.memory.text_search import search_text

        if not folder.exists():
            raise MemoryStoreError(f"{folder}: no memory folder here; check the path, or run "
                                   "`bt run` to build one")
        embedder = index_embedder(folder)
        if embedder is None and not (folder / "vectors" / "index.json").exists():
            raise MemoryStoreError(f"{folder}: no vector index yet; run `bt run` first")
        found = search_text(folder, text, k, embedder or HashingEmbedder())
    except BtError as e:
        fail(e)
    hits = found.hits
    if found.embedded and not json:  # the run leaves text to whoever reads it
        kept = ("stored for the next search" if found.stored else
                "for this search only (the folder is locked by a run, or from before the "
                "manifest recorded its vector files: `bt memory doctor` stores them)")
        error_console.print(f"note: embedded {found.embedded:,} situations the text index "
                            f"lacked, {kept}", highlight=False, markup=False)
    if json:
        _print_json(hits)
        return
    console.print(f"nearest to {text!r}: {len(hits)} situation(s)", highlight=False,
                  markup=False)
    for rank, hit in enumerate(hits, 1):  # one block per result: readable at 80 columns
        side = "long" if hit["direction"] > 0 else "short"
        console.print(f"\n{rank}. similarity {hit['similarity']:.3f}  {hit['symbol']} {side}  "
                      f"return {fmt(hit['return_pct'], 'pct')}", highlight=False, markup=False)
        console.print(f"   entry {hit['entry_time']}  regime {hit['regime']}  exit "
                      f"{hit['exit_reason']}", highlight=False, markup=False)
        console.print(Padding(str(hit["description"]), (0, 0, 0, 3)), highlight=False,
                      markup=False)


@app.command()
def doctor(memory_dir: MemoryDirOpt = None, config: ConfigOpt = None,
           embedder: Annotated[str | None, typer.Option(
               "--embedder", help="Re-embed the text index with this embedder (auto, "
               "sentence, hashing); default: the one that built it.")] = None,
           json: JsonOpt = False) -> None:
    """Verify every file; quarantine unreadable ones; rebuild stats and vectors.

    Exits 1 when it found problems it could not repair."""
    from backtester.memory.doctor import doctor as run_doctor
    from backtester.memory.embedders import default_embedder, index_embedder
    from backtester.memory.vectors import rebuilt_files

    try:
        cfg = load(config, {"memory.dir": memory_dir})
        folder = Path(cfg.memory.dir)
        text = (default_embedder(embedder) if embedder else
                index_embedder(folder) or default_embedder(cfg.memory.embedder))
        report = run_doctor(folder,
                            rebuild_vectors=lambda f, o, g: rebuilt_files(f, o, g, text))
    except BtError as e:
        fail(e)
    if json:
        _print_json(report)
    else:
        console.print(f"checked {report['checked']:,} files in {folder}", highlight=False,
                      markup=False)
        for name in report["quarantined"]:
            console.print(f"  [yellow]quarantined[/] {escape(name)} -> "
                          f"{escape(str(folder / 'quarantine'))}", highlight=False)
        for name in report["rebuilt"]:
            console.print(f"  rebuilt {name}", highlight=False, markup=False)
        for line in report["problems"]:
            kind = "not repaired" if line in report["unrepaired"] else "problem"
            console.print(f"  [yellow]{kind}[/] {escape(line)}", highlight=False)
        if not (report["quarantined"] or report["problems"]):
            console.print("[green]ok[/]: every file is readable and consistent")
    if report["unrepaired"]:
        raise typer.Exit(code=1)


@app.command()
def unlock(
    memory_dir: MemoryDirOpt = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Remove the lock even when bt cannot tell its holder is gone (a "
        "lock of another host).")] = False,
) -> None:
    """Show who holds the memory folder's lock; --force removes it."""
    from backtester.memory.io import LOCK_NAME, break_lock, pid_alive, read_lock

    try:
        folder = _folder(config, memory_dir)
        if not (folder / LOCK_NAME).exists():
            console.print(f"{folder}: not locked", highlight=False, markup=False)
            return
        holder = read_lock(folder)
    except BtError as e:
        fail(e)
    import socket

    if holder is None:
        who = "an unreadable lock file"
        alive = False
    else:
        who = (f"pid {holder['pid']} on host {holder['host']} since {holder['started']} "
               f"({holder['command']})")
        here = holder["host"] == socket.gethostname()
        alive = not here or pid_alive(holder["pid"])
    console.print(f"{folder}: locked by {who}", highlight=False, markup=False)
    if alive and not force:
        fail(MemoryStoreError(
            f"{folder}: the lock's holder may still run (bt cannot check another host); make "
            f"sure it has stopped, then run `bt memory unlock --force --memory-dir {folder}`"))
    if not break_lock(folder, holder):
        fail(MemoryStoreError(f"{folder}: the lock changed hands meanwhile; left it"))
    console.print(f"{folder}: lock removed", highlight=False, markup=False)


@app.command()
def reset(
    memory_dir: MemoryDirOpt = None,
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Start the memory empty: the folder is moved aside to a timestamped backup."""
    from backtester.memory.store import reset as reset_folder

    try:
        folder = _folder(config, memory_dir)
        if not folder.exists():
            console.print(f"{folder}: nothing to reset", highlight=False, markup=False)
            return
        if not yes and not typer.confirm(f"Move {folder} aside and start an empty memory?"):
            raise typer.Exit(code=1)
        backup = reset_folder(folder)
    except BtError as e:
        fail(e)
    console.print(f"memory reset; the old folder is kept at {backup}", highlight=False, markup=False)
