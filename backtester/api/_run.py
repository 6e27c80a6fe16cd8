"""``run``: a backtest on the embedded market, a path or a DataFrame of bars."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backtester.api._config import configure, frame_to_bars, option_overrides
from backtester.api._result import Result
from backtester.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from backtester.config import Config
    from backtester.providers.base import Provider


def run(
    config: Config | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    /,
    *,
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
    write: bool = True,
    resume: bool = False,
    in_sample: bool = False,
    run_id: str | None = None,
    providers: Sequence[Provider] = (),
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> Result:
    """Run a backtest chunk by chunk, learning between chunks, as ``bt run`` does.

    Parameters
    ----------
    config : Config, str, path-like, mapping or None, optional
        What ``configure`` accepts: a TOML file, a dict of keys, a Config, or None for
        the defaults.
    data : pandas.DataFrame, str or path-like, optional
        The bars: a CSV/Parquet file or folder (like ``bt run --data``; every symbol in
        it unless ``symbols`` is given), or a DataFrame, wide (a DatetimeIndex and
        (symbol, field) columns) or long (time, symbol, open, high, low, close, volume).
        Default: the embedded market (or data.path of the config).
    write : bool
        Write the run folder (metrics.json, parquet tables, report.html) under
        run.out_dir, as ``bt run`` does; False keeps the results in memory only.
    resume : bool
        Continue the unfinished run the memory records.
    in_sample : bool
        Let a frozen run decide over a period the memory learned from.
    run_id : str, optional
        Name of the run folder (default: the start time and the config hash).
    providers : sequence of Provider
        Providers that vote beside the configured ones.
    overrides : mapping, optional
        Any config key as ``{"section.key": value}``.
    **options
        The keyword options of ``configure`` (year, start, end, chunk, symbols,
        timeframe, out, memory_dir, memory_mode, embedder ...).

    Returns
    -------
    Result
        Metrics, per-chunk table, trades, equity and books as pandas.

    Raises
    ------
    BtError
        ConfigError for a bad key or value, DataError for bad bars, MemoryStoreError
        for a memory folder in use or written under another config.
    """
    import pandas as pd

    from backtester.market import prepare_market
    from backtester.runner import run_backtest

    dotted = {**dict(overrides or {}), **option_overrides(options)}
    chosen = dotted.get("data.symbols")
    frame = data if isinstance(data, pd.DataFrame) else None
    if frame is None and data is not None:
        if not isinstance(data, (str, os.PathLike)):
            raise DataError(f"data must be a pandas DataFrame or a path, was "
                            f"{type(data).__name__}; pass bars as a DataFrame or a file")
        dotted["data.path"] = os.fspath(data)
        dotted.setdefault("data.symbols", [])  # every symbol in the user's data
    cfg = configure(config, overrides=dotted)
    bars = first = None
    if frame is not None:
        loaded = frame_to_bars(frame, symbols=chosen, tz=cfg.data.tz)
        cfg = replace(cfg, data=replace(cfg.data, path="", symbols=loaded.symbols))
        bars, first = prepare_market(cfg, loaded, "DataFrame")
    result = run_backtest(cfg, bars=bars, first=first, write=write, resume=resume,
                          in_sample=in_sample, run_id=run_id, providers=tuple(providers))
    return Result.from_run(result)
