"""The books section and the per-book regimes: every figure shown is metrics.json's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from report.report_kit import (
    ODD_PROVIDER,
    Node,
    add_books,
    assert_shows,
    make_run,
    parse,
    write_summary,
)

from backtester.report import MAX_CHART_POINTS, NOT_RECORDED, render_report

ZOOM = {"class": "chart zoom"}
ATTRIBUTION = ("learned", "equal_weight", "best_single", "buy_and_hold")


@pytest.fixture(scope="module")
def books_run(tmp_path_factory) -> tuple[Path, dict[str, Any], Node]:
    folder = tmp_path_factory.mktemp("runs") / "books"
    make_run(folder, extras=True)
    summary = add_books(folder)
    root, errors = parse(render_report(folder))
    assert errors == []
    return folder, summary, root


def test_overlay_draws_learned_equal_best_single_and_buy_and_hold_over_chunk_bands(books_run):
    # Arrange
    _, summary, root = books_run
    books = summary["books"]
    # Act
    chart = root.one("section", id="books").find_all("svg", **ZOOM)[0]
    # Assert
    lines = chart.find_all("polyline", data_series=True)
    assert [line.attrs["data-series"] for line in lines] == [  # learned drawn last, on top
        "Buy and hold", f"Best single: {books['best_single']}", "Equal weight", "Learned"]
    for line in lines:
        assert 2 <= len(line.attrs["points"].split()) <= MAX_CHART_POINTS
    assert len([r for r in chart.find_all("rect") if "band" in r.classes()]) == len(
        summary["chunks"])
    legend = root.one("section", id="books").find_all("div", **{"class": "legend"})[0].text()
    assert f"Best single: {books['best_single']}" in legend and "Buy and hold" in legend


def test_every_chunk_row_shows_the_books_returns_learned_minus_equal_and_regret(books_run):
    _, summary, root = books_run
    section = root.one("section", id="books")
    chunks = summary["books"]["chunks"]
    rows = section.find_all("tr", data_chunk=True)
    assert [r.attrs["data-chunk"] for r in rows] == [c["label"] for c in chunks]
    for row, chunk in zip(rows, chunks):
        best = chunk["best_single"]
        assert row.one(data_field="best_single_name").text() == best
        for book in ATTRIBUTION:
            name = best if book == "best_single" else book
            assert_shows(row.one(data_field=book).text(),
                         chunk["figures"][name]["total_return"], f"{chunk['label']} {book}")
        for name in ("learned_minus_equal", "regret"):
            assert_shows(row.one(data_field=name).text(), chunk[name], name)
    whole = section.one("tr", data_row="overall")
    books = summary["books"]
    assert whole.one(data_field="best_single_name").text() == books["best_single"]
    for name in ("learned_minus_equal", "regret"):
        assert_shows(whole.one(data_field=name).text(), books[name], name)
    assert_shows(whole.one(data_field="best_single").text(),
                 books["overall"][books["best_single"]]["total_return"])


def test_whole_period_table_lists_every_book_in_display_order_with_its_figures(books_run):
    _, summary, root = books_run
    rows = root.one("section", id="books").find_all("tr", data_book=True)
    overall = summary["books"]["overall"]
    assert [r.attrs["data-book"] for r in rows] == summary["books"]["names"]
    for row in rows:
        book = row.attrs["data-book"]
        for name, value in overall[book].items():
            assert_shows(row.one(data_metric=name).text(), value, f"{book} {name}")
    best = summary["books"]["names"].index(summary["books"]["best_single"])
    assert "best" in rows[best].classes()
    # a figure that is null in metrics.json shows as a dash
    assert overall["buy_and_hold"]["hit_rate"] is None
    assert rows[-1].one(data_metric="hit_rate").text() == "-"


def test_significance_sentence_and_figures_are_shown_and_escaped(books_run):
    _, summary, root = books_run
    significance = summary["books"]["significance"]
    section = root.one("section", id="books")
    assert section.one(data_field="sentence").text() == significance["sentence"]
    assert significance["sentence"] in root.one("header", id="summary").text()
    for name in ("psr", "sharpe"):
        assert_shows(section.one(data_field=name).text(), significance[name], name)
    for name, value in significance["bootstrap"].items():
        if name != "confidence":
            assert_shows(section.one(data_field=name).text(), value, name)
    assert "95% interval" in section.text()


def test_benchmark_figures_of_learned_against_buy_and_hold_are_shown(books_run):
    _, summary, root = books_run
    section = root.one("section", id="books")
    for name, value in summary["books"]["benchmark"].items():
        assert_shows(section.one(data_field=name).text(), value, name)
    assert section.one(data_field="correlation").text() == "-"  # null in metrics.json


def test_regime_table_shows_every_book_and_regime_of_metrics_json(books_run):
    _, summary, root = books_run
    section = root.one("section", id="regimes")
    regimes = summary["books"]["regimes"]
    rows = section.find_all("tr", data_book=True)
    assert len(rows) == sum(len(r) for r in regimes.values())
    assert list(dict.fromkeys(r.attrs["data-book"] for r in rows)) == summary["books"]["names"]
    for book, by_regime in regimes.items():
        for regime, stats in by_regime.items():
            row = section.one("tr", data_book=book, data_regime=regime)
            for name, value in stats.items():
                assert_shows(row.one(data_field=name).text(), value, f"{book} {regime} {name}")
    assert section.one("tr", data_book="learned", data_regime="UNKNOWN").one(
        data_field="win_rate").text() == "-"
    # the run's own "regimes" (older metrics) no longer shows beside the books'
    assert not section.find_all("tr", data_regime=True, data_book=False)
    assert NOT_RECORDED not in section.text()


def test_memory_mode_and_an_in_sample_evaluation_are_stated(tmp_path):
    make_run(tmp_path / "run")
    summary = add_books(tmp_path / "run")
    root, _ = parse(render_report(tmp_path / "run"))
    assert "frozen" in root.one("header").one(data_field="memory_mode").text()
    assert not root.one("header").find_all(data_field="in_sample")
    summary["in_sample"] = True
    write_summary(tmp_path / "run", summary)
    root, _ = parse(render_report(tmp_path / "run"))
    assert "in-sample" in root.one("header").one(data_field="in_sample").text()


def test_a_book_missing_from_books_parquet_is_left_out_of_the_overlay(tmp_path):
    # Arrange: books.parquet without the best single provider's curve
    make_run(tmp_path / "run")
    summary = add_books(tmp_path / "run")
    path = tmp_path / "run" / "books.parquet"
    pd.read_parquet(path).drop(columns=summary["books"]["best_single"]).to_parquet(path)
    # Act
    root, _ = parse(render_report(tmp_path / "run"))
    # Assert
    chart = root.one("section", id="books").find_all("svg", **ZOOM)[0]
    assert [line.attrs["data-series"] for line in chart.find_all("polyline", data_series=True)] \
        == ["Buy and hold", "Equal weight", "Learned"]


def test_books_in_metrics_json_without_books_parquet_show_tables_and_say_the_curves_lack(tmp_path):
    make_run(tmp_path / "run")
    summary = add_books(tmp_path / "run")
    (tmp_path / "run" / "books.parquet").unlink()
    root, _ = parse(render_report(tmp_path / "run"))
    section = root.one("section", id="books")
    assert f"Book equity curves (books.parquet): {NOT_RECORDED}" in section.text()
    assert not section.find_all("svg")
    assert len(section.find_all("tr", data_book=True)) == len(summary["books"]["names"])


def test_provider_book_names_are_escaped(books_run):
    folder, _, root = books_run
    document = render_report(folder)
    assert ODD_PROVIDER not in document and "&lt;really&gt;" in document
    assert root.one("section", id="books").one("tr", data_book=ODD_PROVIDER)


def test_malformed_books_object_degrades_instead_of_failing(tmp_path):
    # Arrange: a hand-edited metrics.json whose books entries have the wrong types
    make_run(tmp_path / "run")
    summary = add_books(tmp_path / "run")
    summary["books"].update(chunks="broken", overall=[1, 2], significance=3, benchmark=None,
                            regimes={"learned": "x"})
    (tmp_path / "run" / "metrics.json").write_bytes(orjson.dumps(summary))
    # Act
    root, errors = parse(render_report(tmp_path / "run"))
    # Assert
    assert errors == []
    text = root.one("section", id="books").text()
    for what in ("Book returns per chunk", "Book figures over the whole period",
                 "Significance of learned against equal weight", "Benchmark figures"):
        assert f"{what}: {NOT_RECORDED}" in text
