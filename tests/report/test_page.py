"""The page as a whole: one inline script that only adds zoom, no remote reference, every
section readable without the script, and old run folders that say what they lack."""

from __future__ import annotations

import re

import pytest
from report.report_kit import ODD_PROVIDER, ODD_SYMBOL, add_books, make_run, parse

from backtester.report import NAVIGATION, NOT_RECORDED, render_report, write_report

NEW_SECTIONS = ("books", "prices")
"""Sections built only from what issue 9 added to the run folder."""


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("runs") / "books"
    make_run(folder, extras=True)
    add_books(folder)
    return render_report(folder)


def test_page_holds_exactly_one_inline_script_and_nothing_remote(document):
    root, errors = parse(document)
    assert errors == []
    scripts = root.find_all("script")
    assert len(scripts) == 1 and scripts[0].attrs == {}
    assert len(re.findall(r"<script\b", document, re.I)) == 1
    assert not re.search(r"<(link|img|iframe|object|embed|use|image)\b", document, re.I)
    for node in root.find_all():
        for name in ("src", "href", "xlink:href", "action", "poster", "srcset", "data"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("#"), f"<{node.tag} {name}={value!r}>"
    assert "url(" not in document and "@import" not in document
    assert "http://" not in document and "https://" not in document


def test_every_section_has_its_content_in_the_markup_without_the_script(document):
    # Arrange: the page as a browser with scripts off shows it
    without = re.sub(r"<script>.*?</script>", "", document, flags=re.S)
    root, errors = parse(without)
    assert errors == []
    # Assert: every section is there, has content, and the charts are drawn
    ids = [key for key, _ in NAVIGATION]
    for key in ids:
        section = root.one("section", id=key)
        assert section.find_all("table") or section.find_all("svg") or section.find_all("pre") \
            or NOT_RECORDED in section.text(), key
    for key in ("equity", "books", "returns", "prices"):
        charts = [s for s in root.one("section", id=key).find_all("svg")
                  if "chart" in (s.attrs.get("class") or "")]
        assert charts, key
        for chart in charts:
            assert chart.find_all("polyline") or chart.find_all("rect"), key
            assert chart.find_all("text"), f"{key}: a chart without axis labels"
    # only the zoom hint (which speaks of the script) is hidden until the script runs
    style = root.one("style").text()
    hidden = re.findall(r"([^{}]+)\{[^}]*display:none", style)
    assert [h.strip() for h in hidden] == [".zoom-hint"]


def test_the_script_only_zooms_the_time_charts(document):
    script = document[document.index("<script>") + 8:document.index("</script>")]
    assert 'querySelectorAll("svg.chart.zoom")' in script
    for word in ("fetch", "XMLHttpRequest", "import", "WebSocket", "eval", "innerText",
                 "localStorage", "cookie", "location"):
        assert word not in script, word
    root, _ = parse(document)
    for chart in root.find_all("svg"):
        if "zoom" in (chart.attrs.get("class") or ""):
            plot = chart.one("svg", **{"class": "plot"})
            assert plot.attrs["preserveaspectratio"] == "none"
            assert float(chart.attrs["data-t1"]) >= float(chart.attrs["data-t0"])


def test_navigation_links_every_section(document):
    root, _ = parse(document)
    links = [a.attrs["href"] for a in root.one("nav").find_all("a")]
    assert links == [f"#{key}" for key, _ in NAVIGATION]
    for key, _ in NAVIGATION:
        assert root.one("section", id=key)


def test_user_text_is_escaped_in_the_new_sections(document):
    assert ODD_SYMBOL not in document and ODD_PROVIDER not in document
    assert "&lt;b&gt;X&amp;Y&lt;/b&gt;" in document and "llm:&lt;gpt&gt;" in document
    assert "&lt;really&gt;" in document and "<really>" not in document


def test_an_old_run_folder_says_in_one_line_what_it_did_not_record(tmp_path):
    # Arrange: a folder written before issue 9 (no books, prices, regimes, memory mode)
    make_run(tmp_path / "old")
    # Act
    root, errors = parse(render_report(tmp_path / "old"))
    # Assert
    assert errors == []
    for key in (*NEW_SECTIONS, "regimes"):
        section = root.one("section", id=key)
        paragraphs = section.find_all("p")
        assert len(paragraphs) == 1 and NOT_RECORDED in paragraphs[0].text(), key
        assert not section.find_all("table") and not section.find_all("svg"), key
    assert not root.one("header").find_all(data_field="memory_mode")
    # the views computed from the equity curve and the trades are there all the same
    for key in ("returns", "drawdowns"):
        assert NOT_RECORDED not in root.one("section", id=key).text(), key


def test_write_report_adds_only_report_html_to_a_folder_with_books(tmp_path):
    make_run(tmp_path / "run")
    add_books(tmp_path / "run")
    path = write_report(tmp_path / "run")
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "books.parquet", "config.toml", "equity.parquet", "metrics.json", "prices.parquet",
        "report.html", "trades.parquet"]


def test_a_year_of_bars_with_2500_trades_books_and_prices_stays_under_3_mb(tmp_path):
    make_run(tmp_path / "year", trades=2500, bars=35_040)
    add_books(tmp_path / "year")
    path = write_report(tmp_path / "year")
    assert path.stat().st_size < 3_000_000
