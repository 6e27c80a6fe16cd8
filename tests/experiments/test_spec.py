"""Sweep specs: grids, explicit trials, seeds and --set flags become an ordered trial list;
a typo fails before anything runs, in one line naming the spec file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from backtester.errors import ConfigError
from backtester.experiments.spec import load_spec, parse_sweep_assignment, spec_from_json

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "configs" / "default.toml")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_grid_seeds_and_trials_expand_in_order_with_sequential_ids(tmp_path):
    # Arrange
    path = _write(tmp_path, f'''
config = "{DEFAULT}"
seeds = [1, 2]
[set]
"run.chunk" = "month"
[grid]
ensemble.learning_rate = [0.05, 0.1]
[[trials]]
"ensemble.method" = "mwu"
[[trials]]
"ensemble.method" = "thompson"
''')
    # Act
    spec = load_spec(path)
    # Assert: explicit trial, then grid (first key slowest), then seed
    assert [t.trial_id for t in spec.trials] == [f"t{i:04d}" for i in range(1, 9)]
    assert [(t.overrides["ensemble.method"], t.overrides["ensemble.learning_rate"],
             t.overrides["data.seed"]) for t in spec.trials] == [
        ("mwu", 0.05, 1), ("mwu", 0.05, 2), ("mwu", 0.1, 1), ("mwu", 0.1, 2),
        ("thompson", 0.05, 1), ("thompson", 0.05, 2), ("thompson", 0.1, 1),
        ("thompson", 0.1, 2)]
    assert all(t.overrides["run.chunk"] == "month" for t in spec.trials)
    assert all(t.config_path == DEFAULT for t in spec.trials)
    assert spec.parameters == ["ensemble.learning_rate", "ensemble.method", "data.seed"]
    assert spec.params(spec.trials[0]) == {"ensemble.learning_rate": 0.05,
                                           "ensemble.method": "mwu", "data.seed": 1}


def test_set_flags_make_grid_dimensions_and_win_over_the_file(tmp_path):
    path = _write(tmp_path, '[grid]\n"ensemble.threshold" = [0.2, 0.3]\n')

    spec = load_spec(path, ["ensemble.learning_rate=0.05,0.1,0.2", "ensemble.threshold=0.25",
                            'data.symbols=["BTCUSD","ETHUSD"]'])

    assert len(spec.trials) == 3  # the flag fixed the threshold: no longer a dimension
    assert [t.overrides["ensemble.learning_rate"] for t in spec.trials] == [0.05, 0.1, 0.2]
    assert {t.overrides["ensemble.threshold"] for t in spec.trials} == {0.25}
    assert spec.trials[0].overrides["data.symbols"] == ["BTCUSD", "ETHUSD"]
    assert spec.parameters == ["ensemble.learning_rate"]


@pytest.mark.parametrize(("text", "expected"), [
    ("ensemble.method=mwu,thompson", ["mwu", "thompson"]),
    ("ensemble.learning_rate=0.05", [0.05]),
    ('data.symbols=["A","B"],["C"]', [["A", "B"], ["C"]]),
    ('run.chunk="a,b",week', ["a,b", "week"]),
    ("monitor.enabled=true,false", [True, False]),
])
def test_sweep_assignment_splits_on_top_level_commas_and_reads_toml_values(text, expected):
    assert parse_sweep_assignment(text)[1] == expected


def test_a_misspelt_key_fails_up_front_in_one_line_naming_the_file_and_the_key(tmp_path):
    path = _write(tmp_path, '[grid]\n"ensemble.learnin_rate" = [0.05, 0.1]\n')

    with pytest.raises(ConfigError) as raised:
        load_spec(path)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: trial t0001: ")
    assert "'ensemble.learnin_rate'" in message and "did you mean 'ensemble.learning_rate'" \
        in message


def test_an_out_of_range_value_in_a_later_trial_names_that_trial():
    with pytest.raises(ConfigError, match=r"^--set: trial t0002: .*ensemble.learning_rate "
                                          r"must be in \[0, 10\], was -1.0$"):
        load_spec(None, ["ensemble.learning_rate=0.1,-1"])


@pytest.mark.parametrize(("body", "match"), [
    ("[gird]\n", "unknown spec key 'gird'; did you mean 'grid'?"),
    ('[grid]\n"ensemble.method" = "mwu"\n', "must be a non-empty list"),
    ('objective = "sharp"\n[grid]\n"ensemble.seed" = [1, 2]\n',
     "objective 'sharp' is not a metric; did you mean 'sharpe'?"),
    ("seeds = 3\n", "'seeds' must be a list"),
    ('[set]\nrun = 1\n', "key 'run' must be a dotted config key"),
])
def test_malformed_specs_fail_in_one_line(tmp_path, body, match):
    path = _write(tmp_path, body)

    with pytest.raises(ConfigError, match=match) as raised:
        load_spec(path)

    assert "\n" not in str(raised.value)


def test_a_spec_of_fixed_overrides_only_is_one_trial(tmp_path):
    spec = load_spec(_write(tmp_path, '[set]\n"ensemble.threshold" = 0.3\n'))

    assert [(t.trial_id, t.overrides) for t in spec.trials] == [
        ("t0001", {"ensemble.threshold": 0.3})]
    assert spec.parameters == []


def test_a_malformed_flag_names_the_whole_flag():
    with pytest.raises(ConfigError, match=r"was 'ensemble.method=mwu,'"):
        load_spec(None, ["ensemble.method=mwu,"])
    with pytest.raises(ConfigError, match=r"was 'x=1,2'"):
        load_spec(None, ["x=1,2"])


def test_spec_json_round_trips_to_the_same_trials():
    spec = load_spec(None, ["ensemble.learning_rate=0.05,0.1", "ensemble.method=mwu,equal"])

    again = spec_from_json(spec.to_dict(), source="spec.json")

    assert again.trials == spec.trials
    assert again.parameters == spec.parameters


def test_a_sweep_spec_from_elsewhere_cannot_name_a_trial_folder_outside_the_sweep(tmp_path):
    from backtester.errors import ConfigError
    from backtester.experiments.trial import Trial

    for bad in ("../outside", "..", "a/b", ""):
        with pytest.raises(ConfigError, match="trial id must be letters"):
            Trial(bad)
