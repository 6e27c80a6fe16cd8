"""Higher-timeframe columns in the LLM prompt, the memory's state vectors and texts, and the
vector index's record of what its states are made of."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pytest

from backtester.errors import MemoryStoreError
from backtester.features import FEATURE_NAMES
from backtester.memory.embedders import HashingEmbedder
from backtester.memory.session import STATE_NAMES, config_state_names, state_vectors
from backtester.memory.texts import describe, index_text, state_names
from backtester.memory.vectors import VectorMemory, rebuild
from backtester.providers.base import Candidates, MarketContext
from backtester.providers.prompts import (
    TEMPLATE_FIELDS,
    PromptTemplate,
    placeholder_fields,
    prompt_fields,
)
from backtester.timeframes import higher_feature_names
from kit import make_config
from llm_kit import make_context

# The {features} text of llm_kit's context as bt wrote it before higher timeframes existed:
# every feature 0.5 except rsi14 = 61, "{:.4g}"-formatted, one "name: value" per line.
TWELVE_LINES = ("sma5: 0.5\nsma20: 0.5\nsma50: 0.5\nrsi14: 61\nmacd: 0.5\nmacd_signal: 0.5\n"
                "macd_hist: 0.5\nbb_position: 0.5\nvolume_ratio: 0.5\nhl_range: 0.5\n"
                "close_position: 0.5\noc_range: 0.5")
NAMES_4H = higher_feature_names(("4h",))


def _with_4h(context: MarketContext) -> MarketContext:
    """llm_kit's context plus a 4h block: 0.25 everywhere, rsi14_4h 44, macd_4h NaN."""
    n, a, _ = context.features.shape
    higher = np.full((n, a, 12), 0.25)
    higher[:, :, FEATURE_NAMES.index("rsi14")] = 44.0
    higher[:, :, FEATURE_NAMES.index("macd")] = np.nan
    return MarketContext(context.bars, np.concatenate([context.features, higher], axis=2),
                         context.regimes, NAMES_4H)


# ------------------------------------------------------------------------------ prompts


def test_without_timeframes_the_features_text_is_the_twelve_lines_as_before():
    fields = prompt_fields(make_context(), 29, 1, None)
    assert fields["features"] == TWELVE_LINES
    assert fields["higher_timeframes"] == "none"
    assert "Higher timeframe" not in placeholder_fields()["features"]


def test_the_default_template_renders_the_same_text_without_the_new_field():
    template = PromptTemplate.load("configs/prompts/default.txt")
    fields = prompt_fields(make_context(), 29, 1, None)
    before = {k: v for k, v in fields.items() if k != "higher_timeframes"}  # the old fields
    assert template.render(fields) == template.render(before)
    assert TWELVE_LINES in template.render(fields)[1]["content"]


def test_with_a_timeframe_features_gain_a_section_after_the_twelve_lines():
    fields = prompt_fields(_with_4h(make_context()), 29, 1, None)
    section = ("Higher timeframe 4h (last closed bar): sma5=0.25, sma20=0.25, sma50=0.25, "
               "rsi14=44, macd=n/a, macd_signal=0.25, macd_hist=0.25, bb_position=0.25, "
               "volume_ratio=0.25, hl_range=0.25, close_position=0.25, oc_range=0.25")
    assert fields["features"] == f"{TWELVE_LINES}\n\n{section}"
    assert fields["higher_timeframes"] == section
    assert fields["rsi14"] == "61"
    custom = PromptTemplate.parse("[user]\n{symbol} {rsi14}\n{higher_timeframes}")
    assert custom.render(fields)[1]["content"] == f"ETHUSD 61\n{section}"
    assert "higher_timeframes" in TEMPLATE_FIELDS


def test_placeholder_fields_show_a_section_per_timeframe():
    fields = placeholder_fields(timeframes=("1h", "1d"))
    assert fields["higher_timeframes"].splitlines()[1].startswith(
        "Higher timeframe 1d (last closed bar): sma5=0.01234, sma20=0.01234, sma50=0.01234, "
        "rsi14=52.3")


# ------------------------------------------------------------------------------ memory


def test_state_vectors_hold_every_feature_column_then_the_regime_one_hot():
    context = make_context()
    candidates = Candidates(np.array([3, 7]), np.array([0, 2], np.int32))
    plain = state_vectors(context, candidates)
    wide = state_vectors(_with_4h(context), candidates)
    assert plain.shape == (2, len(STATE_NAMES)) == (2, 15)
    assert wide.shape == (2, len(state_names(NAMES_4H))) == (2, 27)
    np.testing.assert_array_equal(wide[:, :12], plain[:, :12])
    np.testing.assert_array_equal(wide[:, 24:], plain[:, 12:])  # TRENDING one-hot
    assert wide[0, 12 + FEATURE_NAMES.index("rsi14")] == 44.0
    assert wide[0, 12 + FEATURE_NAMES.index("macd")] == 0.0  # NaN as 0


def test_config_state_names_follow_features_timeframes(tmp_path):
    config = make_config(tmp_path)
    assert config_state_names(config) == STATE_NAMES
    config = replace(config, features=replace(config.features, timeframes=("4h",)))
    assert config_state_names(config) == state_names(NAMES_4H)
    assert config_state_names(config)[-4:] == ("oc_range_4h", "regime_ranging",
                                               "regime_trending", "regime_volatile")


def _row(i: int) -> dict:
    return {"decision_id": i, "symbol": "BTCUSD", "direction": 1, "return_pct": 0.01,
            "pnl": 1.0, "exit_reason": "take_profit", "regime": "TRENDING",
            "entry_time": 1_735_689_600_000_000_000 + i * 3_600_000_000_000,
            "description": f"trade {i}"}


def _save(folder, names: tuple[str, ...] | None, dim: int, n: int = 6) -> None:
    memory = VectorMemory(max_size=100, embedder=HashingEmbedder(), state_names=names)
    if n:
        states = np.random.default_rng(dim).normal(size=(n, dim)).astype(np.float32)
        memory.add(states, [f"trade {i}" for i in range(n)], [_row(i) for i in range(n)], 1)
    memory.save(folder, 1)


def _load(folder, names: tuple[str, ...] | None) -> VectorMemory:
    return VectorMemory.load(folder, committed_generation=1, max_size=100,
                             embedder=HashingEmbedder(), state_names=names)


def _state_embedder(folder) -> dict:
    return orjson.loads((folder / "vectors" / "index.json").read_bytes())["state_embedder"]


def test_an_index_without_timeframes_is_written_as_before_and_refuses_a_run_with_them(tmp_path):
    _save(tmp_path, STATE_NAMES, 15)
    assert _state_embedder(tmp_path) == {"name": "features-v1", "dim": 15}
    assert len(_load(tmp_path, STATE_NAMES)) == 6
    with pytest.raises(MemoryStoreError) as caught:
        _load(tmp_path, state_names(NAMES_4H))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"memory.dir {tmp_path}: ")
    assert "no features.timeframes (15 dimensions)" in message
    assert "features.timeframes = [4h] (27 dimensions)" in message
    assert message.endswith("use a fresh --memory-dir, or the same features.timeframes")


def test_an_index_with_timeframes_records_its_names_and_refuses_other_runs(tmp_path):
    names = state_names(NAMES_4H)
    _save(tmp_path, names, 27)
    assert _state_embedder(tmp_path) == {"name": "features-v2", "dim": 27, "names": list(names)}
    assert len(_load(tmp_path, names)) == 6
    assert len(_load(tmp_path, None)) == 6  # inspect, doctor: no check
    for other in (STATE_NAMES, state_names(higher_feature_names(("1h",)))):
        with pytest.raises(MemoryStoreError, match=r"^memory\.dir .*features\.timeframes = \[4h\]"):
            _load(tmp_path, other)


def test_a_folder_saved_before_names_were_recorded_loads_without_timeframes(tmp_path):
    # Arrange: index.json exactly as bt wrote it before: features-v1, no names
    _save(tmp_path, None, 15)
    assert _state_embedder(tmp_path) == {"name": "features-v1", "dim": 15}
    # Act / Assert
    assert len(_load(tmp_path, STATE_NAMES)) == 6
    with pytest.raises(MemoryStoreError, match="memory.dir"):
        _load(tmp_path, state_names(NAMES_4H))


def test_an_index_without_rows_takes_any_timeframes(tmp_path):
    _save(tmp_path, STATE_NAMES, 15, n=0)
    assert len(_load(tmp_path, state_names(NAMES_4H))) == 0


def test_rebuild_keeps_the_names_the_index_recorded(tmp_path):
    names = state_names(NAMES_4H)
    _save(tmp_path, names, 27)
    outcomes = [{**_row(i), "generation": 1, "state": [0.1] * 27} for i in range(3)]
    rebuild(tmp_path, outcomes, 1, HashingEmbedder())
    assert _state_embedder(tmp_path)["names"] == list(names)
    assert len(_load(tmp_path, names)) == 3


def test_texts_describe_each_higher_timeframe_and_stay_as_before_without():
    state = [0.0] * 12 + [0.0] * 12 + [0.0, 1.0, 0.0]
    state[FEATURE_NAMES.index("rsi14")] = 55.0
    state[12 + FEATURE_NAMES.index("rsi14")] = 71.0
    state[12 + FEATURE_NAMES.index("sma50")] = -0.02
    state[12 + FEATURE_NAMES.index("macd_hist")] = 0.001
    outcome = {**_row(0), "state": state, "bars_held": 4, "regime": "TRENDING"}
    base = {**outcome, "state": state[:12] + state[24:]}
    names = state_names(NAMES_4H)
    assert index_text(outcome, names) == (
        index_text(base) + " 4h: price below its 50-bar average, momentum rising.")
    assert describe(outcome, names) == (
        describe(base) + " 4h: RSI 71, close 2.0% below its 50-bar average, MACD momentum "
        "rising.")
    assert index_text(base) == (
        "BTCUSD long in a trending market, price above its 50-bar average, momentum rising, "
        "RSI neutral; closed by take profit with a gain.")
