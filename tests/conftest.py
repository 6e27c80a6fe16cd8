"""Fixtures shared by the test folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """Run commands from a fresh folder that holds only the project's configs."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.toml").write_text(
        (ROOT / "configs" / "default.toml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path
