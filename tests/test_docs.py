"""The README and docs/architecture.md stay true to the code and to CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


# ------------------------------------------------ docs/architecture.md stays true to the code

ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
# config tables that are families of named tables, not Config fields: [family.<one name>]
TABLE_FAMILIES = ("providers", "strategies", "regress.tolerances")


def test_readme_links_to_the_architecture_document_in_the_repository():
    assert "](docs/architecture.md)" in README
    assert "../shared/DESIGN.md" not in README


def _named_sections(text: str) -> set[str]:
    """Every `[section]` or `[section.key]` written in backticks."""
    return set(re.findall(r"`\[([A-Za-z_][\w.<>-]*)\]`", text))


def test_every_config_section_the_architecture_names_exists():
    import dataclasses

    from backtester.config import DEFAULTS_SECTION, Config

    fields = {f.name for f in dataclasses.fields(Config)}
    sections = _named_sections(ARCHITECTURE)
    assert {"run", "memory", "providers.<name>", DEFAULTS_SECTION} <= sections
    unknown = []
    for section in sections:
        family = next((f for f in TABLE_FAMILIES if section.startswith(f + ".")), None)
        if family is not None:
            if not re.fullmatch(r"<\w+>|\w+", section[len(family) + 1:]):
                unknown.append(section)
        elif section not in fields | {DEFAULTS_SECTION}:
            unknown.append(section)
    assert unknown == []


def test_the_architecture_describes_every_config_section():
    import dataclasses

    from backtester.config import Config

    sections = _named_sections(ARCHITECTURE)
    missing = [f.name for f in dataclasses.fields(Config)
               if f.compare  # not where the config came from (origin, given)
               and f.name not in sections and f"{f.name}.<name>" not in sections]
    assert missing == []


def _cli_tree() -> dict[str, set[str]]:
    import typer.main

    from backtester.cli import app

    commands = typer.main.get_command(app).commands
    return {name: set(getattr(command, "commands", None) or ()) for name, command in
            commands.items()}


@pytest.mark.parametrize("document", ["docs/architecture.md", "README.md"])
def test_every_bt_command_the_docs_name_exists(document):
    tree = _cli_tree()
    text = (ROOT / document).read_text()
    # `bt x`, a line that starts with bt x (the Commands block), or a $ prompt
    named = re.findall(r"(?m)(?:^|`|\$ )bt ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text)
    assert named, f"{document} names no bt command"
    unknown = []
    for command, sub in named:
        if command not in tree:
            unknown.append(command)
        elif tree[command] and sub not in tree[command]:  # a group needs its command
            unknown.append(f"{command} {sub}")
    assert unknown == []


def test_every_backtester_path_the_architecture_names_exists():
    paths = set(re.findall(r"\b(backtester/[\w./]*\w/?)", ARCHITECTURE))
    assert "backtester/runner.py" in paths
    assert [p for p in sorted(paths) if not (ROOT / p).exists()] == []


def test_readme_exit_code_table_lists_every_code_the_cli_exits_with():
    # Arrange: every literal exit code in the CLI, plus click's usage error (2) and typer's
    # Ctrl-C (130)
    source = "".join(p.read_text() for p in (ROOT / "backtester" / "cli").glob("*.py"))
    codes = {int(c) for c in re.findall(r"(?:Exit\(code=|code=)(\d+)", source)} | {0, 2, 130}
    # Act
    table = README[README.index("### Exit codes"):].split("\n\n")[1]
    listed = {int(c) for c in re.findall(r"(?m)^\| (\d+) \|", table)}
    # Assert
    assert listed == codes
