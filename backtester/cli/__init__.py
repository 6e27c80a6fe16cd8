"""The `bt` command line: parse, load the config, call the library, render with rich.

One module per command group: run.py (`bt run`, `bt report`), data.py (`bt data ...`),
memory.py (`bt memory ...`); common.py holds the consoles, option types and the one-line
error exit.
"""

from __future__ import annotations

import warnings

import typer

from backtester.cli import data, memory
from backtester.cli.common import show_warning
from backtester.cli.montecarlo import montecarlo
from backtester.cli.optimize import optimize
from backtester.cli.run import regress, report, run
from backtester.cli.sweep import sweep

app = typer.Typer(help="bt: a chunked, memory-learning backtester.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
@app.callback()
def _setup() -> None:
    """bt: a chunked, memory-learning backtester."""
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
    """Console-script entry point."""
    app()
