"""``Memory``: a read-only view of a memory folder (what runs learned)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.errors import MemoryStoreError


class Memory:
    """A memory folder as of its last committed chunk; nothing here writes to it.

    Make one with ``open_memory``.

    Attributes
    ----------
    folder : Path
        The memory folder.
    generation : int
        How many chunks are committed.
    config_hash : str or None
        The hash of the config the memory was written under.
    """

    def __init__(self, folder: Path) -> None:
        from backtester.memory.store import MemoryStore

        self.folder = folder
        self._store = MemoryStore.open(folder, config_hash=None, create=False, read_only=True)
        self.generation: int = self._store.generation
        self.config_hash: str | None = self._store.config_hash

    @property
    def weights(self) -> dict[str, dict[str, Any]]:
        """The learned provider weights after the last committed chunk.

        Returns
        -------
        dict
            ``{"overall": {provider: weight}, "by_regime": {regime: {provider: weight}}}``.
        """
        from backtester.ensemble import provider_credit

        overall = {name: row["weight"]
                   for name, row in provider_credit(self._store.provider_stats()).items()}
        regimes = self._store.regime_stats().get("regimes", {})
        by_regime = {regime: {name: row.get("weight")
                              for name, row in table.get("providers", {}).items()}
                     for regime, table in regimes.items()}
        return {"overall": overall, "by_regime": by_regime}

    def outcomes(self, newest: int | None = None) -> pd.DataFrame:
        """The committed outcomes (one closed trade each), oldest entry first.

        Parameters
        ----------
        newest : int, optional
            Keep only the newest this many.

        Returns
        -------
        pandas.DataFrame
            One row per outcome: decision_id, symbol, direction, entry/exit time (UTC)
            and price, size, pnl, return_pct, fees, exit_reason, regime, votes,
            ensemble_score, memory_vote, description, state, generation, chunk.
        """
        from backtester.memory.store import OUTCOME_KEYS

        frame = pd.DataFrame(self._store.read_outcomes(newest))
        if frame.empty:
            return pd.DataFrame(columns=list(OUTCOME_KEYS))
        first = [k for k in OUTCOME_KEYS if k in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        for column in ("entry_time", "exit_time"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def snapshots(self) -> pd.DataFrame:
        """What each committed chunk did and learned, one row per chunk (by label).

        Returns
        -------
        pandas.DataFrame
            generation, start, end, outcomes, return, sharpe, win_rate, trades, pnl,
            size_multiplier, ensemble_hit_rate, hit_rate_without_memory,
            memory_vote_hit_rate, and the weights used (a dict).
        """
        from backtester.memory.integrity import check_inside
        from backtester.memory.io import read_json

        rows = []
        for chunk in self._store.committed_chunks():
            snap = read_json(check_inside(self.folder, self.folder / chunk["snapshot"]),
                             folder=self.folder)
            learning = snap.get("learning", {})
            rows.append({
                "chunk": chunk["label"], "generation": chunk["generation"],
                "start": pd.Timestamp(chunk["start"]), "end": pd.Timestamp(chunk["end"]),
                "outcomes": chunk["outcomes"], "return": snap.get("return"),
                "sharpe": snap.get("sharpe"), "win_rate": snap.get("win_rate"),
                "trades": snap.get("trades"), "pnl": snap.get("pnl"),
                "size_multiplier": snap.get("size_multiplier"),
                "ensemble_hit_rate": learning.get("ensemble", {}).get("hit_rate"),
                "hit_rate_without_memory":
                    learning.get("ensemble_without_memory", {}).get("hit_rate"),
                "memory_vote_hit_rate": learning.get("memory_vote", {}).get("hit_rate"),
                "weights": snap.get("weights", {}),
            })
        return pd.DataFrame(rows).set_index("chunk") if rows else pd.DataFrame()

    def search(self, text: str, k: int = 5) -> pd.DataFrame:
        """The ``k`` past situations whose descriptions are most similar to ``text``.

        Parameters
        ----------
        text : str
            What to look for, e.g. "stopped out in a volatile market".
        k : int
            How many situations.

        Returns
        -------
        pandas.DataFrame
            similarity (cosine), then the situation: symbol, direction, entry_time,
            regime, exit_reason, return_pct, pnl, description; most similar first.

        Raises
        ------
        MemoryStoreError
            When the folder has no vector index yet.
        """
        from backtester.memory.vectors import VectorMemory

        from backtester.memory.embedders import index_embedder

        embedder = index_embedder(self.folder)
        if embedder is None:
            raise MemoryStoreError(f"{self.folder}: no vector index yet; run `bt run` first")
        from backtester.memory.integrity import FILES_KEY

        # the manifest's digests: the notebook verifies the files as a run does
        vectors = VectorMemory.load(self.folder, committed_generation=self.generation,
                                    max_size=10**9, embedder=embedder,
                                    files=self._store.manifest.get(FILES_KEY))
        vectors.outcome_reader = self._store.outcomes_by_id  # rows a run left unembedded
        hits = vectors.search_text(text, k)
        frame = pd.DataFrame(hits)
        if frame.empty:
            return frame
        return frame[["similarity", *(c for c in frame.columns if c != "similarity")]]

    def __repr__(self) -> str:
        hash_text = (self.config_hash or "")[:8]
        return (f"Memory(folder={str(self.folder)!r}, chunks={self.generation}, "
                f"config_hash={hash_text!r})")


def open_memory(path: str | os.PathLike[str]) -> Memory:
    """Open a memory folder read-only.

    Parameters
    ----------
    path : str or path-like
        The memory folder (memory.dir, default data/memory).

    Returns
    -------
    Memory
        Its learned weights, outcomes, snapshots and text search.

    Raises
    ------
    MemoryStoreError
        When the folder holds no committed memory or is unreadable.
    """
    return Memory(Path(path))
