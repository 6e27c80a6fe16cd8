"""A price chart per symbol: the line is downsampled, every trade keeps its two marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report.report_kit import ODD_SYMBOL, Node, add_books, make_run, parse

from backtester.report import MAX_CHART_POINTS, NOT_RECORDED, render_report


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> tuple[Path, dict[str, Any], Node]:
    folder = tmp_path_factory.mktemp("runs") / "big"
    make_run(folder, trades=2500, bars=35_040, seed=8)
    summary = add_books(folder)
    root, errors = parse(render_report(folder))
    assert errors == []
    return folder, summary, root


def _marks(chart: Node) -> list[Node]:
    return [p for p in chart.find_all("path") if "marker" in p.classes()]


def test_every_trade_of_a_symbol_has_an_entry_and_an_exit_mark(big_run):
    folder, summary, root = big_run
    trades = pd.read_parquet(folder / "trades.parquet")
    section = root.one("section", id="prices")
    for symbol in summary["symbols"]:
        # Arrange
        rows = np.flatnonzero(trades["symbol"].to_numpy() == symbol)
        # Act
        marks = _marks(section.one("div", data_symbol=symbol))
        # Assert
        entries = [m for m in marks if m.classes() & {"long", "short"}]
        exits = [m for m in marks if "exit" in m.classes()]
        assert sorted(int(m.attrs["data-trade"]) for m in entries) == rows.tolist()
        assert sorted(int(m.attrs["data-trade"]) for m in exits) == rows.tolist()
        assert len(marks) == 2 * rows.size
        for mark in entries:  # long and short entries differ in class and shape
            long = trades["direction"].iat[int(mark.attrs["data-trade"])] > 0
            assert ("long" if long else "short") in mark.classes()
            assert f"#{int(mark.attrs['data-trade']) + 1} {'long' if long else 'short'} in" \
                in mark.text()
    assert sum(len(_marks(c)) for c in section.find_all("div", data_symbol=True)) == \
        2 * len(trades)


def test_marks_sit_at_their_trade_time_on_the_charts_time_axis(big_run):
    folder, summary, root = big_run
    trades = pd.read_parquet(folder / "trades.parquet")
    chart = root.one("section", id="prices").one("div", data_symbol="AAA").find_all("svg")[0]
    plot = chart.one("svg", **{"class": "plot"})
    t0, t1 = float(chart.attrs["data-t0"]), float(chart.attrs["data-t1"])
    left, width = float(plot.attrs["x"]), float(plot.attrs["width"])
    for mark in _marks(chart)[:200]:
        trade = trades.iloc[int(mark.attrs["data-trade"])]
        when = trade["exit_time"] if "exit" in mark.classes() else trade["entry_time"]
        expected = left + (when.value / 1e6 - t0) / (t1 - t0) * width
        x = float(mark.attrs["transform"].split("(")[1].split()[0])
        assert abs(x - expected) <= 0.06


def test_price_line_is_downsampled_while_marks_are_all_kept(big_run):
    _, summary, root = big_run
    for chart in root.one("section", id="prices").find_all("div", data_symbol=True):
        svg = chart.find_all("svg")[0]
        line = [p for p in svg.find_all("polyline") if "price" in p.classes()]
        assert len(line) == 1
        assert len(line[0].attrs["points"].split()) == int(svg.attrs["data-points"]) \
            <= MAX_CHART_POINTS


def test_a_symbol_without_trades_has_a_chart_without_marks(big_run):
    _, _, root = big_run
    chart = root.one("section", id="prices").one("div", data_symbol="ZZZ")
    assert chart.find_all("polyline") and not _marks(chart)
    assert "ZZZ: 0 trades" in chart.text()


def test_symbol_names_are_escaped_in_the_charts(big_run):
    folder, _, root = big_run
    assert root.one("section", id="prices").one("div", data_symbol=ODD_SYMBOL)
    assert "<b>X&amp;Y</b>:" not in render_report(folder)


def test_without_prices_parquet_the_section_is_one_not_recorded_line(tmp_path):
    make_run(tmp_path / "run")
    root, _ = parse(render_report(tmp_path / "run"))
    section = root.one("section", id="prices")
    assert section.find_all("p") == [section.one("p")]
    assert f"Prices (prices.parquet): {NOT_RECORDED}" in section.text()
