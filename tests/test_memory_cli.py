"""The memory as a user meets it: runs that continue it, `bt memory` commands, bad input."""

from __future__ import annotations


import orjson
import pytest
from typer.testing import CliRunner

from kit import write_config

from backtester.cli import app
from backtester.memory.io import FolderLock

runner = CliRunner()


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A fresh folder with a config using the hashing embedder (fast) and a local cache."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "bt.toml", memory__embedder="hashing",
                 data__cache_dir=str(tmp_path / "cache"))
    return tmp_path


def _run(*args: str):
    return runner.invoke(app, ["run", "--config", "bt.toml", "--timeframe", "1h", "--chunk",
                               "month", *args])


def _inspect() -> dict:
    result = runner.invoke(app, ["memory", "inspect", "--json", "--config", "bt.toml"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)


def test_a_second_period_continues_the_memory_and_inspect_shows_the_learning(workdir):
    first = _run("--start", "2025-01-01", "--end", "2025-03-01")
    assert first.exit_code == 0, first.output
    after_first = _inspect()
    assert after_first["chunks_committed"] == 2
    second = _run("--start", "2025-03-01", "--end", "2025-04-01")
    assert second.exit_code == 0, second.output
    data = _inspect()
    # Assert: the memory grew and kept learning across runs
    assert data["chunks_committed"] == 3
    assert [s["chunk"] for s in data["snapshots"]] == ["2025-01", "2025-02", "2025-03"]
    outcomes = sum(c["outcomes"] for c in data["outcomes_per_chunk"])
    assert outcomes == data["files"]["outcome"] == data["vectors"]["rows"] > 0
    providers = data["providers"]
    assert set(providers) == {"breakout", "mean_reversion", "momentum"}
    assert all(len(p["weight_history"]) == 3 for p in providers.values())
    # chunk one trades with equal weights; later chunks with learned ones
    first_weights = data["snapshots"][0]["weights"]["overall"]
    assert len({round(w, 12) for w in first_weights.values()}) == 1
    assert data["snapshots"][2]["weights"]["overall"] != first_weights
    assert set(data["regimes"]) <= {"RANGING", "TRENDING", "VOLATILE"} and data["regimes"]
    # the human view renders the same
    text = runner.invoke(app, ["memory", "inspect", "--config", "bt.toml"])
    assert text.exit_code == 0 and "regime x provider" in text.output


def test_a_period_already_learned_is_refused_fresh_starts_over(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    again = _run("--start", "2025-01-01", "--end", "2025-02-01")
    assert again.exit_code == 1 and "own future" in again.output, again.output
    fresh = _run("--start", "2025-01-01", "--end", "2025-02-01", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    backups = list(workdir.joinpath("data").glob("memory.bak-*"))
    assert len(backups) == 1 and (backups[0] / "manifest.json").exists()


def test_no_memory_writes_nothing(workdir):
    result = _run("--start", "2025-01-01", "--end", "2025-02-01", "--no-memory")
    assert result.exit_code == 0, result.output
    assert not (workdir / "data" / "memory").exists()


def test_a_locked_folder_is_refused_naming_the_holder(workdir):
    folder = workdir / "data" / "memory"
    folder.mkdir(parents=True)
    with FolderLock(folder):
        result = _run("--start", "2025-01-01", "--end", "2025-02-01")
    assert result.exit_code == 1
    assert "in use by pid" in result.output and "--memory-dir" in result.output


def test_search_finds_described_situations(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    result = runner.invoke(app, ["memory", "search", "closed by stop loss in a volatile market",
                                 "-k", "3", "--json", "--config", "bt.toml"])
    assert result.exit_code == 0, result.output
    hits = orjson.loads(result.output)
    assert len(hits) == 3
    assert hits[0]["similarity"] >= hits[1]["similarity"] >= hits[2]["similarity"]
    assert "stop loss" in hits[0]["description"]


def test_corrupt_files_give_one_line_and_doctor_repairs_without_deleting(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-03-01").exit_code == 0
    folder = workdir / "data" / "memory"
    before = {p.name for p in folder.rglob("*") if p.is_file()}
    states = folder / "vectors" / "states.faiss"
    states.write_bytes(states.read_bytes()[:100])  # truncated
    outcome = next(folder.glob("outcome_*.json"))
    outcome.write_text("{ not json")
    broken = _run("--start", "2025-03-01", "--end", "2025-04-01")
    assert broken.exit_code == 1
    assert "states.faiss" in broken.output and "bt memory doctor" in broken.output
    assert len(broken.output.strip().splitlines()) == 1, broken.output
    repaired = runner.invoke(app, ["memory", "doctor", "--config", "bt.toml"])
    assert repaired.exit_code == 0, repaired.output
    assert f"quarantined {outcome.name}" in repaired.output
    assert (folder / "quarantine" / outcome.name).read_text() == "{ not json"
    after = {p.name for p in folder.rglob("*") if p.is_file()}
    assert before <= after  # nothing deleted: the bad outcome is kept in quarantine
    assert _run("--start", "2025-03-01", "--end", "2025-04-01").exit_code == 0


def test_a_corrupt_stats_file_is_restored_from_the_last_snapshot_with_a_warning(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-03-01").exit_code == 0
    folder = workdir / "data" / "memory"
    stats = folder / "provider_performance.json"
    good = orjson.loads(stats.read_bytes())
    stats.write_text(stats.read_text()[:50])  # truncated
    result = _run("--start", "2025-03-01", "--end", "2025-04-01")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "provider_performance.json" in result.output
    assert "restored from snapshot_" in result.output
    repaired = orjson.loads(stats.read_bytes())
    assert repaired["generation"] == good["generation"] + 1  # and the run went on learning


def test_another_config_is_refused(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    other = runner.invoke(app, ["run", "--config", "bt.toml", "--timeframe", "4h", "--start",
                                "2025-02-01", "--end", "2025-03-01"])
    assert other.exit_code == 1 and "another config" in other.output, other.output


def test_reset_asks_and_keeps_a_backup(workdir):
    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    declined = runner.invoke(app, ["memory", "reset", "--config", "bt.toml"], input="n\n")
    assert declined.exit_code == 1 and (workdir / "data" / "memory").exists()
    done = runner.invoke(app, ["memory", "reset", "--yes", "--config", "bt.toml"])
    assert done.exit_code == 0, done.output
    assert not (workdir / "data" / "memory").exists()
    backup = next(workdir.joinpath("data").glob("memory.bak-*"))
    assert (backup / "manifest.json").exists() and list(backup.glob("outcome_*.json"))
    assert orjson.loads(runner.invoke(app, ["memory", "inspect", "--json", "--config",
                                            "bt.toml"]).output)["empty"]
