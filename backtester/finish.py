"""The end of a run: the run folder written from the joined chunks, the memory's record of
the run closed, the per-chunk parts removed.

The last chunk is committed to the memory with the run still recorded as active and its
outputs pending (``OUTPUTS_PENDING``); only once the run folder is written is the record
cleared (``MemoryStore.finish_run``). So a run killed after its last commit, or whose
``--out`` filled up, is finished by ``--resume`` from the parts in ``runs/<id>/chunks``
without trading a bar again. A run folder that cannot be written raises ``RunFolderError``:
one line naming the folder, what the memory kept and the way back.
"""

from __future__ import annotations

import errno

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from backtester.errors import BtError
from backtester.memory.io import is_temporary
from backtester.results import RunResult, write_run

OUTPUTS_PENDING = "outputs_pending"  # run_state key: every chunk committed, no outputs yet


class RunFolderError(BtError):
    """The run folder under ``run.out_dir`` (``--out``) cannot be written."""


def pending(active: dict[str, Any] | None) -> bool:
    """Whether a manifest's active run committed every chunk but has no outputs yet."""
    return bool(active) and bool(active.get(OUTPUTS_PENDING))


def folder_error(folder: Path, error: OSError, loop: Any, run: Any) -> RunFolderError:
    """The one line for a run folder that could not be written (ENOSPC or any OSError):
    the folder, the reason, what the memory kept, and how to go on once there is space."""
    reason = error.strerror or str(error) or type(error).__name__
    if loop.writes:
        kept = (f"the memory is committed up to chunk {run.done[-1].chunk.label} "
                f"({len(run.done)} of {len(loop.chunks)} chunks)" if run.done
                else "the memory is as it was before this run")
        then = "run the same command with --resume to finish the run"
    else:
        kept = "nothing was written to the memory"
        then = "run the same command again"
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "once there is space" if full else f"once {folder.parent} is a writable folder"
    return RunFolderError(f"{folder}: cannot write the run's results ({reason}); {kept}; "
                          f"{fix}, {then}")


def finished_line(run: Any, run_dir: Path) -> str:
    """The notice of a resumed run that had only its outputs left to write."""
    return (f"run {run.run_id}: all {len(run.done)} chunks were already committed to the "
            f"memory; writing its results from the chunk parts in {run_dir / 'chunks'} "
            "(nothing is traded again)")


def finish(loop: Any, run: Any, memory: Any, run_dir: Path, *, write: bool,
           parts_dir: Path | None) -> RunResult:
    """Join the chunks, write the run folder and its report, then clear the memory's
    record of the run and remove the parts. Raises RunFolderError when the folder cannot
    be written (the memory's record is kept, so --resume finishes the run later)."""
    from backtester.report import write_report

    result = loop.result(run)
    if write:
        try:
            _remove_temporaries(run_dir)
            write_run(replace(result, out_dir=run_dir))
            write_report(run_dir)
        except OSError as e:
            raise folder_error(run_dir, e, loop, run) from None
    if loop.writes:
        memory.store.finish_run()
    if parts_dir is not None:
        shutil.rmtree(parts_dir / "chunks", ignore_errors=True)  # only --resume reads them
    return replace(result, out_dir=run_dir) if write else result


def _remove_temporaries(run_dir: Path) -> None:
    """Temporary files a killed write left in the run folder (never anything else)."""
    if not run_dir.is_dir():
        return
    for entry in os.scandir(run_dir):
        if entry.is_file(follow_symlinks=False) and is_temporary(entry.name):
            os.unlink(entry.path)
