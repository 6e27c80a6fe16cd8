"""`bt memory doctor`: check every memory file, quarantine the unreadable ones, rebuild.

``doctor`` takes the folder's lock and runs one ``_Doctor`` pass: temporary files and
files that are not valid JSON, have an unknown schema_version or lack required keys are
moved into ``quarantine/`` (never deleted); an unreadable manifest is rebuilt from the
snapshots and out-of-step stats files from the newest committed snapshot; the stats are
cross-checked against the snapshots' per-chunk counts and the outcome files; last, the
vector index is rebuilt through a callback. The file layout and validation it relies on
live in ``backtester.memory.store``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from numbers import Real
from pathlib import Path
from typing import Any

import orjson

from backtester.errors import MemoryStoreError
from backtester.memory.io import (
    FolderLock,
    dumps_json,
    fsync_directory,
    is_temporary,
    write_json,
)
from backtester.memory.store import (
    CHUNK_PROVIDER_COUNTS,
    CHUNK_REGIME_COUNTS,
    DERIVED_FILES,
    MANIFEST,
    QUARANTINE,
    SCHEMA_VERSION,
    VECTORS,
    _check_schema,
    _default,
    _derived_problem,
    _manifest_problem,
    _outcome_files,
    _outcome_problem,
    _provider_rows,
    _regime_rows,
    _snapshot_problem,
    _write_manifest,
    outcome_tallies,
)

_MAX_CHECK_LINES = 20


def doctor(
    folder: Path | str,
    *,
    rebuild_vectors: Callable[[Path, list[dict], int], None] | None = None,
) -> dict:
    """Check every memory file, quarantine the unreadable ones, rebuild what derives.

    Moves into ``folder/quarantine/`` (never deletes) each file that is not valid JSON,
    has an unknown schema_version or lacks required keys, and each temporary file left
    by an interrupted write. Rebuilds the manifest from the snapshots if it is
    unreadable, and the stats files (at the manifest's generation) from the newest
    committed snapshot if they are unreadable or out of step. Cross-checks: the summed
    per-chunk counts of the snapshots ("chunk_provider_counts", "chunk_regime_counts")
    against the stats, and each provider's trades/wins/losses tallied from the outcome
    files (``outcome_tallies``) against its stats where they hold those keys.
    Finally calls ``rebuild_vectors(folder, committed outcomes, generation)`` if given.
    Takes the folder's lock for the duration.

    Returns
    -------
    dict
        {folder, generation, checked (files verified), quarantined (names), rebuilt
        (names), problems (one line each)}.

    Raises
    ------
    MemoryStoreError
        No such folder, or a manifest written by a newer bt.
    MemoryLockedError
        A run holds the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MemoryStoreError(f"{folder}: no memory folder here; nothing to check")
    with FolderLock(folder, command="bt memory doctor"):
        return _Doctor(folder).run(rebuild_vectors)


class _Doctor:
    """One doctor pass over a locked folder; collects the report as it goes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.report: dict[str, Any] = {
            "folder": str(folder),
            "generation": 0,
            "checked": 0,
            "quarantined": [],
            "rebuilt": [],
            "problems": [],
        }

    def run(self, rebuild_vectors: Callable[[Path, list[dict], int], None] | None) -> dict:
        for name in sorted(e.name for e in os.scandir(self.folder) if is_temporary(e.name)):
            self._quarantine(self.folder / name, "left by an interrupted write")
        manifest = self._load_manifest()
        snapshots = self._load_all(
            sorted(self.folder.glob("snapshot_*.json")), lambda doc, name: _snapshot_problem(doc)
        )
        outcomes = self._load_all(_outcome_files(self.folder), _outcome_problem)
        derived = self._load_all(
            [self.folder / name for name in DERIVED_FILES if (self.folder / name).exists()],
            lambda doc, name: _derived_problem(doc, DERIVED_FILES[name]),
        )
        if manifest is None and snapshots:
            manifest = self._rebuild_manifest(snapshots)
        generation = manifest["generation"] if manifest else 0
        self.report["generation"] = generation
        self._check_chunks(manifest, snapshots)
        committed = {n: doc for n, doc in snapshots.items() if doc["generation"] <= generation}
        state = self._rebuild_derived(generation, derived, committed)
        kept = [doc for doc in outcomes.values() if doc["generation"] <= generation]
        kept.sort(key=lambda outcome: (outcome["entry_time"], outcome["decision_id"]))
        if len(kept) < len(outcomes):
            self._problem(
                f"{len(outcomes) - len(kept)} outcome files are from an interrupted commit "
                f"(generation above {generation}); ignored, left in place"
            )
        if manifest is not None:
            self._cross_check(manifest, committed, kept, state)
        if rebuild_vectors is not None:
            rebuild_vectors(self.folder, kept, generation)
            self.report["rebuilt"].append(VECTORS)
        return self.report

    def _problem(self, line: str) -> None:
        self.report["problems"].append(line)

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self.folder / QUARANTINE
        target.mkdir(exist_ok=True)
        destination = target / path.name
        number = 1
        while destination.exists():
            destination = target / f"{path.stem}.{number}{path.suffix}"
            number += 1
        os.rename(path, destination)
        fsync_directory(target)
        fsync_directory(self.folder)
        self.report["quarantined"].append(path.name)
        self._problem(f"{path.name}: {reason}; moved to {QUARANTINE}/{destination.name}")

    def _read(self, path: Path, check: Callable[[Any, str], str | None]) -> Any | None:
        """The file's JSON if it passes ``check``, else None (and it is quarantined)."""
        self.report["checked"] += 1
        try:
            document = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as error:
            self._quarantine(path, f"not valid JSON ({' '.join(str(error).split())})")
            return None
        problem = check(document, path.name)
        if problem:
            self._quarantine(path, problem)
            return None
        return document

    def _load_all(
        self, paths: Iterable[Path], check: Callable[[Any, str], str | None]
    ) -> dict[str, Any]:
        documents = {}
        for path in paths:
            document = self._read(path, check)
            if document is not None:
                documents[path.name] = document
        return documents

    def _load_manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.exists():
            return None

        def check(document: Any, name: str) -> str | None:
            _check_schema(document, self.folder)  # a newer bt's memory: stop, move nothing
            return _manifest_problem(document)

        return self._read(path, check)

    def _rebuild_manifest(self, snapshots: dict[str, dict]) -> dict:
        by_generation: dict[int, tuple[str, dict]] = {}
        for name, document in sorted(snapshots.items()):
            if document["generation"] in by_generation:
                self._problem(
                    f"{name}: generation {document['generation']} again (also "
                    f"{by_generation[document['generation']][0]}); the later name is used"
                )
            by_generation[document["generation"]] = (name, document)
        chunks = [
            {
                "generation": document["generation"],
                "label": document["label"],
                "start": document["start"],
                "end": document["end"],
                "last_bar_time": document["last_bar_time"],
                "run_id": document["run_id"],
                "outcomes": document["outcomes"],
                "snapshot": name,
            }
            for _, (name, document) in sorted(by_generation.items())
        ]
        last = chunks[-1]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "config_hash": by_generation[last["generation"]][1]["config_hash"],
            "generation": last["generation"],
            "chunks": chunks,
            "active_run": None,
        }
        _write_manifest(self.folder, dumps_json(manifest))
        self.report["rebuilt"].append(MANIFEST)
        self._problem(
            f"{MANIFEST}: rebuilt from {len(chunks)} snapshots (generation "
            f"{last['generation']}); no run is left to resume"
        )
        return manifest

    def _check_chunks(self, manifest: dict | None, snapshots: dict[str, dict]) -> None:
        generation = manifest["generation"] if manifest else 0
        for chunk in manifest["chunks"] if manifest else []:
            document = snapshots.get(chunk["snapshot"])
            if document is None:
                self._problem(
                    f"chunk {chunk['label']} (generation {chunk['generation']}): its snapshot "
                    f"{chunk['snapshot']} is missing or was quarantined"
                )
            elif document["generation"] != chunk["generation"]:
                self._problem(
                    f"{chunk['snapshot']}: holds generation {document['generation']}, the "
                    f"manifest expects {chunk['generation']}"
                )
        for name, document in sorted(snapshots.items()):
            if document["generation"] > generation:
                self._problem(
                    f"{name}: generation {document['generation']} was never committed (an "
                    f"interrupted commit; the manifest is at {generation}); ignored"
                )

    def _rebuild_derived(
        self, generation: int, derived: dict[str, dict], committed: dict[str, dict]
    ) -> dict[str, Any]:
        """The stats as of ``generation``; rewrites the files that are missing or out of
        step."""
        source_name, source = None, None
        if committed:
            source_name = max(committed, key=lambda name: committed[name]["generation"])
            source = committed[source_name]
        state, lost_noted = {}, False
        for name, key in DERIVED_FILES.items():
            document = derived.get(name)
            if document is not None and document["generation"] == generation:
                state[key] = document[key]
                continue
            if document is None and generation == 0:
                state[key] = _default(key)  # an empty memory has no stats files yet
                continue
            if generation == 0 or source is None:
                state[key] = _default(key)
                if generation > 0 and not lost_noted:
                    self._problem("no committed snapshot survives; stats restart empty")
                    lost_noted = True
            else:
                state[key] = source[key]
                if source["generation"] < generation and not lost_noted:
                    self._problem(
                        f"stats rebuilt from {source_name} (generation "
                        f"{source['generation']}); what chunks {source['generation'] + 1}.."
                        f"{generation} added is lost (their snapshots are unreadable)"
                    )
                    lost_noted = True
            write_json(
                self.folder / name,
                {"schema_version": SCHEMA_VERSION, "generation": generation, key: state[key]},
            )
            self.report["rebuilt"].append(name)
        return state

    def _cross_check(
        self,
        manifest: dict,
        committed: dict[str, dict],
        outcomes: list[dict],
        state: dict[str, Any],
    ) -> None:
        lines: list[str] = []
        per_generation = Counter(outcome["generation"] for outcome in outcomes)
        for chunk in manifest["chunks"]:
            found = per_generation.get(chunk["generation"], 0)
            if found != chunk["outcomes"]:
                lines.append(
                    f"chunk {chunk['label']} (generation {chunk['generation']}): the manifest "
                    f"counts {chunk['outcomes']} outcomes, {found} outcome files hold it"
                )
        snapshots = {document["generation"]: document for document in committed.values()}
        generations = [chunk["generation"] for chunk in manifest["chunks"]]
        providers = _provider_rows(state["provider_stats"])
        regimes = _regime_rows(state["regime_stats"])
        for counts_key, rows, where in (
            (CHUNK_PROVIDER_COUNTS, providers, "provider_stats"),
            (CHUNK_REGIME_COUNTS, regimes, "regime_stats"),
        ):
            if generations and all(counts_key in snapshots.get(g, {}) for g in generations):
                summed: dict = {}
                for g in generations:
                    _add_counts(summed, snapshots[g][counts_key])
                _compare_counts(summed, rows, where, "summed chunk counts", lines)
        # Per provider only: backtester.ensemble.learn counts trades per provider, not per
        # regime (its regime rows keep trades/wins/losses at 0).
        tallies = outcome_tallies(outcomes)
        _compare_counts(tallies["providers"], providers, "provider_stats", "outcome files", lines)
        for line in lines[:_MAX_CHECK_LINES]:
            self._problem(line)
        if len(lines) > _MAX_CHECK_LINES:
            self._problem(f"... and {len(lines) - _MAX_CHECK_LINES} more mismatches")


def _add_counts(total: dict, counts: Any) -> None:
    """Add the numeric leaves of nested dict ``counts`` into ``total``."""
    if not isinstance(counts, dict):
        return
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, Real) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def _compare_counts(expected: dict, stats: Any, where: str, source: str, lines: list[str]) -> None:
    """Append a line for each numeric leaf of ``expected`` that ``stats`` holds with
    another value (leaves that ``stats`` lacks are not compared)."""
    for key, value in expected.items():
        held = stats.get(key) if isinstance(stats, dict) else None
        if isinstance(value, dict):
            if isinstance(held, dict):
                _compare_counts(value, held, f"{where}.{key}", source, lines)
        elif isinstance(held, Real) and not isinstance(held, bool):
            if not math.isclose(held, value, rel_tol=1e-9, abs_tol=1e-9):
                lines.append(f"{where}.{key} is {held}, the {source} give {value}")
