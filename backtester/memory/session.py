"""The memory as one run sees it: the store and the vector memory, locked for the run.

Also the state vector of a situation (features + regime at entry): what the memory vote
searches; with ``features.timeframes`` it holds the higher timeframes' features too. Its
texts (and ``state_names``) are in texts.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.config import Config
from backtester.ensemble import empty_stats
from backtester.memory.embedders import default_embedder
from backtester.memory.io import FolderLock
from backtester.memory.integrity import FILES_KEY
from backtester.errors import MemoryStoreError
from backtester.memory.store import MemoryStore
from backtester.memory.texts import STATE_NAMES, STATE_REGIMES, state_names
from backtester.memory.vectors import VectorMemory
from backtester.providers.base import Candidates, MarketContext
from backtester.timeframes import higher_feature_names


def config_state_names(config: Config) -> tuple[str, ...]:
    """The state names of a run of ``config``: its features (``features.timeframes``
    included), then the regime one-hot; STATE_NAMES without timeframes."""
    timeframes = getattr(getattr(config, "features", None), "timeframes", ())
    return state_names(higher_feature_names(tuple(timeframes)))


def state_vectors(context: MarketContext, candidates: Candidates) -> np.ndarray:
    """(K, n_features + 3) float32: every feature column at each candidate bar (the 12,
    then 12 per higher timeframe: ``state_names(context.feature_names)``), then the regime
    one-hot; NaN as 0."""
    features = context.features[candidates.bar, candidates.asset]
    regimes = context.regimes[candidates.bar, candidates.asset]
    onehot = (regimes[:, None] == np.array(STATE_REGIMES)[None, :]).astype(np.float64)
    return np.nan_to_num(np.hstack([features, onehot]), nan=0.0).astype(np.float32)


@dataclass
class MemorySession:
    """Store + vectors of one locked memory folder, as of its last committed chunk."""

    config: Config
    store: MemoryStore
    vectors: VectorMemory
    state_names: tuple[str, ...] = STATE_NAMES  # what each state vector is made of

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: Config) -> Iterator[MemorySession]:
        """Lock the folder, load what earlier chunks committed; unlock when done.

        A frozen memory (``memory.mode = "frozen"``) must already hold committed chunks:
        nothing is created in it, and the lock file is gone again when the run ends.
        """
        folder = Path(config.memory.dir)
        learns = config.memory.learns
        names = config_state_names(config)
        if learns:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            MemoryStore.open(folder, config_hash=config.decision_hash(), create=False,
                             read_only=True)
        with FolderLock(folder):
            store = MemoryStore.open(folder, config_hash=config.decision_hash(),
                                     create=learns, read_only=not learns)
            # Named only: a run never embeds text (the sentence model, torch, stay unloaded);
            # the text index catches up when something reads it (`bt memory search`).
            embedder = default_embedder(config.memory.embedder)
            vectors = VectorMemory.load(
                folder, committed_generation=store.generation,
                max_size=config.memory.max_memory_size, embedder=embedder, state_names=names,
                files=store.manifest.get(FILES_KEY), text=False,
            )
            # A bad outcome file is an error, never skipped: those the vector memory
            # searches are validated in full, the others by name and size (an open does
            # not read the whole memory; `bt memory inspect` and the doctor read it all).
            store.check_outcomes(vectors.searched_ids())
            yield cls(config, store, vectors, names)

    @property
    def generation(self) -> int:
        return self.store.generation

    def stats(self) -> dict[str, Any]:
        """The learning state: {"providers": ..., "regimes": ...} (empty for a new memory)."""
        providers, regimes = self.store.provider_stats(), self.store.regime_stats()
        if not providers:
            return empty_stats()
        return {"providers": providers.get("providers", {}),
                "regimes": regimes.get("regimes", {})}

    def commit(self, *, label: str, start: pd.Timestamp, end: pd.Timestamp, run_id: str,
               outcomes: list[dict[str, Any]], stats: dict[str, Any],
               parameters: dict[str, Any], snapshot: dict[str, Any],
               run_state: dict[str, Any] | None) -> None:
        """Write one chunk: outcomes, stats, snapshot, vectors, then the manifest."""
        states = np.array([o["state"] for o in outcomes], dtype=np.float32).reshape(
            len(outcomes), len(self.state_names))
        rows = [{k: o[k] for k in ("decision_id", "symbol", "direction", "return_pct", "pnl",
                                   "exit_reason", "regime", "entry_time", "generation",
                                   "description")} for o in outcomes]

        def write_vectors(folder: Path, generation: int) -> dict[str, Any]:
            self.vectors.add(states, None, rows, generation)  # text: embedded when read
            return self.vectors.save(folder, generation)  # digests for the manifest

        committed = self.store.committed_chunks()
        try:
            self.store.commit_chunk(
                label=label, start=start.isoformat(), end=end.isoformat(), last_bar_time=end,
                run_id=run_id, outcomes=outcomes,
                provider_stats={"providers": stats["providers"]},
                regime_stats={"regimes": stats["regimes"]}, parameters=parameters,
                snapshot=snapshot, run_state=run_state, vectors=write_vectors,
            )
        except OSError as e:  # disk full, quota, permissions: the manifest was not written
            kept = (f"the memory stays at chunk {committed[-1]['label']}" if committed
                    else "the memory stays as it was")
            raise MemoryStoreError(
                f"{self.store.folder}: cannot commit chunk {label} ({e.strerror or e}); "
                f"{kept}; once that is fixed, run the same command with --resume") from None
