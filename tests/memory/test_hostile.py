"""A memory folder from someone else: containment, integrity, one-line errors, repair."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.errors import MemoryStoreError
from backtester.memory import io as io_module
from backtester.memory.doctor import doctor
from backtester.memory.embedders import HashingEmbedder
from backtester.memory.io import FolderLock
from backtester.memory.store import MemoryStore
from backtester.memory.vectors import VectorMemory, _clean_row
from tests.memory.test_store import HASH, build_memory, files, json_file

cli = CliRunner()


def vector_files(folder: Path, outcomes: list[dict], generation: int) -> list:
    """The doctor's vector rebuild for the test outcomes (3-d states, no feature names)."""
    embedder = HashingEmbedder()
    memory = VectorMemory(max_size=100, embedder=embedder)
    memory._stage(np.array([o["state"] for o in outcomes], dtype=np.float32),
                  embedder.encode([o["description"] for o in outcomes]),
                  [_clean_row(o, o["generation"]) for o in outcomes])
    memory.commit_staged()
    memory.generation = generation
    return memory.encode_files()


def memory_with_vectors(folder: Path, chunks: int = 2) -> MemoryStore:
    """A store memory whose vector index the doctor built (so the manifest has digests)."""
    build_memory(folder, chunks=chunks)
    doctor(folder, rebuild_vectors=vector_files)
    return MemoryStore.open(folder, config_hash=HASH)


def flat(output: str) -> str:
    return " ".join(output.split())


def load_vectors(folder: Path, store: MemoryStore) -> VectorMemory:
    return VectorMemory.load(folder, committed_generation=store.generation, max_size=100,
                             embedder=HashingEmbedder(), files=store.manifest.get("files"))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def edit_manifest(folder: Path, **changes) -> None:
    manifest = json_file(folder / "manifest.json")
    for key, value in changes.items():
        if value is None and key == "files":
            manifest.pop("files", None)
        elif key == "run_id":
            manifest["active_run"] = {"run_id": value, "chunks_done": 1}
        else:
            manifest[key] = value
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))


@pytest.fixture()
def memory(tmp_path: Path) -> Path:
    folder = tmp_path / "memory"
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "sentinel.txt").write_text("keep")
    build_memory(folder, chunks=2)
    return folder


def outside_unchanged(folder: Path) -> None:
    victim = folder.parent / "victim"
    assert [p.name for p in victim.iterdir()] == ["sentinel.txt"]
    assert (victim / "sentinel.txt").read_text() == "keep"


@pytest.mark.parametrize("run_id", ["../victim", "/tmp/victim", "a/b", ".."])
def test_a_run_id_that_is_not_a_folder_name_is_refused(memory: Path, run_id: str) -> None:
    edit_manifest(memory, run_id=run_id)
    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(memory, config_hash=HASH)
    message = one_line(caught)
    assert "not a folder name" in message and f"--memory-dir {memory}" in message
    outside_unchanged(memory)


@pytest.mark.parametrize("snapshot", ["../victim/sentinel.txt", "/etc/passwd",
                                      "snapshot_20250101_000000.json/../../x"])
def test_a_snapshot_name_pointing_outside_is_refused(memory: Path, snapshot: str) -> None:
    manifest = json_file(memory / "manifest.json")
    manifest["chunks"][-1]["snapshot"] = snapshot
    (memory / "manifest.json").write_bytes(orjson.dumps(manifest))
    (memory / "provider_performance.json").unlink()  # so the snapshot would be read
    with pytest.raises(MemoryStoreError, match="not a snapshot_"):
        MemoryStore.open(memory, config_hash=HASH)
    outside_unchanged(memory)


def test_symlinked_vectors_is_refused_by_open_and_doctor_and_nothing_outside_changes(
        memory: Path) -> None:
    (memory / "vectors").symlink_to(memory.parent / "victim")
    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(memory, config_hash=HASH)
    assert "symbolic links (vectors)" in one_line(caught)
    with pytest.raises(MemoryStoreError, match="symbolic links"):
        doctor(memory, rebuild_vectors=vector_files)
    outside_unchanged(memory)


def test_a_symlinked_file_is_refused(memory: Path) -> None:
    (memory / "parameters.json").unlink()
    (memory / "parameters.json").symlink_to(memory.parent / "victim" / "sentinel.txt")
    with pytest.raises(MemoryStoreError, match=r"symbolic links \(parameters.json\)"):
        MemoryStore.open(memory, config_hash=HASH)
    outside_unchanged(memory)


def test_every_flipped_byte_of_states_faiss_is_detected(tmp_path: Path) -> None:
    store = memory_with_vectors(tmp_path)
    path = tmp_path / "vectors" / "states.faiss"
    good = path.read_bytes()
    assert len(load_vectors(tmp_path, store)) == 6
    positions = np.linspace(0, len(good) - 1, 40).astype(int)
    for position in positions:
        flipped = bytearray(good)
        flipped[position] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(MemoryStoreError) as caught:
            load_vectors(tmp_path, store)
        assert "states.faiss: its bytes differ" in one_line(caught)
    path.write_bytes(good)


def test_a_folder_without_digests_still_loads_and_gets_them_at_the_next_commit(
        tmp_path: Path) -> None:
    store = memory_with_vectors(tmp_path)
    edit_manifest(tmp_path, files=None)  # as saved before digests existed
    old = MemoryStore.open(tmp_path, config_hash=HASH)
    assert "files" not in old.manifest
    assert len(load_vectors(tmp_path, old)) == len(load_vectors(tmp_path, store))
    doctor(tmp_path, rebuild_vectors=vector_files)
    assert set(json_file(tmp_path / "manifest.json")["files"]) == {
        "parameters.json", "provider_performance.json", "regime_performance.json",
        "vectors/index.json", "vectors/states.faiss", "vectors/text.faiss"}


def test_an_edited_stats_file_in_step_is_refused_and_the_doctor_repairs_it(memory: Path) -> None:
    path = memory / "parameters.json"
    document = json_file(path)
    document["parameters"]["size_multiplier"] = 9.0
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(MemoryStoreError, match=r"parameters.json: its bytes differ.*doctor"):
        MemoryStore.open(memory, config_hash=HASH)
    doctor(memory)
    assert MemoryStore.open(memory, config_hash=HASH).parameters()["size_multiplier"] != 9.0


@pytest.mark.parametrize("content, found", [
    (b"", "not valid JSON"), (b'{"schema_version": 1, "decision_id"', "not valid JSON"),
    (b"\xff\xfe garbage", "not valid JSON"), ("nan", "not valid JSON"),
    ("null", "pnl must be a finite number"), ("other id", "does not match the file name")])
def test_a_bad_outcome_file_is_an_error_naming_it(memory: Path, content, found) -> None:
    path = sorted(memory.glob("outcome_*.json"))[0]
    if isinstance(content, str):
        document = json_file(path)
        if content == "other id":
            document["decision_id"] += 1
        else:
            document["pnl"] = None
        data = orjson.dumps(document)
        content = data.replace(b'"pnl":null', b'"pnl":NaN') if content == "nan" else data
    path.write_bytes(content)
    store = MemoryStore.open(memory, config_hash=HASH)
    with pytest.raises(MemoryStoreError) as caught:
        store.check_outcomes()
    message = one_line(caught)
    assert str(path) in message and found in message and "bt memory doctor" in message


def test_a_deleted_manifest_with_outcomes_is_refused_and_the_doctor_rebuilds_it(
        memory: Path) -> None:
    (memory / "manifest.json").unlink()
    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(memory, config_hash=HASH)
    message = one_line(caught)
    assert "manifest.json: is missing beside" in message and "doctor" in message
    doctor(memory)
    assert MemoryStore.open(memory, config_hash=HASH).generation == 2


@pytest.mark.parametrize("name", ["manifest.json", "provider_performance.json"])
def test_a_folder_where_a_file_belongs_is_one_line_and_the_doctor_repairs_it(
        memory: Path, name: str) -> None:
    (memory / name).unlink()
    (memory / name).mkdir()
    with pytest.raises(MemoryStoreError) as caught:
        MemoryStore.open(memory, config_hash=HASH)
    assert f"{name}: is a folder, a file was expected" in one_line(caught)
    report = doctor(memory)
    assert name in report["quarantined"] and (memory / "quarantine" / name).is_dir()
    assert MemoryStore.open(memory, config_hash=HASH).generation == 2


def test_vectors_as_a_file_is_one_line(tmp_path: Path) -> None:
    store = memory_with_vectors(tmp_path)
    for path in (tmp_path / "vectors").iterdir():
        path.unlink()
    (tmp_path / "vectors").rmdir()
    (tmp_path / "vectors").write_text("x")
    with pytest.raises(MemoryStoreError) as caught:
        load_vectors(tmp_path, store)
    assert "vectors: is a file, a folder was expected" in one_line(caught)


def test_a_deleted_vectors_folder_is_refused_not_rebuilt_from_new_rows(tmp_path: Path) -> None:
    store = memory_with_vectors(tmp_path)
    for path in (tmp_path / "vectors").iterdir():
        path.unlink()
    (tmp_path / "vectors").rmdir()
    with pytest.raises(MemoryStoreError, match="vectors: is missing.*doctor"):
        load_vectors(tmp_path, store)


def test_a_doctor_out_of_disk_leaves_every_byte_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory_with_vectors(tmp_path)
    (tmp_path / "regime_performance.json").unlink()  # something to rebuild
    (tmp_path / "outcome_1001.json").write_bytes(b"{ broken")  # something to quarantine
    before = files(tmp_path)
    real, calls = io_module._write_temporary, []

    def full_disk(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(io_module, "_write_temporary", full_disk)
    with pytest.raises(OSError):
        doctor(tmp_path, rebuild_vectors=vector_files)
    assert len(calls) == 3
    assert files(tmp_path) == before  # no temporary left, nothing moved, nothing replaced


def test_stale_temporary_files_are_removed_when_the_lock_is_taken(memory: Path) -> None:
    (memory / ".manifest.json.1a2b3c4d.tmp").write_bytes(b"{")
    (memory / "vectors").mkdir()
    (memory / "vectors" / ".index.json.0a0b0c0d.tmp").write_bytes(b"{")
    with FolderLock(memory) as lock:
        assert lock.removed_temporaries == [".manifest.json.1a2b3c4d.tmp",
                                            "vectors/.index.json.0a0b0c0d.tmp"]
    assert not list(memory.rglob("*.tmp"))


def test_a_lock_of_another_host_is_shown_and_cleared_with_force(memory: Path) -> None:
    lock = {"pid": 4242, "host": "elsewhere-" + socket.gethostname(),
            "started": "2025-01-01T00:00:00+00:00", "command": "bt run"}
    (memory / ".lock").write_bytes(orjson.dumps(lock))
    shown = cli.invoke(app, ["memory", "unlock", "--memory-dir", str(memory)])
    assert shown.exit_code == 1 and (memory / ".lock").exists()
    assert "pid 4242 on host elsewhere-" in flat(shown.output) and "--force" in shown.output
    forced = cli.invoke(app, ["memory", "unlock", "--force", "--memory-dir", str(memory)])
    assert forced.exit_code == 0, forced.output
    assert "lock removed" in flat(forced.output) and not (memory / ".lock").exists()


def test_doctor_exits_1_when_it_cannot_repair(memory: Path) -> None:
    (memory / "snapshot_20250331_235900.json").unlink()  # a committed chunk's snapshot
    report = doctor(memory)  # `bt memory doctor` exits 1 when "unrepaired" is not empty
    assert report["unrepaired"] and "snapshot_20250331_235900.json is missing" in \
        report["unrepaired"][0]


def test_inspect_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    result = cli.invoke(app, ["memory", "inspect", "--memory-dir", str(tmp_path / "typo")])
    assert result.exit_code == 0
    assert f"no memory folder at {tmp_path / 'typo'}" in flat(result.output)
    assert "empty memory" not in result.output


def test_the_notebook_api_verifies_the_vector_files_as_a_run_does(tmp_path: Path) -> None:
    import backtester

    memory_with_vectors(tmp_path)
    path = tmp_path / "vectors" / "states.faiss"
    flipped = bytearray(path.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    memory = backtester.open_memory(tmp_path)  # the store's files are intact
    with pytest.raises(MemoryStoreError) as caught:
        memory.search("BTCUSDT long", k=2)
    message = one_line(caught)
    assert "states.faiss: its bytes differ" in message
    assert f"bt memory doctor --memory-dir {tmp_path}" in message


# -- a lost manifest: the doctor rebuilds only complete chunks ---------------------------------


def crashed_first_commit(folder: Path, monkeypatch: pytest.MonkeyPatch, *,
                         snapshot: bool) -> None:
    """A folder saved before the empty manifest came first, whose first commit crashed
    before its manifest (``snapshot``: after writing the snapshot, else before it)."""
    from backtester.memory import store as store_module
    from tests.memory.test_store import Learner, chunk_outcomes, commit

    def crash(*args) -> None:
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_write_manifest", crash)
        if not snapshot:
            patch.setattr(store_module, "write_json", crash)
        with pytest.raises(KeyboardInterrupt):
            commit(MemoryStore.open(folder, config_hash=HASH), Learner(), 1,
                   chunk_outcomes(1, 1))
    (folder / "manifest.json").unlink()  # the old code wrote none before the outcomes


def test_a_first_commit_that_crashed_before_its_snapshot_is_dropped_not_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crashed_first_commit(tmp_path, monkeypatch, snapshot=False)
    with pytest.raises(MemoryStoreError, match="manifest.json: is missing beside 3 outcome"):
        MemoryStore.open(tmp_path, config_hash=HASH)
    report = doctor(tmp_path)
    assert not report["unrepaired"] and report["generation"] == 0
    assert "dropped the chunks above generation 0, never committed" in " ".join(
        report["problems"])
    assert sorted(report["quarantined"]) == sorted(
        p.name for p in (tmp_path / "quarantine").iterdir())  # moved, never deleted
    store = MemoryStore.open(tmp_path, config_hash=HASH)  # usable again: empty
    assert store.generation == 0 and store.read_outcomes() == []


def test_a_first_commit_that_crashed_after_its_snapshot_is_complete_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every outcome file is written before the snapshot: its chunk is complete
    crashed_first_commit(tmp_path, monkeypatch, snapshot=True)
    report = doctor(tmp_path)
    assert report["generation"] == 1 and not report["quarantined"]
    store = MemoryStore.open(tmp_path, config_hash=HASH)
    assert store.generation == 1 and len(store.read_outcomes()) == 3


def test_a_lost_manifest_is_rebuilt_from_complete_chunks_only(memory: Path) -> None:
    from tests.memory.test_store import Learner, chunk_outcomes, commit

    store = MemoryStore.open(memory, config_hash=HASH)
    commit(store, Learner(), 3, chunk_outcomes(3, 3))  # generations 1, 2, 3
    (memory / "manifest.json").unlink()
    lost = next(o for o in memory.glob("outcome_*.json") if json_file(o)["generation"] == 2)
    lost.unlink()  # chunk 2 is no longer complete: 2 and 3 are not trusted
    report = doctor(memory)
    assert report["generation"] == 1 and not report["unrepaired"]
    line = next(p for p in report["problems"] if p.startswith("dropped the chunks"))
    assert "snapshot_20250630_235900.json counts 3 outcomes, 2 readable" in line
    assert "2 snapshot files and 5 outcome files" in line
    reopened = MemoryStore.open(memory, config_hash=HASH)
    assert reopened.generation == 1 and len(reopened.read_outcomes()) == 3
    assert {o["generation"] for o in reopened.read_outcomes()} == {1}
    assert json_file(memory / "provider_performance.json")["generation"] == 1
    assert len(list((memory / "quarantine").iterdir())) == 7


def test_an_open_validates_the_searched_outcomes_in_full_and_the_doctor_every_other(
        memory: Path) -> None:
    store = MemoryStore.open(memory, config_hash=HASH)
    names = sorted(p.name for p in memory.glob("outcome_*.json"))
    ids = [int(name[len("outcome_"):-len(".json")]) for name in names]
    searched, other = memory / names[0], memory / names[1]
    other.write_bytes(b"")  # not searched: an open neither lists nor reads it
    assert store.check_outcomes(ids[:1]) == 1
    with pytest.raises(MemoryStoreError) as caught:
        store.check_outcomes()
    assert f"{other}: not valid JSON" in one_line(caught)
    searched.write_bytes(b"{ broken")
    with pytest.raises(MemoryStoreError, match=f"{searched.name}: not valid JSON"):
        store.check_outcomes(ids[:1])
    searched.unlink()
    with pytest.raises(MemoryStoreError) as caught:
        store.check_outcomes(ids[:1])
    assert f"{searched}: is missing (1 outcome files the vector index holds" in \
        one_line(caught)
    report = doctor(memory)  # the doctor reads every file: the unsearched one is found
    assert other.name in report["quarantined"]


def test_a_symlinked_outcome_file_is_refused_when_read(memory: Path) -> None:
    store = MemoryStore.open(memory, config_hash=HASH)
    path = sorted(memory.glob("outcome_*.json"))[0]
    path.unlink()
    path.symlink_to(memory.parent / "victim" / "sentinel.txt")
    decision_id = int(path.name[len("outcome_"):-len(".json")])
    with pytest.raises(MemoryStoreError) as caught:
        store.check_outcomes([decision_id])
    assert f"symbolic links ({path.name})" in one_line(caught)
    outside_unchanged(memory)
