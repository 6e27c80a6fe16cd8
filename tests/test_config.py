"""Config loading: defaults, overrides, unknown keys, ranges, hash."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from backtester.config import Config, dump_toml, load_config
from backtester.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "default.toml"


def test_default_toml_equals_dataclass_defaults():
    # configs/default.toml documents exactly the built-in defaults
    assert load_config(DEFAULT) == _defaults_only()


def _defaults_only() -> Config:
    from backtester.config import _build_config
    from strategies import STRATEGY_REGISTRY

    return _build_config({}, STRATEGY_REGISTRY)


def test_cli_override_beats_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nyear = 2024\nchunk = "month"\n')
    config = load_config(path, {"run.year": 2026, "run.chunk": None})
    assert config.run.year == 2026
    assert config.run.chunk == "month"  # None override leaves the file's value


def test_unknown_key_suggests_nearest(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[execution]\ncomission = 0.001\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "execution.comission" in message
    assert "did you mean 'execution.commission'" in message
    assert "\n" not in message


def test_unknown_section_and_strategy_suggest_nearest(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[executon]\nslippage = 0.0\n")
    with pytest.raises(ConfigError, match=r"did you mean '\[execution\]'"):
        load_config(path)
    path.write_text("[strategies.momentun]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"did you mean '\[strategies.momentum\]'"):
        load_config(path)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[execution]\nposition_size = 1.5", "execution.position_size must be in (0, 1], was 1.5"),
        ("[execution]\ncommission = -0.1", "execution.commission must be in [0, 0.1), was -0.1"),
        ('[run]\nchunk = "fortnight"', "run.chunk must be one of"),
        ('[run]\nyear = "2025"', "run.year must be an integer, was '2025'"),
        ("[strategies.breakout]\nlookback = 1", "strategies.breakout.lookback must be >= 2, was 1"),
        ("[regime]\nvolatile_percentile = 1.5", "regime.volatile_percentile"),
        ('[run]\nstart = "2025-01-01"', "run.start and run.end go together"),
    ],
)
def test_invalid_values_give_one_line_naming_the_field(tmp_path, toml, fragment):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml_and_missing_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[run\nyear = 2025\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_disabled_strategy_is_left_out(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[strategies.breakout]\nenabled = false\n[strategies.momentum]\n")
    config = load_config(path)
    assert [s.name for s in config.strategies] == ["momentum"]


def test_hash_is_stable_and_sensitive():
    a, b = load_config(DEFAULT), load_config(DEFAULT)
    assert a.hash() == b.hash() and len(a.hash()) == 64
    c = load_config(DEFAULT, {"execution.commission": 0.001})
    assert c.hash() != a.hash()
    # where results are written does not change what is decided
    d = load_config(DEFAULT, {"run.out_dir": "elsewhere"})
    assert d.hash() != a.hash() and d.decision_hash() == a.decision_hash()


def test_dump_toml_round_trips():
    config = load_config(DEFAULT, {"data.symbols": ["BTCUSD"], "run.chunk": "month"})
    text = dump_toml(config.to_dict())
    assert tomllib.loads(text) == _drop_none(config.to_dict())


def _drop_none(d):
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}
