"""`python -m backtester` runs the CLI."""

from backtester.cli import main

main()
