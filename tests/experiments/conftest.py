"""Shared fixtures of the sweep tests: the short period and the 2 x 3 grid run once on
the local engine (session-scoped: test_sweep.py and test_sweep_dask.py compare with it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backtester.experiments.engines import LocalEngine
from backtester.experiments.spec import load_spec
from backtester.experiments.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "configs" / "default.toml")
SHORT = ['run.start="2025-01-01"', 'run.end="2025-02-01"', "data.timeframe=1h",
         "memory.embedder=hashing", "run.chunk=week"]
GRID = ["ensemble.learning_rate=0.05,0.1", "ensemble.method=mwu,thompson,equal"]


@pytest.fixture(scope="session")
def short_set(tmp_path_factory) -> list[str]:
    """The short period's flags, with a market cache of this test session."""
    return [*SHORT, f'data.cache_dir="{tmp_path_factory.mktemp("cache")}"']


@pytest.fixture(scope="session")
def grid_set(short_set) -> list[str]:
    """The --set flags of the 2 x 3 grid over the short period."""
    return [*short_set, *GRID]


@pytest.fixture(scope="session")
def grid_spec(grid_set):
    return load_spec(None, grid_set, config_path=DEFAULT)


@pytest.fixture(scope="session")
def local_sweep(grid_spec, tmp_path_factory):
    """The 2 x 3 grid run once on the local engine (shared by the tests that read it)."""
    return run_sweep(grid_spec, engine=LocalEngine(), out=tmp_path_factory.mktemp("sweeps"),
                     sweep_id="grid")
