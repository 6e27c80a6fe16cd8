"""The vector memory: state search against brute force, the memory vote by hand, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from backtester.errors import MemoryStoreError
from backtester.memory.embedders import HashingEmbedder
from backtester.memory.vectors import VectorMemory, rebuild

T0 = 1_735_689_600_000_000_000  # 2025-01-01 00:00 UTC in ns
HOUR = 3_600_000_000_000


class OtherEmbedder(HashingEmbedder):
    """A hashing embedder under another name and, optionally, another dimension."""

    def __init__(self, name: str = "other-v1", dim: int = 384) -> None:
        self.name = name
        self.dim = dim


def make_row(i: int, *, direction: int = 1, return_pct: float = 0.01,
             entry_time: int | str | None = None, description: str | None = None) -> dict:
    return {
        "decision_id": i,
        "symbol": "BTCUSDT",
        "direction": direction,
        "return_pct": return_pct,
        "pnl": 100.0 * return_pct,
        "exit_reason": "take_profit" if return_pct > 0 else "stop_loss",
        "regime": "volatile",
        "entry_time": T0 + i * HOUR if entry_time is None else entry_time,
        "description": description or f"trade {i} in a volatile market",
    }


def make_memory(states: np.ndarray, *, max_size: int = 10_000, generation: int = 1,
                rows: list[dict] | None = None, commit: bool = True) -> VectorMemory:
    memory = VectorMemory(max_size=max_size, embedder=HashingEmbedder())
    rows = rows or [make_row(i) for i in range(len(states))]
    memory.add(states, [row["description"] for row in rows], rows, generation)
    if commit:
        memory.commit_staged()
    return memory


def random_states(n: int, seed: int = 0) -> np.ndarray:
    """12 features of mixed scales, one constant feature, and a 3-column regime one-hot."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 12)) * np.geomspace(0.01, 100.0, 12)
    features[:, 5] = 7.0  # a constant feature: std 0, standardised with scale 1
    regime = np.eye(3)[rng.integers(0, 3, n)]
    return np.hstack([features, regime]).astype(np.float32)


def load(folder: Path, *, committed_generation: int = 1, max_size: int = 10_000,
         embedder=None) -> VectorMemory:
    return VectorMemory.load(folder, committed_generation=committed_generation,
                             max_size=max_size, embedder=embedder or HashingEmbedder())


# ------------------------------------------------------------------------------ search


def test_nearest_states_matches_brute_force_standardised_l2():
    # Arrange
    states = random_states(300)
    queries = random_states(40, seed=1)
    memory = make_memory(states)
    stored = states.astype(np.float64)
    mean, std = stored.mean(axis=0), stored.std(axis=0)
    std[std == 0] = 1.0
    distances = np.linalg.norm(
        (queries[:, None, :] - mean) / std - (stored[None, :, :] - mean) / std, axis=2
    )
    expected_ids = np.argsort(distances, axis=1)[:, :5]
    expected_similarities = 1.0 / (1.0 + np.take_along_axis(distances, expected_ids, axis=1))

    # Act
    similarities, row_ids = memory.nearest_states(queries, 5)

    # Assert
    np.testing.assert_array_equal(row_ids, expected_ids)
    np.testing.assert_allclose(similarities, expected_similarities, rtol=1e-4)


def test_nearest_states_of_a_stored_state_is_itself_with_similarity_one():
    states = random_states(50)
    memory = make_memory(states)

    similarities, row_ids = memory.nearest_states(states[[7, 21]], 1)

    np.testing.assert_array_equal(row_ids[:, 0], [7, 21])
    np.testing.assert_allclose(similarities[:, 0], 1.0, rtol=1e-5)


def test_nearest_states_with_fewer_rows_than_k_pads_with_minus_one_and_zero():
    memory = make_memory(random_states(2))

    similarities, row_ids = memory.nearest_states(random_states(3, seed=4), 4)

    assert row_ids.shape == similarities.shape == (3, 4)
    assert (row_ids[:, 2:] == -1).all() and (similarities[:, 2:] == 0).all()
    assert ((similarities[:, :2] > 0) & (similarities[:, :2] <= 1)).all()


def test_staged_rows_are_invisible_until_commit_staged():
    # Arrange: one committed chunk, then a second chunk staged within the "next" chunk.
    memory = make_memory(random_states(10))
    new_states = random_states(5, seed=9)
    new_rows = [make_row(100 + i) for i in range(5)]
    memory.add(new_states, [row["description"] for row in new_rows], new_rows, 2)

    # Act
    _, before = memory.nearest_states(new_states, 1)
    memory.commit_staged()
    _, after = memory.nearest_states(new_states, 1)

    # Assert
    assert before.max() < 10 and len(memory) == 15
    np.testing.assert_array_equal(after[:, 0], np.arange(10, 15))


def test_empty_memory_answers_no_neighbours_and_a_zero_vote(tmp_path):
    memory = load(tmp_path)  # no vectors/ folder

    similarities, row_ids = memory.nearest_states(random_states(2), 3)

    assert len(memory) == 0
    assert (row_ids == -1).all() and (similarities == 0).all()
    np.testing.assert_array_equal(memory.memory_vote(random_states(2), 3), [0.0, 0.0])
    assert memory.search_text("volatile", 3) == []


# ------------------------------------------------------------------------------ vote


def test_memory_vote_is_the_similarity_weighted_long_return_by_hand():
    # Arrange: states -1, 0, 1 -> mean 0, std sqrt(2/3); a query at 0 is at standardised
    # distance 0 from row 1 and sqrt(3/2) from rows 0 and 2.
    rows = [make_row(0, direction=1, return_pct=0.02),    # long won 2%: +0.02
            make_row(1, direction=-1, return_pct=0.01),   # short won 1%: a long lost 1%
            make_row(2, direction=1, return_pct=-0.03)]   # long lost 3%: -0.03
    memory = make_memory(np.array([[-1.0], [0.0], [1.0]]), rows=rows)
    far = 1.0 / (1.0 + np.sqrt(1.5))
    expected_k3 = (far * 0.02 + 1.0 * -0.01 + far * -0.03) / (1.0 + 2 * far)

    # Act
    votes = memory.memory_vote(np.array([[0.0], [0.0]]), 3)
    nearest_only = memory.memory_vote(np.array([[0.0]]), 1)

    # Assert
    np.testing.assert_allclose(votes, [expected_k3, expected_k3], rtol=1e-6)
    np.testing.assert_allclose(nearest_only, [-0.01], rtol=1e-6)


def test_similar_returns_row_metadata_with_similarity_nearest_first():
    memory = make_memory(np.array([[-1.0], [0.0], [1.0]]))

    (neighbours,) = memory.similar(np.array([[0.9]]), 2)

    assert [row["decision_id"] for row in neighbours] == [2, 1]
    assert neighbours[0]["similarity"] > neighbours[1]["similarity"]
    assert neighbours[0]["regime"] == "volatile" and neighbours[0]["generation"] == 1


def test_search_text_returns_the_most_similar_description_first():
    descriptions = ["calm uptrend reached take profit",
                    "stop loss hit in a volatile market after a gap down",
                    "range bound market closed at max holding time"]
    rows = [make_row(i, description=text) for i, text in enumerate(descriptions)]
    memory = make_memory(random_states(3), rows=rows)

    found = memory.search_text("volatile market stop loss", 2)

    assert found[0]["description"] == descriptions[1]
    assert found[0]["similarity"] > found[1]["similarity"]


# ------------------------------------------------------------------------------ files


def test_save_then_load_gives_the_same_search_results(tmp_path):
    # Arrange
    states = random_states(120)
    memory = make_memory(states)
    queries = random_states(10, seed=3)
    memory.save(tmp_path, 1)

    # Act
    loaded = load(tmp_path)

    # Assert
    for left, right in zip(memory.nearest_states(queries, 6), loaded.nearest_states(queries, 6)):
        np.testing.assert_array_equal(left, right)
    np.testing.assert_array_equal(memory.memory_vote(queries, 6), loaded.memory_vote(queries, 6))
    assert memory.search_text("trade 17", 3) == loaded.search_text("trade 17", 3)
    assert loaded.info() == memory.info()
    assert sorted(p.name for p in (tmp_path / "vectors").iterdir()) == [
        "index.json", "states.faiss", "text.faiss"]


def test_index_json_describes_rows_and_embedders(tmp_path):
    make_memory(random_states(4)).save(tmp_path, 3)

    index = orjson.loads((tmp_path / "vectors" / "index.json").read_bytes())

    assert index["schema_version"] == 1 and index["generation"] == 3
    assert index["state_dim"] == 15
    assert index["text_embedder"] == {"name": "hashing-v1", "dim": 384}
    assert index["state_embedder"] == {"name": "features-v1", "dim": 15}
    assert [row["decision_id"] for row in index["rows"]] == [0, 1, 2, 3]
    assert set(index["rows"][0]) == {"decision_id", "symbol", "direction", "return_pct", "pnl",
                                     "exit_reason", "regime", "entry_time", "generation",
                                     "description"}


def test_load_drops_rows_of_generations_the_manifest_never_committed(tmp_path):
    # Arrange: generation 2 reached the vectors but the crash came before the manifest.
    states = random_states(8)
    memory = make_memory(states[:5])
    memory.save(tmp_path, 1)
    rows = [make_row(10 + i) for i in range(3)]
    memory.add(states[5:], [row["description"] for row in rows], rows, 2)
    memory.save(tmp_path, 2)

    # Act
    loaded = load(tmp_path, committed_generation=1)
    _, row_ids = loaded.nearest_states(states[5:], 1)

    # Assert
    assert len(loaded) == 5 and loaded.info()["rows"] == 5
    assert loaded.info()["generation"] == 1
    assert row_ids.max() < 5
    assert len(load(tmp_path, committed_generation=2)) == 8


def test_max_size_keeps_the_newest_rows_by_entry_time_and_files_keep_all(tmp_path):
    # Arrange: decision ids in one order, entry times (ISO, with offsets) in another.
    hours = [5, 0, 9, 3, 7, 1]
    rows = [make_row(i, entry_time=f"2025-03-01T{hour + 2:02d}:00:00+02:00")
            for i, hour in enumerate(hours)]
    states = random_states(6)
    make_memory(states, rows=rows).save(tmp_path, 1)

    # Act
    loaded = load(tmp_path, max_size=3)
    neighbours = loaded.similar(states, 6)[0]

    # Assert: the three latest entries are hours 9, 7, 5 -> rows 2, 4, 0
    assert len(loaded) == 3 and loaded.info()["rows"] == 6
    assert {row["decision_id"] for row in neighbours} == {0, 2, 4}


def test_max_size_orders_integer_nanosecond_times_too():
    rows = [make_row(i, entry_time=T0 - i * HOUR) for i in range(5)]  # row 0 is the newest

    memory = make_memory(random_states(5), rows=rows, max_size=2)

    assert {row["decision_id"] for row in memory.similar(random_states(1), 5)[0]} == {0, 1}


def test_adding_a_known_decision_id_replaces_its_row_instead_of_duplicating():
    states = random_states(4)
    memory = make_memory(states[:3])
    replacement = [make_row(1, direction=-1, return_pct=0.05)]

    memory.add(states[3:], ["re-run"], replacement, 2)
    memory.commit_staged()

    assert len(memory) == 3
    (nearest,) = memory.similar(states[3:], 1)[0]
    assert nearest["decision_id"] == 1 and nearest["direction"] == -1
    assert nearest["generation"] == 2 and nearest["similarity"] == pytest.approx(1.0)


def test_rebuild_from_outcomes_embeds_reasoning_and_skips_uncommitted(tmp_path):
    # Arrange
    states = random_states(4)
    outcomes = [dict(make_row(i), generation=1 + i // 2, state=states[i].tolist())
                for i in range(4)]
    outcomes[1]["reasoning"] = "breakout above resistance confirmed by volume"

    # Act
    rebuild(tmp_path, outcomes, 1, HashingEmbedder())
    loaded = load(tmp_path)

    # Assert: generation 2 outcomes (rows 2, 3) are not committed yet
    assert loaded.info()["rows"] == 2
    assert loaded.search_text("breakout above resistance", 1)[0]["decision_id"] == 1
    _, row_ids = loaded.nearest_states(states[:2], 1)
    np.testing.assert_array_equal(row_ids[:, 0], [0, 1])


# ------------------------------------------------------------------------------ errors


def corrupt_states(vectors: Path) -> None:
    (vectors / "states.faiss").write_bytes(b"not a faiss index at all")


def truncate_text(vectors: Path) -> None:
    data = (vectors / "text.faiss").read_bytes()
    (vectors / "text.faiss").write_bytes(data[: len(data) // 2])


def delete_text(vectors: Path) -> None:
    (vectors / "text.faiss").unlink()


def drop_a_row(vectors: Path) -> None:
    index = orjson.loads((vectors / "index.json").read_bytes())
    index["rows"].pop()
    (vectors / "index.json").write_bytes(orjson.dumps(index))


def newer_schema(vectors: Path) -> None:
    index = orjson.loads((vectors / "index.json").read_bytes())
    index["schema_version"] = 2
    (vectors / "index.json").write_bytes(orjson.dumps(index))


def garbage_index(vectors: Path) -> None:
    (vectors / "index.json").write_bytes(b'{"schema_version": 1, "rows": [')


def row_without_fields(vectors: Path) -> None:
    index = orjson.loads((vectors / "index.json").read_bytes())
    del index["rows"][1]["return_pct"]
    (vectors / "index.json").write_bytes(orjson.dumps(index))


def swap_index_kinds(vectors: Path) -> None:
    states, text = (vectors / "states.faiss").read_bytes(), (vectors / "text.faiss").read_bytes()
    (vectors / "states.faiss").write_bytes(text)
    (vectors / "text.faiss").write_bytes(states)


@pytest.mark.parametrize(
    ("damage", "file_name", "found"),
    [
        (corrupt_states, "states.faiss", "not a readable FAISS index, was unknown index type"),
        (truncate_text, "text.faiss", "not a readable FAISS index, was truncated"),
        (delete_text, "text.faiss", "missing"),
        (drop_a_row, "states.faiss", "holds 3 rows, was 2 rows"),
        (newer_schema, "index.json", "newer"),
        (garbage_index, "index.json", "not valid JSON"),
        (row_without_fields, "index.json", "rows[1] must hold"),
        (swap_index_kinds, "states.faiss", "IndexFlatL2"),
    ],
)
def test_load_of_a_damaged_vectors_folder_raises_one_line_naming_file_and_doctor(
        tmp_path, damage, file_name, found):
    # Arrange
    make_memory(random_states(3)).save(tmp_path, 1)
    damage(tmp_path / "vectors")

    # Act
    with pytest.raises(MemoryStoreError) as caught:
        load(tmp_path)

    # Assert
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "vectors" / file_name) in message
    assert found in message
    assert f"`bt memory doctor --memory-dir {tmp_path}`" in message


@pytest.mark.parametrize("other", [OtherEmbedder("all-MiniLM-L6-v2"),
                                   OtherEmbedder("hashing-v1", dim=128)])
def test_load_with_another_text_embedder_refuses_to_mix_indexes(tmp_path, other):
    make_memory(random_states(3)).save(tmp_path, 1)

    with pytest.raises(MemoryStoreError) as caught:
        load(tmp_path, embedder=other)

    message = str(caught.value)
    assert "\n" not in message and "index.json" in message
    assert "'hashing-v1' (384-d)" in message and f"{other.name!r} ({other.dim}-d)" in message
    assert "never mixed" in message
    kind = "hashing" if other.name.startswith("hashing") else "sentence"
    assert f"`bt memory doctor --memory-dir {tmp_path} --embedder {kind}`" in message
    assert "--memory-dir" in message


def test_load_without_index_json_is_empty_before_any_commit_and_an_error_after(tmp_path):
    make_memory(random_states(3)).save(tmp_path, 1)
    (tmp_path / "vectors" / "index.json").unlink()  # as after a crash in the first save

    assert len(load(tmp_path, committed_generation=0)) == 0
    with pytest.raises(MemoryStoreError, match="index.json: file is missing.*bt memory doctor"):
        load(tmp_path, committed_generation=1)


def test_add_of_states_with_nan_raises_before_anything_is_stored():
    memory = make_memory(random_states(3))
    states = random_states(1)
    states[0, 2] = np.nan

    with pytest.raises(MemoryStoreError, match="NaN"):
        memory.add(states, ["x"], [make_row(9)], 2)
    assert memory.info()["staged"] == 0


def test_add_of_states_with_another_dimension_raises():
    memory = make_memory(random_states(3))

    with pytest.raises(MemoryStoreError, match="15 dimensions, was 14"):
        memory.add(random_states(1)[:, :14], ["x"], [make_row(9)], 2)


def test_add_of_a_row_without_return_raises_naming_the_missing_field():
    row = make_row(0)
    del row["return_pct"]

    with pytest.raises(MemoryStoreError, match="row 0 lacks return_pct"):
        make_memory(random_states(1), rows=[row])


# ---------------------------------------------------------------- a run's open reads the newest


def run_chunks(folder: Path, chunks: int, max_size: int) -> dict:
    """``chunks`` chunks of 4 rows saved as a run does (text not read), each opened from the
    files before; chunk 2 holds a trade entered after every other (held across chunks).
    Returns the manifest's digests."""
    rng, files = np.random.default_rng(3), None
    for generation in range(1, chunks + 1):
        memory = VectorMemory.load(folder, committed_generation=generation - 1,
                                   max_size=max_size, embedder=HashingEmbedder(),
                                   files=files, text=False)
        rows = [make_row(10 * generation + i) for i in range(4)]
        if generation == 2:
            rows[0]["entry_time"] = T0 + 1000 * HOUR
        memory.add(rng.normal(size=(4, 15)), None, rows, generation)
        files = memory.save(folder, generation)
    return files


def test_a_run_reads_only_the_rows_files_that_hold_the_newest_rows_and_searches_the_same(
        tmp_path):
    # Arrange
    files = run_chunks(tmp_path, 6, max_size=5)
    # Act
    run = VectorMemory.load(tmp_path, committed_generation=6, max_size=5,
                            embedder=HashingEmbedder(), files=files, text=False)
    full = VectorMemory.load(tmp_path, committed_generation=6, max_size=5,
                             embedder=HashingEmbedder(), files=files)
    # Assert
    assert files["vectors/rows_6.json"]["rows"] == 4  # the manifest records the row counts
    assert run.info()["rows"] == full.info()["rows"] == 24
    assert len(run._rows) == 20  # chunk 1's rows file is not read: too old to be searched
    assert run.searched_ids() == full.searched_ids() and 20 in run.searched_ids()
    queries = np.random.default_rng(4).normal(size=(3, 15))
    assert np.array_equal(run.memory_vote(queries, 3), full.memory_vote(queries, 3))


def test_a_run_that_recommits_a_row_of_an_unread_file_reads_every_row_and_rewrites(tmp_path):
    # Arrange
    files = run_chunks(tmp_path, 6, max_size=5)
    run = VectorMemory.load(tmp_path, committed_generation=6, max_size=5,
                            embedder=HashingEmbedder(), files=files, text=False)
    # Act: chunk 1's first decision again (a second pass over its period)
    run.add(np.zeros((1, 15)), None, [make_row(10)], 7)
    files = run.save(tmp_path, 7)
    # Assert
    assert "vectors/rows_7.json" not in files  # rewritten whole, not appended
    reloaded = VectorMemory.load(tmp_path, committed_generation=7, max_size=5,
                                 embedder=HashingEmbedder(), files=files)
    rows = {row["decision_id"]: row for row in reloaded._rows}
    assert len(reloaded._rows) == 24 and rows[10]["generation"] == 7


def test_a_folder_saved_before_the_row_counts_loads_whole_and_its_next_save_records_them(
        tmp_path):
    # Arrange: the manifest's digests as bt wrote them before (no row counts)
    files = {name: {"sha256": record["sha256"], "size": record["size"]}
             for name, record in run_chunks(tmp_path, 6, max_size=5).items()}
    # Act
    old = VectorMemory.load(tmp_path, committed_generation=6, max_size=5,
                            embedder=HashingEmbedder(), files=files, text=False)
    old.add(np.zeros((1, 15)), None, [make_row(99, entry_time=T0 + 2000 * HOUR)], 7)
    files = old.save(tmp_path, 7)
    again = VectorMemory.load(tmp_path, committed_generation=7, max_size=5,
                              embedder=HashingEmbedder(), files=files, text=False)
    # Assert
    assert len(old._rows) == 25  # read whole
    assert [files[f"vectors/rows_{g}.json"]["rows"] for g in range(2, 8)] == [4] * 5 + [1]
    assert files["vectors/index.json"]["rows"] == 4
    assert len(again._rows) < 25 and again.info()["rows"] == 25
