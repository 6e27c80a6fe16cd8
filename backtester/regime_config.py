"""The regime section's config, apart from the numba kernels of ``backtester.regime`` so
that loading a config imports neither numba nor pandas (``regime.RegimeConfig`` is this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backtester.checks import is_integer, is_real
from backtester.errors import ConfigError


# Regime codes (int8 in the arrays) and their names; the kernels that label bars are in
# regime.py, which re-exports these.
RANGING = 0
TRENDING = 1
VOLATILE = 2
UNKNOWN = -1  # during warm-up

REGIME_NAMES = {
    RANGING: "RANGING",
    TRENDING: "TRENDING",
    VOLATILE: "VOLATILE",
    UNKNOWN: "UNKNOWN",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RegimeConfig:
    """Windows (in bars) and thresholds of the regime labels.

    Parameters
    ----------
    trend_window : int, default 48
        Bars of the efficiency ratio, at least 1.
    volatility_window : int, default 48
        Log returns in the rolling volatility, at least 2.
    percentile_window : int or str, default 2000
        Trailing volatility values (current included) the percentile ranks against:
        bars (at least 2) or a duration of bars ("90d", "12w", "500h"). Before that many
        exist it ranks against all of them, from MIN_PERCENTILE_VALUES on.
    volatile_percentile : float, default 0.85
        Percentile in (0, 1] at or above which a bar is VOLATILE.
    trend_threshold : float, default 0.35
        Efficiency ratio in [0, 1] at or above which a bar is TRENDING.
    """

    trend_window: int = 48
    volatility_window: int = 48
    percentile_window: int | str = 2000
    volatile_percentile: float = 0.85
    trend_threshold: float = 0.35

    def __post_init__(self) -> None:
        windows = (("trend_window", 1), ("volatility_window", 2), ("percentile_window", 2))
        for name, minimum in windows:
            value = getattr(self, name)
            if name == "percentile_window" and isinstance(value, str):
                _duration(value)
                continue
            if not (is_integer(value) and value >= minimum):
                raise ConfigError(
                    f"{name} must be a whole number of bars >= {minimum}, "
                    f"was {value!r}; set it to an integer such as 48"
                )
        value = self.volatile_percentile
        if not (is_real(value) and 0.0 < value <= 1.0):
            raise ConfigError(
                f"volatile_percentile must be a fraction in (0, 1], was {value!r}; "
                "set it to a value such as 0.85"
            )
        value = self.trend_threshold
        if not (is_real(value) and 0.0 <= value <= 1.0):
            raise ConfigError(
                f"trend_threshold must be an efficiency ratio in [0, 1], "
                f"was {value!r}; set it to a value such as 0.35"
            )


def _duration(text: str) -> Any:
    """The pd.Timedelta of a duration such as "90d" (pandas imported only for one)."""
    from backtester.data.resample import parse_timeframe

    try:
        return parse_timeframe(text.strip())
    except ConfigError:
        raise ConfigError(
            f"percentile_window must be a whole number of bars >= 2 or a duration, was "
            f"{text!r}; set it to an integer such as 2000 or a duration such as \"90d\""
        ) from None
