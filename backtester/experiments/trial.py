"""One trial of an experiment: a config (a file plus ``--set``-style overrides, and for a
Monte Carlo path a perturbed market), run as a complete chunked walk-forward in its own
folder, summed up in a small JSON-ready dict that an engine sends back to the driver."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backtester.errors import BtError

STATUS_OK, STATUS_FAILED = "ok", "failed"


@dataclass(frozen=True, slots=True)
class Trial:
    """What one trial runs.

    Attributes
    ----------
    trial_id : str
        Folder name under ``<sweep>/trials/`` (letters, digits, ``_ . -``), e.g. "t0003".
    overrides : dict
        Dotted config keys -> values, as ``bt run --set`` takes them.
    config_path : str | None
        The base config file (None: configs/default.toml when it exists).
    market : dict | None
        A Monte Carlo path: {"path": int, "seed": int, "mean_block": float, "noise": float}
        (see ``experiments.montecarlo``); None trades the configured market itself.
    """

    trial_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    market: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from backtester.checks import is_folder_name
        from backtester.errors import ConfigError

        if not is_folder_name(self.trial_id):  # a spec.json from elsewhere stays inside
            raise ConfigError(f"trial id must be letters, digits, '_', '.' or '-' (it names "
                              f"a folder), was {str(self.trial_id)[:40]!r}")


def trial_config(trial: Trial, sweep_dir: Path) -> Any:
    """The trial's config: its own memory and run folders under ``sweep_dir``."""
    from backtester.config import load_config

    folder = Path(sweep_dir) / "trials" / trial.trial_id
    config = load_config(trial.config_path, dict(trial.overrides))
    return replace(config, memory=replace(config.memory, dir=str(folder / "memory")),
                   run=replace(config.run, out_dir=str(folder / "runs")))


def run_trial(trial: Trial, sweep_dir: str | Path) -> dict[str, Any]:
    """Run ``trial`` and return its summary; a failure is recorded, never raised.

    Returns {"trial_id", "params" (the overrides), "status" ("ok" | "failed"), "error" (one
    line or ""), "wall_s", "overall" (every overall metric), "chunks" (per chunk: label,
    total_return, and the learned / equal-weight returns and learned - equal where the run
    has books), "books" (overall learned - equal, regret, the significance figures),
    "daily_returns" (the learned book's daily returns, for overfitting statistics),
    "run_dir"}. Small enough to send back from a worker.
    """
    start = time.perf_counter()
    base = {"trial_id": trial.trial_id, "params": dict(trial.overrides), "market": trial.market}
    try:
        config = trial_config(trial, Path(sweep_dir))
        result = _run(config, trial)
    except BtError as e:
        return {**base, "status": STATUS_FAILED, "error": str(e).splitlines()[0],
                "wall_s": time.perf_counter() - start}
    return {**base, "status": STATUS_OK, "error": "", "wall_s": time.perf_counter() - start,
            **summarise_run(result)}


def _run(config: Any, trial: Trial) -> Any:
    from backtester.runner import run_backtest

    if trial.market is None:
        return run_backtest(config, run_id=trial.trial_id)
    from backtester.experiments.montecarlo import perturbed_market  # a Monte Carlo path

    bars, first = perturbed_market(config, **trial.market)
    return run_backtest(config, bars=bars, first=first, run_id=trial.trial_id)


def summarise_run(result: Any) -> dict[str, Any]:
    """The small summary of a RunResult that a trial sends back."""
    import pandas as pd

    from backtester.results import json_ready
    from backtester.returns import daily_returns

    books = result.books or {}
    chunks = []
    for c in result.chunks:
        row = {"label": c.chunk.label, "total_return": c.metrics["total_return"]}
        figures = c.books.get("figures", {})
        if figures:
            row.update(learned=figures["learned"]["total_return"],
                       equal_weight=figures["equal_weight"]["total_return"],
                       learned_minus_equal=c.books["learned_minus_equal"])
        chunks.append(row)
    times = pd.DatetimeIndex(result.equity["time"]).asi8
    _, daily = daily_returns(times, result.equity["equity"].to_numpy(),
                             initial_equity=result.config.run.initial_cash)
    return json_ready({
        "overall": result.metrics,
        "chunks": chunks,
        "books": {k: books.get(k) for k in ("learned_minus_equal", "best_single", "regret")}
        | {"significance": books.get("significance", {})},
        "daily_returns": daily.tolist(),
        "run_dir": str(result.out_dir) if result.out_dir is not None else "",
    })
