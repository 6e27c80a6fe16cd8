"""Fixtures shared by the test folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def market_cache(tmp_path_factory):
    """The generated market cache of this test session, never the user's cache folder."""
    import os

    folder = tmp_path_factory.mktemp("bt-cache")
    previous = os.environ.get("BT_CACHE_DIR")
    os.environ["BT_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("BT_CACHE_DIR", None)
    else:
        os.environ["BT_CACHE_DIR"] = previous


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """Run commands from a fresh folder that holds only the project's configs."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.toml").write_text(
        (ROOT / "configs" / "default.toml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path
