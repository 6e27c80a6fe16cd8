"""Build a Config from a file, a dict of dotted keys, a Config or keyword options; turn a
caller's DataFrame of bars (wide or long) into Bars."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backtester.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from backtester.config import Config
    from backtester.data.bars import Bars

#: Keyword options of ``configure`` and ``run`` and the config key each sets.
OPTION_KEYS: dict[str, str] = {
    "year": "run.year",
    "start": "run.start",
    "end": "run.end",
    "chunk": "run.chunk",
    "initial_cash": "run.initial_cash",
    "out": "run.out_dir",
    "data_path": "data.path",
    "symbols": "data.symbols",
    "timeframe": "data.timeframe",
    "tz": "data.tz",
    "seed": "data.seed",
    "cache_dir": "data.cache_dir",
    "memory_dir": "memory.dir",
    "memory_mode": "memory.mode",
    "embedder": "memory.embedder",
}

def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """{"run": {"year": 2025}} and {"run.year": 2025} alike -> {"run.year": 2025}; a
    deeper table (``{"providers": {"x": {...}}}``) is set whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and "." not in str(key):
            flat.update({f"{key}.{sub}": inner for sub, inner in value.items()})
        else:
            flat[str(key)] = value
    return flat


def option_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options (``year=2025``) as dotted config keys; None values are left out.

    Raises
    ------
    ConfigError
        For an option that is not in ``OPTION_KEYS``, with the closest name.
    """
    dotted: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTION_KEYS:
            close = difflib.get_close_matches(name, list(OPTION_KEYS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown option {name!r}; {hint}options are "
                              f"{', '.join(OPTION_KEYS)}; set any other key with "
                              f"overrides={{'section.key': value}}")
        if value is None:
            continue
        if name == "symbols" and isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        elif name == "symbols":
            value = list(value)
        elif name in ("chunk", "data_path", "out", "memory_dir", "cache_dir") or (
                name in ("start", "end") and not isinstance(value, str)):
            value = str(value) if not hasattr(value, "isoformat") else value.isoformat()
        dotted[OPTION_KEYS[name]] = value
    return dotted


def configure(
    source: Config | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    /,
    *,
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> Config:
    """Build a checked config from a file, a dict, a Config, keyword options or nothing.

    Parameters
    ----------
    source : Config, str, path-like, mapping or None, optional
        A TOML file; a mapping of dotted keys (``{"ensemble.threshold": 0.3}``) or of
        sections (``{"run": {"year": 2024}}``); a Config to change; or None for
        configs/default.toml when the working directory has one, else the defaults.
    overrides : mapping, optional
        Any config key as ``{"section.key": value}``, applied over ``source``.
    **options
        Common keys by name, applied last: year, start, end, chunk, initial_cash, out
        (run.out_dir), data_path, symbols (a list or "A,B"), timeframe, tz, seed,
        cache_dir, memory_dir, memory_mode, embedder. None leaves a key as it is.

    Returns
    -------
    Config
        The frozen config, checked exactly as ``bt run`` checks a file.

    Raises
    ------
    ConfigError
        For an unknown key or option (with the closest name) or a value out of range.
    """
    from backtester.config import Config, load_config

    dotted = {**dict(overrides or {}), **option_overrides(options)}
    if isinstance(source, Config):
        return _change(source, dotted) if dotted else source
    if isinstance(source, Mapping):
        return load_config(None, {**_flatten(source), **dotted})
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"config must be a TOML path, a dict of keys or a Config, was "
                          f"{type(source).__name__}; pass one of those")
    return load_config(source, dotted)


def _change(config: Config, dotted: dict[str, Any]) -> Config:
    """A Config with some keys changed, checked again: written as TOML and loaded, the
    round trip ``bt run`` makes with its config.toml."""
    from backtester.config import dump_toml, load_config

    with tempfile.TemporaryDirectory(prefix="bt-config-") as folder:
        path = Path(folder) / "config.toml"
        path.write_text(dump_toml(config.to_dict()), encoding="utf-8")
        try:
            return load_config(path, dotted)
        except ConfigError as e:
            raise ConfigError(str(e).replace(str(path), "config")) from None


# ---------------------------------------------------------------- DataFrames of bars

_FIELD_NAMES = {"open", "high", "low", "close", "volume", "o", "h", "l", "c", "v",
                "adj close", "adj_close", "vol"}


def _field_level(columns: pd.MultiIndex) -> int:
    """Which of two column levels holds open/high/low/close/volume."""
    hits = [sum(str(v).strip().lower() in _FIELD_NAMES for v in columns.get_level_values(i))
            for i in range(2)]
    if max(hits) == 0:
        raise DataError("DataFrame: no column level names open, high, low, close; use "
                        "columns (symbol, field) or (field, symbol)")
    return int(hits[1] > hits[0])


def frame_to_bars(frame: pd.DataFrame, *, symbols: Sequence[str] | None = None,
                  tz: str | None = None) -> Bars:
    """Bars from a DataFrame, wide or long, checked like a file ``bt run --data`` reads.

    Parameters
    ----------
    frame : pandas.DataFrame
        Wide: a DatetimeIndex and two column levels, symbol and field in either order
        (``frame["BTCUSD", "close"]``). Long: columns time (or a DatetimeIndex), open,
        high, low, close, optional volume and optional symbol (without one the symbol is
        "ASSET").
    symbols : sequence of str, optional
        Keep only these symbols, in this order.
    tz : str, optional
        Time zone of naive timestamps (default UTC).

    Returns
    -------
    Bars
        The symbols aligned on one time axis.

    Raises
    ------
    DataError
        For a missing column or an invalid row, naming the row and column.
    """
    import pandas as pd

    from backtester.data.loaders import bars_from_frame

    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame or a path, was "
                        f"{type(frame).__name__}; pass bars as a DataFrame or a file")
    if isinstance(frame.columns, pd.MultiIndex):
        frame = _wide_to_long(frame)
    return bars_from_frame(frame, symbols=symbols, tz=tz, source="DataFrame")


def _wide_to_long(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if frame.columns.nlevels != 2:
        raise DataError(f"DataFrame: wide columns need two levels (symbol, field), was "
                        f"{frame.columns.nlevels}; stack the others away")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"DataFrame: a wide frame needs a DatetimeIndex, was "
                        f"{type(frame.index).__name__}; set_index on the time column")
    symbol_level = 1 - _field_level(frame.columns)
    parts = []
    for symbol in dict.fromkeys(frame.columns.get_level_values(symbol_level)):
        part = frame.xs(symbol, axis=1, level=symbol_level).dropna(how="all")
        part = part.rename_axis("time").reset_index()
        part.insert(1, "symbol", str(symbol))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
