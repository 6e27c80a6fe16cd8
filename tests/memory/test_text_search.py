"""A search keeps what it embedded: the rows a run left out of the text index are stored
as a text segment the manifest records, under the folder's lock, so the next search embeds
nothing; a crash before the manifest, or a run holding the lock, leaves the folder as it
was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backtester.memory import embedders
from backtester.memory.doctor import doctor
from backtester.memory.embedders import HashingEmbedder
from backtester.memory.integrity import FILES_KEY
from backtester.memory.io import FolderLock
from backtester.memory.store import MemoryStore
from backtester.memory.text_search import search_text
from backtester.memory.vectors import VectorMemory, rebuilt_files
from tests.memory.test_store import HASH, Learner, chunk_outcomes, commit, files

ROW_KEYS = ("decision_id", "symbol", "direction", "return_pct", "pnl", "exit_reason", "regime",
            "entry_time", "description")


class CountingEmbedder:
    """The hashing embedder, counting its encode calls."""

    def __init__(self) -> None:
        self._inner = HashingEmbedder()
        self.name, self.dim, self.calls = self._inner.name, self._inner.dim, 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return self._inner.encode(texts)


def run_commit(folder: Path, store: MemoryStore, learner: Learner, index: int) -> None:
    """One chunk committed as a run does it: state vectors only, no text embedded."""
    outcomes = chunk_outcomes(index, store.generation + 1, count=4)
    rng = np.random.default_rng(index)
    for outcome in outcomes:
        outcome["state"] = [float(x) for x in rng.normal(size=15)]
    vectors = VectorMemory.load(folder, committed_generation=store.generation, max_size=1000,
                                embedder=HashingEmbedder(),
                                files=store.manifest.get(FILES_KEY), text=False)

    def write(path: Path, generation: int) -> dict:
        vectors.add(np.array([o["state"] for o in outcomes]), None,
                    [{k: o[k] for k in ROW_KEYS} for o in outcomes], generation)
        return vectors.save(path, generation)

    commit(store, learner, index, outcomes, vectors=write)


def learned(folder: Path) -> Learner:
    """Two chunks committed as a run does; the learner that goes on."""
    store, learner = MemoryStore.open(folder, config_hash=HASH), Learner()
    run_commit(folder, store, learner, 1)
    run_commit(folder, store, learner, 2)
    return learner


@pytest.fixture
def memory(tmp_path: Path) -> Path:
    learned(tmp_path)
    return tmp_path


@pytest.fixture
def embedder(monkeypatch: pytest.MonkeyPatch) -> CountingEmbedder:
    monkeypatch.setattr(embedders, "_encoded", {})  # no per-process cache hides a call
    return CountingEmbedder()


def text_rows(folder: Path) -> int:
    store = MemoryStore.open(folder, config_hash=HASH)
    return VectorMemory.load(folder, committed_generation=store.generation, max_size=1000,
                             embedder=HashingEmbedder(),
                             files=store.manifest.get(FILES_KEY)).text_rows


def test_a_search_stores_what_it_embedded_and_the_next_search_embeds_nothing(
        memory: Path, embedder: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    assert text_rows(memory) == 0  # a run embeds no text
    # Act
    first = search_text(memory, "take profit in a trending market", 3, embedder)
    calls = embedder.calls
    monkeypatch.setattr(embedders, "_encoded", {})
    second = search_text(memory, "take profit in a trending market", 3, embedder)
    # Assert
    assert (first.embedded, first.stored) == (8, True) and calls == 2  # the rows, the query
    assert (second.embedded, second.stored) == (0, False)
    assert embedder.calls - calls == 1  # the query only
    assert second.hits == first.hits and len(first.hits) == 3
    assert text_rows(memory) == 8 and not (memory / ".lock").exists()
    report = doctor(memory)
    assert report["problems"] == [] and report["unrepaired"] == []


def test_a_crash_between_the_text_segment_and_the_manifest_changes_nothing_loaded(
        memory: Path, embedder: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    before = files(memory)

    def crash(self: MemoryStore, records: dict) -> None:
        raise RuntimeError("killed before the manifest")

    # Act
    with monkeypatch.context() as patch:
        patch.setattr(MemoryStore, "record_files", crash)
        with pytest.raises(RuntimeError, match="killed"):
            search_text(memory, "stopped out", 2, embedder)
    # Assert
    after = files(memory)
    left = sorted(set(after) - set(before))
    assert len(left) == 1 and left[0].startswith("vectors/text_0_8_")  # named by no manifest
    assert {name: after[name] for name in before} == before
    assert text_rows(memory) == 0 and not (memory / ".lock").exists()
    assert search_text(memory, "stopped out", 2, embedder).stored  # the same file, recorded
    assert text_rows(memory) == 8


def test_a_search_while_a_run_holds_the_lock_searches_in_memory_and_writes_nothing(
        memory: Path, embedder: CountingEmbedder) -> None:
    before = files(memory)
    with FolderLock(memory, command="bt run"):
        found = search_text(memory, "take profit", 2, embedder)
        assert (found.embedded, found.stored) == (8, False) and len(found.hits) == 2
        assert {k: v for k, v in files(memory).items() if k != ".lock"} == before


def test_a_run_after_a_stored_search_appends_and_the_next_search_embeds_only_its_rows(
        tmp_path: Path, embedder: CountingEmbedder) -> None:
    memory, learner = tmp_path, learned(tmp_path)
    assert search_text(memory, "take profit", 2, embedder).embedded == 8
    store = MemoryStore.open(memory, config_hash=HASH)
    run_commit(memory, store, learner, 3)
    found = search_text(memory, "take profit", 2, embedder)
    assert (found.embedded, found.stored) == (4, True)
    assert text_rows(memory) == 12
    report = doctor(memory)
    assert report["problems"] == [] and report["unrepaired"] == []


def test_the_doctor_keeps_the_text_vectors_it_verified_and_embeds_only_what_changed(
        memory: Path, embedder: CountingEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the text index covers all 8 rows; a full re-embed is the reference
    search_text(memory, "take profit", 2, embedder)
    store = MemoryStore.open(memory, config_hash=HASH)
    outcomes = store.read_outcomes()
    reference = rebuilt_files(memory, outcomes, store.generation, HashingEmbedder())
    monkeypatch.setattr(embedders, "_encoded", {})
    embedder.calls = 0
    # Act: the doctor with nothing changed
    report = doctor(memory, rebuild_vectors=lambda f, o, g: rebuilt_files(f, o, g, embedder))
    # Assert: nothing embedded, and the very bytes a full re-embed gives
    assert report["problems"] == [] and embedder.calls == 0
    assert dict(rebuilt_files(memory, outcomes, store.generation, embedder)) == dict(reference)
    assert embedder.calls == 0
    # Act: one outcome's state changed on disk: only its text is embedded again
    changed = dict(outcomes[0], state=[x + 1.0 for x in outcomes[0]["state"]])
    rebuilt_files(memory, [changed, *outcomes[1:]], store.generation, embedder)
    assert embedder.calls == 1
    # Act: a text index whose bytes differ from the manifest's digest is not trusted
    embedder.calls = 0
    monkeypatch.setattr(embedders, "_encoded", {})
    text_index = memory / "vectors" / "text.faiss"
    data = text_index.read_bytes()
    text_index.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert dict(rebuilt_files(memory, outcomes, store.generation, embedder)) == dict(reference)
    assert embedder.calls == 1
