"""Every engine rule test runs through the compiled kernel and its pure-Python body."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[True, False], ids=["numba", "python"])
def use_numba(request: pytest.FixtureRequest) -> bool:
    return request.param
