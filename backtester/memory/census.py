"""What a memory folder holds, by file name: outcome files, file kinds, the census
``bt memory inspect`` shows, the refusal of foreign files in a folder without a manifest,
and the trade tallies the doctor checks the stats against.

Nothing here writes; ``backtester.memory.store`` re-exports these names.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from backtester.errors import MemoryStoreError
import orjson

from backtester.memory.integrity import (
    DERIVED_FILES,
    FILES_KEY,
    INDEX_NAME,
    LLM_CACHE,
    MANIFEST,
    OUTCOME_NAME,
    QUARANTINE,
    SEGMENT_NAME,
    SNAPSHOT_NAME,
    VECTORS,
    doctor_hint,
    is_int,
    part_counts,
)
from backtester.memory.io import LOCK_NAME, is_temporary

_OUTCOME_NAME, _SNAPSHOT_NAME = OUTCOME_NAME, SNAPSHOT_NAME


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
    learned = Counter()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == MANIFEST:  # a folder named manifest.json
                raise MemoryStoreError(
                    f"{folder / MANIFEST}: is a folder, a file was expected; "
                    f"{doctor_hint(folder, 'to quarantine it and rebuild')}"
                )
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                known = entry.name in (VECTORS, LLM_CACHE, QUARANTINE)
            else:
                kind = _file_kind(entry.name)
                known = kind != "other"
                if kind in ("outcome", "snapshot"):
                    learned[kind] += 1
            if not known:
                raise MemoryStoreError(
                    f"{folder}: holds {entry.name}, which is not a bt memory file, and no "
                    f"{MANIFEST}; pass an empty or new folder with --memory-dir"
                )
    if learned:  # every commit writes a manifest first: these files outlived theirs
        found = " and ".join(f"{n} {kind} files" for kind, n in sorted(learned.items()))
        raise MemoryStoreError(
            f"{folder / MANIFEST}: is missing beside {found} (never restarted empty: that "
            f"would forget them); {doctor_hint(folder, 'to rebuild it from the snapshots')}"
        )


def vector_rows(folder: Path, header: dict, manifest: dict) -> int:
    """How many rows the vector index holds: the row counts the manifest records of its
    rows files (vectors/index.json and the chunk segments, rows_<g>.json, in force); in a
    folder saved before those records, index.json's rows (``header``) and those of the
    segments above its generation up to the committed one. A census for `bt memory
    inspect` (no file is verified here: a run and the doctor do)."""
    files = manifest.get(FILES_KEY) if isinstance(manifest.get(FILES_KEY), dict) else {}
    base = header.get("generation") if is_int(header.get("generation")) else 0
    index = part_counts(files.get(INDEX_NAME))
    segments = [(name, SEGMENT_NAME.fullmatch(name[len(VECTORS) + 1:])) for name in files
                if name.startswith(f"{VECTORS}/")]
    names = [name for name, match in segments if match and int(match[1]) > base]
    counts = [index, *(part_counts(files[name]) for name in names)]
    if all(count is not None for count in counts):
        return sum(rows for rows, _ in counts)
    rows = header.get("rows")
    total = len(rows) if isinstance(rows, list) else 0
    vectors = folder / VECTORS
    for name in os.listdir(vectors):
        match = SEGMENT_NAME.fullmatch(name)
        if match and base < int(match[1]) <= manifest["generation"]:
            try:
                total += len(orjson.loads((vectors / name).read_bytes())["rows"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                continue
    return total


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
