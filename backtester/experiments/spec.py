"""A sweep spec: which trials a sweep runs, from a TOML file and ``--set`` flags.

A spec file::

    config = "configs/default.toml"   # the base config (optional; default as `bt run`)
    objective = "sharpe"              # the metric that ranks trials (optional)
    seeds = [1, 2, 3]                 # each trial once per seed ...
    seed_key = "data.seed"            # ... set at this key (default data.seed)

    [set]                             # fixed overrides of every trial
    "run.chunk" = "month"

    [grid]                            # every combination of these values
    "ensemble.learning_rate" = [0.05, 0.1, 0.2]
    "ensemble.method" = ["mwu", "thompson"]

    [[trials]]                        # explicit trials (each crossed with the grid)
    "ensemble.threshold" = 0.2

Keys are dotted config keys, quoted or written as TOML dotted keys / sub-tables. On the
command line, ``--set key=v1,v2,v3`` is a grid dimension (each value read like
``bt run --set``: TOML, else a plain string; commas inside brackets or quotes do not
split) and ``--set key=v`` a fixed override; flags win over the file.

Trials are ordered explicit trial, then grid combination (the first key slowest), then
seed, and named t0001, t0002, ... in that order. Every trial's config is loaded before
anything runs, so a misspelt key or a bad value fails at once, in one line.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from backtester.config import read_toml
from backtester.errors import ConfigError
from backtester.experiments.trial import Trial

from backtester.metrics import METRIC_NAMES

OBJECTIVES: tuple[str, ...] = (*METRIC_NAMES, "learned_minus_equal")
"""What ranks trials: an overall metric, or the learned book minus equal weight."""
MINIMISED = frozenset({"volatility", "max_drawdown_bars", "max_drawdown_duration_days"})
"""Objectives where lower is better (max_drawdown is <= 0, so it is maximised)."""
SPEC_KEYS = ("config", "objective", "seeds", "seed_key", "set", "grid", "trials")
DEFAULT_SEED_KEY = "data.seed"
DEFAULT_OBJECTIVE = "sharpe"


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """The resolved trials of a sweep.

    Attributes
    ----------
    source : str
        The spec file, or "--set" for a spec made of flags only.
    config_path : str | None
        The base config file of every trial (None: as `bt run`).
    fixed : dict
        Overrides shared by every trial ([set] and single-valued ``--set``).
    grid : tuple of (str, tuple)
        The grid dimensions, in order.
    explicit : tuple of dict
        The [[trials]] tables (flattened to dotted keys).
    seeds : tuple
        Seeds each trial runs with, at ``seed_key``; empty: none.
    seed_key : str
        The config key the seeds go to.
    objective : str
        The metric that ranks trials (one of ``OBJECTIVES``; lower is better only for
        those in ``MINIMISED``).
    trials : tuple of Trial
        Every trial, ``overrides`` holding fixed and swept values.
    """

    source: str
    config_path: str | None
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    explicit: tuple[dict[str, Any], ...] = ()
    seeds: tuple[Any, ...] = ()
    seed_key: str = DEFAULT_SEED_KEY
    objective: str = DEFAULT_OBJECTIVE
    trials: tuple[Trial, ...] = ()

    @property
    def parameters(self) -> list[str]:
        """The swept keys: grid keys, keys of the explicit trials, the seed key."""
        keys = [k for k, _ in self.grid]
        for table in self.explicit:
            keys += [k for k in table if k not in keys]
        if self.seeds and self.seed_key not in keys:
            keys.append(self.seed_key)
        return keys

    def params(self, trial: Trial) -> dict[str, Any]:
        """The swept values of ``trial`` (its overrides less the fixed ones)."""
        return {k: trial.overrides[k] for k in self.parameters if k in trial.overrides}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what spec.json holds."""
        return {"source": self.source, "config": self.config_path, "set": self.fixed,
                "grid": {k: list(v) for k, v in self.grid}, "trials_table": list(self.explicit),
                "seeds": list(self.seeds), "seed_key": self.seed_key,
                "objective": self.objective, "parameters": self.parameters,
                "trials": [{"trial_id": t.trial_id, "overrides": t.overrides,
                            "config_path": t.config_path, "market": t.market}
                           for t in self.trials]}


def load_spec(path: str | Path | None, assignments: Sequence[str] = (), *,
              config_path: str | Path | None = None, objective: str | None = None) -> SweepSpec:
    """Read a spec file (or none), apply ``--set`` flags, and check every trial's config.

    Parameters
    ----------
    path : str | Path | None
        The spec TOML; None builds the spec from ``assignments`` alone.
    assignments : sequence of str
        ``key=value`` (fixed) or ``key=v1,v2,...`` (a grid dimension), over the file.
    config_path : str | Path | None
        The base config, over the file's ``config``.
    objective : str | None
        The ranking metric, over the file's ``objective``.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ConfigError
        One line naming the spec file, the trial and the key, for an unreadable file, an
        unknown spec key, a malformed flag or any trial whose config does not load.
    """
    data: dict[str, Any] = {}
    source = "--set"
    if path is not None:
        source = str(path)
        data = read_toml(path, missing="sweep spec not found; pass an existing TOML file or "
                         "only --set key=v1,v2")
    for key in data:
        if key not in SPEC_KEYS:
            close = difflib.get_close_matches(key, SPEC_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown spec key '{key}'{hint} "
                              f"(valid: {', '.join(SPEC_KEYS)})")
    fixed = _table(data.get("set", {}), source, "set")
    grid = {k: _values(v, source, k) for k, v in _table(data.get("grid", {}), source,
                                                          "grid").items()}
    explicit = data.get("trials", [])
    if not isinstance(explicit, list) or not all(isinstance(t, dict) for t in explicit):
        raise ConfigError(f"{source}: 'trials' must be an array of tables ([[trials]]), "
                          f"was {explicit!r}")
    explicit = [_table(t, source, f"trials[{i}]") for i, t in enumerate(explicit)]
    seeds = data.get("seeds", [])
    if not isinstance(seeds, list):
        raise ConfigError(f"{source}: 'seeds' must be a list such as [1, 2, 3], was {seeds!r}")
    seed_key = data.get("seed_key", DEFAULT_SEED_KEY)
    if not isinstance(seed_key, str) or "." not in seed_key:
        raise ConfigError(f"{source}: 'seed_key' must be a dotted config key such as "
                          f"\"data.seed\", was {seed_key!r}")
    for text in assignments:
        key, values = parse_sweep_assignment(text)
        if len(values) == 1:
            fixed[key] = values[0]
            grid.pop(key, None)
        else:
            grid[key] = values
    base = config_path if config_path is not None else data.get("config")
    if base is not None and not isinstance(base, (str, Path)):
        raise ConfigError(f"{source}: 'config' must be a path string, was {base!r}")
    goal = check_objective(objective or data.get("objective", DEFAULT_OBJECTIVE), source)
    spec = SweepSpec(source=source, config_path=None if base is None else str(base),
                     fixed=fixed, grid=tuple((k, tuple(v)) for k, v in grid.items()),
                     explicit=tuple(explicit), seeds=tuple(seeds), seed_key=seed_key,
                     objective=goal)
    trials = _expand(spec)
    validate_trials(trials, source)
    return replace(spec, trials=tuple(trials))


def spec_from_json(data: dict[str, Any], *, source: str) -> SweepSpec:
    """The spec written to a sweep's spec.json (``SweepSpec.to_dict``), read back."""
    try:
        return SweepSpec(
            source=data["source"], config_path=data["config"], fixed=dict(data["set"]),
            grid=tuple((k, tuple(v)) for k, v in data["grid"].items()),
            explicit=tuple(data["trials_table"]), seeds=tuple(data["seeds"]),
            seed_key=data["seed_key"], objective=data["objective"],
            trials=tuple(Trial(t["trial_id"], dict(t["overrides"]), t["config_path"],
                               t["market"]) for t in data["trials"]))
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{source}: not a sweep spec ({type(e).__name__}: {e}); start a "
                          f"new sweep") from None


def check_objective(objective: Any, source: str = "--objective") -> str:
    """``objective`` when it is one of ``OBJECTIVES``, else one line with the nearest."""
    if objective not in OBJECTIVES:
        close = difflib.get_close_matches(str(objective), OBJECTIVES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: objective {objective!r} is not a metric{hint} (valid: "
                          f"{', '.join(OBJECTIVES)})")
    return objective


def _expand(spec: SweepSpec) -> list[Trial]:
    keys = [k for k, _ in spec.grid]
    combos = list(itertools.product(*(v for _, v in spec.grid)))
    seeds = spec.seeds or (None,)
    overrides = []
    for table in spec.explicit or ({},):
        for combo in combos:
            for seed in seeds:
                trial = {**spec.fixed, **table, **dict(zip(keys, combo))}
                if seed is not None:
                    trial[spec.seed_key] = seed
                overrides.append(trial)
    width = max(4, len(str(len(overrides))))
    return [Trial(f"t{i:0{width}d}", o, spec.config_path) for i, o in enumerate(overrides, 1)]


def validate_trials(trials: Sequence[Trial], source: str) -> None:
    """Load every trial's config; the first that fails raises one line naming ``source``."""
    from backtester.config import load_config

    if not trials:
        raise ConfigError(f"{source}: the sweep has no trials; add a [grid], [[trials]] or "
                          f"seeds, or --set key=v1,v2")
    for trial in trials:
        try:
            load_config(trial.config_path, dict(trial.overrides))
        except ConfigError as e:
            raise ConfigError(f"{source}: trial {trial.trial_id}: {e}") from None


def parse_sweep_assignment(text: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,v3`` -> (key, [v1, v2, v3]), each value read like ``bt run --set``.

    Commas inside brackets, braces or quotes do not split (``data.symbols=["A","B"]`` is
    one value).
    """
    from backtester.config import parse_assignment

    key = parse_assignment(text)[0]  # the key's shape is checked on the whole flag
    parts = _split_top_level(text.partition("=")[2])
    if any(not part.strip() for part in parts):
        raise ConfigError(f"--set must be section.key=value or section.key=v1,v2,v3, such as "
                          f"ensemble.learning_rate=0.05,0.1, was {text!r}")
    pairs = [parse_assignment(f"{key}={part}") for part in parts]
    return pairs[0][0], [value for _, value in pairs]


def _split_top_level(raw: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", []
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _table(table: Any, source: str, name: str) -> dict[str, Any]:
    """A table with dotted keys, nested tables flattened ({"a": {"b": 1}} -> {"a.b": 1})."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: '{name}' must be a table, was {table!r}")
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif "." not in dotted:
                raise ConfigError(f"{source}: [{name}] key '{dotted}' must be a dotted config "
                                  f"key such as \"ensemble.learning_rate\"")
            else:
                flat[dotted] = value

    walk(table, "")
    return flat


def _values(values: Any, source: str, key: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{source}: [grid] '{key}' must be a non-empty list of values, "
                          f"was {values!r}")
    return values
