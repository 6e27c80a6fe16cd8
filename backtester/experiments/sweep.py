"""Run a sweep: every trial of a spec on an engine, collected in one folder.

``sweeps/<sweep id>/`` holds

- ``spec.json``: the resolved trial list (what ``--resume`` continues);
- ``trials/<trial id>/``: each trial's memory and run folders, and ``result.json``, the
  trial's summary, written atomically by the driver when the trial comes back: a trial
  with a result.json is finished and a resumed sweep keeps it; any other trial folder is
  removed and the trial re-run from scratch;
- ``results.parquet``: one row per trial (in trial order): trial_id, status, error,
  wall_s, each swept parameter (its dotted key), every overall metric, ``books.*`` (the
  overall learned - equal weight, regret ...) and per chunk ``chunk.<label>.learned``,
  ``.equal_weight``, ``.learned_minus_equal``, ``.total_return``;
- ``returns.parquet``: the daily returns of each finished trial, one column per trial id
  (row = day of the period), for overfitting statistics;
- ``summary.json``: the objective, the best trial and the overfitting figures;
- ``report.html``: the sweep report (``sweep_report``).

Overfitting control (Bailey and Lopez de Prado, "The Deflated Sharpe Ratio", 2014): the
best trial's Sharpe ratio is deflated by the expected maximum of ``N`` skill-less trials,
``N`` the finished trials and ``V`` the variance of their *per-period* (daily, not
annualised) Sharpe ratios mean / std of the daily returns; and the probability of
backtest overfitting (Bailey, Borwein, Lopez de Prado and Zhu, 2017) by combinatorially
symmetric cross-validation of the daily returns matrix, where
``backtester.evaluation.probability_of_backtest_overfitting`` is available.
"""

from __future__ import annotations

import hashlib
import io
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from backtester.errors import ConfigError
from backtester.experiments.engines import Engine
from backtester.checks import is_folder_name
from backtester.experiments.spec import MINIMISED, SweepSpec, spec_from_json
from backtester.experiments.trial import STATUS_OK
from backtester.memory.io import JSON_OPTIONS, atomic_write_bytes
from backtester.metrics import METRIC_NAMES
from backtester.results import json_ready

SPEC_FILE, RESULT_FILE, SUMMARY_FILE = "spec.json", "result.json", "summary.json"
RESULTS_FILE, RETURNS_FILE = "results.parquet", "returns.parquet"
PBO_SPLITS = 8  # CSCV splits of the returns matrix (an even number of row blocks)
# (finished, total, result): result is None for the first call (kept trials counted).
Progress = Callable[[int, int, "dict[str, Any] | None"], None]


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a sweep wrote and found.

    Attributes
    ----------
    sweep_id, sweep_dir
        The sweep's name and folder.
    results : pandas.DataFrame
        results.parquet's rows.
    summary : dict
        summary.json: objective, best (trial_id, params, objective value), n_trials,
        sharpe_variance, deflated_sharpe, pbo (None when not computed) and notes.
    ran, kept : int
        Trials run by this call, and finished trials kept from an earlier one.
    """

    sweep_id: str
    sweep_dir: Path
    results: pd.DataFrame
    summary: dict[str, Any]
    ran: int = 0
    kept: int = 0
    paths: dict[str, Path] = field(default_factory=dict)


def new_sweep_id(spec: SweepSpec) -> str:
    """``<UTC time>-<8 hex of the trial list>``, e.g. 20260102-101500-1a2b3c4d."""
    digest = hashlib.sha256(orjson.dumps(spec.to_dict()["trials"], default=str,
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{digest[:8]}"


def read_sweep_spec(sweep_dir: str | Path) -> SweepSpec:
    """The spec a sweep folder was started with (its spec.json)."""
    path = Path(sweep_dir) / SPEC_FILE
    try:
        return spec_from_json(orjson.loads(path.read_bytes()), source=str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep; pass the id of a folder under the "
                          f"sweeps folder (--out) to --resume") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); the sweep cannot be resumed, "
                          f"start a new one") from None


def run_sweep(spec: SweepSpec, *, engine: Engine, out: str | Path = "sweeps",
              resume: bool = False, sweep_id: str | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Run every trial of ``spec`` on ``engine`` and write the sweep folder.

    Parameters
    ----------
    spec : SweepSpec
        The trials (from ``load_spec``, or ``read_sweep_spec`` to resume).
    engine : Engine
        Where trials run (``LocalEngine``, ``DaskEngine``).
    out : str | Path
        The folder of sweeps; the sweep goes to ``<out>/<sweep id>/``.
    resume : bool
        Continue the sweep ``sweep_id``: its finished trials are kept, the others re-run
        from scratch.
    sweep_id : str | None
        The sweep folder's name (None: a new id from the time and the trial list).
    progress : callable | None
        ``progress(finished, total, result)`` after each trial (result None once first).

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        When resuming without an id, resuming another spec's sweep, or starting a sweep
        over an existing one.
    """
    if resume and sweep_id is None:
        raise ConfigError("--resume needs the sweep id: --resume <sweep id>")
    sweep_id = sweep_id or new_sweep_id(spec)
    _check_name(sweep_id)
    sweep_dir = Path(out) / sweep_id
    spec_path = sweep_dir / SPEC_FILE
    if resume:
        stored = read_sweep_spec(sweep_dir)
        if _trial_list(stored) != _trial_list(spec):
            raise ConfigError(f"{spec_path}: the sweep was started with other trials; resume "
                              f"it without a spec (bt sweep --resume {sweep_id}) or start a "
                              f"new sweep")
    elif spec_path.exists():
        raise ConfigError(f"{sweep_dir} already holds a sweep; pass --resume {sweep_id} to "
                          f"continue it, or another --sweep-id")
    else:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(spec_path, _json(spec.to_dict()))
    done = {t.trial_id: r for t in spec.trials if (r := read_result(sweep_dir, t.trial_id))}
    pending = [t for t in spec.trials if t.trial_id not in done]
    for trial in pending:  # a partial folder of a killed trial: start it again, clean
        shutil.rmtree(sweep_dir / "trials" / trial.trial_id, ignore_errors=True)
    kept, total = len(done), len(spec.trials)
    if progress is not None:
        progress(kept, total, None)
    ran = 0
    results = engine.map(pending, sweep_dir)
    try:
        for result in results:
            folder = sweep_dir / "trials" / result["trial_id"]
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / RESULT_FILE, _json(result))
            done[result["trial_id"]] = result
            ran += 1
            if progress is not None:
                progress(kept + ran, total, result)
    finally:  # on an error or Ctrl-C: trials still running are cancelled
        getattr(results, "close", lambda: None)()
    return collect(spec, sweep_dir, [done[t.trial_id] for t in spec.trials], ran=ran, kept=kept)


def read_result(sweep_dir: Path, trial_id: str) -> dict[str, Any] | None:
    """A finished trial's result.json, or None (absent or unreadable: not finished)."""
    try:
        return orjson.loads((Path(sweep_dir) / "trials" / trial_id / RESULT_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def collect(spec: SweepSpec, sweep_dir: Path, results: list[dict[str, Any]], *,
            ran: int = 0, kept: int = 0) -> SweepResult:
    """Write results.parquet, returns.parquet and summary.json from the trials' results."""
    frame = results_frame(spec, results)
    returns = returns_frame(results)
    summary = summarise(spec, frame, returns)
    paths = {"results": sweep_dir / RESULTS_FILE, "returns": sweep_dir / RETURNS_FILE,
             "summary": sweep_dir / SUMMARY_FILE}
    atomic_write_bytes(paths["results"], _parquet(frame))
    atomic_write_bytes(paths["returns"], _parquet(returns))
    atomic_write_bytes(paths["summary"], _json(summary))
    from backtester.experiments.sweep_report import write_sweep_report

    paths["report"] = write_sweep_report(sweep_dir)
    return SweepResult(sweep_id=sweep_dir.name, sweep_dir=sweep_dir, results=frame,
                       summary=summary, ran=ran, kept=kept, paths=paths)


def results_frame(spec: SweepSpec, results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: ids, status, parameters, overall metrics, books, chunks."""
    by_id = {t.trial_id: t for t in spec.trials}
    rows = []
    for result in results:
        trial = by_id.get(result["trial_id"])
        params = spec.params(trial) if trial is not None else result.get("params", {})
        row: dict[str, Any] = {"trial_id": result["trial_id"], "status": result["status"],
                               "error": result.get("error", ""),
                               "wall_s": result.get("wall_s")}
        row.update(params)
        row.update({f"market.{k}": v for k, v in (result.get("market") or {}).items()})
        overall = result.get("overall") or {}
        row.update({k: overall[k] for k in METRIC_NAMES if k in overall})
        row.update({k: overall[k] for k in sorted(overall) if k not in METRIC_NAMES})
        books = result.get("books") or {}
        for key, value in sorted(books.items()):
            if key == "significance":
                row.update({f"books.significance.{k}": v
                            for k, v in sorted((value or {}).items())
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
            elif isinstance(value, (int, float)) or value is None:
                row[f"books.{key}"] = value
            else:
                row[f"books.{key}"] = str(value)
        for chunk in result.get("chunks") or []:
            for key in ("total_return", "learned", "equal_weight", "learned_minus_equal"):
                if key in chunk:
                    row[f"chunk.{chunk['label']}.{key}"] = chunk[key]
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in spec.parameters:
        if column in frame and not _plain_column(frame[column]):
            frame[column] = [None if v is None else orjson.dumps(v, default=str).decode()
                             for v in frame[column]]
    return frame


def _plain_column(values: pd.Series) -> bool:
    """Scalars of one kind (numbers, or strings, or booleans): stored as they are."""
    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, (int, float)):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            return False
    return len(kinds) <= 1


def returns_frame(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Daily returns, one float column per finished trial (NaN past a shorter period)."""
    series = {r["trial_id"]: pd.Series(r.get("daily_returns") or [], dtype=float)
              for r in results if r["status"] == STATUS_OK}
    frame = pd.DataFrame(series, dtype=float)
    frame.index.name = "day"
    return frame


def summarise(spec: SweepSpec, frame: pd.DataFrame, returns: pd.DataFrame) -> dict[str, Any]:
    """The best trial by the objective and the overfitting figures (module docstring)."""
    objective = spec.objective
    ok = frame[frame["status"] == STATUS_OK] if "status" in frame else frame.iloc[:0]
    notes: list[str] = []
    summary: dict[str, Any] = {
        "objective": objective, "trials": len(frame), "finished": int(len(ok)),
        "failed": int(len(frame) - len(ok)), "best": None, "n_trials": int(len(ok)),
        "sharpe_variance": None, "expected_max_sharpe": None, "best_period_sharpe": None,
        "deflated_sharpe": None, "pbo": None, "pbo_logits": [], "notes": notes}
    if ok.empty:
        notes.append("no trial finished")
        return json_ready(summary)
    column = objective_column(frame, objective)
    values = pd.to_numeric(ok[column], errors="coerce") if column in ok else pd.Series()
    if values.notna().any():
        best = ok.loc[values.idxmin() if objective in MINIMISED else values.idxmax()]
        summary["best"] = {"trial_id": best["trial_id"], "value": float(values[best.name]),
                           "params": {k: best[k] for k in spec.parameters if k in best}}
    else:
        notes.append(f"no finished trial has a value of {objective}")
    complete = returns.dropna(axis=1, how="any") if len(returns) else returns
    if summary["best"] is not None and summary["best"]["trial_id"] in returns:
        best_returns = returns[summary["best"]["trial_id"]].dropna().to_numpy()
        sharpes = np.array([_period_sharpe(returns[c].dropna().to_numpy()) for c in returns])
        sharpes = sharpes[np.isfinite(sharpes)]
        if len(sharpes) >= 2:
            variance = float(np.var(sharpes, ddof=1))
            summary["sharpe_variance"] = variance
            from backtester.evaluation import deflated_sharpe_ratio, expected_maximum_sharpe

            summary["expected_max_sharpe"] = expected_maximum_sharpe(len(sharpes), variance)
            summary["best_period_sharpe"] = _period_sharpe(best_returns)
            summary["deflated_sharpe"] = deflated_sharpe_ratio(best_returns, len(sharpes),
                                                               variance)
        else:
            notes.append("deflated Sharpe ratio needs two finished trials")
    summary["pbo"], summary["pbo_logits"] = _pbo(complete, notes)
    return json_ready(summary)


def objective_column(frame: pd.DataFrame, objective: str) -> str:
    """The results column of ``objective``: an overall metric, else ``books.<objective>``."""
    return objective if objective in frame else f"books.{objective}"


def rank(frame: pd.DataFrame, objective: str) -> pd.DataFrame:
    """Finished trials, best first by ``objective`` (trials without a value last)."""
    ok = frame[frame["status"] == STATUS_OK]
    column = objective_column(frame, objective)
    if column not in ok:
        return ok
    key = pd.to_numeric(ok[column], errors="coerce")
    order = key.sort_values(ascending=objective in MINIMISED, na_position="last").index
    return ok.loc[order]


def _period_sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio, mean / std (ddof 1) of the daily returns; nan if flat."""
    if len(returns) < 2:
        return math.nan
    std = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / std if std > 0 else math.nan


def _pbo(returns: pd.DataFrame, notes: list[str]) -> tuple[float | None, list[float]]:
    """PBO (and the logits of its splits) of the daily-returns matrix (T days x N trials,
    the trials that ran the whole period), when computable."""
    try:
        from backtester.evaluation import probability_of_backtest_overfitting
    except ImportError:
        notes.append("PBO not computed: backtester.evaluation has no "
                     "probability_of_backtest_overfitting")
        return None, []
    days, trials = returns.shape
    if trials < 2 or days < 2 * PBO_SPLITS:
        notes.append(f"PBO needs 2 trials over the same {2 * PBO_SPLITS} days or more, had "
                     f"{trials} trials over {days} days")
        return None, []
    figures = probability_of_backtest_overfitting(returns.to_numpy(dtype=float),
                                                  n_splits=PBO_SPLITS)
    pbo = float(figures["pbo"])
    if not math.isfinite(pbo):
        notes.append("PBO undefined (a non-finite daily return)")
    return pbo, [float(v) for v in figures.get("logits", [])]


def _trial_list(spec: SweepSpec) -> list[tuple[Any, ...]]:
    return [(t.trial_id, orjson.dumps(t.overrides, default=str, option=orjson.OPT_SORT_KEYS),
             t.config_path) for t in spec.trials]


def _check_name(sweep_id: str) -> None:
    if not is_folder_name(sweep_id):
        raise ConfigError(f"--sweep-id must be a folder name (letters, digits, _ . -), "
                          f"was {sweep_id!r}")


def _json(value: Any) -> bytes:
    return orjson.dumps(json_ready(value), default=str, option=JSON_OPTIONS)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=True)
    return buffer.getvalue()
