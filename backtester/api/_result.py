"""``Result``: a run's figures and tables as pandas, from a run just made or a run folder."""

from __future__ import annotations

import html
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from backtester.errors import BtError

if TYPE_CHECKING:
    from backtester.config import Config
    from backtester.results import RunResult

#: Metrics shown by ``Result._repr_html_`` and ``repr``, in order.
SUMMARY_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades",
                   "win_rate", "profit_factor", "exposure", "final_equity")
_BOOK_COLUMNS = (("learned", "learned_return"), ("equal_weight", "equal_weight_return"),
                 ("buy_and_hold", "buy_and_hold_return"))


def _number(value: Any) -> Any:
    return math.nan if value is None else value


class Result:
    """One run's results: metrics, per-chunk table, trades, equity and the books.

    Made by ``run`` (from the run just made) or ``open_run`` (from a run folder); the
    two give equal tables for the same run.

    Attributes
    ----------
    run_id : str
        The run's name (its folder under run.out_dir).
    out_dir : Path or None
        The run folder, None for a run kept in memory (``run(..., write=False)``).
    summary : dict
        What metrics.json holds: the period, symbols, each chunk, providers, books and
        the overall metrics (missing figures as None).
    metrics : dict
        The overall metrics (total_return, sharpe, max_drawdown, trades ...; NaN when
        undefined).
    chunks : pandas.DataFrame
        One row per chunk, indexed by its label: start, end, bars, candidates,
        decisions, the chunk's metrics and, when the books were simulated, the
        learned, equal-weight, best-single and buy-and-hold returns, learned_minus_equal
        and regret.
    trades : pandas.DataFrame
        Every closed trade: symbol, entry and exit time and price, size, pnl, return,
        fees, exit reason, regime.
    equity : pandas.DataFrame
        Per traded bar: time, equity, open_positions.
    books : pandas.DataFrame or None
        Per traded bar the equity of every counterfactual book (learned, equal_weight,
        each provider alone, buy_and_hold), or None when the run has none.
    books_summary : dict
        The books compared: figures per book, attribution, significance, benchmark
        ({} without books).
    prices : pandas.DataFrame or None
        Per traded bar the close of each symbol.
    """

    def __init__(self, summary: dict[str, Any], *, metrics: dict[str, float],
                 trades: pd.DataFrame, equity: pd.DataFrame, books: pd.DataFrame | None,
                 prices: pd.DataFrame | None, out_dir: Path | None,
                 config: Config | None = None, run: RunResult | None = None) -> None:
        self.summary = summary
        self.run_id: str = summary["run_id"]
        self.metrics = metrics
        self.trades = trades
        self.equity = equity
        self.books = books if books is not None and len(books.columns) > 1 else None
        self.books_summary: dict[str, Any] = summary.get("books") or {}
        self.prices = prices
        self.out_dir = out_dir
        self.chunks = _chunks_frame(summary["chunks"])
        self._config = config
        self._run = run

    @classmethod
    def from_run(cls, run: RunResult) -> Result:
        """Wrap what ``backtester.runner.run_backtest`` returned."""
        from backtester.results import run_summary

        return cls(run_summary(run), metrics=dict(run.metrics), trades=run.trades,
                   equity=run.equity, books=run.book_equity, prices=run.prices,
                   out_dir=run.out_dir, config=run.config, run=run)

    @property
    def config(self) -> Config:
        """The run's config (for an opened folder, read from its config.toml)."""
        if self._config is None:
            from backtester.config import load_config

            if self.out_dir is None or not (self.out_dir / "config.toml").exists():
                raise BtError(f"{self.out_dir}: the run folder has no config.toml; the "
                              "config is not recorded")
            from backtester.plugins import no_imports

            # an opened folder may come from someone else: its config names no code to run
            with no_imports(f"open_run reads {self.out_dir} without importing its plugins; "
                            "load that config yourself with bt.configure if you trust it"):
                self._config = load_config(self.out_dir / "config.toml")
        return self._config

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The traded period [start, end) in UTC."""
        period = self.summary["period"]
        return pd.Timestamp(period["start"]), pd.Timestamp(period["end"])

    def report(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the self-contained HTML report (the one ``bt report`` writes).

        Parameters
        ----------
        path : str or path-like, optional
            Where to write it; default report.html in the run folder. Required for a run
            kept in memory.

        Returns
        -------
        Path
            The written file.
        """
        from backtester.memory.io import atomic_write_bytes
        from backtester.report import render_report, write_report

        if self.out_dir is not None and (self.out_dir / "metrics.json").exists():
            if path is None:
                return write_report(self.out_dir)
            document = render_report(self.out_dir)
        elif path is None:
            raise BtError(f"run {self.run_id} was kept in memory (write=False); pass a path "
                          "for the report, e.g. result.report('report.html')")
        else:
            document = self._render_in_memory()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, document.encode("utf-8"))
        return target

    def _render_in_memory(self) -> str:
        from backtester.report import render_report
        from backtester.results import write_run

        if self._run is None:
            raise BtError(f"run {self.run_id}: its folder is gone; open another run folder")
        with tempfile.TemporaryDirectory(prefix="bt-report-") as folder:
            write_run(replace(self._run, out_dir=Path(folder)))
            return render_report(Path(folder))

    def __repr__(self) -> str:
        start, end = self.period
        m = self.metrics
        where = f", out_dir={str(self.out_dir)!r}" if self.out_dir is not None else ""
        return (f"Result(run_id={self.run_id!r}, period={start:%Y-%m-%d}..{end:%Y-%m-%d}, "
                f"chunks={len(self.chunks)}, trades={_int(m.get('trades'))}, "
                f"total_return={_pct(m.get('total_return'))}, "
                f"sharpe={_fixed(m.get('sharpe'))}{where})")

    def _repr_html_(self) -> str:
        from backtester.report import format_value

        start, end = self.period
        esc = html.escape
        head = (f"<p><strong>bt run {esc(self.run_id)}</strong> &middot; "
                f"{start:%Y-%m-%d} .. {end:%Y-%m-%d} &middot; "
                f"{esc(', '.join(self.summary.get('symbols', [])))} &middot; memory "
                f"{esc(str(self.summary.get('memory_mode', '')))}</p>")
        metrics = "".join(
            f"<tr><th>{esc(name)}</th><td>{esc(format_value(self.metrics.get(name), name))}"
            f"</td></tr>" for name in SUMMARY_METRICS if name in self.metrics)
        columns = [c for c in ("total_return", "sharpe", "max_drawdown", "trades",
                               "learned_return", "equal_weight_return", "buy_and_hold_return")
                   if c in self.chunks.columns]
        header = "".join(f"<th>{esc(c)}</th>" for c in ("chunk", *columns))
        # book columns format as returns: the formatter knows "total_return"
        kinds = {c: "total_return" if c.endswith("_return") else c for c in columns}
        rows = "".join(
            f"<tr><th>{esc(str(label))}</th>" + "".join(
                f"<td>{esc(format_value(row[c], kinds[c]))}</td>" for c in columns) + "</tr>"
            for label, row in self.chunks.iterrows())
        where = (f"<p>folder: <code>{esc(str(self.out_dir))}</code></p>"
                 if self.out_dir is not None else "")
        return (f'<div class="bt-result">{head}<table class="bt-metrics">{metrics}</table>'
                f'<table class="bt-chunks"><tr>{header}</tr>{rows}</table>{where}</div>')


def _int(value: Any) -> str:
    return "-" if value is None or value != value else f"{int(value):,}"


def _pct(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:+.2%}"


def _fixed(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"


def _chunks_frame(chunks: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for chunk in chunks:
        row: dict[str, Any] = {"start": pd.Timestamp(chunk["start"]),
                               "end": pd.Timestamp(chunk["end"]), "bars": chunk["bars"],
                               "candidates": chunk["candidates"],
                               "decisions": chunk["decisions"]}
        row.update({k: _number(v) for k, v in chunk["metrics"].items()})
        books = chunk.get("books") or {}
        figures = books.get("figures")
        if figures:
            for book, column in _BOOK_COLUMNS:
                row[column] = _number(figures.get(book, {}).get("total_return"))
            best = books.get("best_single")
            row["best_single"] = best
            row["best_single_return"] = _number(
                figures[best]["total_return"] if best in figures else None)
            row["learned_minus_equal"] = _number(books.get("learned_minus_equal"))
            row["regret"] = _number(books.get("regret"))
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index([c["label"] for c in chunks], name="chunk"))
    return frame


def _table(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise BtError(f"{path}: cannot be read ({e}); run the backtest again") from None


def open_run(path: str | os.PathLike[str]) -> Result:
    """Open a run folder written by ``bt run`` or ``run``, read-only.

    Parameters
    ----------
    path : str or path-like
        The run folder (runs/<run id>/), holding metrics.json and the parquet tables.

    Returns
    -------
    Result
        The run's metrics and tables; ``report()`` rewrites its report.html.

    Raises
    ------
    BtError
        When the folder has no readable metrics.json.
    """
    folder = Path(path)
    source = folder / "metrics.json"
    try:
        summary = orjson.loads(source.read_bytes())
    except FileNotFoundError:
        raise BtError(f"{folder}: not a run folder (no metrics.json); pass runs/<run id>") \
            from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise BtError(f"{source}: cannot be read ({e}); run the backtest again") from None
    if not isinstance(summary, dict) or not {"run_id", "chunks", "overall"} <= summary.keys():
        raise BtError(f"{source}: not a bt metrics file (no run_id, chunks, overall); pass "
                      "a run folder")
    trades, equity = _table(folder, "trades"), _table(folder, "equity")
    return Result(summary, metrics={k: _number(v) for k, v in summary["overall"].items()},
                  trades=pd.DataFrame() if trades is None else trades,
                  equity=pd.DataFrame() if equity is None else equity,
                  books=_table(folder, "books"), prices=_table(folder, "prices"),
                  out_dir=folder)
