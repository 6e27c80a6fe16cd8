"""`bt data generate|validate|info|cache`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from backtester.cli.common import (
    ConfigOpt,
    SeedOpt,
    SymbolsOpt,
    TimeframeOpt,
    YearOpt,
    console,
    fail,
    load,
    split_symbols,
)
from backtester.errors import BtError

app = typer.Typer(help="Generate, validate and describe bars; see or clear the market cache.",
                  no_args_is_help=True)
OnDuplicateOpt = Annotated[str, typer.Option(
    "--on-duplicate", help="Rows of one symbol at one time: error, first, last or mean.")]


def _bars_for(path: str | None, year: int | None, symbols: str | None, timeframe: str | None,
              tz: str | None, seed: int | None, config: Path | None,
              on_duplicate: str = "error"):
    """Bars from a user file, or the embedded market for a year (cached)."""
    import pandas as pd

    from backtester.data import embedded_bars, load_bars, resample
    from backtester.data.embedded import check_embedded_period, check_embedded_symbols

    if path:
        bars = load_bars(path, symbols=split_symbols(symbols), tz=tz, on_duplicate=on_duplicate)
    else:
        cfg = load(config, {"data.symbols": split_symbols(symbols), "data.seed": seed})
        y = year if year is not None else (cfg.run.year or 2025)
        start, end = (pd.Timestamp(f"{y}-01-01", tz="UTC"),
                      pd.Timestamp(f"{y + 1}-01-01", tz="UTC"))
        check_embedded_symbols(cfg.data.symbols)
        check_embedded_period(start, end)
        bars = embedded_bars(start, end, cfg.data.symbols, cfg.data.seed, cfg.data.cache_dir)
    return resample(bars, timeframe) if timeframe else bars


@app.command("generate")
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
        fail(e)
    console.print(f"generated {bars.n_bars:,} bars x {bars.n_assets} symbols "
                  f"({', '.join(bars.symbols)}), timeframe {bars.timeframe}"
                  + (f", written to {out}" if out else ""), highlight=False, markup=False)


@app.command("validate")
def data_validate(
    path: Annotated[str, typer.Argument(help="CSV/Parquet file or folder of files.")],
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
    on_duplicate: OnDuplicateOpt = "error",
) -> None:
    """Check a data file: columns, NaNs, prices, OHLC consistency, order, duplicates, gaps."""
    from backtester.data import find_gaps, load_bars

    try:
        bars = load_bars(path, tz=tz, on_duplicate=on_duplicate)
    except BtError as e:
        fail(e)
    gaps = find_gaps(bars)
    console.print(f"[green]ok[/] {escape(str(path))}: {bars.n_bars:,} bars x "
                  f"{bars.n_assets} symbols, timeframe {bars.timeframe}, {len(gaps)} gaps",
                  highlight=False)
    for first, last in gaps[:10]:
        console.print(f"  gap {first} -> {last}", highlight=False, markup=False)


@app.command("info")
def data_info(
    path: Annotated[str | None, typer.Argument(
        help="CSV/Parquet file or folder (default: the embedded market).")] = None,
    year: YearOpt = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    on_duplicate: OnDuplicateOpt = "error",
) -> None:
    """Describe bars: symbols, period, timeframe, price ranges, volume, gaps."""
    from backtester.data import bars_info

    try:
        info = bars_info(_bars_for(path, year, symbols, timeframe, tz, seed, config,
                                   on_duplicate))
    except BtError as e:
        fail(e)
    for table in info_tables(info, path or "embedded market"):
        console.print(table)


def _price(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:,.6g}"


def info_tables(info: dict, title: str) -> list[Table]:
    """``bars_info`` as two tables: the summary, and one row per symbol (thousands
    separators, prices to the cent, no raw dicts)."""
    summary = Table(title=escape(str(title)), title_justify="left", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    period = f"{info['first'] or '-'} .. {info['last'] or '-'}"
    for key, value in (("symbols", ", ".join(info["symbols"])), ("period", period),
                       ("bars", f"{info['n_bars']:,}"), ("timeframe", info["timeframe"]),
                       ("gaps", f"{info['n_gaps']:,}")):
        summary.add_row(key, escape(str(value)))
    for gap in info["gaps"]:
        summary.add_row("", escape(f"{gap['from']} -> {gap['to']}"))
    if info["n_gaps"] > len(info["gaps"]):
        summary.add_row("", f"... {info['n_gaps'] - len(info['gaps']):,} more")
    spread = info.get("mean_spread")
    per_symbol = Table(title="per symbol", title_justify="left")
    for column in ("symbol", "min close", "max close", "total volume") + (
            ("mean spread",) if spread else ()):
        per_symbol.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, row in info["per_symbol"].items():
        cells = [escape(symbol), _price(row["min_close"]), _price(row["max_close"]),
                 f"{row['total_volume']:,.0f}"]
        if spread:
            cells.append(_price(spread[symbol]))
        per_symbol.add_row(*cells)
    return [summary, per_symbol]


@app.command("cache")
def data_cache(
    clear: Annotated[bool, typer.Option(
        "--clear", help="Delete the cached market files (only those, only in that folder).")]
    = False,
    config: ConfigOpt = None,
) -> None:
    """Show where the embedded market's cache is, its files and size; --clear empties it."""
    from backtester.data.cache import cache_files, clear_cache, resolve_cache_dir

    try:
        cache_dir = load(config, {}).data.cache_dir
    except BtError as e:
        fail(e)
    folder = resolve_cache_dir(cache_dir)
    if clear:
        deleted, freed = clear_cache(cache_dir)
        console.print(f"cleared {escape(str(folder))}: {deleted:,} files, {_size(freed)}",
                      highlight=False)
        return
    files = cache_files(cache_dir)
    total = sum(size for _, size in files)
    console.print(f"{escape(str(folder))}: {len(files):,} files, {_size(total)}",
                  highlight=False)
    for file, size in files:
        console.print(f"  {escape(file.name)}  {_size(size)}", highlight=False)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"
