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
from backtester.memory.integrity import FILES_KEY, LLM_CACHE, digest, is_int, refuse_symlinks
from backtester.memory.io import FolderLock, dumps_json, fsync_directory, replace_all
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
    outcome_tallies,
)

_MAX_CHECK_LINES = 20
VECTOR_FILES = ("vectors/states.faiss", "vectors/text.faiss", "vectors/index.json")


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
    refuse_symlinks(folder, (VECTORS, QUARANTINE, LLM_CACHE))
    with FolderLock(folder, command="bt memory doctor") as lock:
        refuse_symlinks(folder, (VECTORS, QUARANTINE, LLM_CACHE))
        return _Doctor(folder, lock.removed_temporaries).run(rebuild_vectors)


class _Doctor:
    """One doctor pass over a locked folder; collects the report as it goes."""

    def __init__(self, folder: Path, removed: list[str] = ()) -> None:
        self.folder = folder
        self.report: dict[str, Any] = {
            "folder": str(folder),
            "generation": 0,
            "checked": 0,
            "quarantined": [],
            "rebuilt": [],
            "problems": [],
            "unrepaired": [],  # problems the doctor found and could not repair
        }
        self.moves: list[tuple[Path, Path]] = []  # quarantine moves, done at the swap
        self.dropped: set[str] = set()  # readable files of chunks never committed, moved
        self.writes: dict[str, bytes] = {}  # relative path -> new bytes, swapped in last
        self.raw: dict[str, bytes] = {}  # relative path -> bytes read
        self.recorded: dict | None = None  # the manifest's digests
        self.drop_reason = f"no {MANIFEST} commits them and no snapshot does"
        for name in removed:
            self._problem(f"{name}: left by an interrupted write; removed")

    def run(self, rebuild_vectors: Callable[[Path, list[dict], int], Any] | None) -> dict:
        manifest = self._load_manifest()
        self.recorded = manifest.get(FILES_KEY) if manifest else None
        snapshots = self._load_all(
            sorted(self.folder.glob("snapshot_*.json")), lambda doc, name: _snapshot_problem(doc)
        )
        outcomes = self._load_all(_outcome_files(self.folder), _outcome_problem)
        derived = self._load_all(
            [self.folder / name for name in DERIVED_FILES if (self.folder / name).exists()],
            lambda doc, name: _derived_problem(doc, DERIVED_FILES[name]),
        )
        rebuilt_manifest = False
        if manifest is None and snapshots:
            manifest = self._rebuild_manifest(snapshots, outcomes)
            rebuilt_manifest = manifest is not None
        generation = manifest["generation"] if manifest else 0
        self.report["generation"] = generation
        if manifest is None or rebuilt_manifest:  # nothing commits what lies above it
            self._drop_uncommitted(generation, snapshots, outcomes)
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
        vector_files = self._rebuild_vectors(rebuild_vectors, kept, generation)
        if manifest is not None:
            self._stage_manifest(manifest, vector_files, rebuilt_manifest)
        self._swap()
        return self.report

    def _rebuild_vectors(self, rebuild_vectors: Callable[..., Any] | None, kept: list[dict],
                         generation: int) -> dict[str, dict] | None:
        """Digests of the rebuilt vector files (None: not rebuilt, keep the recorded)."""
        if rebuild_vectors is None:
            return None
        vectors = self.folder / VECTORS
        for name in VECTOR_FILES:  # say why, when the rebuild replaces a damaged file
            expected, path = (self.recorded or {}).get(name), self.folder / name
            if not isinstance(expected, dict):
                continue
            if not path.is_file():
                self._problem(f"{name}: missing, the manifest commits it; rebuilt")
            elif digest(path.read_bytes()) != {key: expected.get(key) for key in
                                                ("sha256", "size")}:  # and row counts
                self._problem(f"{name}: its bytes differ from what {MANIFEST} committed; "
                              "rebuilt")
        if vectors.exists() and not vectors.is_dir():
            self._quarantine(vectors, "a file where the vectors folder belongs")
            self._swap()  # now: the rebuilt files go into a new vectors/ folder
        try:
            result = rebuild_vectors(self.folder, kept, generation)
        except MemoryStoreError as error:
            self._unrepaired(f"{VECTORS}/: not rebuilt ({error})")
            return None
        self.report["rebuilt"].append(VECTORS)
        if isinstance(result, list):  # [(relative path, bytes)]: swapped in with the rest
            vectors.mkdir(exist_ok=True)
            self.writes.update(result)
            return {name: digest(data) for name, data in result}
        if isinstance(result, dict):  # written already; their digests
            return result
        return {name: digest((self.folder / name).read_bytes()) for name in VECTOR_FILES
                if (self.folder / name).is_file()}

    def _stage_manifest(self, manifest: dict, vector_files: dict | None, rebuilt: bool) -> None:
        """The manifest with the digests of the files as they will be; staged last, and
        only when its bytes change."""
        files = {name: record for name, record in (self.recorded or {}).items()
                 if name.startswith(f"{VECTORS}/")} if vector_files is None else dict(vector_files)
        for name in DERIVED_FILES:
            data = self.writes.get(name, self.raw.get(name))
            if data is not None:
                files[name] = digest(data)
        updated = dumps_json({**manifest, FILES_KEY: dict(sorted(files.items()))})
        if rebuilt or updated != self.raw.get(MANIFEST):
            self.writes[MANIFEST] = updated
            if not rebuilt and self.raw.get(MANIFEST) is not None:
                self.report["rebuilt"].append(f"{MANIFEST} (file digests)")

    def _swap(self) -> None:
        """Every staged write to a temporary name, then the quarantine moves and the
        swaps, manifest last: a failure (a full disk) before the swap changes nothing."""
        names = sorted(self.writes, key=lambda name: (name == MANIFEST,
                                                      name == f"{VECTORS}/index.json", name))
        items = [(self.folder / name, self.writes[name]) for name in names]
        moves, self.moves, self.writes = self.moves, [], {}
        replace_all(items, before_swap=lambda: self._move(moves))

    def _move(self, moves: list[tuple[Path, Path]]) -> None:
        for path, destination in moves:
            destination.parent.mkdir(exist_ok=True)
            os.rename(path, destination)
        if moves:
            fsync_directory(self.folder / QUARANTINE)
            fsync_directory(self.folder)

    def _bad_outcomes(self) -> bool:
        """Whether this pass quarantined an unreadable outcome file (which explains counts
        that fall short)."""
        return any(name.startswith("outcome_") and name not in self.dropped
                   for name in self.report["quarantined"])

    def _unrepaired(self, line: str) -> None:
        self.report["unrepaired"].append(line)
        self._problem(line)

    def _problem(self, line: str) -> None:
        self.report["problems"].append(line)

    def _quarantine(self, path: Path, reason: str = "", *, quiet: bool = False) -> None:
        """Move ``path`` into quarantine/ at the swap; ``quiet``: no problem line of its
        own (the caller writes one for many files)."""
        target = self.folder / QUARANTINE
        taken = {destination for _, destination in self.moves}
        destination = target / path.name
        number = 1
        while destination.exists() or destination in taken:
            destination = target / f"{path.stem}.{number}{path.suffix}"
            number += 1
        self.moves.append((path, destination))
        self.report["quarantined"].append(path.name)
        if not quiet:
            self._problem(f"{path.name}: {reason}; moved to {QUARANTINE}/{destination.name}")

    def _read(self, path: Path, check: Callable[[Any, str], str | None]) -> Any | None:
        """The file's JSON if it passes ``check``, else None (and it is quarantined)."""
        self.report["checked"] += 1
        if path.is_dir():
            self._quarantine(path, "a folder where a file belongs")
            return None
        try:
            data = path.read_bytes()
            document = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            self._quarantine(path, f"not valid JSON ({' '.join(str(error).split())})")
            return None
        except OSError as error:
            raise MemoryStoreError(f"{path}: cannot be read ({error.strerror}); give bt "
                                   "read access to it and run the doctor again") from None
        problem = check(document, path.name)
        if problem:
            self._quarantine(path, problem)
            return None
        self.raw[str(path.relative_to(self.folder))] = data
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
        if path.is_dir():
            self.report["checked"] += 1
            self._quarantine(path, "a folder where the manifest belongs")
            return None

        def check(document: Any, name: str) -> str | None:
            _check_schema(document, self.folder)  # a newer bt's memory: stop, move nothing
            return _manifest_problem(document)

        return self._read(path, check)

    def _rebuild_manifest(self, snapshots: dict[str, dict],
                          outcomes: dict[str, dict]) -> dict | None:
        """The manifest of the complete chunks: generations 1, 2, ... in a row, each with a
        readable snapshot, every outcome file it counts (readable, of its generation and
        label) and the first one's config hash. The first chunk that is not complete and
        everything after it are left out (a commit that crashed before its manifest, in a
        folder saved before the empty manifest came first); None when no chunk is."""
        by_generation: dict[int, tuple[str, dict]] = {}
        for name, document in sorted(snapshots.items()):
            if document["generation"] in by_generation:
                self._problem(
                    f"{name}: generation {document['generation']} again (also "
                    f"{by_generation[document['generation']][0]}); the later name is used"
                )
            by_generation[document["generation"]] = (name, document)
        per_generation: dict[int, list[dict]] = {}
        for document in outcomes.values():
            per_generation.setdefault(document["generation"], []).append(document)
        chunks, why = [], None
        for generation in range(1, max(by_generation) + 1):
            if generation not in by_generation:
                why = f"the snapshot of generation {generation} is missing or unreadable"
                break
            name, document = by_generation[generation]
            found = per_generation.get(generation, [])
            if not is_int(document["outcomes"]) or len(found) != document["outcomes"]:
                why = (f"{name} counts {document['outcomes']!r} outcomes, {len(found)} "
                       f"readable outcome files hold generation {generation}")
            elif any(outcome["chunk"] != document["label"] for outcome in found):
                why = (f"outcome files of generation {generation} belong to another chunk "
                       f"than {name}'s {document['label']!r}")
            elif chunks and document["config_hash"] != by_generation[1][1]["config_hash"]:
                why = f"{name} was written under another config than generation 1"
            if why:
                break
            chunks.append({
                "generation": generation,
                "label": document["label"],
                "start": document["start"],
                "end": document["end"],
                "last_bar_time": document["last_bar_time"],
                "run_id": document["run_id"],
                "outcomes": document["outcomes"],
                "snapshot": name,
            })
        if why:
            self.drop_reason = f"not complete ({why})"
        if not chunks:
            self._problem(f"{MANIFEST}: not rebuilt: no snapshot commits a complete chunk "
                          f"({why})")
            return None
        last = chunks[-1]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "config_hash": by_generation[1][1]["config_hash"],
            "generation": last["generation"],
            "chunks": chunks,
            "active_run": None,
        }
        self.report["rebuilt"].append(MANIFEST)
        self._problem(
            f"{MANIFEST}: rebuilt from {len(chunks)} snapshots (generation "
            f"{last['generation']}); no run is left to resume"
        )
        return manifest

    def _drop_uncommitted(self, generation: int, snapshots: dict[str, dict],
                          outcomes: dict[str, dict]) -> None:
        """Quarantine the snapshots and outcome files above ``generation`` when no manifest
        commits them (none was found, or the rebuilt one left them out): kept in place, a
        later commit of that generation would adopt them. Removes them from the dicts."""
        dropped = {"snapshot": [], "outcome": []}
        for kind, documents in (("snapshot", snapshots), ("outcome", outcomes)):
            for name in sorted(documents):
                if documents[name]["generation"] > generation:
                    del documents[name]
                    self._quarantine(self.folder / name, quiet=True)
                    self.dropped.add(name)
                    dropped[kind].append(name)
        if not self.dropped:
            return
        counts = " and ".join(f"{len(names)} {kind} files" for kind, names in dropped.items()
                              if names)
        chunks = ", ".join(dropped["snapshot"][:3]) + (", ..." if len(dropped["snapshot"]) > 3
                                                       else "")
        self._problem(
            f"dropped the chunks above generation {generation}, never committed "
            f"({self.drop_reason}): {counts}{f' ({chunks})' if chunks else ''} moved to "
            f"{QUARANTINE}/; a run learns those periods again"
        )

    def _check_chunks(self, manifest: dict | None, snapshots: dict[str, dict]) -> None:
        generation = manifest["generation"] if manifest else 0
        for chunk in manifest["chunks"] if manifest else []:
            document = snapshots.get(chunk["snapshot"])
            if document is None:
                self._unrepaired(
                    f"chunk {chunk['label']} (generation {chunk['generation']}): its snapshot "
                    f"{chunk['snapshot']} is missing or was quarantined"
                )
            elif document["generation"] != chunk["generation"]:
                self._unrepaired(
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
                expected = (self.recorded or {}).get(name)
                if not expected or digest(self.raw[name]) == expected:
                    state[key] = document[key]
                    continue
                self._problem(f"{name}: its bytes differ from what {MANIFEST} committed")
                document = None
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
            self.writes[name] = dumps_json(
                {"schema_version": SCHEMA_VERSION, "generation": generation, key: state[key]}
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
                # explained (and reported) when this pass quarantined outcome files
                explained = self._bad_outcomes()
                (self._problem if explained else lines.append)(
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
        tallies, tally_lines = outcome_tallies(outcomes), []
        _compare_counts(tallies["providers"], providers, "provider_stats", "outcome files",
                        tally_lines)
        if self._bad_outcomes():
            for line in tally_lines[:_MAX_CHECK_LINES]:  # explained by the quarantined files
                self._problem(line)
        else:
            lines += tally_lines
        for line in lines[:_MAX_CHECK_LINES]:
            self._unrepaired(line)
        if len(lines) > _MAX_CHECK_LINES:
            self._unrepaired(f"... and {len(lines) - _MAX_CHECK_LINES} more mismatches")


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
