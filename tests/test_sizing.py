"""Position sizing ([sizing]) and the monitor's parameter memory, against hand-computed
sizes: the volatility target from a series of known volatility, the two-outcome Kelly
criterion against its textbook value, and the monitor's steps and bounds."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from kit import make_config

from backtester.config import load_config
from backtester.data.bars import Bars
from backtester.errors import ConfigError
from backtester.monitor import adapt
from backtester.portfolio import per_symbol, session_days
from backtester.providers.base import Candidates, Votes
from backtester.sizing import (
    ALL,
    Sizer,
    bars_per_day,
    kelly_size,
    learn_kelly,
    mix_keys,
    true_range_fraction_1d_nb,
)


def _alternating_bars(n: int, r: float, bar_minutes: int = 60) -> Bars:
    """Closes whose log returns alternate +r, -r: a window of an even number of returns
    has mean 0 and population std exactly r."""
    log_close = np.log(100.0) + np.cumsum(np.where(np.arange(n) % 2 == 0, r, -r))
    close = np.exp(log_close)[:, None]
    times = (pd.Timestamp("2025-01-01", tz="UTC").value
             + np.arange(n, dtype=np.int64) * bar_minutes * 60 * 10**9)
    return Bars(times, ("X",), close.copy(), close * 1.001, close * 0.999, close,
                np.ones_like(close), timeframe=f"{bar_minutes}min")


def test_volatility_target_size_is_target_over_daily_volatility(tmp_path):
    # Arrange: hourly bars (24 per UTC day), bar volatility r = 1%, so the daily
    # volatility is 0.01 * sqrt(24) and a 0.5% target sizes 0.005 / (0.01 * sqrt(24))
    bars = _alternating_bars(24 * 4, 0.01)
    config = make_config(tmp_path, **{"sizing.method": "volatility_target",
                                      "sizing.volatility_target": 0.005,
                                      "sizing.volatility_window": 4})
    sizer = Sizer(config, bars, session_days(bars.times, "UTC"))
    candidates = Candidates(np.array([10, 50], dtype=np.int64), np.zeros(2, dtype=np.int32))
    # Act
    sizes, counts = sizer.fractions(candidates, np.array([0.5, -0.9]), [], {})
    # Assert
    expected = 0.005 / (0.01 * math.sqrt(24))
    np.testing.assert_allclose(sizes, [expected, expected], rtol=1e-9)
    assert sizer.bars_per_day == 24.0 and counts["fixed_fraction_fallback"] == 0


def test_volatility_target_adapted_by_the_monitor_and_capped(tmp_path):
    bars = _alternating_bars(100, 0.001)
    config = make_config(tmp_path, **{"sizing.method": "volatility_target",
                                      "sizing.volatility_target": 0.01,
                                      "sizing.volatility_window": 4,
                                      "sizing.max_fraction": 0.3,
                                      "sizing.confidence_scaling": True})
    sizer = Sizer(config, bars, session_days(bars.times, "UTC"))
    candidates = Candidates(np.array([20], dtype=np.int64), np.zeros(1, dtype=np.int32))
    # 0.01 / (0.001 * sqrt(24)) = 2.04 is capped at 0.3; the monitor's 0.0005 target
    # gives 0.0005 / (0.001 * sqrt(24)) = 0.102, times |score| 0.5 = 0.051
    capped, _ = sizer.fractions(candidates, np.array([1.0]), [], {})
    adapted, _ = sizer.fractions(candidates, np.array([0.5]), [],
                                 {"volatility_target": 0.0005})
    assert capped[0] == 0.3
    np.testing.assert_allclose(adapted[0], 0.0005 / (0.001 * math.sqrt(24)) * 0.5)


def test_kelly_size_matches_the_textbook_even_money_bet():
    # An even-money bet (win +100%, lose -100%) won with p = 0.6: f* = 2p - 1 = 0.2
    tally = {"trades": 10, "wins": 6, "win_return": 6.0, "loss_return": 4.0}
    assert kelly_size(tally, 1.0) == pytest.approx(0.2)
    # wins of +4% and losses of -2%, p = 0.5: f* = 0.5 / 0.02 - 0.5 / 0.04 = 12.5
    tally = {"trades": 4, "wins": 2, "win_return": 0.08, "loss_return": 0.04}
    assert kelly_size(tally, 0.5) == pytest.approx(6.25)
    assert math.isnan(kelly_size({"trades": 3, "wins": 3, "win_return": 0.1,
                                  "loss_return": 0.0}, 1.0))


def test_kelly_tallies_by_mix_regime_and_all_and_the_fallback_order(tmp_path):
    names = ["a", "b"]

    def outcome(regime, votes, direction, r):
        return {"regime": regime, "direction": direction, "return_pct": r,
                "votes": {n: {"vote": v} for n, v in zip(names, votes)}}

    outcomes = ([outcome("TRENDING", (1, 1), 1, 1.0)] * 6
                + [outcome("TRENDING", (1, 1), 1, -1.0)] * 4
                + [outcome("RANGING", (1, -1), 1, -0.5)] * 2)
    parameters = learn_kelly({"size_multiplier": 1.0}, outcomes, names)
    kelly = parameters["kelly"]
    assert kelly["TRENDING|a+b"] == {"trades": 10, "wins": 6, "win_return": 6.0,
                                     "loss_return": 4.0}
    assert kelly["RANGING|a"]["trades"] == 2 and kelly[ALL]["trades"] == 12
    config = make_config(tmp_path, **{"sizing.method": "kelly", "sizing.kelly_fraction": 1.0,
                                      "sizing.kelly_min_trades": 10,
                                      "sizing.max_fraction": 1.0})
    bars = _alternating_bars(50, 0.01)
    sizer = Sizer(config, bars, session_days(bars.times, "UTC"))
    candidates = Candidates(np.arange(3, dtype=np.int64), np.zeros(3, dtype=np.int32))
    keys = ["TRENDING|a+b", "RANGING|a", "VOLATILE|b"]
    sizes, counts = sizer.fractions(candidates, np.ones(3), keys, parameters)
    # the mix (10 trades) gives 0.2; RANGING|a (2) and RANGING (2) are too small, so
    # "all" (6 wins of 12: p = 0.5, w = 1, l = 14/6... ) answers; VOLATILE likewise
    p, w, loss = 6 / 12, 1.0, 5.0 / 6
    assert sizes[0] == pytest.approx(0.2)
    assert sizes[1] == sizes[2] == pytest.approx(max(p / loss - (1 - p) / w, 0.0))
    assert counts["kelly_mix"] == 1 and counts["kelly_all"] == 2


def test_mix_keys_name_the_providers_voting_the_scores_direction():
    votes = [Votes(np.array([1, -1, 1], np.int8), np.ones(3)),
             Votes(np.array([1, 1, 0], np.int8), np.ones(3))]
    keys = mix_keys(["a", "b"], votes, np.array([0.5, 0.4, -0.3]),
                    ["TRENDING", "RANGING", "VOLATILE"])
    assert keys == ["TRENDING|a+b", "RANGING|b", "VOLATILE|-"]


def test_true_range_fraction_by_hand():
    high = np.array([10.0, 11.0, 12.0, 11.5])
    low = np.array([9.0, 10.0, 10.5, 10.0])
    close = np.array([10.0, 10.5, 11.0, 10.0])
    # true ranges from bar 1: max(1, 1, 0) / 10.5, max(1.5, 1.5, 0) / 11, max(1.5, .5, 1) / 10
    out = true_range_fraction_1d_nb(high, low, close, 2)
    assert np.isnan(out[:2]).all()
    np.testing.assert_allclose(out[2], (1 / 10.5 + 1.5 / 11) / 2)
    np.testing.assert_allclose(out[3], (1.5 / 11 + 1.5 / 10) / 2)


def test_session_days_follow_the_data_time_zone():
    times = pd.DatetimeIndex(["2025-03-03 04:30", "2025-03-03 05:30", "2025-03-04 04:59"],
                             tz="UTC").as_unit("ns").asi8
    utc = session_days(times, "UTC")
    new_york = session_days(times, "America/New_York")  # UTC-5: 05:00 UTC is midnight
    assert list(utc - utc[0]) == [0, 0, 1]
    assert list(new_york - new_york[0]) == [0, 1, 1]
    assert bars_per_day(new_york) == 1.5


def test_per_symbol_values_and_their_default():
    assert per_symbol({"B": 0.3, "default": 0.1}, ("A", "B")).tolist() == [0.1, 0.3]
    assert per_symbol(0.05, ("A", "B")).tolist() == [0.05, 0.05]


def test_monitor_steps_threshold_and_volatility_target_within_bounds(tmp_path):
    config = make_config(tmp_path, **{
        "monitor.window": 4, "monitor.min_win_rate": 0.5, "monitor.adapt_threshold": True,
        "monitor.threshold_step": 0.1, "monitor.threshold_max": 0.4,
        "monitor.adapt_volatility_target": True, "monitor.volatility_target_step": 0.5,
        "monitor.volatility_target_min": 0.003, "sizing.method": "volatility_target",
        "sizing.volatility_target": 0.01, "ensemble.threshold": 0.25})
    p = adapt({}, [False, False, True, False], config, "Q1")  # 25% < 50%
    assert (p["threshold"], p["volatility_target"], p["size_multiplier"]) == (0.35, 0.005, 0.5)
    p = adapt(p, [False], config, "Q2")  # still losing: bounded by max / min
    assert (p["threshold"], p["volatility_target"]) == (0.4, 0.003)
    p = adapt(p, [True, True, True], config, "Q3")  # 3 of the last 4: back at 75%
    assert (p["threshold"], p["volatility_target"], p["size_multiplier"]) == (0.3, 0.006, 1.0)
    p = adapt(p, [True], config, "Q4")
    assert (p["threshold"], p["volatility_target"]) == (0.25, 0.01)
    changes = [(h["chunk"], h["parameter"], h["old"], h["new"]) for h in p["history"]]
    assert ("Q2", "volatility_target", 0.005, 0.003) in changes
    assert ("Q4", "threshold", 0.3, 0.25) in changes
    assert all("win rate of the last 4 trades" in h["reason"] for h in p["history"])


def test_realism_sections_refuse_bad_values_in_one_line(tmp_path):
    for key, value, words in (("risk.daily_loss_limit", 1.5, "risk.daily_loss_limit must be"),
                              ("risk.correlation_action", "halve", "scale or refuse"),
                              ("sizing.method", "martingale", "fixed_fraction"),
                              ("costs.borrow_rate", {"X": -0.1}, "costs.borrow_rate.X"),
                              ("features.timeframes", ["fortnightly"],
                               "features.timeframes[0] is not a bar length")):
        with pytest.raises(ConfigError, match=re.escape(words)) as caught:
            make_config(tmp_path, **{key: value})
        assert "\n" not in str(caught.value)


def test_sections_at_their_defaults_leave_the_config_hash_as_before(tmp_path):
    # The decision hash of a config that never names [risk], [sizing], [costs] or
    # [features] (or the newer monitor and data keys) is the one bt computed before they
    # existed (995ca10d for configs/default.toml): the same canonical JSON
    # without them (so existing memory folders and decision ids stay valid).
    import hashlib

    import orjson

    config = make_config(tmp_path)
    data = config.to_dict()
    for section in ("risk", "sizing", "costs", "features"):
        data.pop(section)
    for key in ("adapt_threshold", "threshold_step", "threshold_max",
                "adapt_volatility_target", "volatility_target_step", "volatility_target_min"):
        data["monitor"].pop(key)
    for key in ("on_duplicate", "max_rows"):
        data["data"].pop(key)
    expected = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert config.hash() == expected
    assert load_config().decision_hash()[:8] == "995ca10d"  # the published default
    assert make_config(tmp_path, **{"risk.max_drawdown": 0.1}).hash() != expected
