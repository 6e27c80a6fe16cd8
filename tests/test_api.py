"""The public Python API (``import backtester as bt``) as a notebook or script uses it."""

from __future__ import annotations

import importlib.metadata
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from kit import random_bars
from typer.testing import CliRunner

import backtester as bt
from backtester.cli import app
from backtester.config import load_config
from backtester.runner import run_backtest

PERIOD = {"start": "2025-01-01", "end": "2025-02-01", "timeframe": "1h", "chunk": "week"}


def _same(left: dict, right: dict) -> bool:
    """Metrics equal, NaN (in memory) and None (in JSON) alike."""
    def norm(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return left.keys() == right.keys() and all(norm(left[k]) == norm(right[k]) for k in left)


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def learned(tmp_path_factory, cache):
    """One learning run through the API, written like `bt run` does."""
    root = tmp_path_factory.mktemp("api")
    result = bt.run(**PERIOD, memory_dir=root / "memory", out=root / "runs", embedder="hashing",
                    cache_dir=cache, run_id="api")
    return root, result


def test_run_tables_equal_the_run_folder_and_a_direct_run_backtest(learned, tmp_path, cache):
    # Arrange
    root, result = learned
    folder = root / "runs" / "api"
    direct = run_backtest(load_config(None, {
        "run.start": PERIOD["start"], "run.end": PERIOD["end"], "run.chunk": "week",
        "data.timeframe": "1h", "memory.dir": str(tmp_path / "memory"),
        "run.out_dir": str(tmp_path / "runs"), "memory.embedder": "hashing",
        "data.cache_dir": cache}), write=False)
    written = orjson.loads((folder / "metrics.json").read_bytes())

    # Assert: the folder holds what the Result holds
    assert result.out_dir == folder and result.run_id == "api"
    assert _same(result.metrics, written["overall"])
    pd.testing.assert_frame_equal(result.trades, pd.read_parquet(folder / "trades.parquet"))
    pd.testing.assert_frame_equal(result.equity, pd.read_parquet(folder / "equity.parquet"))
    pd.testing.assert_frame_equal(result.books, pd.read_parquet(folder / "books.parquet"))
    assert result.books_summary == written["books"]
    assert list(result.chunks.index) == [c["label"] for c in written["chunks"]]
    assert list(result.chunks["total_return"]) == [c["metrics"]["total_return"]
                                                   for c in written["chunks"]]
    first = written["chunks"][0]["books"]
    assert result.chunks["learned_return"].iloc[0] == first["figures"]["learned"]["total_return"]
    assert result.chunks["best_single"].iloc[0] == first["best_single"]
    assert result.chunks["buy_and_hold_return"].iloc[0] == \
        first["figures"]["buy_and_hold"]["total_return"]
    # ... and the same as run_backtest called directly
    assert _same(result.metrics, direct.metrics)
    pd.testing.assert_frame_equal(result.trades, direct.trades)
    pd.testing.assert_frame_equal(result.equity, direct.equity)
    assert result.config.memory.embedder == "hashing" and result.config.run.chunk == "week"


def test_open_run_round_trips(learned):
    root, result = learned
    opened = bt.open_run(root / "runs" / "api")

    assert opened.run_id == result.run_id and opened.out_dir == result.out_dir
    assert _same(opened.metrics, result.metrics)
    pd.testing.assert_frame_equal(opened.chunks, result.chunks)
    pd.testing.assert_frame_equal(opened.trades, result.trades)
    pd.testing.assert_frame_equal(opened.equity, result.equity)
    pd.testing.assert_frame_equal(opened.books, result.books)
    pd.testing.assert_frame_equal(opened.prices, result.prices)
    assert opened.books_summary == result.books_summary
    assert opened.config == result.config
    assert repr(opened) == repr(result)


def test_open_run_of_a_folder_without_metrics_says_so(tmp_path):
    with pytest.raises(bt.BtError, match="not a run folder"):
        bt.open_run(tmp_path)


def test_report_writes_the_metrics(learned, tmp_path):
    root, result = learned
    path = result.report(tmp_path / "out" / "r.html")
    default = result.report()

    text = path.read_text(encoding="utf-8")
    assert default == root / "runs" / "api" / "report.html"
    assert 'data-metric="sharpe"' in text and result.run_id in text
    assert default.read_text(encoding="utf-8") == text


def test_in_memory_run_writes_nothing_and_reports_only_to_a_path(tmp_path, cache):
    result = bt.run(**PERIOD, memory_mode="off", out=tmp_path / "runs", cache_dir=cache,
                    write=False)

    assert result.out_dir is None and not (tmp_path / "runs").exists()
    with pytest.raises(bt.BtError, match="pass a path"):
        result.report()
    text = result.report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'data-metric="total_return"' in text and result.run_id in text


def test_repr_html_escapes_what_the_files_hold(learned, tmp_path):
    root, _ = learned
    folder = tmp_path / "run"
    shutil.copytree(root / "runs" / "api", folder)
    summary = orjson.loads((folder / "metrics.json").read_bytes())
    summary["symbols"] = ["<script>alert(1)</script>"]
    summary["chunks"][0]["label"] = "Q&A<b>"
    (folder / "metrics.json").write_bytes(orjson.dumps(summary))

    page = bt.open_run(folder)._repr_html_()

    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "Q&amp;A&lt;b&gt;" in page
    assert 'class="bt-metrics"' in page and "sharpe" in page


def test_open_memory_reads_and_leaves_the_folder_byte_identical(learned):
    root, result = learned
    folder = root / "memory"
    before = _folder_bytes(folder)

    memory = bt.open_memory(folder)
    weights = memory.weights
    outcomes = memory.outcomes()
    snapshots = memory.snapshots()
    hits = memory.search("stopped out in a volatile market", k=3)

    assert _folder_bytes(folder) == before
    stats = orjson.loads((folder / "provider_performance.json").read_bytes())
    assert weights["overall"] == {name: row["weight"] for name, row in
                                  stats["provider_stats"]["providers"].items()}
    assert set(weights["by_regime"]) <= {"TRENDING", "RANGING", "VOLATILE"}
    assert memory.generation == len(result.chunks) == len(snapshots)
    assert list(snapshots.index) == list(result.chunks.index)
    assert len(outcomes) == len(result.trades)
    assert outcomes["entry_time"].is_monotonic_increasing
    assert isinstance(outcomes["entry_time"].dtype, pd.DatetimeTZDtype)
    assert len(memory.outcomes(newest=5)) == 5
    assert len(hits) == 3 and hits["similarity"].is_monotonic_decreasing
    assert set(hits["decision_id"]) <= set(outcomes["decision_id"])


def test_open_memory_of_an_empty_folder_says_so(tmp_path):
    with pytest.raises(bt.MemoryStoreError, match="no committed memory"):
        bt.open_memory(tmp_path)


# ---------------------------------------------------------------- bars as DataFrames


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    """Long bars, prices rounded so a CSV holds them exactly."""
    frame = random_bars(4400, seed=5, n_assets=2, start="2024-12-01").to_long_frame()
    fields = ["open", "high", "low", "close", "volume"]
    frame[fields] = frame[fields].round(4)
    return frame


def _wide(long: pd.DataFrame, *, field_first: bool = False) -> pd.DataFrame:
    wide = long.pivot(index="time", columns="symbol",
                      values=["open", "high", "low", "close", "volume"])
    return wide if field_first else wide.swaplevel(axis=1)  # (field, symbol) / (symbol, field)


FRAME_RUN = {"start": "2025-01-01", "end": "2025-01-15", "chunk": "week",
             "timeframe": "15min", "memory_mode": "off"}


def test_wide_and_long_frames_and_a_csv_through_bt_run_agree(market, tmp_path):
    # Arrange
    csv = tmp_path / "bars.csv"
    market.to_csv(csv, index=False)
    runs = tmp_path / "runs"

    # Act
    long = bt.run(**FRAME_RUN, data=market, out=runs, run_id="long")
    wide = bt.run(**FRAME_RUN, data=_wide(market), write=False)
    swapped = bt.run(**FRAME_RUN, data=_wide(market, field_first=True), write=False)
    by_path = bt.run(**FRAME_RUN, data=csv, write=False)
    cli = CliRunner().invoke(app, [
        "run", "--data", str(csv), "--start", FRAME_RUN["start"], "--end", FRAME_RUN["end"],
        "--chunk", "week", "--timeframe", "15min", "--no-memory", "--out", str(runs),
        "--run-id", "cli"])
    assert cli.exit_code == 0, cli.output
    by_cli = bt.open_run(runs / "cli")

    # Assert
    assert long.summary["symbols"] == ["S0", "S1"] == by_cli.summary["symbols"]
    assert len(long.trades) > 0
    assert by_path.config.data.path == str(csv) and by_path.config.data.symbols == ()
    for other in (wide, swapped, by_path, by_cli):
        assert _same(other.metrics, long.metrics)
        # decision ids hash the config, whose data.path names the CSV in those two runs
        ids = ["decision_id"] if other in (by_path, by_cli) else []
        pd.testing.assert_frame_equal(other.trades.drop(columns=ids),
                                      long.trades.drop(columns=ids))
        pd.testing.assert_frame_equal(other.equity, long.equity)
        pd.testing.assert_frame_equal(other.chunks, long.chunks)


def test_a_frame_with_a_bad_row_names_it(market):
    broken = market.copy()
    broken.loc[7, "close"] = np.nan

    with pytest.raises(bt.DataError, match="DataFrame.*close"):
        bt.run(**FRAME_RUN, data=broken, write=False)


def test_data_of_another_type_is_refused():
    with pytest.raises(bt.DataError, match="DataFrame or a path, was list"):
        bt.run(data=[1, 2], write=False)


def test_a_frame_without_history_before_the_period_warns(market):
    late = market[market["time"] >= pd.Timestamp("2025-01-01", tz="UTC")]

    with pytest.warns(UserWarning, match="DataFrame: only 0 bars before 2025-01-01"):
        result = bt.run(**FRAME_RUN, data=late, write=False)
    assert result.equity["time"].iloc[0] == pd.Timestamp("2025-01-01", tz="UTC")


def test_symbols_select_from_a_frame(market):
    result = bt.run(**FRAME_RUN, data=market, symbols="S1", write=False)

    assert result.summary["symbols"] == ["S1"] and set(result.trades["symbol"]) <= {"S1"}


# ---------------------------------------------------------------- configs


def test_configure_from_options_dicts_and_a_config():
    by_options = bt.configure(year=2024, chunk="month", overrides={"ensemble.threshold": 0.3})
    by_dotted = bt.configure({"run.year": 2024, "run.chunk": "month",
                              "ensemble.threshold": 0.3})
    by_sections = bt.configure({"run": {"year": 2024, "chunk": "month"},
                                "ensemble": {"threshold": 0.3}})
    changed = bt.configure(bt.configure(), year=2024, chunk="month",
                           overrides={"ensemble.threshold": 0.3})

    assert by_options == by_dotted == by_sections == changed
    assert by_options.run.year == 2024 and by_options.ensemble.threshold == 0.3
    assert bt.configure(symbols="A, B", data_path="x.csv").data.symbols == ("A", "B")


def test_configure_rejects_unknown_names_with_a_suggestion():
    with pytest.raises(bt.ConfigError, match="did you mean 'year'"):
        bt.configure(yaer=2024)
    with pytest.raises(bt.ConfigError, match="ensemble"):
        bt.configure(overrides={"ensemble.treshold": 0.3})
    with pytest.raises(bt.ConfigError, match="run.chunk"):
        bt.configure(bt.configure(), chunk="fortnight")


# ---------------------------------------------------------------- the package


def test_import_is_light_and_names_are_exported():
    code = ("import sys, backtester as bt; heavy = [m for m in ('numba', 'torch', "
            "'sentence_transformers', 'pandas', 'faiss') if m in sys.modules]; "
            "assert not heavy, heavy; print(bt.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == importlib.metadata.version("bt") == bt.__version__
    for name in bt.__all__:
        assert getattr(bt, name) is not None, name
    assert (Path(bt.__file__).parent / "py.typed").exists()


def test_a_script_outside_the_repository_runs_a_year_slice(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(textwrap.dedent("""
        import json
        import pandas as pd
        import backtester as bt

        result = bt.run(start="2025-03-01", end="2025-04-01", timeframe="1h", chunk="month",
                        memory_dir="memory", out="runs", embedder="hashing", run_id="study")
        frames = [result.chunks, result.trades, result.equity, result.books]
        assert all(isinstance(f, pd.DataFrame) for f in frames)
        report = result.report()
        print(json.dumps({"report": str(report), "sharpe": result.metrics["sharpe"],
                          "trades": len(result.trades)}))
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    figures = orjson.loads(done.stdout.strip().splitlines()[-1])
    report = tmp_path / figures["report"]
    assert report == tmp_path / "runs" / "study" / "report.html" and report.exists()
    assert figures["trades"] == len(bt.open_run(tmp_path / "runs" / "study").trades) > 0


def test_open_run_never_imports_a_class_named_in_someone_elses_config(tmp_path):
    # Arrange: a run folder whose config names a plugin file that would leave a mark
    marker = tmp_path / "imported"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"run_id": "r", "overall": {}, "chunks": []}')
    (folder / "config.toml").write_text(
        f'[strategies.evil]\nclass = "{tmp_path / "evil.py"}:Evil"\n')
    # Act / Assert
    with pytest.raises(bt.ConfigError, match="without importing its plugins"):
        bt.open_run(folder).config
    assert not marker.exists()
