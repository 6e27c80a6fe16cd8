"""User plugins: strategies and providers from the user's own code, without editing bt.

Two ways in, both explicit:

* a config table names a class: ``[strategies.<name>] class = "my_strats:RsiExtremes"`` or
  ``[providers.<name>] class = "pkg.mod:MyProvider"``. ``module:Class`` imports ``module``
  from ``sys.path``; ``path/to/file.py:Class`` imports that file, the path being relative
  to the folder of the config file (the working directory for a config built in Python).
  The ``class`` key is the only key that imports anything.
* an installed package registers a name in the entry-point group ``bt.strategies`` (a
  Strategy class) or ``bt.providers`` (a module with ``KIND``, ``CONFIG_CLASS`` and
  ``PROVIDER_CLASS``, or a provider class); the entry point is loaded only when a config
  names it (``[strategies.<name>]`` or ``kind = "<name>"``) and is not a built-in.

The protocol a plugin implements (see ``examples/custom_strategy.py`` and
``examples/custom_provider.py``):

* a strategy has ``name`` (str), ``config_class`` (a frozen dataclass whose ``name``
  equals the strategy's), a constructor taking that config, and ``propose``, ``vote``,
  ``prepare`` and ``report``; subclassing ``strategies.Strategy`` and writing
  ``signals`` gives all four;
* a provider has ``config_class`` (or ``CONFIG_CLASS``; a dataclass with a ``name``
  field), a constructor taking that config (and ``cache_dir``, if it asks for one), a
  ``name`` equal to ``config.name``, and ``prepare``, ``vote`` and ``report``.

Every check fails with one `ConfigError` line naming the class and what is wrong; at run
time a loaded plugin's ``vote``, ``propose``, ``prepare`` and constructor are checked
too (one `ProviderError` line: "provider 'x' (pkg.mod:MyProvider): vote returned 3 votes
for 5 candidates; ...").
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from backtester.errors import BtError, ConfigError, ProviderError
from backtester.providers.base import Votes

STRATEGY_GROUP = "bt.strategies"
PROVIDER_GROUP = "bt.providers"
STRATEGY_METHODS = ("propose", "vote", "prepare", "report")
PROVIDER_METHODS = ("prepare", "vote", "report")


@dataclass(frozen=True, slots=True)
class Plugin:
    """A loaded plugin class: how the config names it and the checked class bt uses."""

    spec: str  # "module:Class", "/absolute/path/file.py:Class" or "entry point ..."
    cls: type  # the checked subclass of the user's class
    config_class: type


_BY_CONFIG: dict[type, Plugin] = {}  # config class -> plugin named by `class = ...`
_STRATEGIES: dict[str, Plugin] = {}  # strategy name -> plugin (class key or entry point)
_FORBIDDEN: ContextVar[str | None] = ContextVar("bt_plugin_imports_forbidden", default=None)


@contextmanager
def no_imports(reason: str) -> Iterator[None]:
    """Refuse, inside the block, every plugin import a config asks for.

    For reading a config that came with someone else's folder (a run folder opened
    read-only): a ``class`` key or an entry-point name raises one ConfigError line that
    ends with ``reason`` (what to do instead) and nothing is imported.
    """
    token = _FORBIDDEN.set(reason)
    try:
        yield
    finally:
        _FORBIDDEN.reset(token)


def _allowed(what: str, key: str) -> None:
    reason = _FORBIDDEN.get()
    if reason is not None:
        raise ConfigError(f"{key}: {what} is not imported here; {reason}")


# ---------------------------------------------------------------- importing


def load_class(spec: str, *, base: Path, key: str) -> tuple[type, str]:
    """Import the class ``spec`` names; return it with the spec as a resolved config keeps it.

    Parameters
    ----------
    spec : str
        ``"module:Class"`` (``module`` on ``sys.path``) or ``"path/to/file.py:Class"``.
    base : Path
        The folder a relative file path is resolved against (the config file's folder).
    key : str
        The config key, for messages (``strategies.rsi.class``).

    Returns
    -------
    tuple[type, str]
        The class, and the spec with a file path made absolute (so ``runs/<id>/config.toml``
        re-loads from anywhere).
    """
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where.strip() or not attribute.strip():
        raise ConfigError(f"{key} must be 'module:Class' or 'path/to/file.py:Class', "
                          f"was {spec!r}")
    _allowed(spec, key)
    if where.endswith(".py"):
        path = Path(where).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.is_file():
            raise ConfigError(f"{key}: file {path} not found; give a path relative to the "
                              f"config file's folder ({base})")
        module = _import_file(path, spec, key)
        spec = f"{path}:{attribute}"
    else:
        module = _import_module(where, key)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{key}: {spec}: '{where}' has no attribute '{part}'{hint}")
        target = getattr(target, part)
    if not inspect.isclass(target):
        raise ConfigError(f"{key}: {spec} is a {type(target).__name__}, not a class; name "
                          f"the class")
    return target, spec


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _import_module(name: str, key: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(f"{e.name}.")):
            raise ConfigError(f"{key}: module '{name}' not found on sys.path; install it, add "
                              f"its folder to PYTHONPATH, or give a file such as "
                              f"'{name.rpartition('.')[2]}.py:Class'") from None
        raise ConfigError(f"{key}: importing '{name}' failed ({_one_line(e)}); install what "
                          f"it imports") from None
    except Exception as e:  # the user's module raised while importing
        raise ConfigError(f"{key}: importing '{name}' failed ({_one_line(e)}); fix the "
                          f"module") from None


def _import_file(path: Path, spec: str, key: str) -> ModuleType:
    """Import a file under a name unique to its path; re-import it when it changed."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"_bt_plugin_{path.stem}_{digest}"
    stamp = path.stat().st_mtime_ns
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__bt_mtime__", None) == stamp:
        return cached
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"{key}: {spec}: {path} cannot be imported; give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and type hints look the module up by name
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ConfigError(f"{key}: importing {path} failed ({_one_line(e)}); fix the "
                          f"file") from None
    module.__bt_mtime__ = stamp  # type: ignore[attr-defined]
    return module


# ---------------------------------------------------------------- checking a class


def _config_class(cls: type, spec: str, key: str, *, needs_name_field: bool) -> type:
    config_class = getattr(cls, "config_class", None) or getattr(cls, "CONFIG_CLASS", None)
    if config_class is None:
        raise ConfigError(f"{key}: {spec} has no config_class; set it to the frozen "
                          f"dataclass of its parameters")
    if not (inspect.isclass(config_class) and dataclasses.is_dataclass(config_class)):
        raise ConfigError(f"{key}: {spec}.config_class is {config_class!r}, not a dataclass; "
                          f"decorate it with @dataclass(frozen=True, kw_only=True)")
    if needs_name_field and "name" not in {f.name for f in dataclasses.fields(config_class)
                                           if f.init}:
        raise ConfigError(f"{key}: {spec}.config_class {config_class.__name__} has no 'name' "
                          f"field; add name: str = \"...\"")
    return config_class


def _check_methods(cls: type, spec: str, key: str, methods: tuple[str, ...],
                   what: str) -> None:
    missing = [m for m in methods if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"{key}: {spec} is not a {what}: it has no "
                          f"{', '.join(missing)} method; see examples/custom_{what}.py")
    if inspect.isabstract(cls):
        raise ConfigError(f"{key}: {spec} is abstract; define "
                          f"{', '.join(sorted(cls.__abstractmethods__))}")


def _check_constructor(cls: type, spec: str, key: str) -> None:
    try:
        inspect.signature(cls).bind(object())
    except TypeError:
        raise ConfigError(f"{key}: {spec}() must take its config as the one positional "
                          f"argument; define __init__(self, config)") from None
    except ValueError:  # no signature to read (a builtin): find out at construction
        pass


def check_strategy(cls: type, spec: str, key: str) -> type:
    """Check a strategy class; return its config class. One ConfigError line otherwise."""
    _check_methods(cls, spec, key, STRATEGY_METHODS, "strategy")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}: {spec} has no name; set the class attribute "
                          f"name = \"<table name>\"")
    config_class = _config_class(cls, spec, key, needs_name_field=False)
    if getattr(config_class, "name", None) != name:
        raise ConfigError(f"{key}: {spec}.config_class {config_class.__name__} is named "
                          f"{getattr(config_class, 'name', None)!r}, the strategy {name!r}; "
                          f"give the config class name: ClassVar[str] = {name!r}")
    _check_constructor(cls, spec, key)
    return config_class


def check_provider(cls: type, spec: str, key: str) -> type:
    """Check a provider class; return its config class. One ConfigError line otherwise."""
    _check_methods(cls, spec, key, PROVIDER_METHODS, "provider")
    config_class = _config_class(cls, spec, key, needs_name_field=True)
    _check_constructor(cls, spec, key)
    return config_class


# ---------------------------------------------------------------- run-time checks


def check_votes(votes: Any, n: int, who: str) -> Votes:
    """``votes`` as a `Votes` of ``n`` candidates, int8/float64; one ProviderError line
    naming ``who`` when its shape or values are wrong."""
    if not isinstance(votes, Votes):
        raise ProviderError(f"{who}: vote returned {type(votes).__name__}; return "
                            f"backtester.providers.base.Votes(vote, confidence)")
    vote, confidence = np.asarray(votes.vote), np.asarray(votes.confidence)
    if vote.shape != (n,):
        raise ProviderError(f"{who}: vote returned {vote.size} votes for {n} candidates; "
                            f"return one per candidate")
    if confidence.shape != (n,):
        raise ProviderError(f"{who}: vote returned {confidence.size} confidences for {n} "
                            f"candidates; return one per candidate")
    if n and not np.isin(vote, (-1, 0, 1)).all():
        raise ProviderError(f"{who}: votes must be -1, 0 or +1, were "
                            f"{sorted(set(np.unique(vote).tolist()))[:5]}")
    if n and not (np.isfinite(confidence) & (confidence >= 0) & (confidence <= 1)).all():
        raise ProviderError(f"{who}: confidence must be finite and in [0, 1]; clip it")
    abstained = votes.abstained
    if abstained is not None and np.asarray(abstained).shape != (n,):
        raise ProviderError(f"{who}: vote returned {np.asarray(abstained).size} abstentions "
                            f"for {n} candidates; return one per candidate or None")
    if votes.reasoning is not None and len(votes.reasoning) != n:
        raise ProviderError(f"{who}: vote returned {len(votes.reasoning)} reasoning texts "
                            f"for {n} candidates; return one per candidate or None")
    return Votes(vote.astype(np.int8), confidence.astype(np.float64), votes.reasoning,
                 None if abstained is None else np.asarray(abstained, dtype=bool))


def _checked(cls: type, spec: str, what: str) -> type:
    """A subclass of ``cls`` whose constructor, vote, propose and prepare are checked."""

    def who(self: Any) -> str:
        return f"{what} '{getattr(self, 'name', '?')}' ({spec})"

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        try:
            cls.__init__(self, config, *args, **kwargs)
        except BtError:
            raise
        except Exception as e:
            raise ProviderError(f"{what} '{getattr(config, 'name', '?')}' ({spec}): "
                                f"constructor failed ({_one_line(e)})") from e
        name = getattr(self, "name", None)
        if name != config.name:
            raise ProviderError(f"{who(self)}: its name is {name!r}, its config's "
                                f"{config.name!r}; set self.name = config.name")

    def vote(self: Any, context: Any, candidates: Any, *args: Any, **kwargs: Any) -> Votes:
        return check_votes(cls.vote(self, context, candidates, *args, **kwargs),
                           len(candidates), who(self))

    def prepare(self: Any, context: Any, start: int, stop: int) -> dict[str, float]:
        figures = cls.prepare(self, context, start, stop)
        if not isinstance(figures, dict):
            raise ProviderError(f"{who(self)}: prepare returned {type(figures).__name__}; "
                                f"return a dict of figures ({{}} for none)")
        return figures

    def propose(self: Any, context: Any, start: int, stop: int) -> np.ndarray:
        mask = np.asarray(cls.propose(self, context, start, stop))
        shape = (stop - start, context.bars.n_assets)
        if mask.shape != shape:
            raise ProviderError(f"{who(self)}: propose returned shape {mask.shape} for "
                                f"{shape[0]} bars x {shape[1]} assets; return a bool array "
                                f"of that shape")
        return mask.astype(bool, copy=False)

    try:  # build_provider reads the user's signature (does it take a cache_dir?)
        __init__.__signature__ = inspect.signature(cls.__init__)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    body: dict[str, Any] = {"__init__": __init__, "vote": vote, "prepare": prepare,
                            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                            "__doc__": cls.__doc__, "__bt_plugin__": spec}
    if callable(getattr(cls, "propose", None)):
        body["propose"] = propose
    if what == "strategy":  # a strategy's config has no name field: its class names it
        body["__init__"] = _strategy_init(cls, spec, __init__)
    return type(cls.__name__, (cls,), body)


def _strategy_init(cls: type, spec: str, checked_init: Any) -> Any:
    def __init__(self: Any, config: Any = None, *args: Any, **kwargs: Any) -> None:
        if config is None:
            config = cls.config_class()
        checked_init(self, config, *args, **kwargs)

    __init__.__signature__ = getattr(checked_init, "__signature__", None)  # type: ignore

    return __init__


# ---------------------------------------------------------------- strategies


def strategy_class(name: str, spec: str, *, base: Path) -> type:
    """The strategy ``[strategies.<name>] class = spec`` names, checked and registered.

    Raises
    ------
    ConfigError
        One line: the class cannot be imported, is not a strategy, is not named ``name``,
        or takes the name of a built-in strategy.
    """
    from strategies import STRATEGY_REGISTRY

    key = f"strategies.{name}.class"
    cls, spec = load_class(spec, base=base, key=key)
    config_class = check_strategy(cls, spec, key)
    if cls.name in STRATEGY_REGISTRY:
        raise ConfigError(f"{key}: {spec} is named {cls.name!r} like bt's built-in strategy; "
                          f"give it another name")
    if cls.name != name:
        raise ConfigError(f"{key}: {spec} is named {cls.name!r}; name the table "
                          f"[strategies.{cls.name}]")
    plugin = Plugin(spec, _checked(cls, spec, "strategy"), config_class)
    _BY_CONFIG[config_class] = plugin
    _STRATEGIES[name] = plugin
    return plugin.cls


def entry_point_strategy(name: str) -> type | None:
    """The strategy an installed package registers as ``name`` in ``bt.strategies``, or
    None when none does."""
    found = _entry_point(STRATEGY_GROUP, name)
    if found is None:
        return None
    spec, cls = found
    key = f"strategies.{name}"
    if not inspect.isclass(cls):
        raise ConfigError(f"{key}: {spec} is a {type(cls).__name__}, not a Strategy class")
    config_class = check_strategy(cls, spec, key)
    if cls.name != name:
        raise ConfigError(f"{key}: {spec} is named {cls.name!r}, its entry point {name!r}; "
                          f"make them equal")
    plugin = Plugin(spec, _checked(cls, spec, "strategy"), config_class)
    _STRATEGIES[name] = plugin
    return plugin.cls


def loaded_strategy(name: str) -> type | None:
    """The plugin strategy last loaded under ``name`` (the registry's fallback)."""
    plugin = _STRATEGIES.get(name)
    return None if plugin is None else plugin.cls


# ---------------------------------------------------------------- providers


def provider_config_class(name: str, spec: str, *, base: Path) -> type:
    """The config class of the provider ``[providers.<name>] class = spec`` names; the
    provider class is checked and recorded for `provider_plugin`."""
    from backtester.providers import provider_kinds

    key = f"providers.{name}.class"
    cls, spec = load_class(spec, base=base, key=key)
    config_class = check_provider(cls, spec, key)
    if any(module.CONFIG_CLASS is config_class for module in provider_kinds().values()):
        raise ConfigError(f"{key}: {spec} uses bt's own {config_class.__name__}; give it its "
                          f"own config class (a subclass will do)")
    known = _BY_CONFIG.get(config_class)
    if known is not None and known.cls.__bases__[0] is not cls:
        raise ConfigError(f"{key}: {spec} shares its config class {config_class.__name__} "
                          f"with {known.spec}; give each provider its own (a subclass will "
                          f"do)")
    _BY_CONFIG[config_class] = Plugin(spec, _checked(cls, spec, "provider"), config_class)
    return config_class


def provider_plugin(config: Any) -> Plugin | None:
    """The plugin a provider config object was built for by ``class = ...``, else None."""
    return _BY_CONFIG.get(type(config))


def entry_point_kind(kind: str) -> SimpleNamespace | None:
    """The provider kind an installed package registers as ``kind`` in ``bt.providers``
    (module-like: KIND, CONFIG_CLASS, PROVIDER_CLASS), or None when none does."""
    found = _entry_point(PROVIDER_GROUP, kind)
    if found is None:
        return None
    spec, target = found
    key = f"kind {kind!r}"
    if inspect.isclass(target):
        cls, transport = target, getattr(target, "TRANSPORT_FIELDS", ())
    else:
        if getattr(target, "KIND", kind) != kind:
            raise ConfigError(f"{key}: {spec} declares KIND = {target.KIND!r}, its entry point "
                              f"{kind!r}; make them equal")
        cls = getattr(target, "PROVIDER_CLASS", None)
        if not inspect.isclass(cls):
            raise ConfigError(f"{key}: {spec} has no PROVIDER_CLASS; set it to the provider "
                              f"class (and CONFIG_CLASS to its config)")
        if getattr(cls, "config_class", None) is None and hasattr(target, "CONFIG_CLASS"):
            cls = type(cls.__name__, (cls,), {"config_class": target.CONFIG_CLASS,
                                              "__module__": cls.__module__})
        transport = getattr(target, "TRANSPORT_FIELDS", ())
    config_class = check_provider(cls, spec, key)
    return SimpleNamespace(KIND=kind, CONFIG_CLASS=config_class, TRANSPORT_FIELDS=transport,
                           PROVIDER_CLASS=_checked(cls, spec, "provider"))


# ---------------------------------------------------------------- entry points and configs


def entry_point_names(group: str) -> list[str]:
    """Names installed packages register in ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def _entry_point(group: str, name: str) -> tuple[str, Any] | None:
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if not matches:
        return None
    spec = f"entry point {group} '{name}' ({matches[0].value})"
    _allowed(spec, f"[{group.partition('.')[2]}.{name}]")
    if len({ep.value for ep in matches}) > 1:
        raise ConfigError(f"{spec}: registered {len(matches)} times "
                          f"({', '.join(ep.value for ep in matches)}); uninstall one")
    try:
        return spec, matches[0].load()
    except Exception as e:
        raise ConfigError(f"{spec}: import failed ({_one_line(e)}); fix or reinstall the "
                          f"package") from None


def source_keys(config: Any) -> dict[str, str]:
    """``{"class": spec}`` for the config of a plugin named by class, else ``{}``: what a
    resolved config.toml keeps so that it re-loads (and what the config hash covers)."""
    plugin = _BY_CONFIG.get(type(config))
    return {} if plugin is None else {"class": plugin.spec}


__all__ = ["PROVIDER_GROUP", "STRATEGY_GROUP", "Plugin", "check_provider", "check_strategy",
           "check_votes", "entry_point_kind", "entry_point_names", "entry_point_strategy",
           "load_class", "loaded_strategy", "no_imports", "provider_config_class",
           "provider_plugin",
           "source_keys", "strategy_class"]
