"""The `bt` command line: parse, load the config, call the library, render with rich.

One module per command group: run.py (`bt run`, `bt report`, `bt regress`), data.py
(`bt data ...`), memory.py (`bt memory ...`), sweep.py, optimize.py, montecarlo.py;
common.py holds the consoles, option types and the one-line error exit.

Conventions: `bt --version`; typer's `--install-completion` / `--show-completion`;
NO_COLOR (set and not empty) turns every colour and style off, typer's help included.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from backtester.cli import data, memory
from backtester.cli.common import error_console, show_warning
from backtester.cli.montecarlo import montecarlo
from backtester.cli.optimize import optimize
from backtester.cli.run import regress, report, run
from backtester.cli.sweep import sweep

if os.environ.get("NO_COLOR"):  # https://no-color.org: typer's help and usage errors too
    import typer.rich_utils

    typer.rich_utils.COLOR_SYSTEM = None

app = typer.Typer(help="bt: a chunked, memory-learning backtester.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=True)


def version_text() -> str:
    """``bt <version>``: the installed distribution's version (importlib.metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"bt {version('bt')}"
    except PackageNotFoundError:  # a source tree that was never installed
        return "bt 0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the version (bt <version>) and exit.")] = False,
) -> None:
    """bt: a chunked, memory-learning backtester.

    Colours follow the terminal; NO_COLOR=1 turns them off. Shell completion:
    --install-completion / --show-completion.
    """
    warnings.showwarning = show_warning


app.command()(run)
app.command()(report)
app.command()(regress)
app.command()(sweep)
app.command()(montecarlo)
app.command()(optimize)
app.add_typer(data.app, name="data")
app.add_typer(memory.app, name="memory")


def main() -> None:
    """Console-script entry point: an OSError no command words itself (a disk that filled
    up mid-write, a file that vanished) is still one line, never a traceback."""
    try:
        app()
    except OSError as e:
        if os.environ.get("BT_DEBUG"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        error_console.print(f"[bold red]error:[/] {escape(where)}{escape(e.strerror or str(e))}"
                            "; nothing committed was lost: fix that, then run the same command "
                            "again (bt run: with --resume)", highlight=False, soft_wrap=True)
        sys.exit(1)
