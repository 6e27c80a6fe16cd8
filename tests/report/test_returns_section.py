"""Monthly returns, rolling Sharpe, trade-return histogram and worst drawdowns: the figures
shown are those of `backtester.evaluation` on the run's files, and agree with metrics.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report.report_kit import (
    INITIAL_CASH,
    Node,
    assert_shows,
    consistent_overall,
    make_run,
    parse,
)

from backtester.returns import drawdown_periods, monthly_returns
from backtester.metrics import periods_per_year
from backtester.report import MAX_CHART_POINTS, NOT_RECORDED, render_report


@pytest.fixture(scope="module")
def year_run(tmp_path_factory) -> tuple[Path, dict[str, Any], Node]:
    folder = tmp_path_factory.mktemp("runs") / "year"
    make_run(folder, trades=300, bars=35_040, seed=21)
    summary = consistent_overall(folder)
    root, errors = parse(render_report(folder))
    assert errors == []
    return folder, summary, root


def _curve(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    equity = pd.read_parquet(folder / "equity.parquet")
    return (pd.DatetimeIndex(equity["time"]).as_unit("ns").asi8,
            equity["equity"].to_numpy(dtype=np.float64))


def test_monthly_cells_show_each_months_compounded_return(year_run):
    folder, _, root = year_run
    expected = monthly_returns(*_curve(folder), INITIAL_CASH)
    section = root.one("section", id="returns")
    assert [r.attrs["data-year"] for r in section.find_all("tr", data_year=True)] == [
        str(y) for y in expected.index]
    for year, months in expected.iterrows():
        for month, value in months.items():
            cell = section.one("td", data_year=str(year), data_month=str(month))
            assert_shows(cell.text(), value, f"{year}-{month}")


def test_a_years_compounded_months_equal_the_total_return_of_metrics_json(year_run):
    _, summary, root = year_run
    cell = root.one("section", id="returns").one("td", data_year="2025", data_month="year")
    assert_shows(cell.text(), summary["overall"]["total_return"], "year")


def test_monthly_cells_are_coloured_by_sign(year_run):
    _, _, root = year_run
    for cell in root.one("section", id="returns").find_all("td", data_month=True):
        style, shown = cell.attrs.get("style") or "", cell.text()
        if cell.attrs["data-month"] == "year" or shown in ("-", "+0.00%"):
            continue
        assert ("19,115,51" in style) == shown.startswith("+"), (shown, style)


def test_rolling_sharpe_window_spans_about_30_days_of_bars_and_says_so(year_run):
    folder, _, root = year_run
    times, _ = _curve(folder)
    window = round(periods_per_year(times) * 30 / 365.25)
    note = root.one("section", id="returns").one(data_field="rolling_window")
    assert int(note.attrs["data-window"]) == window == 2880
    assert "2,880 bars, about 30.0 days" in note.text()
    chart = [s for s in root.one("section", id="returns").find_all("svg")
             if "Rolling Sharpe" in (s.attrs.get("aria-label") or "")]
    assert len(chart) == 1
    assert int(chart[0].attrs["data-points"]) <= MAX_CHART_POINTS


def test_a_short_run_shortens_the_window_and_says_why(tmp_path):
    make_run(tmp_path / "run", bars=96 * 20)
    root, _ = parse(render_report(tmp_path / "run"))
    note = root.one("section", id="returns").one(data_field="rolling_window")
    assert int(note.attrs["data-window"]) == 96 * 20 // 4
    assert "shortened from 30 days" in note.text()


def test_histogram_counts_every_trade_return_once(year_run):
    folder, _, root = year_run
    returns = pd.read_parquet(folder / "trades.parquet")["return_pct"].to_numpy()
    section = root.one("section", id="returns")
    bins = [r for r in section.find_all("rect") if "bin" in r.classes()]
    counts = [int(b.attrs["data-count"]) for b in bins]
    assert sum(counts) == len(returns) == 300
    for bin_ in bins:  # each bin's title names its range and count
        low, high, count = re.fullmatch(r"([+-][\d.]+)% to ([+-][\d.]+)%: ([\d,]+)",
                                        bin_.text()).groups()
        inside = (returns >= float(low) / 100 - 1e-12) & (returns <= float(high) / 100 + 1e-12)
        assert abs(int(inside.sum()) - int(count.replace(",", ""))) <= 2  # shared edges
    note = section.one(data_field="trade_returns")
    assert int(note.attrs["data-count"]) == 300
    assert f"{int((returns > 0).sum()):,} above zero" in note.text()


def test_worst_drawdowns_are_those_of_the_curve_and_the_first_is_max_drawdown(year_run):
    folder, summary, root = year_run
    expected = drawdown_periods(*_curve(folder), INITIAL_CASH, top=5)
    rows = root.one("section", id="drawdowns").find_all("tr", data_rank=True)
    assert [r.attrs["data-rank"] for r in rows] == [str(k) for k in range(1, 6)]
    for row, period in zip(rows, expected):
        for name in ("start", "trough", "recovery"):
            value = period[name]
            shown = "not recovered" if value is None else \
                f"{pd.Timestamp(value, tz='UTC'):%Y-%m-%d %H:%M}"
            assert row.one(data_field=name).text() == shown
        assert_shows(row.one(data_field="depth").text(), period["depth"])
    assert_shows(rows[0].one(data_field="depth").text(), summary["overall"]["max_drawdown"])


def test_a_curve_that_never_draws_down_says_so(tmp_path):
    make_run(tmp_path / "run", bars=400)
    path = tmp_path / "run" / "equity.parquet"
    equity = pd.read_parquet(path)
    equity["equity"] = INITIAL_CASH * (1 + np.arange(len(equity)) * 1e-4)
    equity.to_parquet(path)
    root, _ = parse(render_report(tmp_path / "run"))
    assert "never closed below its running peak" in root.one("section", id="drawdowns").text()


def test_without_equity_and_trades_each_section_is_one_not_recorded_line(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "equity.parquet").unlink()
    (tmp_path / "run" / "trades.parquet").unlink()
    root, _ = parse(render_report(tmp_path / "run"))
    for key in ("returns", "drawdowns"):
        section = root.one("section", id=key)
        assert len(section.find_all("p")) == 1 and NOT_RECORDED in section.text()
        assert not section.find_all("table") and not section.find_all("svg")
