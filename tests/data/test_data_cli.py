"""`bt data validate|info|cache`, the cache folder, and the embedded market's refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.config import load_config
from backtester.data.cache import cache_files, clear_cache, embedded_bars, resolve_cache_dir
from backtester.errors import ConfigError
from backtester.market import load_market

runner = CliRunner()
CSV = ("time,open,high,low,close,volume\n"
       "2024-01-02 10:00,1234.5,1300,1200,1250.25,1500000\n"
       "2024-01-02 11:00,1250.25,1260,1240,1255,2500000\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("BT_CACHE_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def test_default_cache_dir_is_the_user_cache_not_the_working_folder(cache, tmp_path,
                                                                   monkeypatch):
    assert resolve_cache_dir("data/cache") == cache == resolve_cache_dir("")
    assert resolve_cache_dir(tmp_path / "mine") == tmp_path / "mine"  # explicit wins
    embedded_bars(pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-01 01:00",
                                                                      tz="UTC"), ["BTCUSD"])
    assert [p.name[:20] for p, _ in cache_files()] == ["embedded_BTCUSD_2025"]
    assert not (tmp_path / "data").exists()
    monkeypatch.delenv("BT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        import platformdirs  # noqa: F401
    except ImportError:
        assert resolve_cache_dir() == tmp_path / "xdg" / "bt"


def test_clear_deletes_only_cache_files_inside_the_folder(cache, tmp_path):
    cache.mkdir()
    (cache / "embedded_BTCUSD_2025_0123456789ab.parquet").write_bytes(b"x" * 10)
    (cache / ".embedded_BTCUSD_2025_0123456789ab.parquet.a1b2c3d4e5f6.tmp").write_bytes(b"y")
    (cache / "notes.txt").write_text("mine")
    (cache / "sub").mkdir()
    (cache / "sub" / "embedded_X_2025_0123456789ab.parquet").write_bytes(b"z")
    outside = tmp_path / "embedded_ETHUSD_2025_0123456789ab.parquet"
    outside.write_bytes(b"keep")
    (cache / "embedded_LINK_2025_0123456789ab.parquet").symlink_to(outside)
    assert clear_cache() == (2, 11)
    assert sorted(p.name for p in cache.iterdir()) == [
        "embedded_LINK_2025_0123456789ab.parquet", "notes.txt", "sub"]
    assert outside.read_bytes() == b"keep"
    assert (cache / "sub" / "embedded_X_2025_0123456789ab.parquet").exists()


def test_bt_data_cache_lists_and_clears(cache):
    cache.mkdir()
    (cache / "embedded_BTCUSD_2025_0123456789ab.parquet").write_bytes(b"x" * 2048)
    shown = runner.invoke(app, ["data", "cache"])
    assert shown.exit_code == 0, shown.output
    assert "1 files, 2.0 KB" in " ".join(shown.output.split())
    assert "embedded_BTCUSD_2025" in shown.output
    cleared = runner.invoke(app, ["data", "cache", "--clear"])
    assert cleared.exit_code == 0, cleared.output
    assert "1 files, 2.0 KB" in " ".join(cleared.output.split())
    assert not any(cache.iterdir())


def test_bt_data_validate_names_a_missing_argument(cache):
    result = runner.invoke(app, ["data", "validate", "nope.csv"])
    assert result.exit_code == 1
    assert "nope.csv: no such file; pass an existing CSV/Parquet file or folder" in \
        " ".join(result.output.split())
    assert "--data" not in result.output


def test_bt_data_validate_with_on_duplicate(cache, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(CSV + "2024-01-02 11:00,1250.25,1260,1240,1256,2500000\n")
    refused = runner.invoke(app, ["data", "validate", str(path)])
    assert refused.exit_code == 1 and "--on-duplicate" in refused.output
    ok = runner.invoke(app, ["data", "validate", str(path), "--on-duplicate", "last"])
    assert ok.exit_code == 0, ok.output
    assert "resolved 1 duplicate times" in " ".join(ok.output.split())


def test_bt_data_info_is_a_table_with_thousands_separators(cache, tmp_path):
    path = tmp_path / "BIG.csv"
    path.write_text(CSV)
    result = runner.invoke(app, ["data", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "4,000,000" in result.output  # total volume
    assert "1,250.25" in result.output and "1,255.00" in result.output
    assert "{" not in result.output and "per_symbol" not in result.output


def test_bt_data_info_refuses_a_symbol_the_embedded_market_lacks(cache):
    result = runner.invoke(app, ["data", "info", "--symbols", "BTCUSDT", "--year", "2025"])
    assert result.exit_code == 1
    assert "did you mean BTCUSD?" in result.output


@pytest.mark.parametrize("symbol", ["DOGEUSD", "BTCUSDT"])
def test_embedded_market_refuses_symbols_it_does_not_have(cache, symbol):
    config = load_config(None, {"data.symbols": [symbol]})
    with pytest.raises(ConfigError) as caught:
        load_market(config)
    message = str(caught.value)
    assert f"symbol '{symbol}' is not in the embedded market" in message
    assert "it has BTCUSD, ETHUSD, SOLUSD" in message
    assert ("did you mean BTCUSD?" in message) == (symbol == "BTCUSDT")


def test_embedded_market_refuses_a_period_before_it_starts(cache):
    with pytest.raises(ConfigError, match=r"the embedded market covers 2020-01-01 on, the "
                       r"period starts 1990-01-01; choose --year 2020 or later"):
        load_market(load_config(None, {"run.year": 1990}))


def test_daily_file_with_a_short_history_gets_regimes_with_one_info_line(cache, tmp_path):
    times = pd.date_range("2023-06-01", "2025-03-01", freq="D", tz="UTC")
    close = 100 * (1 + 0.01 * pd.Series(range(len(times))).mod(7).to_numpy())
    frame = pd.DataFrame({"time": times, "open": close, "high": close * 1.01,
                          "low": close * 0.99, "close": close, "volume": 1.0})
    frame.to_csv(tmp_path / "SPY.csv", index=False)
    config = load_config(None, {"data.path": str(tmp_path / "SPY.csv"), "data.symbols": [],
                                "data.timeframe": "1d", "run.start": "2025-01-01",
                                "run.end": "2025-03-01"})
    with pytest.warns(UserWarning) as caught:
        bars, first = load_market(config)
    messages = [str(w.message) for w in caught]
    assert first == 580
    assert any("only 580 bars before 2025-01-01, 2047 wanted for a full regime percentile "
               "window of 2000 bars; the percentile ranks against the 533 volatilities "
               "available" in m for m in messages), messages
    from backtester.regime import UNKNOWN, compute_regimes

    assert (compute_regimes(bars, config.regime)[first:] != UNKNOWN).all()


def test_config_hash_of_the_defaults_is_unchanged():
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "default.toml")
    assert config.decision_hash()[:8] == "995ca10d"
    assert load_config(None, {"data.on_duplicate": "mean"}).data.on_duplicate == "mean"
    with pytest.raises(ConfigError, match="data.on_duplicate must be one of"):
        load_config(None, {"data.on_duplicate": "newest"})
