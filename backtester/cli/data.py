"""`bt data generate|validate|info`."""

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

app = typer.Typer(help="Generate, validate and describe bars.", no_args_is_help=True)


def _bars_for(path: str | None, year: int | None, symbols: str | None, timeframe: str | None,
              tz: str | None, seed: int | None, config: Path | None):
    """Bars from a user file, or the embedded market for a year (cached)."""
    from backtester.data import embedded_bars, load_bars, resample
    import pandas as pd

    if path:
        bars = load_bars(path, symbols=split_symbols(symbols), tz=tz)
    else:
        cfg = load(config, {"data.symbols": split_symbols(symbols), "data.seed": seed})
        y = year if year is not None else (cfg.run.year or 2025)
        bars = embedded_bars(pd.Timestamp(f"{y}-01-01", tz="UTC"),
                             pd.Timestamp(f"{y + 1}-01-01", tz="UTC"),
                             cfg.data.symbols, cfg.data.seed, cfg.data.cache_dir)
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
) -> None:
    """Check a data file: columns, NaNs, prices, OHLC consistency, order, duplicates, gaps."""
    from backtester.data import find_gaps, load_bars

    try:
        bars = load_bars(path, tz=tz)
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
) -> None:
    """Describe bars: symbols, period, timeframe, price ranges, gaps."""
    from backtester.data import bars_info

    try:
        info = bars_info(_bars_for(path, year, symbols, timeframe, tz, seed, config))
    except BtError as e:
        fail(e)
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
