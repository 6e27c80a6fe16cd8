"""Walk-forward selection on hand-made trials whose answers are worked out in the comments."""

from __future__ import annotations

import pytest

from backtester.errors import BtError, ConfigError
from backtester.experiments.selection import (
    cumulative,
    select_in_sweep,
    walk_forward_selection,
)


def _trial(trial_id: str, returns: list[float], lme: list[float] | None = None,
           status: str = "ok") -> dict:
    chunks = [{"label": f"c{i}", "total_return": r} for i, r in enumerate(returns)]
    for chunk, value in zip(chunks, lme or []):
        chunk["learned_minus_equal"] = value
    return {"trial_id": trial_id, "status": status, "chunks": chunks}


# Chunk returns of three trials; the cumulative (compounded) return before each chunk:
#   before c1: A 0.10,      B 0.00,   C -0.02      -> A
#   before c2: A 0.045,     B 0.08,   C -0.0102    -> B
#   before c3: A -0.00725,  B 0.1124, C 0.049188   -> B
#   all four:  A 0.012605,  B 0.067904, C 0.1016474 -> C is the in-sample best
SWITCHING = [_trial("A", [0.10, -0.05, -0.05, 0.02]),
             _trial("B", [0.00, 0.08, 0.03, -0.04]),
             _trial("C", [-0.02, 0.01, 0.06, 0.05])]


def test_selection_switches_to_the_best_past_trial_and_compounds_its_next_chunk():
    # Act
    result = walk_forward_selection(SWITCHING)

    # Assert: A for c0 (the first trial, no past), then A, B, B as worked out above
    assert [row["chosen"] for row in result["chunks"]] == ["A", "A", "B", "B"]
    assert result["out_of_sample_returns"] == [0.10, -0.05, 0.03, -0.04]
    assert result["out_of_sample_total"] == pytest.approx(1.10 * 0.95 * 1.03 * 0.96 - 1)
    assert result["out_of_sample_total"] == pytest.approx(0.033296)
    assert result["chunks"][0]["in_sample"] is None
    assert result["chunks"][2]["in_sample"] == pytest.approx(0.08)
    assert result["chunks"][3]["in_sample"] == pytest.approx(0.1124)
    assert result["in_sample_best"]["trial_id"] == "C"
    assert result["in_sample_best"]["total_return"] == pytest.approx(0.1016474)
    assert result["n_trials"] == 3


def test_learned_minus_equal_adds_up_and_the_book_earns_total_return():
    # Arrange: sums of learned - equal before c1: X 0.01, Y 0.0 -> X; before c2: X -0.02,
    # Y 0.01 -> Y; all: X 0.0, Y 0.02 (compounding would give 0.0201) -> Y
    trials = [_trial("X", [0.01, 0.02, 0.03], lme=[0.01, -0.03, 0.02]),
              _trial("Y", [0.05, 0.00, -0.01], lme=[0.0, 0.01, 0.01])]

    # Act
    result = walk_forward_selection(trials, objective="learned_minus_equal")

    # Assert
    assert [row["chosen"] for row in result["chunks"]] == ["X", "X", "Y"]
    assert result["out_of_sample_returns"] == [0.01, 0.02, -0.01]
    assert result["out_of_sample_total"] == pytest.approx(1.01 * 1.02 * 0.99 - 1)
    assert result["in_sample_best"] == {"trial_id": "Y", "objective": pytest.approx(0.02),
                                        "total_return": pytest.approx(1.05 * 0.99 - 1)}


def test_ties_go_to_the_earlier_trial_and_failed_trials_are_left_out():
    # Arrange: P and Q are identical, the failed F would win everything
    trials = [_trial("F", [], status="failed"), _trial("P", [0.01, 0.02]),
              _trial("Q", [0.01, 0.02])]

    # Act
    result = walk_forward_selection(trials)

    # Assert
    assert [row["chosen"] for row in result["chunks"]] == ["P", "P"]
    assert result["n_trials"] == 2
    assert result["in_sample_best"]["trial_id"] == "P"


def test_cumulative_compounds_returns_and_sums_differences():
    assert cumulative([0.1, 0.1], "total_return") == pytest.approx(0.21)
    assert cumulative([0.1, 0.1], "learned_minus_equal") == pytest.approx(0.2)
    assert cumulative([], "total_return") == 0.0


@pytest.mark.parametrize("trials, objective, error, text", [
    (SWITCHING, "sharpe", ConfigError, "must be one of"),
    ([_trial("A", [0.1])], "learned_minus_equal", BtError, "no learned_minus_equal"),
    ([_trial("A", [0.1]), _trial("B", [0.1, 0.2])], "total_return", BtError, "other than"),
    ([_trial("F", [0.1], status="failed")], "total_return", BtError, "at least one"),
])
def test_unusable_input_raises_one_line(trials, objective, error, text):
    with pytest.raises(error, match=text) as caught:
        walk_forward_selection(trials, objective)
    assert "\n" not in str(caught.value)


def test_a_sweep_folder_is_selected_in_its_trial_order(tmp_path):
    # Arrange: the three switching trials as a finished sweep (C unfinished: no result.json)
    from backtester.experiments.spec import SweepSpec
    from backtester.experiments.sweep import SPEC_FILE
    from backtester.experiments.trial import Trial
    from backtester.memory.io import write_json

    trials = tuple(Trial(t["trial_id"], {"ensemble.threshold": 0.1 * i})
                   for i, t in enumerate(SWITCHING))
    spec = SweepSpec(source="grid", config_path=None,
                     grid=(("ensemble.threshold", (0.0, 0.1, 0.2)),), trials=trials)
    write_json(tmp_path / SPEC_FILE, spec.to_dict())
    for trial in SWITCHING[:2]:
        (tmp_path / "trials" / trial["trial_id"]).mkdir(parents=True)
        write_json(tmp_path / "trials" / trial["trial_id"] / "result.json", trial)

    # Act
    result = select_in_sweep(tmp_path)

    # Assert: without C, B leads from c2 on and is the in-sample best (0.067904 > 0.012605)
    assert [row["chosen"] for row in result["chunks"]] == ["A", "A", "B", "B"]
    assert result["in_sample_best"]["trial_id"] == "B"
    assert result["n_trials"] == 2
