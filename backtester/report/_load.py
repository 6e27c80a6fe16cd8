"""Reading a run folder for the report: every file but metrics.json may be absent (older
run folders lack books.parquet and prices.parquet); a damaged file raises `DataError`."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.errors import DataError
from backtester.report._format import finite

TRADE_COLUMNS = ("symbol", "entry_time", "exit_time", "direction", "entry_price", "exit_price",
                 "size", "pnl", "return_pct", "fees", "exit_reason")
EQUITY_COLUMNS = ("time", "equity")
SERIES_COLUMNS = ("time",)
"""books.parquet and prices.parquet: a time column, then one float column per book/symbol."""


@dataclass(frozen=True, slots=True)
class Run:
    """What the report reads from one run folder; ``None`` for a file the run did not write."""

    folder: Path
    summary: dict[str, Any]
    trades: pd.DataFrame | None
    equity: pd.DataFrame | None
    books: pd.DataFrame | None
    prices: pd.DataFrame | None
    config_text: str | None
    initial_equity: float | None

    @property
    def books_summary(self) -> dict[str, Any]:
        """metrics.json's "books" object, or ``{}``."""
        books = self.summary.get("books")
        return books if isinstance(books, dict) else {}


def load_run(folder: Path) -> Run:
    if not folder.is_dir():
        raise DataError(f"run folder {folder} does not exist or is not a folder; pass a folder "
                        "written by `bt run` (runs/<run id>/)")
    path = folder / "metrics.json"
    if not path.is_file():
        raise DataError(f"{path} is missing; pass a run folder written by `bt run` "
                        "(runs/<run id>/)")
    try:
        summary = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); re-run the backtest to rewrite it") \
            from None
    if not isinstance(summary, dict):
        raise DataError(f"{path} must hold a JSON object, was {type(summary).__name__}; "
                        "re-run the backtest to rewrite it")
    usage = folder / "llm_usage.json"  # LLM telemetry lives beside metrics.json
    if usage.is_file() and "llm" not in summary:
        try:
            summary["llm"] = orjson.loads(usage.read_bytes())
        except orjson.JSONDecodeError as e:
            raise DataError(f"{usage} is not valid JSON ({e}); re-run the backtest to "
                            "rewrite it") from None
    trades = _read_table(folder / "trades.parquet", TRADE_COLUMNS)
    equity = _read_table(folder / "equity.parquet", EQUITY_COLUMNS)
    config_path = folder / "config.toml"
    config_text = (config_path.read_text(encoding="utf-8", errors="replace")
                   if config_path.is_file() else None)
    return Run(folder, summary, trades, equity,
               _read_table(folder / "books.parquet", SERIES_COLUMNS),
               _read_table(folder / "prices.parquet", SERIES_COLUMNS), config_text,
               _initial_equity(config_text, summary.get("overall") or {}, equity))


def _read_table(path: Path, required: Sequence[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} could not be read ({type(e).__name__}: {e}); re-run the "
                        "backtest to rewrite it") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the columns {missing}, was {list(frame.columns)}; "
                        "re-run the backtest to rewrite it")
    return frame


def _initial_equity(config_text: str | None, overall: dict[str, Any],
                    equity: pd.DataFrame | None) -> float | None:
    try:
        return float(tomllib.loads(config_text or "")["run"]["initial_cash"])
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        pass
    final, total = overall.get("final_equity"), overall.get("total_return")
    if finite(final) and finite(total) and total > -1.0:
        return float(final) / (1.0 + float(total))
    if equity is not None and len(equity):
        return float(equity["equity"].iloc[0])
    return None


def nanoseconds(column: pd.Series) -> np.ndarray:
    """A time column as int64 UTC nanoseconds (naive times are read as UTC)."""
    index = pd.DatetimeIndex(column)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("ns").asi8.astype(np.int64)


def numeric_column(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    """A column as float64, or ``None`` when it is missing or not numeric."""
    if name not in frame.columns:
        return None
    try:
        return frame[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return None
