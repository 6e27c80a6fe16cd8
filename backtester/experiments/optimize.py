"""Parameter search: Optuna's TPE over ranges of config keys, each trial a complete run.

A search spec is TOML::

    config = "configs/default.toml"        # optional base config (relative to the cwd)

    [set]                                  # fixed overrides, as `bt run --set`
    "run.chunk" = "month"

    [search]                               # one range per dotted config key
    "ensemble.learning_rate" = {low = 0.01, high = 0.5, log = true}
    "ensemble.threshold" = {low = 0.1, high = 0.5}
    "strategies.breakout.lookback" = {low = 12, high = 96, type = "int"}
    "ensemble.method" = {choices = ["mwu", "thompson"]}

``run_search`` asks Optuna for trials, runs them through an engine (``engines.py``: the
engine pulls the next trial only after yielding a finished one, so at most ``max_in_flight``
trials run and each new one is sampled knowing every result so far), and tells Optuna each
trial's objective; a failed trial is told FAIL with its one-line error and the search goes on.

Storage: Optuna's ``JournalStorage`` on a ``JournalFileBackend``, ``<sweep>/journal.log``.
It is an append-only file of JSON lines (no pickle: only the Redis backend's snapshots
are pickled) with a file lock, so a killed search resumes from it and several processes
can share one search: the trial count is read from the storage, so trials finished or
running in any process count towards ``trials``. A resume fails every trial running at
that moment (it cannot tell a killed process's trials from a live one's), so a process
that joins a running search costs the others their trials in flight.

The sweep folder: each trial runs in ``trials/<trial id>/`` (its memory and run folders)
and its result dict is written there as ``result.json``; ``sweep.collect`` then writes
``results.parquet``, ``returns.parquet``, ``summary.json`` (the best trial, its deflated
Sharpe ratio given the finished trials, the PBO) and ``report.html`` as for `bt sweep`,
from ``spec.json`` (the finished trials as a sweep's trial list). ``spec.toml`` is a copy
of the search spec; with ``select_on="chunks"``, ``selection.json`` holds the walk-forward
selection.

Seeding: the TPE sampler is seeded with ``seed`` plus the number of trials already in the
study, so a new search makes the same suggestions for the same seed, and a resumed one
does not replay the suggestions of its first start.
"""

from __future__ import annotations

import math
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backtester.config import read_toml
from backtester.errors import BtError, ConfigError
from backtester.checks import is_folder_name
from backtester.experiments.selection import SELECT_ON, select_on_chunks
from backtester.experiments.spec import MINIMISED, SweepSpec, check_objective
from backtester.experiments.sweep import RESULT_FILE as RESULT
from backtester.experiments.sweep import SPEC_FILE, collect, read_result
from backtester.experiments.trial import STATUS_FAILED, STATUS_OK, Trial
from backtester.memory.io import write_json
from backtester.results import json_ready

SPEC_KEYS = ("config", "set", "search")
RANGE_FIELDS = ("low", "high", "log", "type", "step", "choices")
JOURNAL, SPEC_COPY, SELECTION = "journal.log", "spec.toml", "selection.json"
STUDY_NAME = "bt-optimize"


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """A parsed search spec.

    Attributes
    ----------
    path : str
        The spec file, for messages.
    config_path : str | None
        The base config (None: configs/default.toml when it exists).
    fixed : dict
        The ``[set]`` overrides every trial gets.
    search : dict
        The ``[search]`` table as written (dotted key -> range table).
    """

    path: str
    config_path: str | None
    fixed: dict[str, Any]
    search: dict[str, dict[str, Any]]

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the ``[search]`` keys."""
        return {key: _distribution(self.path, key, table) for key, table in self.search.items()}


def load_search_spec(path: str | Path) -> SearchSpec:
    """Read and check a search spec: ranges well formed, every key a config key, and the
    base config with ``[set]`` and each range's ends (or each choice) a valid config.

    Raises
    ------
    ConfigError
        One line naming the spec file and the key, and what to do.
    """
    from backtester.config import load_config

    path = Path(path)
    data = read_toml(path, missing="search spec not found; pass an existing TOML file")
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; a search spec has config = "
                              f"\"...\", [set] and [search]")
    config_path = data.get("config")
    if config_path is not None and not isinstance(config_path, str):
        raise ConfigError(f"{path}: config must be a path string, was {config_path!r}")
    for name in ("set", "search"):
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"{path}: '{name}' must be a [{name}] table of \"section.key\""
                              f" entries, was {data[name]!r}")
    fixed = _flatten(data.get("set", {}), is_leaf=lambda v: not isinstance(v, dict))
    search = _flatten(data.get("search", {}), is_leaf=lambda v: not isinstance(v, dict) or any(
        f in v for f in RANGE_FIELDS))
    if not search:
        raise ConfigError(f"{path}: [search] is empty; add ranges such as "
                          f"\"ensemble.threshold\" = {{low = 0.1, high = 0.5}}")
    spec = SearchSpec(str(path), config_path, dict(fixed), dict(search))
    for key in search:
        if key in fixed:
            raise ConfigError(f"{path}: \"{key}\" is both in [set] and [search]; keep one")
        _distribution(str(path), key, search[key])  # checks the range table itself
    try:
        load_config(config_path, dict(fixed))
    except ConfigError as e:
        raise ConfigError(f"{path}: [set]: {e}") from None
    for key, table in search.items():
        for value in table.get("choices") or (table["low"], table["high"]):
            try:
                load_config(config_path, {**fixed, key: value})
            except ConfigError as e:
                raise ConfigError(f"{path}: [search] \"{key}\" = {value!r}: {e}") from None
    return spec


def _flatten(table: dict[str, Any], is_leaf: Callable[[Any], bool],
             prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: {"ensemble": {"threshold": x}} -> {"ensemble.threshold": x}
    (TOML reads an unquoted ``ensemble.threshold = x`` as the nested form)."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if is_leaf(value) or not value:
            flat[f"{prefix}{key}"] = value
        else:
            flat.update(_flatten(value, is_leaf, f"{prefix}{key}."))
    return flat


def _distribution(path: str, key: str, table: Any) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    where = f"{path}: [search] \"{key}\""
    if "." not in key:
        raise ConfigError(f"{where}: keys are section.key, such as \"ensemble.threshold\"")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table such as {{low = 0.1, high = 0.5}} or "
                          f"{{choices = [\"mwu\", \"thompson\"]}}, was {table!r}")
    for field in table:
        if field not in RANGE_FIELDS:
            raise ConfigError(f"{where}: unknown field {field!r}; use "
                              f"{', '.join(RANGE_FIELDS)}")
    if "choices" in table:
        choices = table["choices"]
        if set(table) != {"choices"}:
            raise ConfigError(f"{where}: choices goes alone, without low/high/log/type/step")
        if not isinstance(choices, list) or not choices or any(
                not isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: choices must be a non-empty list of numbers, "
                              f"strings or booleans, was {choices!r}")
        return CategoricalDistribution(choices)
    kind, log, step = table.get("type", "float"), table.get("log", False), table.get("step")
    if kind not in ("float", "int"):
        raise ConfigError(f"{where}: type must be \"float\" or \"int\", was {kind!r}")
    number, what = (int, "an integer") if kind == "int" else ((int, float), "a number")
    low, high = table.get("low"), table.get("high")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if (value is not None or name != "step") and (
                isinstance(value, bool) or not isinstance(value, number)):
            raise ConfigError(f"{where}: {name} must be {what} with type = \"{kind}\", "
                              f"was {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, was {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, was low = {low}, high = {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log = true needs low > 0, was low = {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: step and log = true do not go together; drop one")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be above 0, was {step}")
    if kind == "int":
        return IntDistribution(low, high, log=log, step=step or 1)
    return FloatDistribution(float(low), float(high), log=log, step=step)


def objective_value(result: dict[str, Any], objective: str) -> float | None:
    """The trial's ``objective`` (an overall metric, or the overall learned - equal weight
    of its books); None when the trial failed or the figure is undefined (e.g. a Sharpe
    ratio without trades)."""
    if result.get("status") != STATUS_OK:
        return None
    if objective == "learned_minus_equal":
        value = (result.get("books") or {}).get("learned_minus_equal")
    else:
        value = (result.get("overall") or {}).get(objective)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def new_sweep_id() -> str:
    """``<UTC time>-optimize-<8 random hex>``, e.g. 20260102-101500-optimize-1a2b3c4d."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-optimize-{secrets.token_hex(4)}"


def open_study(sweep_dir: Path, *, seed: int, direction: str, workers: int,
               create: bool) -> Any:
    """The search's Optuna study in ``<sweep_dir>/journal.log`` (created when ``create``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))
    if create:
        optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials),
                                         constant_liar=workers > 1)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler)


def run_search(spec: SearchSpec, *, trials: int, objective: str, engine: Any,
               out: str | Path = "sweeps", resume: str | None = None, seed: int = 0,
               select_on: str | None = None,
               on_result: Callable[[dict[str, Any], int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a search until ``trials`` trials have finished, ok or failed.

    Parameters
    ----------
    spec : SearchSpec
        From ``load_search_spec``.
    trials : int
        Finished trials wanted in all, counting those of an earlier start when resuming.
    objective : str
        One of ``spec.OBJECTIVES``; maximised except those in ``spec.MINIMISED``.
    engine : Engine
        Where trials run (``engines.make_engine``); up to ``engine.workers`` in flight.
    out : str | Path
        The folder of sweep folders.
    resume : str | None
        The sweep id of a search to go on with (same spec and objective); trials it left
        running are marked failed and replaced by new ones. This assumes the search is
        not running in another process at the same time.
    seed : int
        Seed of the TPE sampler (see the module docstring).
    select_on : str | None
        "chunks": also run ``selection.select_on_chunks`` over the finished trials
        (on the objective when it is a chunk figure, else on total_return) and write it
        to ``selection.json``.
    on_result : callable, optional
        Called with each finished trial's result dict and the number finished so far.

    Returns
    -------
    dict
        {"sweep_id", "sweep_dir", "objective", "ran" (trials run by this call), "results"
        (every finished trial's result dict in trial order, with the Optuna trial "number"
        and the objective "value"), "best" (the best one's result dict, or None), "table"
        (results.parquet's frame), "summary" (summary.json: best, deflated Sharpe ratio,
        PBO; see ``sweep.summarise``), "selection" (with ``select_on``, else None)}.

    Raises
    ------
    ConfigError
        On a bad ``trials``/``objective``/``resume``, or a resume with another spec.
    """
    check_objective(objective)
    if select_on not in (None, *SELECT_ON):
        raise ConfigError(f"--select-on must be {' or '.join(SELECT_ON)}, was {select_on!r}")
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, was {trials}")
    direction = "minimize" if objective in MINIMISED else "maximize"
    identity = {"config": spec.config_path, "set": spec.fixed, "search": spec.search,
                "objective": objective}
    sweep_id, sweep_dir = _sweep_folder(Path(out), resume)
    study = open_study(sweep_dir, seed=seed, direction=direction, workers=engine.workers,
                       create=resume is None)
    if resume is None:
        study.set_user_attr("spec", identity)
        shutil.copyfile(spec.path, sweep_dir / SPEC_COPY)
    elif study.user_attrs.get("spec") != identity:
        raise ConfigError(f"--resume {sweep_id}: the search was started with another spec "
                          f"or objective (see {sweep_dir / SPEC_COPY}); pass that spec, or "
                          f"start a new search without --resume")
    _mark_interrupted(study, sweep_dir)
    space = spec.distributions()
    in_flight: dict[str, Any] = {}

    def asked():
        while _counted(study) < trials:  # from the storage: other processes' trials count
            trial = study.ask(space)
            trial_id = f"t{trial.number:04d}"
            trial.set_user_attr("trial_id", trial_id)
            in_flight[trial_id] = trial
            yield Trial(trial_id, {**spec.fixed, **trial.params}, spec.config_path)

    ran = 0
    for result in engine.map(asked(), sweep_dir, max_in_flight=engine.workers):
        trial = in_flight.pop(result["trial_id"])
        value = objective_value(result, objective)
        if result["status"] == STATUS_OK and value is None:
            result = {**result, "status": STATUS_FAILED,
                      "error": f"{objective} is undefined for this run (no trades or no "
                               f"variation); choose another --objective"}
        result = {**result, "number": trial.number, "value": value}
        _write_result(sweep_dir, result)
        trial.set_user_attr("status", result["status"])
        if result["status"] == STATUS_OK:
            study.tell(trial, value)
        else:
            trial.set_user_attr("error", result["error"])
            study.tell(trial, state=_failed())
        ran += 1
        if on_result is not None:
            on_result(result, sum(1 for t in _trials(study) if "status" in t.user_attrs))

    results = read_results(sweep_dir, study)
    as_sweep = _as_sweep(spec, results, objective)
    write_json(sweep_dir / SPEC_FILE, json_ready(as_sweep.to_dict()))  # what the report reads
    collected = collect(as_sweep, sweep_dir, results, ran=ran, kept=len(results) - ran)
    best_id = (collected.summary["best"] or {}).get("trial_id")
    selection = None
    if select_on == "chunks":
        selection = select_on_chunks(results, objective)
        write_json(sweep_dir / SELECTION, json_ready(selection))
    return {"sweep_id": sweep_id, "sweep_dir": str(sweep_dir), "objective": objective,
            "ran": ran, "results": results, "table": collected.results,
            "summary": collected.summary, "selection": selection,
            "best": next((r for r in results if r["trial_id"] == best_id), None)}


def _as_sweep(spec: SearchSpec, results: list[dict[str, Any]], objective: str) -> SweepSpec:
    """The finished trials as a sweep's spec, so ``sweep.collect`` writes the same
    results.parquet, returns.parquet and summary.json as `bt sweep`."""
    params = tuple({k: r["params"][k] for k in spec.search if k in r["params"]}
                   for r in results)
    return SweepSpec(source=spec.path, config_path=spec.config_path, fixed=spec.fixed,
                     explicit=params, objective=objective,
                     trials=tuple(Trial(r["trial_id"], r["params"], spec.config_path)
                                  for r in results))


def _sweep_folder(out: Path, resume: str | None) -> tuple[str, Path]:
    if resume is None:
        sweep_id = new_sweep_id()
        sweep_dir = out / sweep_id
        sweep_dir.mkdir(parents=True, exist_ok=False)
        return sweep_id, sweep_dir
    if not is_folder_name(resume):
        raise ConfigError(f"--resume must be a sweep id (a folder name under {out}), was "
                          f"{resume!r}")
    sweep_dir = out / resume
    if not (sweep_dir / JOURNAL).is_file():
        raise ConfigError(f"--resume {resume}: no search in {sweep_dir} ({JOURNAL} missing); "
                          f"pass the id of a `bt optimize` sweep folder, or --out")
    return resume, sweep_dir


def _trials(study: Any) -> list[Any]:
    return study.get_trials(deepcopy=False)


def _counted(study: Any) -> int:
    """Trials finished (told with a "status") or running now, in any process."""
    from optuna.trial import TrialState

    return sum(1 for t in _trials(study)
               if "status" in t.user_attrs or t.state == TrialState.RUNNING)


def _failed() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


def _mark_interrupted(study: Any, sweep_dir: Path) -> None:
    """Fail the trials a killed start left running and remove their partial folders: new
    trials replace them."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        trial_id = trial.user_attrs.get("trial_id")
        if trial_id is not None and is_folder_name(trial_id):
            shutil.rmtree(sweep_dir / "trials" / trial_id, ignore_errors=True)


def _write_result(sweep_dir: Path, result: dict[str, Any]) -> None:
    folder = sweep_dir / "trials" / result["trial_id"]
    folder.mkdir(parents=True, exist_ok=True)  # a trial that failed early made none
    write_json(folder / RESULT, json_ready(result))


def read_results(sweep_dir: Path, study: Any) -> list[dict[str, Any]]:
    """The result dicts of the study's finished trials, in trial order, from result.json."""
    results = []
    for trial in _trials(study):
        trial_id = trial.user_attrs.get("trial_id")
        if "status" not in trial.user_attrs or trial_id is None:
            continue  # left running by a killed start
        result = read_result(sweep_dir, trial_id)
        if result is None:
            raise BtError(f"{sweep_dir / 'trials' / trial_id / RESULT}: missing or not JSON;"
                          f" the search folder is damaged, start a new search")
        results.append(result)
    return results
