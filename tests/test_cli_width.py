"""What `bt` prints at 80 columns (a CI log, a narrow terminal): nothing cut to "…"; at 120
columns the tables keep their one-table layout."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from backtester.cli import app, common

runner = CliRunner()
SHORT = ["run", "--start", "2025-01-01", "--end", "2025-01-22", "--chunk", "week",
         "--memory-mode", "off"]


@pytest.fixture
def columns(monkeypatch):
    """Invoke with COLUMNS set, as a terminal of that width would (the console reads it)."""
    monkeypatch.setattr(common.console, "_width", None)

    def invoke(width: int, args: list[str]):
        return runner.invoke(app, args, env={"COLUMNS": str(width)})

    return invoke


def test_bt_run_at_80_columns_cuts_nothing(workdir, columns):
    result = columns(80, SHORT)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert "did the learning help? (return per chunk)" in result.output
    # the books table is split: the second part repeats the chunk labels
    assert "(continued)" in " ".join(result.output.split())
    assert result.output.count("2025-W01") >= 3
    assert "mean_reversion" in result.output or "momentum" in result.output


def test_bt_run_at_120_columns_keeps_one_table_each(workdir, columns):
    result = columns(120, SHORT)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "(continued)" not in result.output
    header = [line for line in result.output.splitlines() if "learned - equal" in line]
    assert len(header) == 1 and "equal weight" in header[0] and "regret" in header[0]


def test_bt_run_dry_run_at_80_columns_cuts_nothing(workdir, columns):
    result = columns(80, [*SHORT, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "candidates" in result.output


def _regress_rows(n: int, metric: str = "max_drawdown_duration_days"):
    return [SimpleNamespace(scope="overall" if i == 0 else f"books 2025-0{i % 9 + 1}",
                            metric=metric if i == 0 else
                            "figures.learned_without_memory_vote.hit_rate",
                            baseline=-0.00212141, now=-0.00212141, delta=0.0, passed=True)
            for i in range(n)]


@pytest.mark.parametrize("width", [80, 60])
def test_bt_regress_table_at_narrow_widths_cuts_nothing(monkeypatch, capsys, width):
    run_cli = importlib.import_module("backtester.cli.run")

    console = Console(width=width, force_terminal=False)
    monkeypatch.setattr(run_cli, "console", console)
    monkeypatch.setattr(common, "console", console)
    rows = _regress_rows(1)
    run_cli._render_regress(rows, [], True, {"config_hash": "a"}, {"config_hash": "a"})
    run_cli._render_regress(_regress_rows(4), [], True, {}, {"config_hash": "a"})
    out = capsys.readouterr().out
    assert "…" not in out
    assert "max_drawdown_duration_days" in out
    assert "figures.learned_without_memory_vote.hit_rate" in out
    assert out.count("-0.00212141") >= 2


def test_llm_table_at_80_columns_cuts_nothing(monkeypatch, capsys):
    from backtester import results
    run_cli = importlib.import_module("backtester.cli.run")

    console = Console(width=80, force_terminal=False)
    monkeypatch.setattr(run_cli, "console", console)
    monkeypatch.setattr(common, "console", console)
    counts = {"requests": 1234, "cache_hits": 1000, "cache_misses": 234, "timeouts": 3,
              "prompt_tokens": 1_234_567, "completion_tokens": 45_678, "cost": 1.2345}
    monkeypatch.setattr(results, "llm_usage", lambda result: {
        "providers": {"gpt_small": counts, "local_llama": counts}, "cost": 2.469,
        "cost_per_trade": 0.00123})
    run_cli._render_llm(None)
    out = capsys.readouterr().out
    assert "…" not in out
    assert "1,234,567" in out and "gpt_small" in out and "local_llama" in out
    assert "replay miss" in out and "tokens out" in out


def _wide_table() -> Table:
    table = Table(title="wide", title_justify="left")
    for name in ("chunk", *(f"column number {i}" for i in range(8))):
        table.add_column(name)
    table.add_row("2025Q1", *(f"value {i}" for i in range(8)))
    table.add_section()
    table.add_row("[bold]total", *(f"value {i}" for i in range(8)))
    return table


def test_print_table_keeps_a_table_that_fits_and_splits_one_that_does_not():
    wide = Console(width=200, record=True)
    common.print_table(_wide_table(), out=wide)
    assert wide.export_text().count("2025Q1") == 1
    narrow = Console(width=80, record=True)
    common.print_table(_wide_table(), out=narrow)
    text = narrow.export_text()
    assert "…" not in text and text.count("2025Q1") >= 2  # row labels repeated
    assert all(f"value {i}" in text for i in range(8))
    assert all(len(line) <= 80 for line in text.splitlines())
    tiny = Console(width=24, record=True)  # not even a label and one column: one line a row
    common.print_table(_wide_table(), out=tiny)
    text = " ".join(tiny.export_text().split())
    assert "…" not in text and "2025Q1 column number 0 value 0 column number 1" in text
