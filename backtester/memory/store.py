"""The memory folder: outcomes, stats, snapshots and the manifest, committed chunk by chunk.

A chunk is committed by writing, in order, its outcome files, the three stats files
(each stamped with the new generation), its snapshot (which also holds the full stats
after the chunk), the vector index (through a callback) and, LAST, ``manifest.json``.
Only the manifest makes the chunk part of the memory: a crash anywhere before it leaves
the previous generation in force, and ``MemoryStore.open`` puts stats files that ran
ahead back to the last committed snapshot's. No file but ``.lock`` holds a wall-clock
time, so a resumed run and an uninterrupted one leave the same files.

This module holds ``MemoryStore`` (open, read, commit), ``reset`` and ``backup_aside``
(move a folder aside), ``outcome_tallies``, and the file-name patterns and validation
helpers that ``backtester.memory.doctor`` (the ``bt memory doctor`` repair) shares.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from numbers import Integral
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from backtester.errors import MemoryStoreError
from backtester.memory.io import (
    LOCK_NAME,
    FolderLock,
    atomic_write_many,
    dumps_json,
    fsync_directory,
    holds_lock,
    is_temporary,
    read_json,
    write_json,
)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PROVIDER_PERFORMANCE = "provider_performance.json"
REGIME_PERFORMANCE = "regime_performance.json"
PARAMETERS = "parameters.json"
QUARANTINE = "quarantine"
VECTORS = "vectors"
LLM_CACHE = "llm_cache"
DERIVED_FILES = {  # file -> the key holding its content (the same key in each snapshot)
    PROVIDER_PERFORMANCE: "provider_stats",
    REGIME_PERFORMANCE: "regime_stats",
    PARAMETERS: "parameters",
}
OUTCOME_KEYS = (
    "schema_version", "decision_id", "symbol", "direction", "entry_time", "exit_time",
    "entry_price", "exit_price", "size", "pnl", "return_pct", "fees", "exit_reason",
    "regime", "volatility", "votes", "ensemble_score", "memory_vote", "description",
    "state", "generation", "chunk",
)
SNAPSHOT_KEYS = (  # written by commit_chunk around the caller's snapshot dict
    "schema_version", "generation", "label", "start", "end", "last_bar_time", "run_id",
    "config_hash", "outcomes", "provider_stats", "regime_stats", "parameters",
)
CHUNK_PROVIDER_COUNTS = "chunk_provider_counts"
CHUNK_REGIME_COUNTS = "chunk_regime_counts"
_OUTCOME_NAME = re.compile(r"outcome_(-?\d+)\.json")
_SNAPSHOT_NAME = re.compile(r"snapshot_\d{8}_\d{6}(_g\d+)?\.json")
_INT64 = (-(2**63), 2**63 - 1)


def _default(key: str) -> dict:
    return {"size_multiplier": 1.0, "history": []} if key == "parameters" else {}


class MemoryStore:
    """One memory folder, as of its last committed chunk. Create with ``MemoryStore.open``.

    Attributes
    ----------
    folder
        The memory folder.
    manifest
        The committed manifest: schema_version, config_hash, generation, chunks,
        active_run.
    generation
        The number of committed chunks (0: an empty memory).
    """

    def __init__(self, folder: Path, manifest: dict, derived: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._derived = derived  # key of DERIVED_FILES -> content

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def config_hash(self) -> str | None:
        return self.manifest["config_hash"]

    @classmethod
    def open(
        cls, folder: Path | str, *, config_hash: str | None, create: bool = True,
        read_only: bool = False,
    ) -> MemoryStore:
        """Open the memory in ``folder``: read its manifest and its three stats files.

        Reads nothing else in the normal case (no outcome file is listed or read).
        Stats files out of step with the manifest (an interrupted commit) are restored
        from the last committed snapshot, with a warning, and rewritten when this
        process holds the folder's lock.

        Parameters
        ----------
        folder
            The memory folder; need not exist (a new, empty memory).
        config_hash
            The run's config hash; a memory written under another raises. None skips the
            check (read-only uses such as ``bt memory inspect``); such a store cannot
            commit until a manifest supplies one.
        create
            When False, a folder with no committed memory raises instead of opening
            empty.
        read_only
            Never rewrite a stale stats file, even under the lock (a frozen run).

        Raises
        ------
        MemoryStoreError
            Newer schema, other config, unreadable manifest or snapshot, foreign files.
        """
        folder = Path(folder)
        path = folder / MANIFEST
        try:
            manifest = read_json(path)
        except FileNotFoundError:
            manifest = None
        if manifest is None:
            if not create:
                raise MemoryStoreError(
                    f"{folder}: no committed memory here (no {MANIFEST}); run `bt run` to "
                    "build one, or pass --memory-dir for another folder"
                )
            _check_no_foreign_files(folder)
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "config_hash": config_hash,
                "generation": 0,
                "chunks": [],
                "active_run": None,
            }
        else:
            _check_schema(manifest, folder)
            problem = _manifest_problem(manifest)
            if problem:
                raise MemoryStoreError(
                    f"{path}: {problem}; run `bt memory doctor` to rebuild it"
                )
            stored = manifest["config_hash"]
            if config_hash is not None and stored != config_hash:
                raise MemoryStoreError(
                    f"{folder} was written under another config (hash {stored[:8]}, this "
                    f"run {config_hash[:8]}); use --fresh to move it aside and start "
                    "empty, or --memory-dir for another folder"
                )
        derived, stale = _read_derived(folder, manifest["generation"])
        if stale:
            derived.update(_restore_derived(folder, manifest, stale, read_only=read_only))
        return cls(folder, manifest, derived)

    # -- reading ------------------------------------------------------------------------

    def committed_chunks(self) -> list[dict]:
        """The committed chunks, oldest first: {generation, label, start, end,
        last_bar_time, run_id, outcomes (count), snapshot (file name)}."""
        return copy.deepcopy(self.manifest["chunks"])

    def provider_stats(self) -> dict:
        """Per-provider stats as of the last commit ({} when empty)."""
        return copy.deepcopy(self._derived["provider_stats"])

    def regime_stats(self) -> dict:
        """Per regime x provider stats as of the last commit ({} when empty)."""
        return copy.deepcopy(self._derived["regime_stats"])

    def parameters(self) -> dict:
        """Adaptive parameters and their history ({"size_multiplier": 1.0, "history": []}
        when empty)."""
        return copy.deepcopy(self._derived["parameters"])

    def run_state(self) -> dict | None:
        """The interrupted run's state for ``--resume`` (manifest "active_run"), or None."""
        return copy.deepcopy(self.manifest["active_run"])

    def outcome_files(self) -> list[Path]:
        """Every outcome file in the folder, committed or not, sorted by name."""
        return _outcome_files(self.folder)

    def read_outcomes(self, newest: int | None = None) -> list[dict]:
        """The committed outcomes, sorted by entry_time (then decision_id).

        Outcome files of a generation above the manifest's (an interrupted commit) are
        skipped. ``newest`` keeps only the last ``newest`` of them.

        Raises
        ------
        MemoryStoreError
            If an outcome file is unreadable or lacks required keys.
        """
        outcomes = []
        folder = os.fspath(self.folder)
        for name in _outcome_names(self.folder):  # plain strings: pathlib costs 30 us a file
            path = os.path.join(folder, name)
            with open(path, "rb") as source:
                data = source.read()
            try:
                outcome = orjson.loads(data)
            except orjson.JSONDecodeError:
                outcome = read_json(path)  # raises the one-line error
            problem = _outcome_problem(outcome, name)
            if problem:
                raise MemoryStoreError(
                    f"{path}: {problem}; run `bt memory doctor` to quarantine it"
                )
            if outcome["generation"] <= self.generation:
                outcomes.append(outcome)
        outcomes.sort(key=lambda outcome: (outcome["entry_time"], outcome["decision_id"]))
        if newest is not None:
            outcomes = outcomes[len(outcomes) - newest:] if newest > 0 else []
        return outcomes

    def summary(self) -> dict:
        """What ``bt memory inspect`` shows: size, file counts by kind, chunks and
        outcomes per chunk, active run, providers, regimes, parameters."""
        size, files = _folder_census(self.folder)
        chunks = self.committed_chunks()
        return {
            "folder": str(self.folder),
            "schema_version": self.manifest["schema_version"],
            "config_hash": self.config_hash,
            "generation": self.generation,
            "size_bytes": size,
            "files": files,
            "chunks": chunks,
            "outcomes_per_chunk": [
                {"generation": c["generation"], "label": c["label"], "outcomes": c["outcomes"]}
                for c in chunks
            ],
            "outcomes_committed": sum(c["outcomes"] for c in chunks),
            "active_run": self.run_state(),
            "providers": sorted(_provider_rows(self._derived["provider_stats"])),
            "regimes": sorted(_regime_rows(self._derived["regime_stats"])),
            "parameters": self.parameters(),
        }

    # -- writing ------------------------------------------------------------------------

    def commit_chunk(
        self,
        *,
        label: str,
        start: str,
        end: str,
        last_bar_time: pd.Timestamp,
        run_id: str,
        outcomes: list[dict],
        provider_stats: dict,
        regime_stats: dict,
        parameters: dict,
        snapshot: dict,
        run_state: dict | None,
        vectors: Callable[[Path, int], None] | None = None,
    ) -> None:
        """Commit one chunk as generation ``self.generation + 1``.

        Writes the outcome files, the stats files, the snapshot (``snapshot`` plus the
        chunk's identity and the full stats after it), calls ``vectors(folder,
        generation)`` and writes the manifest last. Each file is atomic; re-committing
        the same chunk rewrites the same files.

        Parameters
        ----------
        outcomes
            Closed trades, each with every key of ``OUTCOME_KEYS`` and "generation"
            equal to the new generation ("schema_version" may be left out: the store
            adds it).
        provider_stats, regime_stats, parameters
            The full state after this chunk.
        snapshot
            The chunk's figures (pnl, sharpe, weights used, "chunk_provider_counts",
            "chunk_regime_counts", ...). The store adds the keys in ``SNAPSHOT_KEYS``;
            the dict may repeat them only with the same values.
        run_state
            What ``--resume`` needs, kept as the manifest's "active_run".
        vectors
            Writes the vector index for the new generation, before the manifest.

        Raises
        ------
        MemoryStoreError
            An outcome lacks keys, has a wrong generation or a repeated decision_id; the
            snapshot sets a key of ``SNAPSHOT_KEYS`` to another value; the store has no
            config hash.
        """
        if self.config_hash is None:
            raise MemoryStoreError(
                f"{self.folder}: cannot commit without a config hash; open the store with "
                "config_hash=<the run's config hash>"
            )
        generation = self.generation + 1
        outcome_files = _encode_outcomes(self.folder, outcomes, generation)
        last_bar = _utc(last_bar_time, f"last_bar_time of chunk {label}")
        state = {
            "provider_stats": provider_stats,
            "regime_stats": regime_stats,
            "parameters": parameters,
        }
        snapshot_name = self._snapshot_name(last_bar, generation)
        chunk = {
            "generation": generation,
            "label": label,
            "start": start,
            "end": end,
            "last_bar_time": last_bar.isoformat(),
            "run_id": run_id,
            "outcomes": len(outcome_files),
            "snapshot": snapshot_name,
        }
        written = {
            **{key: value for key, value in chunk.items() if key != "snapshot"},
            **state,
            "schema_version": SCHEMA_VERSION,
            "config_hash": self.config_hash,
        }
        clashes = sorted(
            key for key in set(snapshot) & set(written)
            if dumps_json(snapshot[key]) != dumps_json(written[key])
        )
        if clashes:
            raise MemoryStoreError(
                f"snapshot of chunk {label}: sets {', '.join(clashes)} to other values than "
                "commit_chunk writes there; rename those keys or leave them out"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_many(outcome_files)
        encoded = {}
        for name, key in DERIVED_FILES.items():
            encoded[key] = dumps_json(
                {"schema_version": SCHEMA_VERSION, "generation": generation, key: state[key]}
            )
        atomic_write_many(
            (self.folder / name, encoded[key]) for name, key in DERIVED_FILES.items()
        )
        write_json(self.folder / snapshot_name, {**snapshot, **written})
        if vectors is not None:
            vectors(self.folder, generation)
        manifest = {
            **self.manifest,
            "schema_version": SCHEMA_VERSION,
            "generation": generation,
            "chunks": [*self.manifest["chunks"], chunk],
            "active_run": run_state,
        }
        encoded_manifest = dumps_json(manifest)
        _write_manifest(self.folder, encoded_manifest)
        # Keep what a reopen would read (plain JSON values, NaN as None).
        self.manifest = orjson.loads(encoded_manifest)
        self._derived = {
            key: orjson.loads(encoded[key])[key] for key in DERIVED_FILES.values()
        }

    def finish_run(self) -> None:
        """Clear the manifest's "active_run" (the run completed; nothing to resume)."""
        if self.manifest["active_run"] is None:
            return
        manifest = {**self.manifest, "active_run": None}
        if self.generation > 0:
            _write_manifest(self.folder, dumps_json(manifest))
        self.manifest = manifest

    def _snapshot_name(self, last_bar: pd.Timestamp, generation: int) -> str:
        """snapshot_<last bar time>.json; a committed chunk already holding that name (a
        second pass over the same period) gets _g<generation> appended instead."""
        name = f"snapshot_{last_bar:%Y%m%d_%H%M%S}.json"
        if any(chunk["snapshot"] == name for chunk in self.manifest["chunks"]):
            name = f"snapshot_{last_bar:%Y%m%d_%H%M%S}_g{generation}.json"
        return name


def _write_manifest(folder: Path, data: bytes) -> None:
    """The commit point: the manifest, written last."""
    atomic_write_many([(folder / MANIFEST, data)])


# -- reset ------------------------------------------------------------------------------


def reset(folder: Path | str) -> Path | None:
    """Move the memory folder aside to ``<folder>.bak-<YYYYmmdd_HHMMSS>`` (UTC; ``-1``,
    ``-2``, ... if taken), keeping every file; the LLM response cache is copied back, so
    recorded answers can still be replayed.

    Returns
    -------
    Path or None
        The backup folder, or None when there was nothing to move (no folder, or an
        empty one).

    Raises
    ------
    MemoryLockedError
        A run holds the folder.
    """
    return _move_aside(folder, command="bt memory reset")


def backup_aside(folder: Path | str) -> Path | None:
    """Move the memory folder aside before a fresh run (``bt run --fresh``); see
    ``reset``."""
    return _move_aside(folder, command="bt run --fresh")


def _move_aside(folder: Path | str, *, command: str) -> Path | None:
    folder = Path(folder).resolve()
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise MemoryStoreError(f"{folder}: not a folder, was a file; pass a memory folder")
    if all(entry.name == LOCK_NAME for entry in folder.iterdir()):
        return None
    with FolderLock(folder, command=command) as lock:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        backup = folder.with_name(f"{folder.name}.bak-{stamp}")
        suffix = 1
        while backup.exists():
            backup = folder.with_name(f"{folder.name}.bak-{stamp}-{suffix}")
            suffix += 1
        os.rename(folder, backup)
        lock._moved_to(backup)  # release removes our lock file from the backup
    fsync_directory(backup.parent)
    if (backup / LLM_CACHE).is_dir():  # recorded answers are not learning: keep replaying them
        shutil.copytree(backup / LLM_CACHE, folder / LLM_CACHE)
    return backup


# -- outcome tallies --------------------------------------------------------------------


def outcome_tallies(outcomes: Iterable[dict]) -> dict[str, dict]:
    """Trades, wins and losses per provider and per regime x provider, from outcomes.

    A provider's trade is an outcome where its vote equals the trade's direction; a win
    has pnl > 0, every other trade is a loss (as ``backtester.ensemble.learn`` counts).

    Returns
    -------
    dict
        {"providers": {provider: {trades, wins, losses}}, "regimes": {regime (str):
        {provider: {trades, wins, losses}}}}.
    """
    providers: dict[str, dict[str, int]] = {}
    regimes: dict[str, dict[str, dict[str, int]]] = {}
    for outcome in outcomes:
        win = int(outcome["pnl"] is not None and outcome["pnl"] > 0)
        for provider, vote in outcome["votes"].items():
            if not isinstance(vote, dict) or vote.get("vote") != outcome["direction"]:
                continue
            for table in (providers, regimes.setdefault(str(outcome["regime"]), {})):
                tally = table.setdefault(provider, {"trades": 0, "wins": 0, "losses": 0})
                tally["trades"] += 1
                tally["wins"] += win
                tally["losses"] += 1 - win
    return {"providers": providers, "regimes": regimes}


# -- validation -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_schema(document: Any, folder: Path) -> None:
    version = document.get("schema_version") if isinstance(document, dict) else None
    if _is_int(version) and version > SCHEMA_VERSION:
        raise MemoryStoreError(
            f"{folder}: written by a newer bt (schema {version}, this bt reads up to "
            f"{SCHEMA_VERSION}); upgrade bt, or use --memory-dir for another folder"
        )


def _schema_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"not a JSON object, was {type(document).__name__}"
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or not _is_int(version):
        return f"unknown schema_version, was {version!r} (this bt reads {SCHEMA_VERSION})"
    return None


def _missing(document: dict, keys: Iterable[str]) -> str | None:
    missing = [key for key in keys if key not in document]
    return f"missing keys {', '.join(missing)}" if missing else None


def _manifest_problem(document: Any) -> str | None:
    problem = _schema_problem(document) or _missing(
        document, ("config_hash", "generation", "chunks", "active_run")
    )
    if problem:
        return problem
    generation, chunks = document["generation"], document["chunks"]
    if not isinstance(document["config_hash"], str):
        return f"config_hash is not a string, was {document['config_hash']!r}"
    if not _is_int(generation) or generation < 0:
        return f"generation is not a count, was {generation!r}"
    if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
        return "chunks is not a list of objects"
    for chunk in chunks:
        missing = _missing(chunk, ("generation", "label", "outcomes", "snapshot"))
        if missing:
            return f"a chunk is {missing}"
    if (chunks[-1]["generation"] if chunks else 0) != generation:
        return f"generation {generation} is not the last chunk's"
    if document["active_run"] is not None and not isinstance(document["active_run"], dict):
        return "active_run is neither an object nor null"
    return None


def _derived_problem(document: Any, key: str) -> str | None:
    problem = _schema_problem(document) or _missing(document, ("generation", key))
    if problem:
        return problem
    if not _is_int(document["generation"]) or document["generation"] < 0:
        return f"generation is not a count, was {document['generation']!r}"
    if not isinstance(document[key], dict):
        return f"{key} is not an object"
    return None


def _snapshot_problem(document: Any) -> str | None:
    problem = _schema_problem(document) or _missing(document, SNAPSHOT_KEYS)
    if problem:
        return problem
    if not _is_int(document["generation"]) or document["generation"] < 1:
        return f"generation is not a positive count, was {document['generation']!r}"
    for key in DERIVED_FILES.values():
        if not isinstance(document[key], dict):
            return f"{key} is not an object"
    return None


def _outcome_problem(document: Any, name: str) -> str | None:
    problem = _schema_problem(document) or _missing(document, OUTCOME_KEYS)
    if problem:
        return problem
    match = _OUTCOME_NAME.fullmatch(name)
    decision_id = document["decision_id"]
    if not _is_int(decision_id) or match is None or int(match[1]) != decision_id:
        return f"decision_id {document['decision_id']!r} does not match the file name"
    if not _is_int(document["generation"]):
        return f"generation is not a count, was {document['generation']!r}"
    if not isinstance(document["votes"], dict):
        return "votes is not an object"
    return None


def _encode_outcomes(
    folder: Path, outcomes: list[dict], generation: int
) -> list[tuple[Path, bytes]]:
    """Validate a chunk's outcomes and encode them as (path, JSON) pairs."""
    files, seen = [], set()
    for position, outcome in enumerate(outcomes):
        where = f"outcome {position}"
        if not isinstance(outcome, dict):
            raise MemoryStoreError(f"{where}: not a dict, was {type(outcome).__name__}")
        outcome = {"schema_version": SCHEMA_VERSION, **outcome}  # the store's to stamp
        missing = _missing(outcome, OUTCOME_KEYS)
        if missing:
            raise MemoryStoreError(
                f"{where} (decision_id {outcome.get('decision_id')!r}): {missing}; build "
                "outcomes with every key of backtester.memory.store.OUTCOME_KEYS"
            )
        decision_id = outcome["decision_id"]
        if not _is_int(decision_id) or not _INT64[0] <= decision_id <= _INT64[1]:
            raise MemoryStoreError(f"{where}: decision_id is not an int64, was {decision_id!r}")
        decision_id = int(decision_id)
        if decision_id in seen:
            raise MemoryStoreError(
                f"{where}: decision_id {decision_id} appears twice in the chunk; decision ids "
                "must be unique"
            )
        seen.add(decision_id)
        if outcome["generation"] != generation or outcome["schema_version"] != SCHEMA_VERSION:
            raise MemoryStoreError(
                f"{where} (decision_id {decision_id}): generation {outcome['generation']!r}, "
                f"schema_version {outcome['schema_version']!r}, was expected {generation} and "
                f"{SCHEMA_VERSION} (the store's generation + 1)"
            )
        files.append((folder / f"outcome_{decision_id}.json", dumps_json(outcome)))
    return files


def _utc(value: Any, what: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise MemoryStoreError(f"{what}: not a time, was {value!r} ({error})") from None
    if pd.isna(stamp):
        raise MemoryStoreError(f"{what}: not a time, was {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- reading helpers --------------------------------------------------------------------


def _read_derived(folder: Path, generation: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The stats files' contents, and {file: why it is out of step} for the others."""
    derived, stale = {}, {}
    for name, key in DERIVED_FILES.items():
        try:
            document = read_json(folder / name)
        except FileNotFoundError:
            derived[key] = _default(key)
            if generation > 0:
                stale[name] = "missing"
            continue
        except MemoryStoreError:
            stale[name] = "not valid JSON"
            continue
        problem = _derived_problem(document, key)
        if problem:
            stale[name] = problem
        elif document["generation"] != generation:
            side = "ahead" if document["generation"] > generation else "behind"
            stale[name] = f"at generation {document['generation']} ({side})"
        else:
            derived[key] = document[key]
    return derived, stale


def _restore_derived(folder: Path, manifest: dict, stale: dict[str, str], *,
                     read_only: bool = False) -> dict[str, Any]:
    """Stats of the stale files as of the manifest's generation, from its snapshot."""
    generation = manifest["generation"]
    if generation == 0:
        source = "empty"
        values = {DERIVED_FILES[name]: _default(DERIVED_FILES[name]) for name in stale}
    else:
        source = manifest["chunks"][-1]["snapshot"]
        path = folder / source
        try:
            snapshot = read_json(path)
        except FileNotFoundError:
            snapshot, problem = None, "missing"
        else:
            problem = _snapshot_problem(snapshot)
        if not problem and snapshot["generation"] != generation:
            problem = f"holds generation {snapshot['generation']}, not {generation}"
        if problem:
            details = "; ".join(f"{name} {why}" for name, why in stale.items())
            raise MemoryStoreError(
                f"{path}: {problem}, and the stats files need it ({details}); run "
                "`bt memory doctor` to rebuild them"
            )
        values = {DERIVED_FILES[name]: snapshot[DERIVED_FILES[name]] for name in stale}
    rewrite = holds_lock(folder) and not read_only
    details = ", ".join(f"{name} {why}" for name, why in stale.items())
    warnings.warn(
        f"{folder}: stats files out of step with the manifest (generation {generation}: "
        f"{details}; an interrupted commit?); restored from {source}"
        + ("" if rewrite else " in memory only (this process does not hold the lock)"),
        stacklevel=3,
    )
    if rewrite:
        atomic_write_many(
            (
                folder / name,
                dumps_json(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "generation": generation,
                        DERIVED_FILES[name]: values[DERIVED_FILES[name]],
                    }
                ),
            )
            for name in stale
        )
    return values


def _outcome_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if _OUTCOME_NAME.fullmatch(entry.name) and entry.is_file()
    )


def _outcome_files(folder: Path) -> list[Path]:
    return [folder / name for name in _outcome_names(folder)]


def _file_kind(name: str) -> str:
    if name == MANIFEST:
        return "manifest"
    if name in DERIVED_FILES:
        return "stats"
    if _OUTCOME_NAME.fullmatch(name):
        return "outcome"
    if _SNAPSHOT_NAME.fullmatch(name):
        return "snapshot"
    if name == LOCK_NAME:
        return "lock"
    if is_temporary(name):
        return "temporary"
    return "other"


def _folder_census(folder: Path) -> tuple[int, dict[str, int]]:
    """Total size in bytes and file counts by kind (top-level kinds, and one kind per
    subfolder: vectors, llm_cache, quarantine, other)."""
    size, counts = 0, {}
    if not folder.is_dir():
        return size, counts
    for root, _, names in os.walk(folder):
        relative = Path(root).relative_to(folder)
        for name in names:
            size += os.stat(os.path.join(root, name)).st_size
            if relative.parts:
                top = relative.parts[0]
                kind = top if top in (VECTORS, LLM_CACHE, QUARANTINE) else "other"
            else:
                kind = _file_kind(name)
            counts[kind] = counts.get(kind, 0) + 1
    return size, dict(sorted(counts.items()))


def _check_no_foreign_files(folder: Path) -> None:
    """A folder without a manifest must hold nothing but memory files (or be empty):
    never start a memory inside an unrelated folder."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise MemoryStoreError(f"{folder}: not a folder, was a file; pass a memory folder")
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                known = entry.name in (VECTORS, LLM_CACHE, QUARANTINE)
            else:
                known = _file_kind(entry.name) != "other"
            if not known:
                raise MemoryStoreError(
                    f"{folder}: holds {entry.name}, which is not a bt memory file, and no "
                    f"{MANIFEST}; pass an empty or new folder with --memory-dir"
                )


def _provider_rows(stats: dict) -> dict:
    """{provider: counts} from provider stats, bare or wrapped as {"providers": ...}."""
    rows = stats.get("providers", stats)
    return rows if isinstance(rows, dict) else {}


def _regime_rows(stats: dict) -> dict:
    """{regime: {provider: counts}} from regime stats, bare or wrapped as {"regimes":
    {regime: {"providers": ...}}}."""
    regimes = stats.get("regimes", stats)
    if not isinstance(regimes, dict):
        return {}
    return {r: _provider_rows(table) for r, table in regimes.items() if isinstance(table, dict)}
