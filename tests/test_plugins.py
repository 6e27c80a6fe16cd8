"""User plugins: strategies and providers named by class in a config, or registered by
installed packages through entry points; each bad plugin is one line naming it."""

from __future__ import annotations

import re
import textwrap
import uuid
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from kit import random_bars

from backtester import plugins
from backtester import providers as providers_package
from backtester.config import dump_toml, load_config
from backtester.errors import ConfigError, ProviderError
from backtester.providers import build_provider, provider_kinds
from backtester.providers.base import Candidates, MarketContext
from strategies import STRATEGY_REGISTRY

STRATEGY_SOURCE = '''
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from backtester.errors import ConfigError
from strategies import Signals, Strategy, StrategyConfig
from strategies.base import feature


@dataclass(frozen=True, kw_only=True, slots=True)
class LowRsiConfig(StrategyConfig):
    name: ClassVar[str] = "{name}"
    oversold: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.oversold < 100:
            raise ConfigError(f"oversold must be in (0, 100), was {{self.oversold!r}}")


class LowRsi(Strategy):
    name = "{name}"
    config_class = LowRsiConfig

    def signals(self, context):
        rsi = feature(context, "rsi14")
        view = np.where(rsi < self.config.oversold, 1, 0).astype(np.int8)
        entry = np.zeros_like(view)
        entry[1:] = (view[1:] == 1) & (view[:-1] == 0)
        return Signals(entry, view, np.where(view != 0, 0.6, 0.0))
'''

PROVIDER_SOURCE = '''
from dataclasses import dataclass

import numpy as np

from backtester.providers.base import Votes


@dataclass(frozen=True, kw_only=True, slots=True)
class ConstantConfig:
    name: str = "constant"
    direction: int = 1
    extra: int = 0  # votes returned beyond the candidates (a broken provider)


class Constant:
    config_class = ConstantConfig

    def __init__(self, config):
        self.config = config
        self.name = config.name

    def prepare(self, context, start, stop):
        return {"prepared": float(stop - start)}

    def vote(self, context, candidates, similar=None):
        n = len(candidates) + self.config.extra
        return Votes(np.full(n, self.config.direction, np.int8), np.full(n, 0.5))

    def report(self):
        return {}


@dataclass(frozen=True, kw_only=True, slots=True)
class OtherConfig:
    name: str = "constant"
    direction: int = 1
    extra: int = 0


class Other(Constant):
    config_class = OtherConfig
'''


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Each test starts with no plugin loaded and no entry point installed."""
    monkeypatch.setattr(plugins, "_BY_CONFIG", {})
    monkeypatch.setattr(plugins, "_STRATEGIES", {})
    monkeypatch.setattr(providers_package, "_PLUGIN_KINDS", {})
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])


def _module(tmp_path: Path, monkeypatch, source: str) -> str:
    """Write ``source`` as a fresh module on sys.path; return its name."""
    name = f"user_plugin_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _config(tmp_path: Path, body: str, name: str = "bt.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return load_config(path, {"memory.embedder": "hashing"})


def _provider_table(spec: str) -> str:
    return f'[strategies.momentum]\n[providers.p]\nclass = "{spec}"\n'


def _error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as raised:
        _config(tmp_path, body)
    message = str(raised.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- strategies


def test_strategy_by_module_class_path_is_loaded_checked_and_registered(tmp_path, monkeypatch):
    # Arrange
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi"))

    # Act
    config = _config(tmp_path, f'''
        [strategies.low_rsi]
        class = "{module}:LowRsi"
        oversold = 25
    ''')

    # Assert
    (strategy_config,) = config.strategies
    assert type(strategy_config).__name__ == "LowRsiConfig"
    assert strategy_config.oversold == 25.0  # coerced to the field's type
    strategy = STRATEGY_REGISTRY["low_rsi"](strategy_config)
    assert strategy.name == "low_rsi" and type(strategy).__name__ == "LowRsi"
    assert "low_rsi" not in STRATEGY_REGISTRY  # the built-in listing stays built-in
    assert config.to_dict()["strategies"]["low_rsi"]["class"] == f"{module}:LowRsi"


def test_strategy_by_relative_file_path_resolves_against_the_config_folder(tmp_path,
                                                                          monkeypatch):
    # Arrange: the config and its lib/ folder in one place, the working directory elsewhere
    project = tmp_path / "project"
    (project / "lib").mkdir(parents=True)
    (project / "lib" / "rules.py").write_text(STRATEGY_SOURCE.format(name="low_rsi"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # Act
    config = _config(project, '''
        [strategies.low_rsi]
        class = "lib/rules.py:LowRsi"
    ''')

    # Assert: the resolved config names the file absolutely
    spec = config.to_dict()["strategies"]["low_rsi"]["class"]
    assert spec == f"{(project / 'lib' / 'rules.py').resolve()}:LowRsi"


def test_plugin_config_keys_are_checked_with_did_you_mean(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi"))

    message = _error(tmp_path, f'''
        [strategies.low_rsi]
        class = "{module}:LowRsi"
        oversld = 20
    ''')

    assert "unknown key 'strategies.low_rsi.oversld'" in message
    assert "did you mean 'strategies.low_rsi.oversold'?" in message
    assert message.startswith(str(tmp_path / "bt.toml"))


def test_plugin_config_ranges_are_checked_by_its_post_init(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi"))

    message = _error(tmp_path, f'''
        [strategies.low_rsi]
        class = "{module}:LowRsi"
        oversold = 120
    ''')

    assert "strategies.low_rsi.oversold must be in (0, 100), was 120.0" in message


def test_disabled_plugin_is_never_imported(tmp_path):
    config = _config(tmp_path, '''
        [strategies.momentum]
        [strategies.ghost]
        class = "no_such_module_anywhere:Ghost"
        enabled = false
    ''')

    assert [s.name for s in config.strategies] == ["momentum"]


def test_strategy_named_like_a_built_in_is_refused(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="momentum"))

    message = _error(tmp_path, f'''
        [strategies.momentum]
        class = "{module}:LowRsi"
    ''')

    assert f"{module}:LowRsi is named 'momentum' like bt's built-in strategy" in message
    assert STRATEGY_REGISTRY["momentum"].__module__ == "strategies.momentum"


# ---------------------------------------------------------------- providers


def test_provider_by_class_builds_votes_and_round_trips_through_config_toml(tmp_path,
                                                                            monkeypatch):
    # Arrange
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE)
    config = _config(tmp_path, f'''
        [strategies.momentum]
        [providers.always_long]
        class = "{module}:Constant"
        direction = 1
    ''')
    bars = random_bars(300)
    context = MarketContext(bars, np.zeros((300, 3, 12)), np.zeros((300, 3), np.int8))
    candidates = Candidates(np.array([10, 11, 12]), np.array([0, 1, 2], np.int32))

    # Act
    provider = build_provider(config.providers[0], cache_dir=tmp_path)
    votes = provider.vote(context, candidates)
    resolved = tmp_path / "runs" / "r1"
    resolved.mkdir(parents=True)
    (resolved / "config.toml").write_text(dump_toml(config.to_dict()))
    reloaded = load_config(resolved / "config.toml")

    # Assert
    assert provider.name == "always_long"
    assert provider.prepare(context, 100, 200) == {"prepared": 100.0}
    assert votes.vote.tolist() == [1, 1, 1] and votes.vote.dtype == np.int8
    table = config.to_dict()["providers"]["always_long"]
    assert table["class"] == f"{module}:Constant" and "kind" not in table
    assert reloaded.providers == config.providers
    assert reloaded.decision_hash() == config.decision_hash()


def test_class_path_is_part_of_the_decision_hash(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE)
    table = "[strategies.momentum]\n[providers.p]\nclass = \"{}\"\n"

    constant = _config(tmp_path, table.format(f"{module}:Constant"), "a.toml")
    other = _config(tmp_path, table.format(f"{module}:Other"), "b.toml")

    assert constant.decision_hash() != other.decision_hash()


def test_a_provider_vote_of_the_wrong_shape_is_one_line_naming_it(tmp_path, monkeypatch):
    # Arrange: a full run on random bars, the provider returning one vote too many
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE)
    config = load_config(None, {
        "run.out_dir": str(tmp_path / "runs"), "memory.mode": "off", "run.chunk": "all",
        "memory.dir": str(tmp_path / "memory"), "run.year": None,
        "run.start": "2025-01-01", "run.end": "2025-01-15",
        "providers.broken.class": f"{module}:Constant", "providers.broken.extra": 1,
    })
    from backtester.runner import run_backtest

    bars = random_bars(3000)
    first = int(np.searchsorted(bars.times, np.datetime64("2025-01-01", "ns").astype(np.int64)))

    # Act
    with pytest.raises(ProviderError) as raised:
        run_backtest(config, bars=bars, first=first, write=False)

    # Assert
    message = str(raised.value)
    found = re.fullmatch(rf"provider 'broken' \({module}:Constant\): vote returned (\d+) "
                         rf"votes for (\d+) candidates; return one per candidate", message)
    assert found is not None, message
    assert int(found[1]) == int(found[2]) + 1


@pytest.mark.parametrize(("votes", "expected"), [
    ("Votes(np.array([2, 0, 0], np.int8), np.zeros(3))", "votes must be -1, 0 or +1, were [0, 2]"),
    ("Votes(np.zeros(3, np.int8), np.full(3, 1.5))", "confidence must be finite and in [0, 1]"),
    ("[1, 0, 1]", "vote returned list; return backtester.providers.base.Votes"),
    ("Votes(np.zeros(3, np.int8), np.zeros(2))", "vote returned 2 confidences for 3 candidates"),
])
def test_bad_votes_are_one_line_naming_the_provider(tmp_path, monkeypatch, votes, expected):
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE.replace(
        "return Votes(np.full(n, self.config.direction, np.int8), np.full(n, 0.5))",
        f"return {votes}"))
    config = _config(tmp_path, _provider_table(f"{module}:Constant"))
    provider = build_provider(config.providers[0], cache_dir=tmp_path)
    candidates = Candidates(np.array([1, 2, 3]), np.zeros(3, np.int32))

    with pytest.raises(ProviderError) as raised:
        provider.vote(None, candidates)

    assert str(raised.value).startswith(f"provider 'p' ({module}:Constant): {expected}")
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- bad plugins, one line each

BAD_MODULE = '''
from dataclasses import dataclass

import numpy as np
from strategies import Strategy, StrategyConfig


class NotAStrategy:
    name = "x"

    def vote(self, context, candidates, similar=None):
        return None


class Abstract(Strategy):
    name = "abstract"
    config_class = StrategyConfig


class PlainConfig:
    name = "plain"


class NoDataclass(Strategy):
    name = "plain"
    config_class = PlainConfig

    def signals(self, context):
        return None


@dataclass(frozen=True)
class NamelessConfig:
    threshold: float = 0.5


class Nameless:
    config_class = NamelessConfig

    def __init__(self, config):
        self.name = "nameless"

    def prepare(self, context, start, stop):
        return {}

    def vote(self, context, candidates, similar=None):
        return None

    def report(self):
        return {}


class NoConstructorArgument(Nameless):
    config_class = None

    def __init__(self):
        pass


helper = 3
'''


@pytest.mark.parametrize(("table", "spec", "expected"), [
    ("strategies.x", "no_such_module_xyz:Thing",
     "strategies.x.class: module 'no_such_module_xyz' not found on sys.path"),
    ("strategies.x", "{m}:NotAStrategie",
     "strategies.x.class: {m}:NotAStrategie: '{m}' has no attribute 'NotAStrategie'; "
     "did you mean 'NotAStrategy'?"),
    ("strategies.x", "{m}:helper", "strategies.x.class: {m}:helper is a int, not a class"),
    ("strategies.x", "{m}:NotAStrategy",
     "strategies.x.class: {m}:NotAStrategy is not a strategy: it has no propose, prepare, "
     "report method"),
    ("strategies.abstract", "{m}:Abstract",
     "strategies.abstract.class: {m}:Abstract is abstract; define signals"),
    ("strategies.plain", "{m}:NoDataclass",
     "strategies.plain.class: {m}:NoDataclass.config_class is <class"),
    ("providers.x", "{m}:Nameless",
     "providers.x.class: {m}:Nameless.config_class NamelessConfig has no 'name' field"),
    ("providers.x", "{m}:NotAStrategy",
     "providers.x.class: {m}:NotAStrategy is not a provider: it has no prepare, report method"),
    ("providers.x", "{m}", "providers.x.class must be 'module:Class' or 'path/to/file.py:Class'"),
    ("providers.x", "missing.py:Thing", "providers.x.class: file "),
])
def test_each_bad_plugin_is_one_config_error_line_naming_it(tmp_path, monkeypatch, table,
                                                           spec, expected):
    module = _module(tmp_path, monkeypatch, BAD_MODULE)
    strategies = "" if table.startswith("strategies") else "[strategies.momentum]\n"

    message = _error(tmp_path, f'{strategies}[{table}]\nclass = "{spec.format(m=module)}"\n')

    assert expected.format(m=module) in message


def test_a_plugin_module_that_fails_to_import_is_one_line(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, "import numpy\nraise RuntimeError('no GPU\\nhere')\n")

    message = _error(tmp_path, f'[strategies.x]\nclass = "{module}:Thing"\n')

    assert (f"strategies.x.class: importing '{module}' failed (RuntimeError: no GPU here); "
            f"fix the module") in message


def test_a_strategy_table_must_carry_the_class_name(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi"))

    message = _error(tmp_path, f'[strategies.rsi]\nclass = "{module}:LowRsi"\n')

    assert f"{module}:LowRsi is named 'low_rsi'; name the table [strategies.low_rsi]" in message


def test_a_provider_constructor_that_raises_is_one_line(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE.replace(
        "self.config = config\n", "self.config = config\n        raise ValueError('no key')\n"))
    config = _config(tmp_path, _provider_table(f"{module}:Constant"))

    with pytest.raises(ProviderError) as raised:
        build_provider(config.providers[0], cache_dir=tmp_path)

    assert str(raised.value) == (f"provider 'p' ({module}:Constant): constructor failed "
                                 f"(ValueError: no key)")


# ---------------------------------------------------------------- entry points


def _entry_points(monkeypatch, *points: EntryPoint) -> list[str]:
    loaded: list[str] = []

    class Recording(EntryPoint):
        def load(self):
            loaded.append(self.name)
            return super().load()

    installed = [Recording(p.name, p.value, p.group) for p in points]
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [p for p in installed if p.group == group])
    return loaded


def test_entry_point_strategy_is_found_by_its_table_name(tmp_path, monkeypatch):
    # Arrange
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi"))
    loaded = _entry_points(monkeypatch,
                           EntryPoint("low_rsi", f"{module}:LowRsi", "bt.strategies"))

    # Act
    config = _config(tmp_path, "[strategies.low_rsi]\noversold = 20\n")

    # Assert: loaded once it was named; the resolved config keeps the name, no class key
    assert loaded == ["low_rsi"]
    assert config.strategies[0].oversold == 20.0
    assert config.to_dict()["strategies"]["low_rsi"] == {"enabled": True, "oversold": 20.0}
    assert STRATEGY_REGISTRY["low_rsi"].name == "low_rsi"


def test_entry_point_provider_module_registers_a_kind(tmp_path, monkeypatch):
    # Arrange: a module with KIND, CONFIG_CLASS and PROVIDER_CLASS
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE + textwrap.dedent('''
        KIND = "constant"
        CONFIG_CLASS = ConstantConfig
        PROVIDER_CLASS = Constant
        TRANSPORT_FIELDS = ("extra",)
    '''))
    loaded = _entry_points(monkeypatch, EntryPoint("constant", module, "bt.providers"))

    # Act
    config = _config(tmp_path, '''
        [strategies.momentum]
        [providers.c]
        kind = "constant"
        direction = -1
    ''')
    provider = build_provider(config.providers[0], cache_dir=tmp_path)

    # Assert
    assert loaded == ["constant"]
    assert "constant" in provider_kinds()
    assert config.to_dict()["providers"]["c"]["kind"] == "constant"
    assert provider.name == "c" and provider.config.direction == -1
    # a TRANSPORT_FIELDS key of the kind changes no decision
    assert config.decision_hash() == load_config(
        tmp_path / "bt.toml", {"providers.c.extra": 5,
                               "memory.embedder": "hashing"}).decision_hash()


def test_an_unknown_kind_lists_the_entry_point_kinds_without_importing_them(tmp_path,
                                                                            monkeypatch):
    loaded = _entry_points(monkeypatch,
                           EntryPoint("constant", "never_imported_xyz", "bt.providers"))

    message = _error(tmp_path, '[strategies.momentum]\n[providers.c]\nkind = "constnt"\n')

    assert "providers.c.kind must be one of " in message and "constant" in message
    assert loaded == []


def test_entry_point_named_like_a_built_in_is_never_loaded(tmp_path, monkeypatch):
    loaded = _entry_points(monkeypatch,
                           EntryPoint("momentum", "never_imported_xyz:X", "bt.strategies"),
                           EntryPoint("gbm", "never_imported_xyz", "bt.providers"))

    config = _config(tmp_path, '[strategies.momentum]\n[providers.g]\nkind = "gbm"\n')

    assert loaded == []
    assert STRATEGY_REGISTRY["momentum"].__module__ == "strategies.momentum"
    assert type(config.providers[0]).__name__ == "GradientBoostingProviderConfig"


def test_a_broken_entry_point_is_one_line_naming_it(tmp_path, monkeypatch):
    _entry_points(monkeypatch, EntryPoint("fancy", "not_installed_xyz:Fancy", "bt.strategies"))

    message = _error(tmp_path, "[strategies.fancy]\n")

    assert ("entry point bt.strategies 'fancy' (not_installed_xyz:Fancy): import failed "
            "(ModuleNotFoundError: No module named 'not_installed_xyz')") in message


def test_disabled_entry_point_is_never_loaded(tmp_path, monkeypatch):
    loaded = _entry_points(monkeypatch,
                           EntryPoint("fancy", "never_imported_xyz:X", "bt.strategies"),
                           EntryPoint("remote", "never_imported_xyz", "bt.providers"))

    config = _config(tmp_path, '''
        [strategies.momentum]
        [strategies.fancy]
        enabled = false
        [providers.r]
        kind = "remote"
        enabled = false
    ''')

    assert loaded == [] and config.providers == ()


def test_no_imports_refuses_a_class_key_in_a_folder_read_only(tmp_path, monkeypatch):
    # Arrange: a run folder from someone else naming a file of code
    module = _module(tmp_path, monkeypatch, "raise SystemExit('imported')\n")

    # Act
    with plugins.no_imports("open it with bt.configure(path) to run its classes"):
        message = _error(tmp_path, f'[strategies.x]\nclass = "{module}:X"\n')

    # Assert
    assert message.endswith(f"strategies.x.class: {module}:X is not imported here; open it "
                            f"with bt.configure(path) to run its classes")


def test_a_strategy_proposal_of_the_wrong_shape_is_one_line_naming_it(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, STRATEGY_SOURCE.format(name="low_rsi") + '''

class Sloppy(LowRsi):
    def propose(self, context, start, stop):
        return np.zeros((stop - start, 1), dtype=bool)  # one asset, whatever the market
''')
    config = _config(tmp_path, f'[strategies.low_rsi]\nclass = "{module}:Sloppy"\n')
    strategy = STRATEGY_REGISTRY["low_rsi"](config.strategies[0])
    bars = random_bars(300)
    context = MarketContext(bars, np.zeros((300, 3, 12)), np.zeros((300, 3), np.int8))

    with pytest.raises(ProviderError) as raised:
        strategy.propose(context, 100, 200)

    assert str(raised.value) == (f"strategy 'low_rsi' ({module}:Sloppy): propose returned "
                                 f"shape (100, 1) for 100 bars x 3 assets; return a bool "
                                 f"array of that shape")


def test_a_provider_reusing_a_built_in_config_class_is_refused(tmp_path, monkeypatch):
    module = _module(tmp_path, monkeypatch, PROVIDER_SOURCE + textwrap.dedent('''
        from backtester.providers.ml import GradientBoostingProviderConfig

        class Borrowing(Constant):
            config_class = GradientBoostingProviderConfig
    '''))

    message = _error(tmp_path, _provider_table(f"{module}:Borrowing"))

    assert (f"providers.p.class: {module}:Borrowing uses bt's own "
            f"GradientBoostingProviderConfig; give it its own config class") in message
