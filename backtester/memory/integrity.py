"""What a memory folder may hold: file names, document shapes, digests and containment.

A memory folder may come from someone else, so nothing in it is trusted:

- every name read from a document (run ids, snapshot names) must match its pattern, so a
  path built from it stays inside the folder (``check_inside`` verifies the resolved path);
- no symlink may sit inside the folder (``refuse_symlinks``; an open checks the entries
  it reads and lists its subfolders, and opens each outcome file without following a link,
  ``read_own``; the doctor checks every entry): bt never reads, writes or deletes outside
  it through one;
- the manifest records a sha256 and size of each stats and vector file it commits
  (``FILES_KEY``); a file whose bytes differ is refused (``verify``); folders written
  before these digests existed load unchecked until their next commit;
- outcome files are validated when read: schema, every key, finite numbers, a decision id
  matching the file name (``outcome_problem``).

Every repair hint names the folder unless it is the default (``doctor_hint``).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import shlex
from collections.abc import Iterable
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import orjson

from backtester.checks import is_folder_name
from backtester.errors import MemoryStoreError

SCHEMA_VERSION = 1
DEFAULT_FOLDER = "data/memory"
MANIFEST = "manifest.json"
PROVIDER_PERFORMANCE = "provider_performance.json"
REGIME_PERFORMANCE = "regime_performance.json"
PARAMETERS = "parameters.json"
QUARANTINE = "quarantine"
VECTORS = "vectors"
LLM_CACHE = "llm_cache"
FILES_KEY = "files"  # manifest: {relative path: {"sha256", "size"}} of committed files
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
# numbers an outcome must hold finite; the optional ones may be null (NaN is written as null)
OUTCOME_NUMBERS = ("entry_price", "exit_price", "size", "pnl", "return_pct", "fees")
OUTCOME_OPTIONAL_NUMBERS = ("volatility", "ensemble_score", "memory_vote")
SNAPSHOT_KEYS = (  # written by commit_chunk around the caller's snapshot dict
    "schema_version", "generation", "label", "start", "end", "last_bar_time", "run_id",
    "config_hash", "outcomes", "provider_stats", "regime_stats", "parameters",
)
OUTCOME_NAME = re.compile(r"outcome_(-?\d+)\.json")
SEGMENT_NAME = re.compile(r"rows_(\d{1,9})\.json")  # vectors/: a chunk's rows, appended
# vectors/: text vectors a search embedded, rows [first, end), named by its content too
TEXT_SEGMENT_NAME = re.compile(r"text_(\d{1,12})_(\d{1,12})_([0-9a-f]{16})\.f32")
# What the manifest records of each vector rows file in force (vectors/index.json,
# vectors/rows_<g>.json) beside its digest: how many rows it holds and the newest entry
# time among them (ns UTC), so that an open reads only the files that can hold the newest
# max_memory_size rows, and `bt memory inspect` counts rows without reading them.
PART_ROWS, PART_NEWEST = "rows", "newest_entry"
INDEX_NAME = f"{VECTORS}/index.json"
SNAPSHOT_NAME = re.compile(r"snapshot_\d{8}_\d{6}(_g\d+)?\.json")
INT64 = (-(2**63), 2**63 - 1)


# -- hints and containment --------------------------------------------------------------


def doctor_hint(folder: Path | str, what: str = "") -> str:
    """"run `bt memory doctor` <what>", with ``--memory-dir <folder>`` unless ``folder``
    is the default one (so the hint repairs the folder that failed)."""
    command = "bt memory doctor"
    if os.path.normpath(str(folder)) != os.path.normpath(DEFAULT_FOLDER):
        command += f" --memory-dir {shlex.quote(str(folder))}"
    return f"run `{command}`" + (f" {what}" if what else "")


def check_inside(folder: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``folder`` (following any link), else raise."""
    root = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(path))
    if target != root and root not in target.parents:
        raise MemoryStoreError(
            f"{path}: points outside the memory folder {folder} (to {target}); bt never "
            "reads or writes there: remove it, or use --memory-dir for another folder"
        )
    return path


def refuse_symlinks(folder: Path | str, subfolders: Iterable[str] = (VECTORS,),
                    names: Iterable[str] | None = None) -> None:
    """Raise when ``folder`` or the named subfolders hold a symlink (the folder itself may
    be one: the user chose it). One line naming the links. ``names``: of ``folder`` itself
    only these entries are checked (an open does not list the outcome files; each file
    it reads is opened without following a link, ``read_own``)."""
    folder = Path(folder)
    links = [] if names is None else [
        folder / name for name in names if os.path.islink(os.path.join(folder, name))]
    for where in ((folder,) if names is None else ()) + tuple(folder / n for n in subfolders):
        try:
            with os.scandir(where) as entries:
                links += [Path(entry.path) for entry in entries if entry.is_symlink()]
        except (FileNotFoundError, NotADirectoryError):
            continue
    if links:
        shown = ", ".join(str(link.relative_to(folder)) for link in sorted(links)[:5])
        more = f" and {len(links) - 5} more" if len(links) > 5 else ""
        raise MemoryStoreError(
            f"{folder}: holds symbolic links ({shown}{more}); a memory folder must hold its "
            "own files: replace each link with the files it points to, or remove it"
        )


def read_own(path: str, folder: Path | str) -> bytes:
    """The bytes of ``path``, a file of the memory ``folder``, never through a symbolic
    link (refused in one line); FileNotFoundError when it is missing."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MemoryStoreError(
                f"{folder}: holds symbolic links ({os.path.relpath(path, folder)}); a memory "
                "folder must hold its own files: replace each link with the files it points "
                "to, or remove it") from None
        raise
    try:
        blocks = []
        while block := os.read(descriptor, 1 << 16):
            blocks.append(block)
    finally:
        os.close(descriptor)
    return b"".join(blocks)


def is_snapshot_name(name: Any) -> bool:
    return isinstance(name, str) and SNAPSHOT_NAME.fullmatch(name) is not None


# -- digests ----------------------------------------------------------------------------


def digest(data: bytes) -> dict[str, Any]:
    """The manifest's record of one file: {"sha256": hex, "size": bytes}."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def verify(folder: Path, name: str, data: bytes, recorded: dict | None) -> None:
    """Raise with the doctor hint when ``data`` (the bytes read of ``folder/name``) is not
    what the manifest recorded; ``recorded`` None (an older folder) passes."""
    expected = (recorded or {}).get(name) if isinstance(recorded, dict) else None
    if not isinstance(expected, dict):
        return
    if expected.get("size") != len(data) or expected.get("sha256") != \
            hashlib.sha256(data).hexdigest():
        raise MemoryStoreError(
            f"{Path(folder) / name}: its bytes differ from what {MANIFEST} committed (size "
            f"{len(data)}, committed {expected.get('size')}; corrupted or edited); "
            f"{doctor_hint(folder, 'to rebuild it')}"
        )


def part_counts(record: Any) -> tuple[int, int | None] | None:
    """(rows, newest entry ns or None) a manifest record holds; None when it holds none
    (a folder saved before these records)."""
    if not isinstance(record, dict) or not is_int(record.get(PART_ROWS)) \
            or record[PART_ROWS] < 0:
        return None
    newest = record.get(PART_NEWEST)
    if newest is None and record[PART_ROWS] == 0 or is_int(newest):
        return record[PART_ROWS], newest
    return None


# -- document shapes --------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return type(value) is int or isinstance(value, Integral) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    kind = type(value)  # the JSON types first: the ABC checks cost ~5 us a value
    if kind is float:
        return math.isfinite(value)
    return kind is int or (isinstance(value, Real) and not isinstance(value, bool)
                           and math.isfinite(value))


def check_schema(document: Any, folder: Path) -> None:
    version = document.get("schema_version") if isinstance(document, dict) else None
    if is_int(version) and version > SCHEMA_VERSION:
        raise MemoryStoreError(
            f"{folder}: written by a newer bt (schema {version}, this bt reads up to "
            f"{SCHEMA_VERSION}); upgrade bt, or use --memory-dir for another folder"
        )


def schema_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"not a JSON object, was {type(document).__name__}"
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or not is_int(version):
        return f"unknown schema_version, was {version!r} (this bt reads {SCHEMA_VERSION})"
    return None


def missing(document: dict, keys: Iterable[str]) -> str | None:
    absent = [key for key in keys if key not in document]
    return f"missing keys {', '.join(absent)}" if absent else None


def manifest_problem(document: Any) -> str | None:
    problem = schema_problem(document) or missing(
        document, ("config_hash", "generation", "chunks", "active_run")
    )
    if problem:
        return problem
    generation, chunks = document["generation"], document["chunks"]
    if not isinstance(document["config_hash"], str):
        return f"config_hash is not a string, was {document['config_hash']!r}"
    if not is_int(generation) or generation < 0:
        return f"generation is not a count, was {generation!r}"
    if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
        return "chunks is not a list of objects"
    for chunk in chunks:
        absent = missing(chunk, ("generation", "label", "outcomes", "snapshot"))
        if absent:
            return f"a chunk is {absent}"
        if not is_snapshot_name(chunk["snapshot"]):
            return (f"chunk {chunk['label']!r} names snapshot {chunk['snapshot']!r}, not a "
                    "snapshot_<YYYYMMDD_HHMMSS>.json file name")
        if "run_id" in chunk and not is_folder_name(chunk["run_id"]):
            return f"chunk {chunk['label']!r} has run id {chunk['run_id']!r}, not a folder name"
    if (chunks[-1]["generation"] if chunks else 0) != generation:
        return f"generation {generation} is not the last chunk's"
    active = document["active_run"]
    if active is not None and not isinstance(active, dict):
        return "active_run is neither an object nor null"
    if active and "run_id" in active and not is_folder_name(active["run_id"]):
        return (f"the unfinished run's id {active['run_id']!r} is not a folder name (letters, "
                "digits, _ . -)")
    files = document.get(FILES_KEY)
    if files is not None and not (isinstance(files, dict) and all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and is_int(v.get("size"))
            for v in files.values())):
        return f"{FILES_KEY} is not an object of {{sha256, size}} records"
    return None


def derived_problem(document: Any, key: str) -> str | None:
    problem = schema_problem(document) or missing(document, ("generation", key))
    if problem:
        return problem
    if not is_int(document["generation"]) or document["generation"] < 0:
        return f"generation is not a count, was {document['generation']!r}"
    if not isinstance(document[key], dict):
        return f"{key} is not an object"
    return None


def snapshot_problem(document: Any) -> str | None:
    problem = schema_problem(document) or missing(document, SNAPSHOT_KEYS)
    if problem:
        return problem
    if not is_int(document["generation"]) or document["generation"] < 1:
        return f"generation is not a positive count, was {document['generation']!r}"
    for key in DERIVED_FILES.values():
        if not isinstance(document[key], dict):
            return f"{key} is not an object"
    if not isinstance(document["run_id"], str) or not is_folder_name(document["run_id"]):
        return f"run_id {document['run_id']!r} is not a folder name"
    return None


def outcome_values_problem(document: dict) -> str | None:
    """Wrong types or non-finite numbers in an outcome that has every key."""
    if document["direction"] not in (-1, 1) or isinstance(document["direction"], bool):
        return f"direction must be 1 or -1, was {document['direction']!r}"
    for key in OUTCOME_NUMBERS:
        if not _is_finite(document[key]):
            return f"{key} must be a finite number, was {document[key]!r}"
    for key in OUTCOME_OPTIONAL_NUMBERS:
        if document[key] is not None and not _is_finite(document[key]):
            return f"{key} must be a finite number or null, was {document[key]!r}"
    for key in ("symbol", "entry_time", "exit_time", "description"):
        if not isinstance(document[key], str):
            return f"{key} must be a string, was {document[key]!r}"
    state = document["state"]
    if not isinstance(state, list) or not state or not all(_is_finite(v) for v in state):
        return "state must be a non-empty list of finite numbers"
    if not isinstance(document["votes"], dict):
        return "votes is not an object"
    return None


def outcome_problem(document: Any, name: str) -> str | None:
    """Why an outcome file's document is unusable (schema, keys, values, a decision id
    other than the file name's), or None."""
    problem = schema_problem(document) or missing(document, OUTCOME_KEYS)
    if problem:
        return problem
    match = OUTCOME_NAME.fullmatch(name)
    decision_id = document["decision_id"]
    if not is_int(decision_id) or match is None or int(match[1]) != decision_id:
        return f"decision_id {document['decision_id']!r} does not match the file name"
    if not is_int(document["generation"]) or document["generation"] < 1:
        return f"generation is not a positive count, was {document['generation']!r}"
    return outcome_values_problem(document)


def encode_outcomes(
    folder: Path, outcomes: list[dict], generation: int, dumps: Any
) -> list[tuple[Path, bytes]]:
    """Validate a chunk's outcomes and encode them as (path, JSON) pairs."""
    files, seen = [], set()
    for position, outcome in enumerate(outcomes):
        where = f"outcome {position}"
        if not isinstance(outcome, dict):
            raise MemoryStoreError(f"{where}: not a dict, was {type(outcome).__name__}")
        outcome = {"schema_version": SCHEMA_VERSION, **outcome}  # the store's to stamp
        absent = missing(outcome, OUTCOME_KEYS)
        if absent:
            raise MemoryStoreError(
                f"{where} (decision_id {outcome.get('decision_id')!r}): {absent}; build "
                "outcomes with every key of backtester.memory.store.OUTCOME_KEYS"
            )
        decision_id = outcome["decision_id"]
        if not is_int(decision_id) or not INT64[0] <= decision_id <= INT64[1]:
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
        data = dumps(outcome)
        # checked as a reader will see them (numpy scalars as numbers, NaN as null)
        problem = outcome_values_problem(orjson.loads(data))
        if problem:
            raise MemoryStoreError(f"{where} (decision_id {decision_id}): {problem}")
        files.append((folder / f"outcome_{decision_id}.json", data))
    return files
