"""The README stays true to the code and to CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README must open with a bash block of set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_the_two_setup_commands():
    install_and_run, install_and_test = _setup_commands()
    assert README.index("```bash") < README.index("\n## ")  # before any section
    assert install_and_run == "pip install -e . && bt run --year 2025 --chunk quarter"
    assert install_and_test == 'pip install -e ".[dev]" && pytest'


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"test_command='{_setup_commands()[1]}'" in ci
    assert "python3 -m venv" in ci


def test_readme_names_every_metric_written_to_metrics_json():
    from backtester.metrics import METRIC_NAMES

    section = README[README.index("`metrics.json`"):].split("\n")[0].lower()
    words = {"cagr": "cagr", "max_drawdown_bars": "bars", "max_drawdown_duration_days": "days",
             "average_trade_return": "average", "best_trade": "best", "worst_trade": "worst"}
    for name in METRIC_NAMES:
        assert words.get(name, name.replace("_", " ")) in section, name


def test_readme_chunk_kinds_match_the_config():
    from backtester.config import CHUNK_KINDS

    assert "|".join(CHUNK_KINDS) + "|N" in README


def test_readme_lists_every_option_of_bt_run():
    import typer.main

    from backtester.cli import app

    command = typer.main.get_command(app).commands["run"]
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert "--dry-run" in options and "--memory-mode" in options
    block = README[README.index("bt run [--year"):README.index("bt report")]
    assert [o for o in options if o not in block] == []
