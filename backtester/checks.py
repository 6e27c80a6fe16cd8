"""Type checks shared by the config classes' range checks (bool is not a number here)."""

from __future__ import annotations

import numbers


def is_integer(value: object) -> bool:
    """An int (or numpy integer), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (int, float, numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
