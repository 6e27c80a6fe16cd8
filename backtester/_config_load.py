"""Reading and writing configs: TOML files, ``section.key=value`` overrides, the flags
behind them, and the frozen ``Config`` they build (``backtester/config.py`` holds the
classes and re-exports these functions)."""

from __future__ import annotations

import dataclasses
import datetime
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import orjson

from backtester.checks import require as _check
from backtester.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULTS_SECTION,
    Config,
    MetricTolerance,
    RegressConfig,
    _unknown,
)
from backtester.errors import ConfigError


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a TOML value against a field's type hint; return it in the field's type."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is dict:
        _check(isinstance(value, dict), key, value, "a table")
        item = typing.get_args(hint)[1]
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), key, value, "a list")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if hint is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if hint is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value,
               "a number")
        return float(value)
    if hint is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")  # a bug in a config class


def build_section(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys name the nearest."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown("key", key, names, lambda k: f"{prefix}.{k}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]} is required; add it to the [{prefix}] table")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        message = str(e)
        raise ConfigError(
            message if message.startswith(f"{prefix}.") else f"{prefix}.{message}"
        ) from None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def parse_assignment(text: str, *, flag: str = "--set") -> tuple[str, Any]:
    """``section.key=value`` -> ("section.key", value); the value is read as a TOML value
    (``0.1``, ``true``, ``"x"``, ``["A", "B"]``), else taken as a plain string; a date
    such as ``2025-01-01`` stays the text it was."""
    dotted, sep, raw = text.partition("=")
    dotted, raw = dotted.strip(), raw.strip()
    if not sep or "." not in dotted or not all(dotted.split(".")) or not raw:
        raise ConfigError(f"{flag} must be section.key=value, such as "
                          f"ensemble.learning_rate=0.05, was {text!r}")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(value, (datetime.date, datetime.time)):  # run.start=2025-01-01 is text
        value = raw
    return dotted, value


def read_toml(path: str | Path, *, missing: str) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is one ConfigError line naming it
    (``missing`` says what to do when it does not exist)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({e}); pass a TOML text file") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                *, flags: dict[str, str] | None = None) -> Config:
    """Load a TOML config and apply overrides given as {"section.key": value}.

    ``path`` None means configs/default.toml when it exists, else the built-in defaults.
    ``flags`` names the command-line flag behind an override ({"run.chunk": "--chunk"},
    {"ensemble.seed": "--set ensemble.seed"}): an error about a key a flag set names that
    flag ("--chunk: must be ..."), not the file. A year given over a file's start and end
    replaces them (the flag wins, as for every key).
    """
    from strategies import STRATEGY_REGISTRY  # late: strategies import the config helpers

    data: dict[str, Any] = {}
    source = "defaults"
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = str(path)
        data = read_toml(path, missing="config file not found; pass --config with an existing "
                         "file such as configs/default.toml")
    applied = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "run.year" in applied and "run.start" not in applied and "run.end" not in applied \
            and isinstance(data.get("run"), dict):
        data["run"] = {k: v for k, v in data["run"].items() if k not in ("start", "end")}
    for dotted, value in applied.items():
        _set_dotted(data, dotted, value)
    try:
        base = Path(path).resolve().parent if path is not None else Path.cwd()
        return dataclasses.replace(_build_config(data, STRATEGY_REGISTRY, base=base),
                                   origin=str(base) if path is not None else "",
                                   given=tuple(sorted(applied)))
    except ConfigError as e:
        flagged = {k: f for k, f in (flags or {}).items() if k in applied}
        message = _flag_message(str(e), flagged, flags or {})
        raise ConfigError(message if message is not None else f"{source}: {e}") from None


def _flag_message(message: str, flagged: dict[str, str], flags: dict[str, str]) -> str | None:
    """``message`` (a ConfigError about the merged config) said of the flag that set its key,
    or None when no flag set it (the file is to blame).

    ``flagged``: the keys flags set in this call and their flags; ``flags``: every key a flag
    could set (to name the other half of start/end)."""
    if message.startswith("run.start and run.end go together") and \
            ({"run.start", "run.end"} & flagged.keys()):
        return (f"{flags.get('run.start', 'run.start')} and {flags.get('run.end', 'run.end')} "
                "go together; give both")
    for key in sorted(flagged, key=len, reverse=True):  # the most specific key first
        if message.startswith((f"{key} ", f"{key}:")):  # run.chunk must be ..., was ...
            return f"{flagged[key]}: {message[len(key):].lstrip(': ')}"
        if message.startswith((f"{key}.", f"{key}[")):  # an item of the value: keep its path
            return f"{flagged[key]}: {message}"
        quoted = f" '{key}'"
        if quoted in message:  # unknown key 'ensemble.x'; did you mean ...
            return f"{flagged[key]}: {message.replace(quoted, '', 1)}"
        if f"'[{key.split('.')[0]}]'" in message:  # unknown section '[x]'; did you mean ...
            return f"{flagged[key]}: {message}"
    return None


def _build_config(data: dict[str, Any], registry: dict[str, type], *,
                  base: Path | None = None) -> Config:
    """The Config of a parsed file; ``base`` is the folder plugin file paths are relative
    to (the config file's; None: the working directory)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == DEFAULTS_SECTION:
            continue  # merged into the provider tables by _build_providers
        if name not in sections:
            raise _unknown("section", name, [*sections, DEFAULTS_SECTION], lambda k: f"[{k}]")
        if not isinstance(value, dict):
            raise ConfigError(f"'{name}' must be a [{name}] table, was {value!r}")
        if name == "strategies":
            kwargs[name] = _build_strategies(value, registry, base=base)
        elif name == "providers":
            kwargs[name] = _build_providers(value, data.get(DEFAULTS_SECTION, {}), base=base)
        elif name == "regress":
            kwargs[name] = _build_regress(value)
        else:
            kwargs[name] = build_section(hints[name], value, name)
    if "strategies" not in kwargs:
        kwargs["strategies"] = tuple(registry[n].config_class() for n in sorted(registry))
    return Config(**kwargs)


def _build_regress(data: dict[str, Any]) -> RegressConfig:
    data = dict(data)
    tolerances = data.pop("tolerances", {})
    if not isinstance(tolerances, dict) or not all(isinstance(v, dict)
                                                   for v in tolerances.values()):
        raise ConfigError(f"regress.tolerances must hold tables such as "
                          f"[regress.tolerances.sharpe] abs = 0.01, was {tolerances!r}")
    section = build_section(RegressConfig, data, "regress")
    return dataclasses.replace(section, tolerances=tuple(
        build_section(MetricTolerance, {"metric": metric, **limits},
                      f"regress.tolerances.{metric}")
        for metric, limits in sorted(tolerances.items())))


def _build_strategies(data: dict[str, Any], registry: dict[str, type], *,
                      base: Path | None = None) -> tuple[Any, ...]:
    """Strategy configs: a built-in by table name, a plugin by ``class = "module:Class"``
    or by a ``bt.strategies`` entry point of that name (imported only when enabled)."""
    from backtester import plugins

    configs = []
    for name, section in sorted(data.items()):  # canonical order, whatever the file's
        spec = section.get("class") if isinstance(section, dict) else None
        if spec is None and name not in registry:
            installed = plugins.entry_point_names(plugins.STRATEGY_GROUP)
            if name not in installed:
                error = _unknown("strategy", name, sorted({*registry, *installed}),
                                 lambda k: f"[strategies.{k}]")
                raise ConfigError(f"{error}; or name your own with class = \"module:Class\"")
        if not isinstance(section, dict):
            raise ConfigError(f"strategies.{name} must be a table, was {section!r}")
        section = {k: v for k, v in section.items() if k != "class"}
        if not _coerce(section.pop("enabled", True), bool, f"strategies.{name}.enabled"):
            continue  # a disabled plugin is not imported
        if spec is not None:
            cls = plugins.strategy_class(name, _coerce(spec, str, f"strategies.{name}.class"),
                                         base=base or Path.cwd())
        elif name in registry:
            cls = registry[name]
        else:
            cls = plugins.entry_point_strategy(name)
        configs.append(build_section(cls.config_class, section, f"strategies.{name}"))
    if not configs:
        raise ConfigError("no strategy is enabled; enable at least one [strategies.<name>]")
    return tuple(configs)


def _build_providers(data: dict[str, Any], llm_defaults: Any, *,
                     base: Path | None = None) -> tuple[Any, ...]:
    """Provider configs; an LLM table starts from [llm_defaults] (its own keys win). A table
    gives ``kind`` (built-in or a ``bt.providers`` entry point) or ``class``."""
    from backtester import plugins
    from backtester.providers import known_kind, load_kind, provider_kinds

    if not isinstance(llm_defaults, dict):
        raise ConfigError(f"'{DEFAULTS_SECTION}' must be a [{DEFAULTS_SECTION}] table, was "
                          f"{llm_defaults!r}")
    for key in ("kind", "class", "name", "enabled"):
        if key in llm_defaults:
            raise ConfigError(f"{DEFAULTS_SECTION}.{key} cannot be a default; set it in each "
                              f"[providers.<name>] table")
    configs = []
    for name, section in sorted(data.items()):
        if not isinstance(section, dict):
            raise ConfigError(f"providers.{name} must be a table, was {section!r}")
        section = dict(section)
        kind = section.pop("kind", None)
        spec = section.pop("class", None)
        if kind is not None and spec is not None:
            raise ConfigError(f"providers.{name} gives both kind and class; keep one")
        if spec is None and not known_kind(kind):
            kinds = sorted({*provider_kinds(), *plugins.entry_point_names(plugins.PROVIDER_GROUP)})
            raise ConfigError(f"providers.{name}.kind must be one of {', '.join(kinds)}, was "
                              f"{kind!r}; or name your own with class = \"module:Class\"")
        if kind == "llm":
            section = {**llm_defaults, **section}
        if _coerce(section.pop("enabled", True), bool, f"providers.{name}.enabled") is False:
            continue  # a disabled plugin is not imported
        if section.setdefault("name", name) != name:
            raise ConfigError(f"providers.{name}.name must equal the table name {name!r}, "
                              f"was {section['name']!r}; remove the key")
        if spec is None:
            config_class = load_kind(kind).CONFIG_CLASS
        else:
            spec = _coerce(spec, str, f"providers.{name}.class")
            config_class = plugins.provider_config_class(name, spec, base=base or Path.cwd())
        configs.append(build_section(config_class, section, f"providers.{name}"))
    return tuple(configs)


def dump_toml(data: dict[str, Any]) -> str:
    """Write a nested dict of scalars and lists as TOML (what Config.to_dict returns)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return orjson.dumps(str(v)).decode()

    def table(name: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if plain or not nested:
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items())
            lines.append("")
        for k, v in nested.items():
            table(f"{name}.{k}", v)

    for name, section in data.items():
        table(name, section)
    return "\n".join(lines)
