"""The vector memory: past situations searchable by market state and by text.

One id space, two FAISS indexes, stored under ``<memory>/vectors/``:

- ``states.faiss``: ``IndexFlatL2`` of the raw state vector at each trade's entry
  (features + regime one-hot). Searches run in a standardised space (mean and standard
  deviation per dimension over the rows kept for search), in a small index rebuilt at load.
- ``text.faiss``: ``IndexFlatIP`` of normalised text embeddings of each outcome's
  description (and reasoning): cosine similarity, for ``bt memory search``. It covers the
  first ``text_rows`` rows (index.json) and may lag behind the state index: a run never
  embeds text (nor imports torch); whoever reads it embeds the rows it lacks
  (``catch_up_text``), from the outcome files, and ``bt memory doctor`` stores them.
- ``index.json``: schema version, generation, both embedders' names and dimensions,
  ``text_rows`` (absent in folders from before: every row), and one metadata dict per
  row; row ``i`` of both indexes belongs to ``rows[i]``. The state
  embedder ``features-v1`` is the 12 features and the regime one-hot (``STATE_NAMES``);
  ``features-v2`` records its dimensions' names (with ``features.timeframes``), and an
  index is refused by a run whose state vectors are made of other names.

Files are FAISS's own binary format and JSON (no pickle), each written atomically,
``index.json`` last; their names, readers and writer are in vector_files.py. Rows added
within a chunk are staged: searches see them only after ``commit_staged()`` or
``save()``, so a chunk's decisions only see earlier chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from backtester.errors import MemoryStoreError
from backtester.memory.embedders import Embedder, encode_unique
from backtester.memory.texts import STATE_NAMES, index_text
from backtester.memory.vector_files import (  # noqa: F401 (re-exported: the file layout)
    INDEX_FILE,
    NAMED_STATE_EMBEDDER,
    SCHEMA_VERSION,
    STATE_EMBEDDER_NAME,
    STATES_FILE,
    TEXT_FILE,
    VECTORS_FOLDER,
    _clean_row,
    _generation_of,
    _times_ns,
    _previous_names,
    write_files,
)


class VectorMemory:
    """Past trades' entry states and texts, with their outcomes, for similarity search.

    Build one with ``VectorMemory.load`` (an empty memory when the folder has no
    ``vectors/``). ``add`` stages a chunk's rows; ``commit_staged`` or ``save`` makes them
    searchable. Only the newest ``max_size`` rows (by entry time) are searched; the files
    keep every row.
    """

    def __init__(self, *, max_size: int, embedder: Embedder, generation: int = 0,
                 state_names: tuple[str, ...] | None = None) -> None:
        if max_size < 1:
            raise MemoryStoreError(f"memory.max_memory_size: must be >= 1, was {max_size}")
        self._max_size = int(max_size)
        self._embedder = embedder
        # what each state dimension is (state_names); None: unknown, dimensions only
        self._state_names = None if state_names is None else tuple(state_names)
        self.generation = int(generation)
        self._state_dim: int | None = None
        self._states = np.zeros((0, 0), dtype=np.float32)
        # text vectors of rows[:_text_rows]; None: on disk only, not read (a run)
        self._texts: np.ndarray | None = np.zeros((0, embedder.dim), dtype=np.float32)
        self._text_rows = 0
        self._text_digest: dict[str, Any] | None = None  # text.faiss's, kept when not read
        self._persisted_text = 0  # text vectors on disk (text.faiss and text segments)
        self._pending_texts: dict[Any, str] = {}  # texts given to add, not embedded yet
        self.outcome_reader: Any = None  # decision ids -> {id: outcome}, for catch_up_text
        self._rows: list[dict[str, Any]] = []
        self._times = np.zeros(0, dtype=np.int64)  # entry times, ns UTC, for "newest"
        self._signed_returns = np.zeros(0, dtype=np.float64)  # direction * return_pct
        self._staged: list[tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]]]] = []
        self._kept = np.zeros(0, dtype=np.int64)  # rows searched, ascending
        self._mean = np.zeros(0)
        self._scale = np.ones(0)
        self._state_search: faiss.IndexFlatL2 | None = None
        self._text_search: faiss.IndexFlatIP | None = None  # built at the first search_text
        # What the files already hold: rows[:_saved] are on disk (base + segments); the
        # manifest's digests of them (None: unknown, an older folder); whether the next
        # save may append a segment (no stored row was replaced since).
        self._saved = 0
        self._files: dict[str, Any] | None = None
        self._appendable = False
        self._ids: set[Any] | None = None  # decision ids of _rows, built when first needed
        self._segments: list[int] = []  # the generations of the segments in force
        # The rows files in force (index.json, rows_<g>.json) as (name, rows, newest entry
        # ns), recorded in the manifest; a run's open reads the newest of them only: the
        # first _unloaded rows (none newer than _unloaded_newest) stay on disk until
        # _load_rest (the callable _rest) reads them.
        self._parts: list[tuple[str, int, int | None]] = []
        self._unloaded = 0
        self._unloaded_newest: int | None = None
        self._rest: Any = None

    # ------------------------------------------------------------------ load / save

    @classmethod
    def load(cls, folder: Path, *, committed_generation: int, max_size: int,
             embedder: Embedder, state_names: tuple[str, ...] | None = None,
             files: dict[str, Any] | None = None, text: bool = True) -> VectorMemory:
        """Load ``<folder>/vectors/``, keeping rows of committed generations only.

        Parameters
        ----------
        folder
            The memory folder (the one holding ``manifest.json``).
        committed_generation
            The newest generation the manifest commits (generations start at 1; 0 means
            nothing committed). Rows of newer generations, left by a crash between this
            module's save and the manifest, are dropped.
        max_size
            How many of the newest rows (by entry time) to search.
        embedder
            The text embedder of this run; the index must have been built by the same one.
        state_names
            What this run's state vectors are made of (``texts.state_names``); an index
            holding rows of other state names is refused. None: not checked.
        files
            The manifest's digests ({"vectors/<file>": {"sha256", "size"}}): each file's
            bytes must match. None (a folder saved before digests): not checked.
        text
            Whether to read the text index (``search_text``); a run does not, and keeps
            text.faiss (and its digest) as it is when it saves.

        Raises
        ------
        MemoryStoreError
            If a file is missing, corrupt or inconsistent, comes from a newer bt, the
            text index was built by another embedder, or the state vectors of other
            features (``features.timeframes``). The message names the file and the repair.
        """
        from backtester.memory.vector_load import load_vectors

        return load_vectors(cls, Path(folder), committed_generation=committed_generation,
                            max_size=max_size, embedder=embedder, state_names=state_names,
                            files=files, text=text)

    def save(self, folder: Path, generation: int) -> dict[str, dict[str, Any]]:
        """Commit staged rows and write ``<folder>/vectors/``: both indexes, then index.json,
        or, when only rows were added since the last save, those rows as a segment.

        Every file is written atomically (temporary file, fsync, rename). The caller writes
        the memory's manifest after this returns, with the returned digests
        ({"vectors/<file>": {"sha256", "size"}}, rows files with their row counts) that
        ``load`` verifies. A text index not read (a run) is left as it is, its digest
        carried over; a missing one is written empty (covering no row).
        """
        from backtester.memory.vector_save import save_vectors

        return save_vectors(self, Path(folder), int(generation))

    def _empty_texts(self) -> np.ndarray:
        return np.zeros((0, self._embedder.dim), dtype=np.float32)

    def _load_rest(self) -> None:
        """Read the rows a run's open left on disk (before a change that needs every row:
        a stored row replaced, a full rewrite)."""
        if self._rest is None:
            return
        states, rows, times, signed = self._rest()
        self._rest, self._unloaded, self._unloaded_newest, self._ids = None, 0, None, None
        self._states = np.ascontiguousarray(np.concatenate([states, self._states]))
        self._rows = [*rows, *self._rows]
        self._times = np.concatenate([times, self._times])
        self._signed_returns = np.concatenate([signed, self._signed_returns])
        self._saved += len(rows)
        self._refresh_search()

    def encode_files(self, *, with_text: bool = True) -> list[tuple[str, bytes]]:
        """The committed rows as the three files' bytes: [(path relative to the memory
        folder, bytes)], index.json last (without text.faiss: ``with_text`` False)."""
        self._load_rest()
        state_dim = self._state_dim or 0
        states = faiss.IndexFlatL2(state_dim)
        if self._rows:
            states.add(self._states)
        header = {
            "schema_version": SCHEMA_VERSION,
            "generation": self.generation,
            "state_dim": state_dim,
            "text_embedder": {"name": self._embedder.name, "dim": self._embedder.dim},
            "state_embedder": self._state_embedder(state_dim),
            "text_rows": self._text_rows,
            "rows": self._rows,
        }
        files = [(f"{VECTORS_FOLDER}/{STATES_FILE}", faiss.serialize_index(states).tobytes())]
        if with_text:
            texts = faiss.IndexFlatIP(self._embedder.dim)
            if self._text_rows:
                texts.add(np.ascontiguousarray(self._texts[:self._text_rows]))
            files.append((f"{VECTORS_FOLDER}/{TEXT_FILE}", faiss.serialize_index(texts).tobytes()))
        return [*files, (f"{VECTORS_FOLDER}/{INDEX_FILE}", orjson.dumps(header))]

    def _state_embedder(self, state_dim: int) -> dict[str, Any]:
        """index.json's record of what the state vectors are made of."""
        names = self._state_names
        if names is not None and len(names) != state_dim:
            names = None  # no rows yet, or rows of another length: the names do not fit
        if not state_dim or (names in (None, STATE_NAMES) and state_dim == len(STATE_NAMES)):
            return {"name": STATE_EMBEDDER_NAME, "dim": state_dim}
        return {"name": NAMED_STATE_EMBEDDER, "dim": state_dim,
                "names": None if names is None else list(names)}

    # ------------------------------------------------------------------ adding rows

    def __len__(self) -> int:
        """Rows kept for search (the newest ``max_size`` committed rows)."""
        return len(self._kept)

    def searched_ids(self) -> set[Any]:
        """The decision ids of the rows kept for search (the newest ``max_size``)."""
        return {self._rows[i]["decision_id"] for i in self._kept}

    def add(self, states: np.ndarray, texts: list[str] | None, rows: list[dict[str, Any]],
            generation: int) -> None:
        """Stage one chunk's closed trades; searches see them after ``commit_staged``.

        Parameters
        ----------
        states
            Raw state vectors at entry, (n, d) (features and regime one-hot), finite.
        texts
            One text per row (description, plus " " + reasoning when there is one),
            embedded when a text search needs them (never here); None: a reader embeds
            them from the outcome files (``outcome_reader``).
        rows
            One metadata dict per row with the keys of ``ROW_FIELDS`` except
            "generation"; "direction" (+1 long, -1 short) and "return_pct" finite numbers,
            "entry_time" ns UTC (int) or an ISO-8601 string or timestamp. A row whose
            decision_id is already stored replaces it (a re-run chunk adds no duplicate).
        generation
            The generation the rows belong to (the chunk being committed).
        """
        states = np.array(states, dtype=np.float32)  # a copy: the caller may reuse its array
        n_texts = len(rows) if texts is None else len(texts)
        if states.ndim != 2 or not len(states) == n_texts == len(rows):
            raise MemoryStoreError(
                f"vector memory: add needs states (n, d), n texts and n rows, was states "
                f"{states.shape}, {n_texts} texts and {len(rows)} rows"
            )
        if not len(rows):
            return
        clean_rows = [_clean_row(row, generation) for row in rows]
        self._stage(states, None, clean_rows)
        if texts is not None:
            self._pending_texts.update(
                (row["decision_id"], str(text)) for row, text in zip(clean_rows, texts))

    def _stage(self, states: np.ndarray, texts: np.ndarray | None,
               rows: list[dict[str, Any]]) -> None:
        self._check_states(states)
        if texts is not None and texts.shape != (len(rows), self._embedder.dim):
            raise MemoryStoreError(
                f"vector memory: embedder {self._embedder.name!r} returned vectors of shape "
                f"{texts.shape}, was expected ({len(rows)}, {self._embedder.dim})"
            )
        if texts is not None:
            texts = np.ascontiguousarray(texts, dtype=np.float32)
        self._staged.append((states, texts, rows))

    def _check_states(self, states: np.ndarray) -> None:
        dims = {block.shape[1] for block, _, _ in self._staged}
        if self._rows:
            dims.add(self._state_dim)
        if dims and dims != {states.shape[1]}:
            raise MemoryStoreError(
                f"vector memory: state vectors have {dims.pop()} dimensions, was "
                f"{states.shape[1]} in the new rows; the features changed since this memory "
                f"was built: use another --memory-dir or reset this one (`bt memory reset`)"
            )
        if not np.isfinite(states).all():
            raise MemoryStoreError(
                "vector memory: state vectors contain NaN or infinite values, was "
                f"{int((~np.isfinite(states)).any(axis=1).sum())} such rows; add rows only "
                "once every feature is defined (after the indicators' warm-up)"
            )

    def commit_staged(self) -> None:
        """Make the staged rows searchable and recompute the standardisation."""
        if not self._staged:
            return
        if self._append_staged():
            return
        self._load_rest()
        self._ids = None
        stored = [(self._states, None, self._rows)] if self._rows else []
        blocks = stored + self._staged
        states = np.concatenate([block for block, _, _ in blocks])
        rows = [row for _, _, block in blocks for row in block]
        # Which source rows have a text vector: the stored prefix, staged blocks given one.
        has_text = np.concatenate(
            ([np.arange(len(self._rows)) < self._text_rows] if self._rows else [])
            + [np.full(len(block), texts is not None) for _, texts, block in self._staged])
        text_blocks = [texts for _, texts, _ in self._staged if texts is not None]
        self._staged = []
        # A decision id seen before is replaced in its place by the newer row.
        positions: dict[Any, int] = {}
        order: list[int] = []
        for i, row in enumerate(rows):
            position = positions.setdefault(row["decision_id"], len(order))
            if position == len(order):
                order.append(i)
            else:
                order[position] = i
        rows = [rows[i] for i in order]
        order_array = np.asarray(order, dtype=np.int64)
        # The text index covers the longest prefix whose vectors are known, in place (a
        # vector on disk only, not read, must keep its position).
        in_memory = self._texts is not None
        usable = has_text[order_array] & (in_memory | (order_array == np.arange(len(order))))
        text_rows = int(np.argmin(usable)) if not usable.all() else len(order)
        if in_memory:
            source = np.zeros((len(has_text), self._embedder.dim), dtype=np.float32)
            source[:self._text_rows] = self._texts[:self._text_rows]
            if text_blocks:
                source[np.flatnonzero(has_text[len(self._rows):]) + len(self._rows)] = \
                    np.concatenate(text_blocks)
            self._texts = np.ascontiguousarray(source[order_array[:text_rows]])
        self._text_rows = text_rows
        self._states = np.ascontiguousarray(states[order])
        self._rows = rows
        self._state_dim = self._states.shape[1]
        if self._saved and (len(order) < self._saved or order[:self._saved] != list(
                range(self._saved))):
            self._appendable = False  # a stored row was replaced: the next save rewrites
        self._times = _times_ns([row["entry_time"] for row in rows])
        self._signed_returns = np.array([row["direction"] * row["return_pct"] for row in rows],
                                        dtype=np.float64)
        self._refresh_search()

    def _append_staged(self) -> bool:
        """The common case of ``commit_staged`` in time that does not grow with the rows
        held: a run's new rows (no text), every decision id new. False: not that case."""
        if self._texts is not None or not self._rows or any(
                texts is not None for _, texts, _ in self._staged):
            return False
        new = [row for _, _, block in self._staged for row in block]
        ids = [row["decision_id"] for row in new]
        new_times = _times_ns([row["entry_time"] for row in new])
        if self._unloaded_newest is not None and (new_times <= self._unloaded_newest).any():
            return False  # a decision id names one bar: only then can it be an unread row's
        if self._ids is None:
            self._ids = {row["decision_id"] for row in self._rows}
        if len(set(ids)) != len(ids) or not self._ids.isdisjoint(ids):
            return False
        states = np.concatenate([self._states, *(block for block, _, _ in self._staged)])
        self._staged = []
        self._ids.update(ids)
        self._states = np.ascontiguousarray(states)
        self._rows = [*self._rows, *new]
        self._times = np.concatenate([self._times, new_times])
        self._signed_returns = np.concatenate([self._signed_returns, np.array(
            [row["direction"] * row["return_pct"] for row in new], dtype=np.float64)])
        self._refresh_search()
        return True

    def _refresh_search(self) -> None:
        order = np.argsort(self._times, kind="stable")  # ties: the later row is newer
        self._kept = np.sort(order[-self._max_size:]) if len(order) else order
        kept = self._states[self._kept].astype(np.float64)
        self._mean = kept.mean(axis=0) if len(kept) else np.zeros(kept.shape[1])
        scale = kept.std(axis=0) if len(kept) else np.ones(kept.shape[1])
        scale[scale <= 1e-9 * (1.0 + np.abs(self._mean))] = 1.0  # constant dimension
        self._scale = scale
        self._state_search = faiss.IndexFlatL2(kept.shape[1])
        if len(kept):
            self._state_search.add(self._standardise(kept))
        self._text_search = None

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((states - self._mean) / self._scale, dtype=np.float32)

    # ------------------------------------------------------------------ searching

    def nearest_states(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` committed rows whose entry states are nearest to each query.

        Parameters
        ----------
        queries
            Raw state vectors (m, d), standardised here like the stored rows.
        k
            Neighbours per query (>= 1).

        Returns
        -------
        similarities, row_ids
            Both (m, k), nearest first. Similarity is 1 / (1 + L2 distance) in the
            standardised space, in (0, 1]; where fewer than ``k`` rows exist, row id -1
            and similarity 0.
        """
        queries = np.asarray(queries, dtype=np.float64)
        if queries.ndim != 2 or k < 1:
            raise MemoryStoreError(f"vector memory: nearest_states needs queries (m, d) and "
                                   f"k >= 1, was queries {queries.shape} and k {k}")
        similarities = np.zeros((len(queries), k), dtype=np.float64)
        row_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if not len(self) or not len(queries):
            return similarities, row_ids
        if queries.shape[1] != self._state_dim:
            raise MemoryStoreError(
                f"vector memory: queries have {queries.shape[1]} dimensions, was "
                f"{self._state_dim} in the stored states; the features changed since this "
                f"memory was built: use another --memory-dir or reset this one"
            )
        if not np.isfinite(queries).all():
            raise MemoryStoreError("vector memory: queries contain NaN or infinite values; "
                                   "query only once every feature is defined")
        found = min(k, len(self))
        squared, positions = self._state_search.search(self._standardise(queries), found)
        valid = positions >= 0
        similarities[:, :found] = np.where(valid, 1.0 / (1.0 + np.sqrt(np.maximum(squared, 0))),
                                           0.0)
        row_ids[:, :found] = np.where(valid, self._kept[positions], -1)
        return similarities, row_ids

    def memory_vote(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Similarity-weighted mean of direction * return_pct over each query's neighbours.

        That is the return a long would have had in the ``k`` most similar past
        situations: sum(s_j * direction_j * return_pct_j) / sum(s_j); 0.0 for a query
        without neighbours. Returns float64 (m,).
        """
        similarities, row_ids = self.nearest_states(queries, k)
        found = row_ids >= 0
        signed = np.zeros_like(similarities)
        signed[found] = self._signed_returns[row_ids[found]]
        weight = similarities.sum(axis=1)
        total = (similarities * signed).sum(axis=1)
        return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)

    def similar(self, queries: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Metadata of each query's ``k`` nearest rows, each with its "similarity"."""
        similarities, row_ids = self.nearest_states(queries, k)
        return [
            [dict(self._rows[i], similarity=float(s)) for s, i in zip(sims, ids) if i >= 0]
            for sims, ids in zip(similarities, row_ids)
        ]

    def search_text(self, text: str, k: int) -> list[dict[str, Any]]:
        """Metadata of the ``k`` rows whose texts are most similar to ``text`` (cosine);
        the rows the text index lacks are embedded first (``catch_up_text``)."""
        if not len(self) or k < 1:
            return []
        self.catch_up_text()
        if self._text_search is None:
            self._text_search = faiss.IndexFlatIP(self._embedder.dim)
            self._text_search.add(np.ascontiguousarray(self._texts[self._kept]))
        query = np.ascontiguousarray(self._embedder.encode([text]), dtype=np.float32)
        scores, positions = self._text_search.search(query, min(k, len(self)))
        return [dict(self._rows[self._kept[p]], similarity=float(s))
                for s, p in zip(scores[0], positions[0]) if p >= 0]

    def embedded_rows(self) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
        """(row, state vector, text vector) of each row the text index covers, in file
        order (every row read first)."""
        self._load_rest()
        return zip(self._rows, self._states, () if self._texts is None else self._texts)

    @property
    def text_rows(self) -> int:
        """How many rows (the first) the text index covers; the rest await embedding."""
        return self._text_rows

    def catch_up_text(self) -> int:
        """Embed the rows the text index lacks (in memory; ``save`` stores them); returns
        how many. Their texts are those given to ``add``, else read through
        ``outcome_reader`` (decision ids -> {id: outcome dict}) and made by
        ``texts.index_text``; the model loads here, once per process.

        Raises
        ------
        MemoryStoreError
            If the text index was not read (``load(text=False)``) or a row's text cannot
            be found.
        """
        self.commit_staged()
        missing = self._rows[self._text_rows:]
        if not missing:
            return 0
        if self._texts is None:
            raise MemoryStoreError("vector memory: the text index was not read; load it "
                                   "with text=True to search or update it")
        ids = [row["decision_id"] for row in missing]
        unknown = [i for i in ids if i not in self._pending_texts]
        texts = dict(self._pending_texts)
        if unknown:
            if self.outcome_reader is None:
                raise MemoryStoreError(f"vector memory: {len(unknown)} rows have no text to "
                                       "embed; set outcome_reader to read their outcome files")
            names = self._state_names or STATE_NAMES
            read = self.outcome_reader(unknown)
            absent = [i for i in unknown if i not in read]
            if absent:
                raise MemoryStoreError(f"outcome_{absent[0]}.json: is missing ({len(absent)} "
                                       "outcome files the vector index holds are); run "
                                       "`bt memory doctor` to rebuild the index")
            texts.update((i, index_text(read[i], names)) for i in unknown)
        vectors = encode_unique(self._embedder, [texts[i] for i in ids])
        self._texts = np.ascontiguousarray(np.concatenate([self._texts[:self._text_rows],
                                                           vectors]))
        self._text_rows = len(self._rows)
        for i in ids:
            self._pending_texts.pop(i, None)
        self._text_search = None
        return len(ids)

    def row(self, row_id: int) -> dict[str, Any]:
        """A copy of one row's metadata (``row_id`` as returned by ``nearest_states``)."""
        return dict(self._rows[row_id])

    def info(self) -> dict[str, Any]:
        """Counts, dimensions, embedders and generation, for ``bt memory inspect``."""
        return {
            "rows": self._unloaded + len(self._rows),
            "kept": len(self),
            "staged": sum(len(block) for _, _, block in self._staged),
            "max_size": self._max_size,
            "generation": self.generation,
            "text_rows": self._text_rows,
            "state_dim": self._state_dim,
            "state_embedder": self._state_embedder(self._state_dim or 0),
            "text_embedder": {"name": self._embedder.name, "dim": self._embedder.dim},
        }


def rebuild(folder: Path, outcomes: list[dict[str, Any]], generation: int,
            embedder: Embedder, state_names: tuple[str, ...] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Write fresh vector indexes for ``folder`` from its outcome dicts; returns their
    digests (see ``rebuilt_files``, which builds the bytes)."""
    return write_files(folder, rebuilt_files(folder, outcomes, generation, embedder,
                                             state_names))


def rebuilt_files(folder: Path, outcomes: list[dict[str, Any]], generation: int,
                  embedder: Embedder, state_names: tuple[str, ...] | None = None
                  ) -> list[tuple[str, bytes]]:
    """Fresh vector index files for ``folder`` from its outcome dicts (`bt memory doctor`),
    as [(path relative to the folder, bytes)], index.json last; writes nothing.

    Each outcome needs the row fields (``ROW_FIELDS``), "state" (list of floats) and
    optionally "reasoning"; its text is ``texts.index_text``. Outcomes of
    generations newer than ``generation`` (not committed) are left out. ``state_names`` None: those the old index.json recorded, if it
    can be read, else STATE_NAMES for states of that length, else unrecorded. Text vectors
    the folder's verified text index holds for an unchanged row are kept, the rest
    embedded in one call (``text_search.text_vectors``).
    """
    committed = [outcome for outcome in outcomes
                 if _generation_of(outcome) <= generation]
    if state_names is None:
        state_names = _previous_names(Path(folder) / VECTORS_FOLDER / INDEX_FILE, embedder)
    memory = VectorMemory(max_size=max(1, len(committed)), embedder=embedder,
                          state_names=state_names)
    if committed:
        lengths = {len(outcome.get("state") or ()) for outcome in committed}
        if len(lengths) != 1 or 0 in lengths:
            raise MemoryStoreError(
                f"outcome files: every outcome needs a 'state' vector of one length, was "
                f"lengths {sorted(lengths)}; reset the memory (`bt memory reset`) and run again"
            )
        states = np.array([outcome["state"] for outcome in committed], dtype=np.float32)
        names = state_names if state_names is not None else STATE_NAMES
        texts = [index_text(outcome, names) for outcome in committed]
        rows = [_clean_row(outcome, _generation_of(outcome)) for outcome in committed]
        from backtester.memory.text_search import text_vectors  # imports the store

        memory._stage(states, text_vectors(Path(folder), generation, embedder, rows, states,
                                           texts), rows)
    memory.commit_staged()
    memory.generation = int(generation)
    return memory.encode_files()
