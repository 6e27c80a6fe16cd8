"""The HTML run report: figures agree with the run files, the document stands alone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from report.report_kit import (
    CONFIG_TEXT,
    INITIAL_CASH,
    ODD_SYMBOL,
    Node,
    assert_shows,
    make_run,
    parse,
)

from backtester.errors import DataError
from backtester.metrics import METRIC_NAMES
from backtester.report import (
    MAX_CHART_POINTS,
    NOT_RECORDED,
    downsample_extremes,
    format_value,
    render_report,
    write_report,
)

@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, dict[str, Any], Node]:
    folder = tmp_path_factory.mktemp("runs") / "full"
    summary = make_run(folder, extras=True)
    document = render_report(folder)
    root, errors = parse(document)
    assert not errors
    return folder, summary, root


# ---------------------------------------------------------------- figures


def test_headline_metrics_show_the_overall_values_of_metrics_json(full_run):
    _, summary, root = full_run
    header = root.one("header", id="summary")
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades",
                 "win_rate", "profit_factor", "final_equity"):
        assert_shows(header.one(data_metric=name).text(), summary["overall"][name], name)
    assert "profit_factor" in summary["overall"] and summary["overall"]["profit_factor"] is None
    assert summary["run_id"] in header.text()
    assert summary["config_hash"] in str(header.one("code").attrs["title"])


def _chunk_cells(section: Node, **row: str) -> dict[str, str]:
    """The chunk's cells by data-metric, over both chunk tables (returns and risk, trades)."""
    rows = section.find_all("tr", **row)
    assert len(rows) == 2, f"{row}: expected a row in each of the two tables, found {len(rows)}"
    cells = [c for r in rows for c in r.find_all("td", data_metric=True)]
    names = [c.attrs["data-metric"] for c in cells]
    assert len(names) == len(set(names)), f"{row}: a metric shown twice: {names}"
    return {name: c.text() for name, c in zip(names, cells)}


def test_every_chunk_row_shows_its_counts_and_all_metrics(full_run):
    _, summary, root = full_run
    section = root.one("section", id="chunks")
    tables = section.find_all("table")
    assert len(tables) == 2
    for table in tables:
        rows = table.find_all("tr", data_chunk=True)
        assert [r.attrs["data-chunk"] for r in rows] == [c["label"] for c in summary["chunks"]]
    for chunk in summary["chunks"]:
        cells = _chunk_cells(section, data_chunk=chunk["label"])
        for name in ("bars", "candidates", "decisions"):
            assert_shows(cells[name], chunk[name], name)
        for name in METRIC_NAMES:
            assert_shows(cells[name], chunk["metrics"][name], f"{chunk['label']} {name}")
    overall = _chunk_cells(section, data_row="overall")
    for name in METRIC_NAMES:
        assert_shows(overall[name], summary["overall"][name], name)
    assert_shows(overall["bars"], sum(c["bars"] for c in summary["chunks"]))


def test_null_metric_is_shown_as_a_dash(full_run):
    _, summary, root = full_run
    label = summary["chunks"][1]["label"]
    assert summary["chunks"][1]["metrics"]["sharpe"] is None
    assert _chunk_cells(root.one("section", id="chunks"), data_chunk=label)["sharpe"] == "-"


@pytest.mark.parametrize(("value", "name", "shown"), [
    (0.123456, "total_return", "+12.35%"),
    (-0.0896, "max_drawdown", "-8.96%"),
    (0.3430, "win_rate", "34.30%"),
    (1234567.891, "final_equity", "1,234,567.89"),
    (-2.0912, "sharpe", "-2.09"),
    (1183.0, "trades", "1,183"),
    (12.3229, "max_drawdown_duration_days", "12.3"),
    (None, "sharpe", "-"),
    (float("nan"), "cagr", "-"),
])
def test_format_value_gives_human_numbers(value, name, shown):
    assert format_value(value, name) == shown


def test_trade_rows_equal_the_trades_table(full_run):
    folder, _, root = full_run
    trades = pd.read_parquet(folder / "trades.parquet")
    rows = root.one("section", id="trades").find_all("tr", data_trade=True)
    assert len(rows) == len(trades) == 40
    assert [int(r.attrs["data-trade"]) for r in rows] == list(range(len(trades)))
    headers = [h.text() for h in root.one("section", id="trades").one("thead").find_all("th")]
    for row, (_, trade) in zip(rows, trades.iterrows()):
        cells = [c.text() for c in row.children]
        assert cells[headers.index("Symbol")] == trade["symbol"]
        assert cells[headers.index("Side")] == ("long" if trade["direction"] > 0 else "short")
        assert cells[headers.index("Entry (UTC)")] == f"{trade['entry_time']:%Y-%m-%d %H:%M}"
        assert cells[headers.index("Exit reason")] == trade["exit_reason"]
        assert cells[headers.index("Decision id")] == str(trade["decision_id"])
        for header, column in (("PnL", "pnl"), ("Return", "return_pct"), ("Fees", "fees"),
                               ("Entry price", "entry_price"), ("Exit price", "exit_price"),
                               ("Size", "size")):
            assert_shows(cells[headers.index(header)], trade[column], header)


def test_more_than_5000_trades_show_the_first_and_last_2500_with_a_note(tmp_path):
    make_run(tmp_path / "big", trades=5003, bars=400)
    document = render_report(tmp_path / "big")  # too big to parse quickly: regular expressions
    shown = [int(i) for i in re.findall(r'<tr data-trade="(\d+)">', document)]
    assert shown == list(range(2500)) + list(range(2503, 5003))
    assert "5,003 trades: showing the first 2,500 and the last 2,500" in document
    gap = document.index("3 trades not shown")
    assert document.index('data-trade="2499"') < gap < document.index('data-trade="2503"')


def test_per_symbol_results_add_up_to_the_trades_table(full_run):
    folder, _, root = full_run
    trades = pd.read_parquet(folder / "trades.parquet")
    section = root.one("section", id="symbols")
    expected = trades.groupby("symbol")["pnl"].agg(["sum", "count"])
    shown_total = 0.0
    for symbol in ("AAA", ODD_SYMBOL):
        row = section.one("tr", data_symbol=symbol)
        of_symbol = trades[trades["symbol"] == symbol]
        assert_shows(row.one(data_field="pnl").text(), expected.loc[symbol, "sum"], symbol)
        assert_shows(row.one(data_field="trades").text(), expected.loc[symbol, "count"])
        assert_shows(row.one(data_field="win_rate").text(), (of_symbol["pnl"] > 0).mean())
        assert_shows(row.one(data_field="contribution").text(),
                     expected.loc[symbol, "sum"] / INITIAL_CASH)
        shown_total += float(row.one(data_field="pnl").text().replace(",", ""))
    # a symbol of the run without trades is listed with zero trades
    assert_shows(section.one("tr", data_symbol="ZZZ").one(data_field="trades").text(), 0)
    total = section.one("tr", data_row="total")
    assert_shows(total.one(data_field="pnl").text(), trades["pnl"].sum(), "total pnl")
    assert shown_total == pytest.approx(trades["pnl"].sum(), abs=0.011)
    assert_shows(total.one(data_field="fees").text(), trades["fees"].sum())


def test_recorded_weights_providers_regimes_and_llm_counters_are_shown(full_run):
    _, summary, root = full_run
    providers = root.one("section", id="providers")
    assert NOT_RECORDED not in providers.text()
    for chunk in summary["chunks"]:
        row = providers.find_all("tr", data_chunk=chunk["label"])[0]  # weights table first
        for provider, weight in chunk["weights"].items():
            assert_shows(row.one(data_provider=provider).text(), weight, provider)
        for regime, weights in chunk["regime_weights"].items():
            row = providers.one("tr", data_chunk=chunk["label"], data_regime=regime)
            for provider, weight in weights.items():
                assert_shows(row.one(data_provider=provider).text(), weight, provider)
    assert len(providers.find_all("polyline")) == 3  # one weight line per provider
    for chunk in summary["chunks"]:
        row = providers.find_all("tr", data_chunk=chunk["label"])[-1]  # learning table last
        assert_shows(row.one(data_field="ensemble.hit_rate").text(), 0.56)
        assert_shows(row.one(data_field="ensemble.shadow_pnl").text(), 0.8535)
        assert row.one(data_field="memory_vote.hit_rate").text() == "-"
        assert_shows(row.one(data_field="size_multiplier").text(), 0.75)
    for provider, stats in summary["providers"].items():
        row = providers.one("tr", data_provider=provider)
        for name, value in stats.items():
            assert_shows(row.one(data_field=name).text(), value, f"{provider} {name}")
    regimes = root.one("section", id="regimes")
    for regime, stats in summary["regimes"].items():
        row = regimes.one("tr", data_regime=regime)
        for name, value in stats.items():
            assert_shows(row.one(data_field=name).text(), value, f"{regime} {name}")
    llm = root.one("section", id="llm")
    assert_shows(llm.one("tr", data_counter="calls").find_all("td")[0].text(), 1234)
    assert_shows(llm.one("tr", data_counter="latency.p50_seconds").find_all("td")[0].text(), 0.8)


def test_regime_breakdown_is_computed_from_a_regime_column_of_the_trades(tmp_path):
    make_run(tmp_path / "run", regime_column=True)
    trades = pd.read_parquet(tmp_path / "run" / "trades.parquet")
    root, _ = parse(render_report(tmp_path / "run"))
    section = root.one("section", id="regimes")
    for regime, group in trades.groupby("regime"):
        row = section.one("tr", data_regime=regime)
        assert_shows(row.one(data_field="trades").text(), len(group))
        assert_shows(row.one(data_field="pnl").text(), group["pnl"].sum())
        assert_shows(row.one(data_field="win_rate").text(), (group["pnl"] > 0).mean())


def test_absent_sections_say_they_were_not_recorded(tmp_path):
    make_run(tmp_path / "run")
    root, errors = parse(render_report(tmp_path / "run"))
    assert not errors
    providers = root.one("section", id="providers").text()
    for what in ("Provider weights", "Per-regime weights", "Provider statistics"):
        assert f"{what}: {NOT_RECORDED}" in providers
    for section in ("regimes", "llm"):
        assert NOT_RECORDED in root.one("section", id=section).text()
    for section in ("equity", "chunks", "symbols", "trades", "config"):
        assert NOT_RECORDED not in root.one("section", id=section).text()


def test_missing_trades_equity_and_config_files_are_reported_not_fatal(tmp_path):
    make_run(tmp_path / "run")
    for name in ("trades.parquet", "equity.parquet", "config.toml"):
        (tmp_path / "run" / name).unlink()
    root, errors = parse(render_report(tmp_path / "run"))
    assert not errors
    for section in ("equity", "symbols", "trades", "config"):
        assert NOT_RECORDED in root.one("section", id=section).text(), section
    # the initial equity then comes from final equity / (1 + total return)
    summary = orjson.loads((tmp_path / "run" / "metrics.json").read_bytes())
    overall = summary["overall"]
    assert format_value(overall["final_equity"] / (1 + overall["total_return"]),
                        "final_equity") in root.one("header").text()


# ---------------------------------------------------------------- a document that stands alone


def test_document_is_well_formed_with_unique_ids(full_run):
    folder, _, _ = full_run
    document = render_report(folder)
    assert document.startswith("<!DOCTYPE html>")
    root, errors = parse(document)
    assert errors == []
    ids = [n.attrs["id"] for n in root.find_all(id=True)]
    assert len(ids) == len(set(ids))
    assert [n.tag for n in root.children if not isinstance(n, str)] == ["html"]


def test_report_references_no_external_resource(full_run):
    folder, _, root = full_run
    document = render_report(folder)
    for node in root.find_all():
        for name in ("src", "href", "xlink:href", "action", "poster", "srcset", "data"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("#"), f"<{node.tag} {name}={value!r}>"
    assert not re.search(r"<(link|img|iframe|object|embed|use)\b", document, re.I)
    assert re.findall(r"<script\b[^>]*>", document, re.I) == ["<script>"]  # inline, no src
    script = document[document.index("<script>"):document.index("</script>")]
    for word in ("fetch", "XMLHttpRequest", "import", "WebSocket", "src", "href", "eval"):
        assert word not in script, word
    assert "url(" not in document and "@import" not in document
    assert "http://" not in document and "https://" not in document


def test_text_from_the_files_is_escaped(full_run):
    folder, summary, root = full_run
    document = render_report(folder)
    assert ODD_SYMBOL not in document and "<script>alert" not in document
    assert "&lt;b&gt;X&amp;Y&lt;/b&gt;" in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in document
    # the parsed text gives back the original strings: escaped once, not twice
    assert ODD_SYMBOL in root.one("header").text()
    assert root.one("section", id="config").one("pre").text() == CONFIG_TEXT
    assert root.one("section", id="providers").find_all(data_provider="llm:<gpt>")


# ---------------------------------------------------------------- charts and size


@pytest.mark.parametrize("n", [1, 5, 1999, 2000, 2001, 35_040, 100_003])
def test_downsample_keeps_ends_and_extremes_within_the_limit(n):
    values = np.cumsum(np.random.default_rng(n).normal(size=n))
    keep = downsample_extremes(values, 2000)
    assert keep.size <= 2000
    assert np.all(np.diff(keep) > 0)
    assert keep[0] == 0 and keep[-1] == n - 1
    assert values[keep].max() == values.max() and values[keep].min() == values.min()
    if n <= 2000:
        assert keep.size == n


def test_downsample_keeps_each_stretch_extremes_of_a_spike():
    values = np.zeros(50_000)
    values[12_345], values[40_000] = 5.0, -7.0
    keep = downsample_extremes(values, 100)
    assert {12_345, 40_000} <= set(keep.tolist()) and keep.size <= 100


def test_a_year_of_15min_bars_gives_small_charts_and_a_file_under_2_mb(tmp_path):
    make_run(tmp_path / "year", trades=2500, bars=35_040)
    path = write_report(tmp_path / "year")
    assert path.stat().st_size < 2_000_000
    document = path.read_text(encoding="utf-8")
    equity = document[document.index('<section id="equity">'):document.index("</section>")]
    charts = re.findall(r'<svg [^>]*data-points="(\d+)".*?<polyline [^>]*points="([^"]*)"',
                        equity)
    assert len(charts) == 2
    for declared, points in charts:
        assert len(points.split()) == int(declared) <= MAX_CHART_POINTS


def test_write_report_writes_report_html_atomically(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "report.html").write_text("old", encoding="utf-8")
    path = write_report(tmp_path / "run")
    assert path == tmp_path / "run" / "report.html"
    assert path.read_text(encoding="utf-8") == render_report(tmp_path / "run")
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "config.toml", "equity.parquet", "metrics.json", "report.html", "trades.parquet"]


# ---------------------------------------------------------------- errors


def test_missing_folder_or_metrics_json_raises_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        render_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"metrics\.json is missing"):
        render_report(tmp_path / "empty")


def test_malformed_files_raise_data_error_naming_the_file(tmp_path):
    make_run(tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"metrics\.json is not valid JSON"):
        render_report(tmp_path / "run")
    make_run(tmp_path / "run")
    pd.read_parquet(tmp_path / "run" / "trades.parquet").drop(columns="pnl").to_parquet(
        tmp_path / "run" / "trades.parquet")
    with pytest.raises(DataError, match=r"trades\.parquet lacks the columns \['pnl'\]"):
        render_report(tmp_path / "run")


# ---------------------------------------------------------------- a real run


def test_report_of_a_real_run_matches_its_files(tmp_path):
    from backtester.config import load_config
    from backtester.data.bars import Bars
    from backtester.runner import run_backtest

    rng = np.random.default_rng(3)
    n = 3000 + 96 * 16
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, (n, 2)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    spread = np.abs(rng.normal(0, 0.003, (n, 2))) * close
    times = (pd.Timestamp("2024-12-01", tz="UTC").value
             + np.arange(n, dtype=np.int64) * 15 * 60 * 10**9)
    bars = Bars(times, ("S0", "S1"), open_, np.maximum(open_, close) + spread,
                np.minimum(open_, close) - spread, close, rng.lognormal(3, 0.5, (n, 2)),
                timeframe="15min")
    first = int(np.searchsorted(times, pd.Timestamp("2025-01-01", tz="UTC").value))
    config = load_config(None, {"run.out_dir": str(tmp_path / "runs"), "run.chunk": "week",
                                "run.start": "2025-01-01", "run.end": "2025-01-15",
                                "data.symbols": ["S0", "S1"], "memory.mode": "off",
                                "memory.dir": str(tmp_path / "memory")})
    result = run_backtest(config, bars=bars, first=first, write=True)

    root, errors = parse(write_report(result.out_dir).read_text(encoding="utf-8"))

    assert not errors
    summary = orjson.loads((result.out_dir / "metrics.json").read_bytes())
    assert set(summary["overall"]) == set(METRIC_NAMES)
    overall = _chunk_cells(root.one("section", id="chunks"), data_row="overall")
    for name, value in summary["overall"].items():
        assert_shows(overall[name], value, name)
    for name in ("total_return", "sharpe", "max_drawdown", "trades", "final_equity"):
        assert_shows(root.one("header").one(data_metric=name).text(), summary["overall"][name])
    rows = root.one("section", id="chunks").find_all("table")[0].find_all("tr", data_chunk=True)
    assert [r.attrs["data-chunk"] for r in rows] == [c["label"] for c in summary["chunks"]]
    assert len(rows) >= 2
    assert len(root.find_all("tr", data_trade=True)) == len(result.trades) > 0
    symbols = root.one("section", id="symbols")
    for symbol, pnl in result.trades.groupby("symbol")["pnl"].sum().items():
        assert_shows(symbols.one("tr", data_symbol=symbol).one(data_field="pnl").text(), pnl)


def test_a_chunk_whose_weights_are_not_a_table_shows_dashes(tmp_path):
    # Arrange: a hand-edited metrics.json whose second chunk's weights are a string
    summary = make_run(tmp_path / "run", extras=True)
    summary["chunks"][1]["weights"] = "broken"
    (tmp_path / "run" / "metrics.json").write_bytes(orjson.dumps(summary))
    # Act
    root, _ = parse(render_report(tmp_path / "run"))
    # Assert: the other chunks keep their weights, the broken one shows '-'
    providers = root.one("section", id="providers")
    row = providers.find_all("tr", data_chunk=summary["chunks"][1]["label"])[0]
    assert {cell.text() for cell in row.find_all(data_provider="momentum")} == {"-"}
    good = providers.find_all("tr", data_chunk=summary["chunks"][0]["label"])[0]
    assert_shows(good.one(data_provider="momentum").text(),
                 summary["chunks"][0]["weights"]["momentum"])
