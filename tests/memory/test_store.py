"""The memory store: commit, reopen, crash recovery, doctor, reset."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from backtester.errors import MemoryLockedError, MemoryStoreError
from backtester.memory import store as store_module
from backtester.memory.doctor import doctor
from backtester.memory.io import FolderLock
from backtester.memory.store import (
    OUTCOME_KEYS,
    SCHEMA_VERSION,
    MemoryStore,
    backup_aside,
    outcome_tallies,
    reset,
)

HASH = "a" * 64
PROVIDERS = ("momentum", "mean_reversion")
QUARTER_ENDS = ("2025-03-31 23:59", "2025-06-30 23:59", "2025-09-30 23:59")


def make_outcome(decision_id: int, *, generation: int, chunk: str = "2025Q1",
                 entry: str = "2025-01-02T10:00:00+00:00", direction: int = 1,
                 pnl: float = 1.0, votes: dict[str, int] | None = None,
                 regime: str = "TRENDING") -> dict[str, Any]:
    votes = votes if votes is not None else {"momentum": direction, "mean_reversion": -direction}
    return {
        "schema_version": SCHEMA_VERSION, "decision_id": decision_id, "symbol": "BTCUSDT",
        "direction": direction, "entry_time": entry, "exit_time": entry, "entry_price": 100.0,
        "exit_price": 100.0 + pnl, "size": 1.0, "pnl": pnl, "return_pct": pnl / 100.0,
        "fees": 0.1, "exit_reason": "take_profit", "regime": regime, "volatility": 0.02,
        "votes": {name: {"vote": v, "confidence": 0.7} for name, v in votes.items()},
        "ensemble_score": 0.4, "memory_vote": 0.0, "description": "BTCUSDT long",
        "state": [0.1, -0.2, 0.3], "generation": generation, "chunk": chunk,
    }


class Learner:
    """A stand-in for the lead's learning: cumulative counts = the sum of chunk counts,
    trades/wins/losses counted from the outcomes (a provider's vote equal to the
    direction), stats shaped like backtester.ensemble's ({"providers": ...})."""

    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Any]] = {}
        self.regimes: dict[str, dict[str, Any]] = {}

    def chunk(self, index: int, outcomes: list[dict]) -> dict[str, Any]:
        counts = {name: {"votes": 10 * index + i, "hits": 5 * index + i,
                         "shadow_pnl": 0.1 * index - i} for i, name in enumerate(PROVIDERS)}
        regime_counts = {"TRENDING": {name: {"votes": c["votes"], "hits": c["hits"]}
                                      for name, c in counts.items()}}
        for name, c in counts.items():
            row = self.providers.setdefault(
                name, {"votes": 0, "hits": 0, "shadow_pnl": 0.0, "trades": 0, "wins": 0,
                       "losses": 0, "weight": 0.5, "weight_history": []})
            for key, value in c.items():
                row[key] += value
            row["weight"] = 0.5 + 0.01 * index * (1 if name == "momentum" else -1)
            row["weight_history"].append({"chunk": f"Q{index}", "weight": row["weight"]})
        table = self.regimes.setdefault("TRENDING", {"scored": 0, "providers": {}})
        table["scored"] += 7
        for name, c in regime_counts["TRENDING"].items():
            row = table["providers"].setdefault(name, {"votes": 0, "hits": 0, "weight": 0.5})
            for key, value in c.items():
                row[key] += value
        for outcome in outcomes:
            for name, vote in outcome.get("votes", {}).items():
                if vote["vote"] == outcome["direction"]:
                    row = self.providers[name]
                    row["trades"] += 1
                    row["wins" if outcome["pnl"] > 0 else "losses"] += 1
        return {"pnl": sum(o["pnl"] for o in outcomes), "weights": {"momentum": 0.5},
                "chunk_provider_counts": counts, "chunk_regime_counts": regime_counts}


def commit(store: MemoryStore, learner: Learner, index: int, outcomes: list[dict], *,
           run_state: dict | None = None, vectors: Any = None,
           last_bar: str | None = None) -> None:
    snapshot = learner.chunk(index, outcomes)
    store.commit_chunk(
        label=f"2025Q{index}", start=f"2025-0{3 * index - 2}-01", end=f"2025-0{3 * index}-30",
        last_bar_time=pd.Timestamp(last_bar or QUARTER_ENDS[index - 1], tz="UTC"),
        run_id="run-1", outcomes=outcomes,
        provider_stats={"providers": learner.providers},
        regime_stats={"regimes": learner.regimes},
        parameters={"size_multiplier": 1.0 if index < 3 else 0.5,
                    "history": [{"chunk": f"2025Q{index}", "size_multiplier": 0.5}]},
        snapshot=snapshot, run_state=run_state, vectors=vectors,
    )


def chunk_outcomes(index: int, generation: int, count: int = 3) -> list[dict]:
    return [
        make_outcome(1000 * index + i - (5000 if i == 0 else 0), generation=generation,
                     chunk=f"2025Q{index}", entry=f"2025-0{3 * index - 1}-1{i}T00:00:00+00:00",
                     direction=1 if i % 2 == 0 else -1, pnl=[2.0, -1.0, 0.0][i % 3])
        for i in range(count)
    ]


def build_memory(folder: Path, chunks: int = 3) -> tuple[MemoryStore, Learner]:
    store = MemoryStore.open(folder, config_hash=HASH)
    learner = Learner()
    for index in range(1, chunks + 1):
        commit(store, learner, index, chunk_outcomes(index, store.generation + 1),
               run_state={"chunks_done": index})
    return store, learner


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def json_file(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


# -- open, commit, reopen -------------------------------------------------------------------


def test_open_of_missing_folder_is_an_empty_memory_and_writes_nothing(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path / "memory", config_hash=HASH)

    assert store.generation == 0
    assert store.committed_chunks() == []
    assert store.provider_stats() == {} and store.regime_stats() == {}
    assert store.parameters() == {"size_multiplier": 1.0, "history": []}
    assert store.run_state() is None
    assert store.read_outcomes() == []
    assert not (tmp_path / "memory").exists()


def test_commit_then_reopen_gives_the_same_stats_chunks_and_run_state(tmp_path: Path) -> None:
    # Arrange / Act
    store, learner = build_memory(tmp_path, chunks=2)
    reopened = MemoryStore.open(tmp_path, config_hash=HASH)

    # Assert
    assert reopened.generation == store.generation == 2
    assert reopened.provider_stats() == store.provider_stats() == {"providers": learner.providers}
    assert reopened.regime_stats() == {"regimes": learner.regimes}
    assert reopened.parameters()["history"] == [{"chunk": "2025Q2", "size_multiplier": 0.5}]
    assert reopened.committed_chunks() == store.committed_chunks()
    assert reopened.run_state() == {"chunks_done": 2}
    first = reopened.committed_chunks()[0]
    assert first == {"generation": 1, "label": "2025Q1", "start": "2025-01-01",
                     "end": "2025-03-30", "last_bar_time": "2025-03-31T23:59:00+00:00",
                     "run_id": "run-1", "outcomes": 3, "snapshot": "snapshot_20250331_235900.json"}


def test_commit_writes_outcome_files_by_decision_id_and_snapshot_with_full_stats(
    tmp_path: Path,
) -> None:
    store, learner = build_memory(tmp_path, chunks=1)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["manifest.json", "outcome_-4000.json", "outcome_1001.json",
                     "outcome_1002.json", "parameters.json", "provider_performance.json",
                     "regime_performance.json", "snapshot_20250331_235900.json"]
    assert json_file(tmp_path / "outcome_-4000.json") == chunk_outcomes(1, 1)[0]
    snapshot = json_file(tmp_path / "snapshot_20250331_235900.json")
    assert snapshot["generation"] == 1 and snapshot["label"] == "2025Q1"
    assert snapshot["provider_stats"] == {"providers": learner.providers}
    assert snapshot["chunk_provider_counts"]["momentum"] == {"votes": 10, "hits": 5,
                                                            "shadow_pnl": 0.1}
    assert snapshot["config_hash"] == HASH and snapshot["schema_version"] == SCHEMA_VERSION
    for name in ("provider_performance.json", "regime_performance.json", "parameters.json",
                 "manifest.json"):
        document = json_file(tmp_path / name)
        assert document["generation"] == 1 and document["schema_version"] == SCHEMA_VERSION


def test_commit_writes_the_manifest_last_after_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = store_module._write_manifest

    def vectors(folder: Path, generation: int) -> None:
        seen.append(f"vectors {generation}")

    def write_manifest(folder: Path, data: bytes) -> None:
        # everything else of generation 1 is on disk before the manifest
        assert json_file(folder / "provider_performance.json")["generation"] == 1
        assert json_file(folder / "snapshot_20250331_235900.json")["generation"] == 1
        assert (folder / "outcome_1001.json").exists()
        seen.append("manifest")
        real(folder, data)

    monkeypatch.setattr(store_module, "_write_manifest", write_manifest)
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    commit(store, Learner(), 1, chunk_outcomes(1, 1), vectors=vectors)

    assert seen == ["vectors 1", "manifest"]


def test_no_wall_clock_time_in_memory_files(tmp_path: Path) -> None:
    build_memory(tmp_path / "a", chunks=2)
    build_memory(tmp_path / "b", chunks=2)

    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_read_outcomes_sorts_by_entry_time_and_keeps_newest(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    outcomes = [make_outcome(i, generation=1, entry=entry) for i, entry in
                [(7, "2025-02-01T00:00:00+00:00"), (-3, "2025-01-01T00:00:00+00:00"),
                 (5, "2025-03-01T00:00:00+00:00")]]
    commit(store, Learner(), 1, outcomes)

    assert [o["decision_id"] for o in store.read_outcomes()] == [-3, 7, 5]
    assert [o["decision_id"] for o in store.read_outcomes(newest=2)] == [7, 5]
    assert store.read_outcomes(newest=0) == []
    assert len(store.outcome_files()) == 3


def test_finish_run_clears_active_run_on_disk(tmp_path: Path) -> None:
    store, _ = build_memory(tmp_path, chunks=2)
    assert store.run_state() == {"chunks_done": 2}

    store.finish_run()

    assert MemoryStore.open(tmp_path, config_hash=HASH).run_state() is None
    assert json_file(tmp_path / "manifest.json")["active_run"] is None


def test_second_pass_over_same_period_keeps_the_first_snapshot(tmp_path: Path) -> None:
    store, learner = build_memory(tmp_path, chunks=1)
    first = (tmp_path / "snapshot_20250331_235900.json").read_bytes()

    commit(store, learner, 1, chunk_outcomes(1, 2))

    assert (tmp_path / "snapshot_20250331_235900.json").read_bytes() == first
    assert store.committed_chunks()[1]["snapshot"] == "snapshot_20250331_235900_g2.json"
    assert json_file(tmp_path / "snapshot_20250331_235900_g2.json")["generation"] == 2


def test_summary_counts_files_by_kind_and_outcomes_per_chunk(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=2)
    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "index.json").write_bytes(b"{}")

    summary = MemoryStore.open(tmp_path, config_hash=None).summary()

    assert summary["files"] == {"manifest": 1, "outcome": 6, "snapshot": 2, "stats": 3,
                                "vectors": 1}
    assert summary["size_bytes"] == sum(p.stat().st_size for p in tmp_path.rglob("*")
                                        if p.is_file())
    assert summary["outcomes_per_chunk"] == [
        {"generation": 1, "label": "2025Q1", "outcomes": 3},
        {"generation": 2, "label": "2025Q2", "outcomes": 3}]
    assert summary["outcomes_committed"] == 6
    assert summary["generation"] == 2 and summary["config_hash"] == HASH
    assert summary["providers"] == sorted(PROVIDERS) and summary["regimes"] == ["TRENDING"]


# -- commit validation --------------------------------------------------------------------


def test_commit_of_outcome_missing_keys_names_them_and_writes_nothing(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    broken = make_outcome(9, generation=1)
    del broken["votes"], broken["state"]

    message = r"outcome 1 \(decision_id 9\): missing keys votes, state"
    with pytest.raises(MemoryStoreError, match=message):
        commit(store, Learner(), 1, [make_outcome(8, generation=1), broken])

    assert list(tmp_path.iterdir()) == []
    assert store.generation == 0


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ([make_outcome(4, generation=1), make_outcome(4, generation=1)],
         "decision_id 4 appears twice"),
        ([make_outcome(4, generation=2)], "generation 2, schema_version 1, was expected 1"),
        ([make_outcome(2**63, generation=1)], "decision_id is not an int64"),
        ([make_outcome(True, generation=1)], "decision_id is not an int64"),
    ],
)
def test_commit_rejects_inconsistent_outcomes(tmp_path: Path, outcomes: list[dict],
                                              message: str) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    with pytest.raises(MemoryStoreError, match=message):
        commit(store, Learner(), 1, outcomes)
    assert list(tmp_path.iterdir()) == []


def test_commit_stamps_schema_version_on_outcomes_that_leave_it_out(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    bare = make_outcome(3, generation=1)
    del bare["schema_version"]

    commit(store, Learner(), 1, [bare])

    assert json_file(tmp_path / "outcome_3.json") == make_outcome(3, generation=1)


def test_snapshot_may_repeat_store_keys_only_with_the_same_value(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    arguments = dict(label="Q1", start="s", end="e", last_bar_time=pd.Timestamp("2025-03-31"),
                     outcomes=[], provider_stats={}, regime_stats={}, parameters={},
                     run_state=None)

    with pytest.raises(MemoryStoreError, match="sets generation, run_id to other values"):
        store.commit_chunk(run_id="r", snapshot={"run_id": "other", "generation": 9}, **arguments)
    store.commit_chunk(run_id="r", snapshot={"run_id": "r", "chunk": "Q1"}, **arguments)

    assert json_file(tmp_path / "snapshot_20250331_000000.json")["run_id"] == "r"


def test_naive_last_bar_time_is_read_as_utc_and_aware_is_converted(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    arguments = dict(start="s", end="e", run_id="r", outcomes=[], provider_stats={},
                     regime_stats={}, parameters={}, snapshot={}, run_state=None)
    store.commit_chunk(label="a", last_bar_time=pd.Timestamp("2025-03-31 23:59"), **arguments)
    berlin = pd.Timestamp("2025-07-01 01:30", tz="Europe/Berlin")
    store.commit_chunk(label="b", last_bar_time=berlin, **arguments)

    assert [c["snapshot"] for c in store.committed_chunks()] == [
        "snapshot_20250331_235900.json", "snapshot_20250630_233000.json"]


# -- errors on open -----------------------------------------------------------------------


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=1)
    manifest = json_file(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_bytes(orjson.dumps({**manifest, "schema_version": 2}))

    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(tmp_path, config_hash=HASH)
    assert str(caught.value) == (
        f"{tmp_path}: written by a newer bt (schema 2, this bt reads up to 1); upgrade bt, "
        "or use --memory-dir for another folder")


def test_other_config_hash_is_refused_with_both_hashes(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=1)

    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(tmp_path, config_hash="bbbbcccc" + "0" * 56)
    assert str(caught.value) == (
        f"{tmp_path} was written under another config (hash aaaaaaaa, this run bbbbcccc); use "
        "--fresh to move it aside and start empty, or --memory-dir for another folder")
    assert MemoryStore.open(tmp_path, config_hash=None).generation == 1  # read-only use


def test_store_without_config_hash_cannot_commit(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path, config_hash=None)
    with pytest.raises(MemoryStoreError, match="cannot commit without a config hash"):
        commit(store, Learner(), 1, [])


def test_open_without_create_refuses_a_folder_with_no_memory(tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="no committed memory here"):
        MemoryStore.open(tmp_path, config_hash=HASH, create=False)


def test_open_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "thesis.docx").write_bytes(b"x")
    with pytest.raises(MemoryStoreError, match="holds thesis.docx, which is not a bt memory file"):
        MemoryStore.open(tmp_path, config_hash=HASH)


def test_unreadable_manifest_points_to_doctor(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=1)
    (tmp_path / "manifest.json").write_bytes(b'{"schema_version": 1, "gen')
    with pytest.raises(MemoryStoreError, match=r"manifest.json: not valid JSON .*memory doctor"):
        MemoryStore.open(tmp_path, config_hash=HASH)


# -- crash recovery -----------------------------------------------------------------------


def crash_before_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(folder: Path, data: bytes) -> None:
        raise KeyboardInterrupt("killed before the manifest")

    monkeypatch.setattr(store_module, "_write_manifest", crash)


def test_crash_before_manifest_reopens_at_previous_generation_and_recommit_adds_no_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: two committed chunks; the third dies just before its manifest
    store, learner = build_memory(tmp_path, chunks=2)
    committed_stats = store.provider_stats()
    committed_parameters = store.parameters()
    with monkeypatch.context() as patch:
        crash_before_manifest(patch)
        with pytest.raises(KeyboardInterrupt):
            commit(store, learner, 3, chunk_outcomes(3, 3))
    assert json_file(tmp_path / "provider_performance.json")["generation"] == 3  # ran ahead

    # Act: reopen under the lock, as a resumed run does
    with FolderLock(tmp_path):
        message = r"generation 2: .*ahead.*restored from snapshot_20250630"
        with pytest.warns(UserWarning, match=message):
            reopened = MemoryStore.open(tmp_path, config_hash=HASH)

        # Assert: the previous generation, also on disk; uncommitted outcomes unseen
        assert reopened.generation == 2
        assert reopened.provider_stats() == committed_stats
        assert reopened.parameters() == committed_parameters
        for name in ("provider_performance.json", "regime_performance.json", "parameters.json"):
            assert json_file(tmp_path / name)["generation"] == 2
        assert len(reopened.read_outcomes()) == 6

        # the same chunk committed again (a replay of chunk 3 from generation 2's state)
        replay = Learner()
        replay.providers, replay.regimes = (reopened.provider_stats()["providers"],
                                            reopened.regime_stats()["regimes"])
        commit(reopened, replay, 3, chunk_outcomes(3, 3))

    outcome_names = sorted(p.name for p in tmp_path.glob("outcome_*.json"))
    expected = sorted(f"outcome_{o['decision_id']}.json"
                      for i in (1, 2, 3) for o in chunk_outcomes(i, i))
    assert outcome_names == expected
    assert len(list(tmp_path.glob("snapshot_*.json"))) == 3
    final = MemoryStore.open(tmp_path, config_hash=HASH)
    assert final.generation == 3
    assert final.provider_stats() == {"providers": learner.providers}  # as if never interrupted


def test_reopen_without_the_lock_restores_in_memory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, learner = build_memory(tmp_path, chunks=1)
    with monkeypatch.context() as patch:
        crash_before_manifest(patch)
        with pytest.raises(KeyboardInterrupt):
            commit(store, learner, 2, chunk_outcomes(2, 2))
    ahead = (tmp_path / "provider_performance.json").read_bytes()

    with pytest.warns(UserWarning, match="in memory only"):
        reopened = MemoryStore.open(tmp_path, config_hash=HASH)

    assert reopened.provider_stats() == json_file(
        tmp_path / "snapshot_20250331_235900.json")["provider_stats"]
    assert (tmp_path / "provider_performance.json").read_bytes() == ahead


def test_crash_in_first_commit_reopens_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    with monkeypatch.context() as patch:
        crash_before_manifest(patch)
        with pytest.raises(KeyboardInterrupt):
            commit(store, Learner(), 1, chunk_outcomes(1, 1))

    with pytest.warns(UserWarning, match="restored from empty"):
        reopened = MemoryStore.open(tmp_path, config_hash=HASH)

    assert reopened.generation == 0
    assert reopened.provider_stats() == {}
    assert reopened.read_outcomes() == []


def test_stats_file_behind_the_manifest_is_restored(tmp_path: Path) -> None:
    store, _ = build_memory(tmp_path, chunks=2)
    stale = {"schema_version": 1, "generation": 1, "regime_stats": {"regimes": {}}}
    (tmp_path / "regime_performance.json").write_bytes(orjson.dumps(stale))

    with pytest.warns(UserWarning, match=r"regime_performance.json at generation 1 \(behind\)"):
        reopened = MemoryStore.open(tmp_path, config_hash=HASH)

    assert reopened.regime_stats() == store.regime_stats()


def test_missing_committed_snapshot_needed_for_recovery_points_to_doctor(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=2)
    (tmp_path / "provider_performance.json").unlink()
    (tmp_path / "snapshot_20250630_235900.json").unlink()

    message = r"snapshot_20250630_235900.json: missing, .*bt memory doctor"
    with pytest.raises(MemoryStoreError, match=message):
        MemoryStore.open(tmp_path, config_hash=HASH)


# -- doctor -------------------------------------------------------------------------------


def test_doctor_on_a_healthy_memory_changes_nothing_and_rebuilds_vectors(tmp_path: Path) -> None:
    store, _ = build_memory(tmp_path)
    before = files(tmp_path)
    calls: list[tuple[Path, list[int], int]] = []

    report = doctor(tmp_path, rebuild_vectors=lambda folder, outcomes, generation: calls.append(
        (folder, [o["decision_id"] for o in outcomes], generation)))

    assert report["quarantined"] == [] and report["problems"] == []
    assert report["rebuilt"] == ["vectors"]
    assert report["checked"] == len(before)
    assert files(tmp_path) == before
    assert calls == [(tmp_path, [o["decision_id"] for o in store.read_outcomes()], 3)]


def test_doctor_quarantines_broken_files_rebuilds_stats_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    # Arrange: a 3-chunk memory; then a truncated outcome, a garbage snapshot, broken stats
    store, _ = build_memory(tmp_path)
    expected = (store.provider_stats(), store.regime_stats(), store.parameters())
    broken = {
        "outcome_2001.json": (tmp_path / "outcome_2001.json").read_bytes()[:40],
        "snapshot_20250630_235900.json": b"\x00\xffgarbage",
        "provider_performance.json": b'{"schema_version": 1, "generation": 3, "provider_st',
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
    before = files(tmp_path)

    # Act
    report = doctor(tmp_path)

    # Assert: moved, not deleted, bytes kept
    assert sorted(report["quarantined"]) == sorted(broken)
    for name, content in broken.items():
        assert (tmp_path / "quarantine" / name).read_bytes() == content
    after = files(tmp_path)
    kept = {name.removeprefix("quarantine/") for name in after}
    assert set(before) <= kept
    assert len(after) == len(before) + 1  # the rebuilt provider_performance.json
    # stats equal to the pre-corruption ones (the last snapshot survived)
    assert report["rebuilt"] == ["provider_performance.json"]
    reopened = MemoryStore.open(tmp_path, config_hash=HASH)
    assert (reopened.provider_stats(), reopened.regime_stats(), reopened.parameters()) == expected
    # the lost data is reported
    problems = "\n".join(report["problems"])
    assert "outcome_2001.json: not valid JSON" in problems
    assert ("chunk 2025Q2 (generation 2): its snapshot snapshot_20250630_235900.json is "
            "missing") in problems
    assert ("chunk 2025Q2 (generation 2): the manifest counts 3 outcomes, 2 outcome files "
            "hold it") in problems
    assert "provider_stats.momentum.trades is 9, the outcome files give 8" in problems


def test_doctor_rebuilds_an_unreadable_manifest_from_the_snapshots(tmp_path: Path) -> None:
    store, _ = build_memory(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b"{")

    report = doctor(tmp_path)

    assert report["quarantined"] == ["manifest.json"]
    assert report["rebuilt"] == ["manifest.json"]
    reopened = MemoryStore.open(tmp_path, config_hash=HASH)
    assert reopened.committed_chunks() == store.committed_chunks()
    assert reopened.provider_stats() == store.provider_stats()
    assert reopened.run_state() is None


def test_doctor_restores_stats_from_an_older_snapshot_when_the_newest_is_lost(
    tmp_path: Path,
) -> None:
    store, learner = build_memory(tmp_path, chunks=2)
    at_one = json_file(tmp_path / "snapshot_20250331_235900.json")
    (tmp_path / "snapshot_20250630_235900.json").write_bytes(b"[]")
    (tmp_path / "regime_performance.json").unlink()

    report = doctor(tmp_path)

    assert report["rebuilt"] == ["regime_performance.json", "manifest.json (file digests)"]
    assert any("stats rebuilt from snapshot_20250331_235900.json (generation 1)" in line
               for line in report["problems"])
    reopened = MemoryStore.open(tmp_path, config_hash=HASH)
    assert reopened.regime_stats() == at_one["regime_stats"]
    assert reopened.provider_stats() == store.provider_stats()  # its file was intact


def test_doctor_reports_stats_that_disagree_with_the_summed_chunk_counts(tmp_path: Path) -> None:
    store, learner = build_memory(tmp_path, chunks=2)
    learner.providers["mean_reversion"]["hits"] += 1  # stats no longer the sum of the chunks
    commit(store, learner, 3, chunk_outcomes(3, 3))

    report = doctor(tmp_path)

    assert report["problems"] == [
        "provider_stats.mean_reversion.hits is 34, the summed chunk counts give 33"]


def test_doctor_quarantines_temporary_files_and_unknown_schemas_with_suffix(
    tmp_path: Path,
) -> None:
    build_memory(tmp_path, chunks=1)
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "outcome_1001.json").write_bytes(b"earlier")
    outcome = json_file(tmp_path / "outcome_1001.json")
    (tmp_path / "outcome_1001.json").write_bytes(orjson.dumps({**outcome, "schema_version": 7}))
    (tmp_path / ".parameters.json.1a2b3c4d.tmp").write_bytes(b'{"half')

    report = doctor(tmp_path)

    # a temporary file is never part of a commit: the lock's acquisition removed it
    assert report["quarantined"] == ["outcome_1001.json"]
    assert not (tmp_path / ".parameters.json.1a2b3c4d.tmp").exists()
    assert ".parameters.json.1a2b3c4d.tmp: left by an interrupted write; removed" in \
        report["problems"]
    assert (tmp_path / "quarantine" / "outcome_1001.json").read_bytes() == b"earlier"
    assert json_file(tmp_path / "quarantine" / "outcome_1001.1.json")["schema_version"] == 7
    assert any("unknown schema_version, was 7" in line for line in report["problems"])


def test_doctor_refuses_a_newer_schema_and_moves_nothing(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=1)
    manifest = json_file(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_bytes(orjson.dumps({**manifest, "schema_version": 3}))
    before = files(tmp_path)

    with pytest.raises(MemoryStoreError, match="written by a newer bt"):
        doctor(tmp_path)
    assert files(tmp_path) == before


def test_doctor_refuses_a_folder_in_use(tmp_path: Path) -> None:
    build_memory(tmp_path, chunks=1)
    with FolderLock(tmp_path):
        with pytest.raises(MemoryLockedError):
            doctor(tmp_path)


def test_doctor_commits_nothing_uncommitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, learner = build_memory(tmp_path, chunks=1)
    with monkeypatch.context() as patch:
        crash_before_manifest(patch)
        with pytest.raises(KeyboardInterrupt):
            commit(store, learner, 2, chunk_outcomes(2, 2))

    report = doctor(tmp_path)

    assert report["generation"] == 1
    assert sorted(report["rebuilt"]) == ["parameters.json", "provider_performance.json",
                                         "regime_performance.json"]
    assert any("3 outcome files are from an interrupted commit" in line
               for line in report["problems"])
    assert any("snapshot_20250630_235900.json: generation 2 was never committed" in line
               for line in report["problems"])
    assert MemoryStore.open(tmp_path, config_hash=HASH).provider_stats() == json_file(
        tmp_path / "snapshot_20250331_235900.json")["provider_stats"]


def test_outcome_tallies_count_provider_trades_by_vote_direction() -> None:
    outcomes = [
        make_outcome(1, generation=1, direction=1, pnl=3.0, votes={"a": 1, "b": -1}),
        make_outcome(2, generation=1, direction=-1, pnl=-1.0, votes={"a": -1, "b": 0},
                     regime="RANGING"),
        make_outcome(3, generation=1, direction=1, pnl=0.0, votes={"a": 1, "b": 1}),
    ]

    tallies = outcome_tallies(outcomes)

    assert tallies["providers"] == {"a": {"trades": 3, "wins": 1, "losses": 2},
                                    "b": {"trades": 1, "wins": 0, "losses": 1}}
    assert tallies["regimes"] == {
        "TRENDING": {"a": {"trades": 2, "wins": 1, "losses": 1},
                     "b": {"trades": 1, "wins": 0, "losses": 1}},
        "RANGING": {"a": {"trades": 1, "wins": 0, "losses": 1}}}


def test_every_outcome_key_is_required() -> None:
    assert len(OUTCOME_KEYS) == len(set(OUTCOME_KEYS)) == 22
    assert set(make_outcome(1, generation=1)) == set(OUTCOME_KEYS)


# -- reset, backup ------------------------------------------------------------------------


@pytest.mark.parametrize("move", [reset, backup_aside])
def test_reset_moves_the_folder_aside_keeping_every_file(tmp_path: Path, move: Any) -> None:
    folder = tmp_path / "memory"
    build_memory(folder, chunks=2)
    (folder / "vectors").mkdir()
    (folder / "vectors" / "index.json").write_bytes(b"{}")
    before = files(folder)

    first = move(folder)
    build_memory(folder, chunks=1)
    second = move(folder)

    assert not folder.exists()
    assert re.fullmatch(r"memory\.bak-\d{8}_\d{6}", first.name)
    assert second.name.startswith(first.name[:11]) and second != first
    assert files(first) == before  # no lock file left inside either
    assert MemoryStore.open(second, config_hash=HASH).generation == 1


def test_reset_of_missing_or_empty_folder_returns_none(tmp_path: Path) -> None:
    assert reset(tmp_path / "nothing") is None
    (tmp_path / "empty").mkdir()
    assert backup_aside(tmp_path / "empty") is None
    assert (tmp_path / "empty").is_dir()


def test_reset_refuses_a_folder_in_use_and_leaves_it(tmp_path: Path) -> None:
    build_memory(tmp_path / "memory", chunks=1)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        holder = {"pid": child.pid, "host": socket.gethostname(), "started": "t",
                  "command": "bt run"}
        (tmp_path / "memory" / ".lock").write_bytes(orjson.dumps(holder))
        with pytest.raises(MemoryLockedError, match=f"in use by pid {child.pid}"):
            reset(tmp_path / "memory")
    finally:
        child.communicate(b"")
    assert MemoryStore.open(tmp_path / "memory", config_hash=HASH).generation == 1
