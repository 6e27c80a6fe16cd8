"""The memory folder: outcomes, stats, snapshots and the manifest, committed chunk by chunk.

A chunk is committed by writing, in order, its outcome files, the three stats files
(each stamped with the new generation), its snapshot (which also holds the full stats
after the chunk), the vector index (through a callback) and, LAST, ``manifest.json``.
Only the manifest makes the chunk part of the memory: a crash anywhere before it leaves
the previous generation in force, and ``MemoryStore.open`` puts stats files that ran
ahead back to the last committed snapshot's. No file but ``.lock`` holds a wall-clock
time, so a resumed run and an uninterrupted one leave the same files.

This module holds ``MemoryStore`` (open, read, commit) and the stats files' reading and
restoring. It re-exports, from where they live, what callers import from here: ``reset``
and ``backup_aside`` (backup.py: move a folder aside), ``outcome_tallies`` and the folder
census (census.py), and the file layout and validation helpers (integrity.py) that
``backtester.memory.doctor`` (the ``bt memory doctor`` repair) shares.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from backtester.errors import MemoryStoreError
from backtester.memory.backup import backup_aside, reset  # noqa: F401 (re-exported)
from backtester.memory.census import (  # noqa: F401 (re-exported: the doctor imports them here)
    _check_no_foreign_files,
    _file_kind,
    _folder_census,
    _outcome_files,
    _outcome_names,
    _provider_rows,
    _regime_rows,
    outcome_tallies,
)
from backtester.memory.io import (
    atomic_write_many,
    dumps_json,
    holds_lock,
    read_json,
    read_json_bytes,
    write_json,
    write_many_synced_once,
)
from backtester.memory.integrity import (  # noqa: F401 (re-exported: the file layout)
    DERIVED_FILES,
    FILES_KEY,
    INT64,
    LLM_CACHE,
    MANIFEST,
    OUTCOME_KEYS,
    OUTCOME_NAME,
    PARAMETERS,
    PROVIDER_PERFORMANCE,
    QUARANTINE,
    REGIME_PERFORMANCE,
    SCHEMA_VERSION,
    SNAPSHOT_KEYS,
    SNAPSHOT_NAME,
    VECTORS,
    check_inside,
    check_schema,
    derived_problem,
    digest,
    doctor_hint,
    encode_outcomes,
    is_int,
    manifest_problem,
    missing,
    outcome_problem,
    read_own,
    refuse_symlinks,
    schema_problem,
    snapshot_problem,
    verify,
)

if TYPE_CHECKING:
    import pandas as pd

CHUNK_PROVIDER_COUNTS = "chunk_provider_counts"
CHUNK_REGIME_COUNTS = "chunk_regime_counts"
# The validation helpers' older names, which the doctor and tests import from here.
_OUTCOME_NAME, _SNAPSHOT_NAME, _INT64 = OUTCOME_NAME, SNAPSHOT_NAME, INT64
_is_int, _check_schema, _schema_problem, _missing = is_int, check_schema, schema_problem, missing
_manifest_problem, _derived_problem = manifest_problem, derived_problem
_snapshot_problem, _outcome_problem = snapshot_problem, outcome_problem


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
        refuse_symlinks(folder, (VECTORS, QUARANTINE, LLM_CACHE),
                        names=(MANIFEST, *DERIVED_FILES, VECTORS, QUARANTINE, LLM_CACHE))
        try:
            manifest = read_json(path, folder=folder)
        except FileNotFoundError:
            manifest = None
        if manifest is None:
            _check_no_foreign_files(folder)
            if not create:
                raise MemoryStoreError(
                    f"{folder}: no committed memory here (no {MANIFEST}); run `bt run` to "
                    "build one, or pass --memory-dir for another folder"
                )
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
                raise MemoryStoreError(f"{path}: {problem}; {doctor_hint(folder, 'to rebuild it')}")
            stored = manifest["config_hash"]
            if config_hash is not None and stored != config_hash:
                raise MemoryStoreError(
                    f"{folder} was written under another config (hash {stored[:8]}, this "
                    f"run {config_hash[:8]}); use --fresh to move it aside and start "
                    "empty, or --memory-dir for another folder"
                )
        derived, stale = _read_derived(folder, manifest["generation"], manifest.get(FILES_KEY))
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
        outcomes = [outcome for outcome in self._outcomes()
                    if outcome["generation"] <= self.generation]
        outcomes.sort(key=lambda outcome: (outcome["entry_time"], outcome["decision_id"]))
        if newest is not None:
            outcomes = outcomes[len(outcomes) - newest:] if newest > 0 else []
        return outcomes

    def check_outcomes(self, decision_ids: Collection[int] | None = None) -> int:
        """Read and validate outcome files in full; returns how many were read.

        ``decision_ids`` None: every file in the folder. Otherwise only those,
        which must exist: a run passes the ones its vector memory searches (the newest
        memory.max_memory_size), so that an open reads, and lists, no other file and does
        not grow with the whole memory; ``bt memory doctor`` reads them all. Raises like
        ``read_outcomes``.
        """
        if decision_ids is None:
            return sum(1 for _ in self._outcomes())
        names = sorted({f"outcome_{i}.json" for i in decision_ids if is_int(i)})
        absent: list[str] = []
        read = sum(1 for _ in self._outcomes(names, absent))
        if absent:
            raise MemoryStoreError(
                f"{self.folder / absent[0]}: is missing ({len(absent)} outcome files the "
                f"vector index holds are); {doctor_hint(self.folder, 'to rebuild the index')}"
            )
        return read

    def outcomes_by_id(self, decision_ids: Collection[int]) -> dict[int, dict]:
        """The outcome files of ``decision_ids`` that exist, validated, by decision id
        (what the text index reads to embed the rows it lacks)."""
        names = [f"outcome_{i}.json" for i in decision_ids if is_int(i)]
        return {outcome["decision_id"]: outcome for outcome in self._outcomes(names, [])}

    def _outcomes(self, names: list[str] | None = None,
                  absent: list[str] | None = None) -> Iterator[dict]:
        """Every outcome file's document (or those of ``names``), validated (schema, keys,
        finite numbers, the decision id of its name); a bad one raises naming it. With
        ``absent``, a missing file's name is put there instead of raising."""
        folder = os.fspath(self.folder)
        if names is None:
            names = _outcome_names(self.folder)  # plain strings: pathlib costs 30 us a file
        for name in names:
            path = os.path.join(folder, name)
            try:
                data = read_own(path, self.folder)
            except FileNotFoundError:
                if absent is None:
                    raise
                absent.append(name)
                continue
            try:
                outcome = orjson.loads(data)
            except orjson.JSONDecodeError:
                outcome = read_json(path, folder=self.folder)  # raises the one-line error
            problem = _outcome_problem(outcome, name)
            if problem:
                raise MemoryStoreError(
                    f"{path}: {problem}; {doctor_hint(self.folder, 'to quarantine it')}"
                )
            yield outcome

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
        outcome_files = encode_outcomes(self.folder, outcomes, generation, dumps_json)
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
        if not (self.folder / MANIFEST).exists():
            # An empty manifest first: outcome files without one are then always a lost
            # manifest (refused, rebuilt by the doctor), never a first commit that crashed.
            atomic_write_many([(self.folder / MANIFEST, dumps_json(self.manifest))])
        encoded = {}
        for name, key in DERIVED_FILES.items():
            encoded[key] = dumps_json(
                {"schema_version": SCHEMA_VERSION, "generation": generation, key: state[key]}
            )
        # One sync for the chunk's files, not one per file: all are durable before any
        # is renamed into place, and the manifest (fsynced, last) is the commit point.
        write_many_synced_once([
            *outcome_files,
            *((self.folder / name, encoded[key]) for name, key in DERIVED_FILES.items()),
        ])
        write_json(self.folder / snapshot_name, {**snapshot, **written})
        files = {name: digest(encoded[key]) for name, key in DERIVED_FILES.items()}
        if vectors is not None:
            written_vectors = vectors(self.folder, generation)
            if isinstance(written_vectors, dict):  # {path relative to folder: digest}
                files.update(written_vectors)
        manifest = {
            **self.manifest,
            FILES_KEY: dict(sorted(files.items())),
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

    def record_files(self, records: dict[str, dict]) -> None:
        """Add ``records`` ({path relative to the folder: digest}) to the manifest's files,
        the generation unchanged (the text segment a search stored): the manifest is
        rewritten atomically, the commit point of files written before. Call under the
        folder's lock (``FolderLock``), with a store opened under it."""
        if not records:
            return
        if not holds_lock(self.folder):
            raise MemoryStoreError(f"{self.folder}: recording files needs the folder's lock; "
                                   "take it with FolderLock first")
        files = {**(self.manifest.get(FILES_KEY) or {}), **records}
        encoded = dumps_json({**self.manifest, FILES_KEY: dict(sorted(files.items()))})
        _write_manifest(self.folder, encoded)
        self.manifest = orjson.loads(encoded)

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


# -- validation ------------------------------------------------------------------------


def _utc(value: Any, what: str) -> pd.Timestamp:
    import pandas as pd  # a commit only: opening a store (`bt memory inspect`) needs none

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise MemoryStoreError(f"{what}: not a time, was {value!r} ({error})") from None
    if pd.isna(stamp):
        raise MemoryStoreError(f"{what}: not a time, was {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- reading helpers --------------------------------------------------------------------


def _read_derived(folder: Path, generation: int,
                  recorded: dict | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The stats files' contents, and {file: why it is out of step} for the others. A
    file in step whose bytes differ from the manifest's digest (``recorded``) raises."""
    derived, stale = {}, {}
    for name, key in DERIVED_FILES.items():
        path = folder / name
        if path.is_dir():
            raise MemoryStoreError(
                f"{path}: is a folder, a file was expected; "
                f"{doctor_hint(folder, 'to quarantine it and rebuild')}"
            )
        try:
            document, data = read_json_bytes(path, folder=folder)
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
            verify(folder, name, data, recorded)
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
        path = check_inside(folder, folder / source)
        try:
            snapshot = read_json(path, folder=folder)
        except FileNotFoundError:
            snapshot, problem = None, "missing"
        else:
            problem = _snapshot_problem(snapshot)
        if not problem and snapshot["generation"] != generation:
            problem = f"holds generation {snapshot['generation']}, not {generation}"
        if problem:
            details = "; ".join(f"{name} {why}" for name, why in stale.items())
            raise MemoryStoreError(
                f"{path}: {problem}, and the stats files need it ({details}); "
                f"{doctor_hint(folder, 'to rebuild them')}"
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


