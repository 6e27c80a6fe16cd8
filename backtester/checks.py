"""Type checks shared by the config classes' range checks and the statistics' argument
checks (bool is not a number here)."""

from __future__ import annotations

import numbers
import re

FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # run, sweep and trial ids


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


def is_folder_name(text: object) -> bool:
    """A run, sweep or trial id: letters, digits, ``_ . -``, starting with a letter or digit
    (so never ``.``, ``..`` or a path: a folder from someone else cannot point outside)."""
    return isinstance(text, str) and FOLDER_NAME.fullmatch(text) is not None


def require(condition: bool, key: str, value: object, expected: str) -> None:
    """Raise ConfigError "<key> must be <expected>, was <value>" unless ``condition``."""
    if not condition:
        from backtester.errors import ConfigError

        raise ConfigError(f"{key} must be {expected}, was {value!r}")
