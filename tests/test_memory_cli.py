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
    outcome = next(folder.glob("outcome_*.json"))  # one the memory vote searches
    outcome.write_text("{ not json")
    broken = _run("--start", "2025-03-01", "--end", "2025-04-01")
    assert broken.exit_code == 1
    assert outcome.name in broken.output and "bt memory doctor" in broken.output
    assert len(broken.output.strip().splitlines()) == 1, broken.output
    states = folder / "vectors" / "states.faiss"
    states.write_bytes(states.read_bytes()[:100])  # truncated
    broken = _run("--start", "2025-03-01", "--end", "2025-04-01")
    # the first bad file found is named (the vector files are verified before the
    # outcomes they search)
    assert broken.exit_code == 1 and "states.faiss" in broken.output, broken.output
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


# -- a damaged folder, end to end ----------------------------------------------------------


def _one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def test_a_garbage_vector_index_is_refused_naming_the_doctor_which_repairs_it(workdir):
    folder = workdir / "mem"
    first = _run("--start", "2025-01-01", "--end", "2025-02-01", "--memory-dir", str(folder))
    assert first.exit_code == 0, first.output
    (folder / "vectors" / "index.json").write_bytes(b"\x00garbage, not an index {")
    later = ("--start", "2025-02-01", "--end", "2025-03-01", "--memory-dir", str(folder))
    refused = _run(*later)
    assert refused.exit_code == 1
    line = _one_line_error(refused.output)
    assert "index.json" in line and f"bt memory doctor --memory-dir {folder}" in line
    repaired = runner.invoke(app, ["memory", "doctor", "--memory-dir", str(folder),
                                   "--config", "bt.toml"])
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt vectors" in repaired.output and "not repaired" not in repaired.output
    assert "index.json: its bytes differ" in " ".join(repaired.output.split())
    assert orjson.loads((folder / "vectors" / "index.json").read_bytes())["rows"]
    again = _run(*later)
    assert again.exit_code == 0, again.output


def test_doctor_exits_1_when_it_cannot_repair_and_0_when_it_repaired(workdir):
    folder = workdir / "data" / "memory"
    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    stats = folder / "regime_performance.json"
    stats.write_bytes(stats.read_bytes()[:40])  # truncated: rebuilt from the snapshot
    repaired = runner.invoke(app, ["memory", "doctor", "--config", "bt.toml"])
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt regime_performance.json" in repaired.output
    ok = runner.invoke(app, ["memory", "doctor", "--config", "bt.toml"])
    assert ok.exit_code == 0 and "ok" in ok.output, ok.output
    next(folder.glob("snapshot_*.json")).unlink()  # a committed chunk's snapshot: lost
    broken = runner.invoke(app, ["memory", "doctor", "--config", "bt.toml"])
    assert broken.exit_code == 1, broken.output
    assert "not repaired" in broken.output and "is missing" in broken.output
    as_json = runner.invoke(app, ["memory", "doctor", "--json", "--config", "bt.toml"])
    assert as_json.exit_code == 1 and orjson.loads(as_json.output)["unrepaired"]


def test_search_reads_well_at_80_columns(workdir, monkeypatch):
    from backtester.cli.common import console

    assert _run("--start", "2025-01-01", "--end", "2025-02-01").exit_code == 0
    monkeypatch.setattr(console, "_width", 80)
    result = runner.invoke(app, ["memory", "search", "stopped out in a volatile market",
                                 "-k", "3", "--config", "bt.toml"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    assert "…" not in result.output
    # each result's description, indented by 3 under its two header lines
    described = [line for line in lines if line.startswith("   ") and
                 not line.lstrip().startswith("entry ")]
    assert described, result.output
    long = [line for line in described[:-1] if len(line.strip()) > 30]
    assert len(long) >= 0.7 * len(described[:-1]), result.output  # not one word a line


def test_unlock_shows_the_holder_and_force_removes_a_lock_of_another_host(workdir):
    folder = workdir / "mem"
    folder.mkdir()
    args = ["memory", "unlock", "--memory-dir", str(folder)]
    free = runner.invoke(app, args)
    assert free.exit_code == 0 and "not locked" in free.output, free.output
    import socket

    holder = {"pid": 4242, "host": f"other-{socket.gethostname()}",
              "started": "2025-01-01T00:00:00+00:00", "command": "bt run"}
    (folder / ".lock").write_bytes(orjson.dumps(holder))
    shown = runner.invoke(app, args)
    assert shown.exit_code == 1 and (folder / ".lock").exists()
    text = " ".join(shown.output.split())
    assert f"pid 4242 on host other-{socket.gethostname()}" in text
    assert f"bt memory unlock --force --memory-dir {folder}" in text
    refused = _run("--start", "2025-01-01", "--end", "2025-02-01", "--memory-dir", str(folder))
    assert refused.exit_code == 1 and "pid 4242" in refused.output
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and "lock removed" in forced.output, forced.output
    assert not (folder / ".lock").exists()
    ran = _run("--start", "2025-01-01", "--end", "2025-02-01", "--memory-dir", str(folder))
    assert ran.exit_code == 0, ran.output
