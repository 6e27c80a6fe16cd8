"""Monte Carlo paths of the market: seeded, consistent OHLC, warm-up kept, the bars'
returns resampled whole (every symbol from the same source bar), and a path runs as a trial."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kit import random_bars
from typer.testing import CliRunner

from backtester.cli import app
from backtester.config import load_config
from backtester.errors import ConfigError
from backtester.experiments.montecarlo import (
    check_market,
    default_mean_block,
    path_trials,
    perturbed_market,
    resample_bars,
    summarise_paths,
)
from backtester.experiments.trial import Trial, run_trial
from backtester.market import load_market

ROOT = Path(__file__).resolve().parents[2]
SHORT = {"run.start": "2025-01-01", "run.end": "2025-02-01", "data.timeframe": "1h",
         "memory.embedder": "hashing"}


@pytest.fixture()
def short_config(tmp_path):
    return load_config(None, {**SHORT, "data.cache_dir": str(tmp_path / "cache")})


def _path(bars, first, *, seed=0, path=1, mean_block=20.0, noise=0.0):
    return resample_bars(bars, first, np.random.default_rng([seed, path]),
                         mean_block=mean_block, noise=noise)


def _log_returns(bars, start):
    """Close-to-close log returns of bars [start, n), one row per bar."""
    return np.diff(np.log(bars.close), axis=0)[start - 1:]


def test_a_path_is_deterministic_for_its_seed_and_differs_for_another_path(short_config):
    # Act
    a, first_a = perturbed_market(short_config, path=2, seed=5, mean_block=24.0, noise=0.001)
    b, first_b = perturbed_market(short_config, path=2, seed=5, mean_block=24.0, noise=0.001)
    c, _ = perturbed_market(short_config, path=3, seed=5, mean_block=24.0, noise=0.001)
    d, _ = perturbed_market(short_config, path=2, seed=6, mean_block=24.0, noise=0.001)
    # Assert
    assert first_a == first_b
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.close[first_a:], c.close[first_a:])
    assert not np.allclose(a.close[first_a:], d.close[first_a:])


def test_warm_up_bars_times_and_symbols_are_unchanged(short_config):
    original, first = load_market(short_config)
    perturbed, first_p = perturbed_market(short_config, path=0, seed=0, mean_block=24.0,
                                          noise=0.01)
    assert first_p == first > 0
    np.testing.assert_array_equal(perturbed.times, original.times)
    assert perturbed.symbols == original.symbols and perturbed.timeframe == original.timeframe
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(perturbed, name)[:first],
                                      getattr(original, name)[:first])
    assert not np.allclose(perturbed.close[first:], original.close[first:])


@pytest.mark.parametrize("noise", [0.0, 0.002, 0.05])
@pytest.mark.parametrize("mean_block", [1.0, 12.0, 200.0])
def test_every_bar_is_consistent_ohlc_with_positive_prices(noise, mean_block):
    bars = random_bars(3000, seed=3)
    out = _path(bars, 1000, mean_block=mean_block, noise=noise)
    assert np.all(out.low <= np.minimum(out.open, out.close))
    assert np.all(out.high >= np.maximum(out.open, out.close))
    assert np.all(np.stack([out.open, out.high, out.low, out.close]) > 0)
    assert np.all(np.isfinite(out.close))


def test_each_new_bar_copies_one_source_bar_for_every_symbol():
    # Arrange
    bars, first = random_bars(2000, seed=4), 600
    out = _path(bars, first)
    old_returns, new_returns = _log_returns(bars, first), _log_returns(out, first)
    old_high = np.log(bars.high / bars.close)[first:]
    old_volume = bars.volume[first:]
    # Assert: find each new bar's source by its return vector; offsets and volume follow it
    for t in range(new_returns.shape[0]):
        matches = np.flatnonzero(np.all(np.isclose(old_returns, new_returns[t], rtol=0,
                                                   atol=1e-10), axis=1))
        assert matches.size >= 1, t
        s = matches[0]
        np.testing.assert_allclose(np.log(out.high[first + t] / out.close[first + t]),
                                   old_high[s], atol=1e-10)
        np.testing.assert_array_equal(out.volume[first + t], old_volume[s])


def test_a_spread_column_follows_its_source_bar_relative_to_the_close():
    # Arrange: a spread of k basis points on bar k, so each bar's relative spread names it
    plain = random_bars(1500, seed=5, n_assets=2)
    relative = (np.arange(plain.n_bars)[:, None] + 1.0) * 1e-4 * np.ones((1, 2))
    bars = dataclasses.replace(plain, spread=relative * plain.close)
    first = 500
    out = _path(bars, first)
    old_returns, new_returns = _log_returns(bars, first), _log_returns(out, first)
    # Assert: the warm-up keeps its spread; each new bar's relative spread is its source's
    np.testing.assert_array_equal(out.spread[:first], bars.spread[:first])
    for t in range(0, new_returns.shape[0], 37):
        s = np.flatnonzero(np.all(np.isclose(old_returns, new_returns[t], rtol=0, atol=1e-10),
                                  axis=1))[0]
        np.testing.assert_allclose(out.spread[first + t] / out.close[first + t],
                                   relative[first + s], rtol=1e-12)


def test_one_long_block_is_a_rotation_so_the_returns_are_the_same_multiset():
    bars, first = random_bars(1500, seed=5), 500
    out = _path(bars, first, mean_block=1e12)
    np.testing.assert_allclose(np.sort(_log_returns(out, first), axis=0),
                               np.sort(_log_returns(bars, first), axis=0), atol=1e-12)


def test_the_bootstrap_keeps_the_distribution_of_log_returns():
    # Arrange: 50 paths of a 4000-bar market
    bars, first = random_bars(5000, seed=6), 1000
    original = _log_returns(bars, first)
    paths = np.stack([_log_returns(_path(bars, first, path=p, mean_block=30.0), first)
                      for p in range(50)])
    # Assert: per symbol, the mean of the paths' means and stds match the original's
    np.testing.assert_allclose(paths.std(axis=1).mean(axis=0), original.std(axis=0), rtol=0.02)
    spread = original.std(axis=0) / math.sqrt(original.shape[0])
    assert np.all(np.abs(paths.mean(axis=1).mean(axis=0) - original.mean(axis=0))
                  < 3 * spread)
    # and the cross-symbol correlation is kept
    np.testing.assert_allclose(np.corrcoef(paths[0].T), np.corrcoef(original.T), atol=0.05)


def test_first_bar_zero_keeps_bar_zero_as_the_anchor():
    bars = random_bars(300, seed=8)
    out = _path(bars, 0)
    np.testing.assert_array_equal(out.close[0], bars.close[0])
    assert not np.allclose(out.close[1:], bars.close[1:])


@pytest.mark.parametrize("settings, message", [
    ({"path": -1, "seed": 0, "mean_block": 5.0}, "montecarlo path must be an integer >= 0"),
    ({"path": 0, "seed": 1.5, "mean_block": 5.0}, "montecarlo seed must be an integer >= 0"),
    ({"path": 0, "seed": 0, "mean_block": 0.5}, "mean_block must be a number of bars >= 1"),
    ({"path": 0, "seed": 0, "mean_block": 5.0, "noise": -0.1}, "noise must be a number >= 0"),
])
def test_bad_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        check_market(**settings)
    assert "\n" not in str(info.value)


def test_a_monte_carlo_trial_runs_end_to_end_in_its_own_folder(tmp_path):
    # Arrange
    market = {"path": 1, "seed": 3, "mean_block": 24.0, "noise": 0.001}
    trial = Trial("p0001", {**SHORT, "data.cache_dir": str(tmp_path / "cache")},
                  market=market)
    # Act
    result = run_trial(trial, tmp_path / "sweep")
    # Assert
    assert result["status"] == "ok", result["error"]
    assert result["market"] == market
    assert math.isfinite(result["overall"]["total_return"])
    assert (tmp_path / "sweep" / "trials" / "p0001" / "memory").is_dir()
    json.dumps(result)  # small and JSON-ready


def _result(trial_id, total_return, sharpe, drawdown, learned_minus_equal, status="ok"):
    return {"trial_id": trial_id, "status": status, "error": "",
            "market": None if trial_id == "original" else {"path": int(trial_id[4:])},
            "overall": {"total_return": total_return, "sharpe": sharpe,
                        "max_drawdown": drawdown},
            "books": {"learned_minus_equal": learned_minus_equal, "regret": 0.0}}


def test_summary_percentiles_by_hand_leave_out_failed_paths_and_show_the_original():
    # Arrange: five paths 0.1 .. 0.5, one failed, the original at 0.3
    results = [_result("original", 0.3, 1.0, -0.1, 0.01)]
    results += [_result(f"path{p:04d}", 0.1 * (p + 1), float(p), -0.05 * (p + 1), None)
                for p in range(5)]
    results.append(_result("path0005", 9.0, 9.0, -0.9, 9.0, status="failed"))
    # Act
    summary = summarise_paths(results)
    # Assert: sorted values x0..x4 at positions q/100 * 4, linearly interpolated
    assert (summary["paths"], summary["failed"]) == (5, 1)
    total = summary["figures"]["total_return"]
    assert total["p5"] == pytest.approx(0.1 + 0.2 * 0.1)
    assert total["p25"] == pytest.approx(0.2) and total["p50"] == pytest.approx(0.3)
    assert total["p95"] == pytest.approx(0.4 + 0.8 * 0.1)
    assert total["mean"] == pytest.approx(0.3) and total["original"] == 0.3
    assert summary["figures"]["max_drawdown"]["p50"] == pytest.approx(-0.15)
    lme = summary["figures"]["learned_minus_equal"]
    assert math.isnan(lme["p50"]) and lme["original"] == 0.01


def test_path_trials_start_with_the_original_and_seed_each_path():
    trials = path_trials(3, seed=9, mean_block=24.0, noise=0.01, overrides={"a.b": 1})
    assert [t.trial_id for t in trials] == ["original", "path0000", "path0001", "path0002"]
    assert trials[0].market is None
    assert trials[2].market == {"path": 1, "seed": 9, "mean_block": 24.0, "noise": 0.01}
    assert all(t.overrides == {"a.b": 1} for t in trials)
    with pytest.raises(ConfigError, match="--paths must be an integer >= 1, was 0"):
        path_trials(0, seed=0, mean_block=2.0)


@pytest.mark.parametrize("timeframe, block", [("1h", 24.0), ("15min", 96.0), ("1d", 1.0),
                                              ("1w", 1.0)])
def test_the_default_block_is_one_day_of_bars(timeframe, block):
    assert default_mean_block(timeframe) == block


def _mc(*args):
    return CliRunner().invoke(app, [
        "montecarlo", *args, "--engine", "local",
        "--set", 'run.start="2025-01-01"', "--set", 'run.end="2025-02-01"',
        "--set", 'data.timeframe="1h"', "--set", 'memory.embedder="hashing"'])


def test_bt_montecarlo_runs_three_paths_and_the_original_as_a_sweep(workdir):
    # Act
    result = _mc("--paths", "3", "--seed", "4", "--noise", "0.001")
    # Assert
    assert result.exit_code == 0, result.output
    for text in ("3 of 3 paths", "mean block 24 bars", "total return", "Sharpe",
                 "max drawdown", "learned - equal", "p95", "original"):
        assert text in result.output
    (sweep,) = (workdir / "sweeps").iterdir()
    assert sweep.name.startswith("mc-") and sweep.name in result.output
    table = pd.read_parquet(sweep / "results.parquet")
    assert list(table["trial_id"]) == ["original", "path0000", "path0001", "path0002"]
    assert set(table["status"]) == {"ok"}
    saved = json.loads((sweep / "montecarlo.json").read_text())
    assert saved["settings"] == {"paths": 3, "seed": 4, "mean_block": 24.0, "noise": 0.001,
                                 "overrides": {**SHORT}, "config": None}
    figures = saved["summary"]["figures"]["total_return"]
    returns = table["total_return"].to_numpy()
    assert figures["p50"] == pytest.approx(np.median(returns[1:]))
    assert figures["p5"] == pytest.approx(np.percentile(returns[1:], 5))
    assert figures["original"] == pytest.approx(returns[0])
    spec = json.loads((sweep / "spec.json").read_text())
    assert [t["market"] and t["market"]["path"] for t in spec["trials"]] == [None, 0, 1, 2]
    for trial_id in table["trial_id"]:
        assert (sweep / "trials" / trial_id / "result.json").is_file()
        assert (sweep / "trials" / trial_id / "memory").is_dir()
    assert list(table["market.path"].iloc[1:]) == [0, 1, 2]
    # the sweep report shows the paths' percentiles beside the original market
    page = (sweep / "report.html").read_text()
    section = page[page.index('<section id="montecarlo">'):]
    section = section[:section.index("</section>")]
    assert "3 paths (0 failed)" in section and "<th>p95</th>" in section
    from backtester.report import format_value

    assert format_value(figures["p50"], "total_return") in section


def test_bt_montecarlo_resume_keeps_finished_paths_and_reruns_the_rest(workdir):
    # Arrange: a finished sweep whose last path lost its result (killed before it ended)
    assert _mc("--paths", "2").exit_code == 0
    (sweep,) = (workdir / "sweeps").iterdir()
    before = json.loads((sweep / "montecarlo.json").read_text())
    (sweep / "trials" / "path0001" / "result.json").unlink()
    # Act
    result = _mc("--resume", sweep.name)
    # Assert: the re-run path gives the same figures (seeded)
    assert result.exit_code == 0, result.output
    assert "2 finished trials kept, 1 run" in result.output
    assert json.loads((sweep / "montecarlo.json").read_text()) == before


@pytest.mark.parametrize("args, message", [
    (["--paths", "0"], "--paths must be an integer >= 1, was 0"),
    ([], "--paths N is needed (or --resume <sweep id>)"),
    (["--resume", "mc-nothing"], "no such sweep"),
    (["--paths", "2", "--mean-block", "0.5"], "mean_block must be a number of bars >= 1"),
    (["--paths", "2", "--engine", "spark"], "--engine must be one of local, dask"),
])
def test_bt_montecarlo_errors_are_one_red_line(workdir, args, message):
    result = CliRunner().invoke(app, ["montecarlo", *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_dask_workers_give_the_same_paths_as_the_local_engine(tmp_path):
    # Arrange
    from backtester.experiments.engines import DaskEngine, LocalEngine
    from backtester.experiments.montecarlo import montecarlo_spec, run_montecarlo

    spec = montecarlo_spec(1, seed=2, mean_block=12.0, noise=0.002,
                           overrides={**SHORT, "data.cache_dir": str(tmp_path / "cache")},
                           config_path=str(ROOT / "configs" / "default.toml"))
    # Act
    _, local = run_montecarlo(spec, engine=LocalEngine(), out=tmp_path / "local")
    with DaskEngine(workers=2) as engine:
        _, dask = run_montecarlo(spec, engine=engine, out=tmp_path / "dask")
    # Assert
    assert json.dumps(dask) == json.dumps(local) and local["paths"] == 1


def test_bt_montecarlo_help_names_its_options():
    result = CliRunner().invoke(app, ["montecarlo", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--paths", "--seed", "--mean-block", "--noise", "--engine", "--set", "--out"):
        assert option in result.output
