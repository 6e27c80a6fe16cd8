"""Type checks shared by the config classes' range checks and the statistics' argument
checks (bool is not a number here)."""

from __future__ import annotations

import numbers


def is_integer(value: object) -> bool:
    """An int (or numpy integer), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (int, float, numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_integer(name: str, value: object, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``minimum`` (a caller's bug)."""
    if not (is_integer(value) and value >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, was {value!r}")
