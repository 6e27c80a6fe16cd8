"""Compile the engine kernel in a background process while a cold run loads its market.

On an empty Numba cache, compiling ``kernels.simulate_nb`` takes seconds, and a run
needs it only after it has generated its bars and computed features and regimes (more
compiling, in the run's own process). ``start`` launches a second Python process that
runs a tiny simulation, which compiles the kernel with the one signature every run uses
into Numba's on-disk cache (Numba writes each cache file to a temporary name and renames
it, so a reader never sees half a file); ``wait``, called before the first simulation,
lets that process finish, and the kernel then loads from the cache instead of compiling
a second time. Nothing starts when the kernel is cached already (a warm run), when this
process has compiled it, or when Numba's JIT is disabled; a process still running when
the run exits is stopped, and one that fails only leaves the compiling to the run.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from backtester.engine.kernels import simulate_nb

WAIT_SECONDS = 120.0  # a compile slower than this is left to the run's own process
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
_CHILD_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from backtester.engine.warmup import compile_engine; compile_engine()"
)
_process: subprocess.Popen | None = None


def compile_engine() -> None:
    """Compile ``simulate_nb`` (or load it from the cache) by simulating two bars."""
    from backtester.engine.simulate import Decisions, simulate

    prices = np.ones((2, 1))
    simulate(prices, prices, prices, prices, Decisions.empty(2, 1))


def _cached() -> bool:
    """Whether ``simulate_nb`` is compiled here or in Numba's on-disk cache (any signature;
    True when unsure, so that nothing starts)."""
    if simulate_nb.signatures or os.environ.get("NUMBA_DISABLE_JIT", "0") != "0":
        return True
    try:
        return bool(simulate_nb._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - Numba internals moved: start nothing
        return True


def start() -> None:
    """Start compiling the engine kernel in the background, unless it is cached already."""
    global _process
    if _process is not None or not sys.executable or _cached():
        return
    try:
        _process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, _PACKAGE_PARENT],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return
    atexit.register(_stop)


def wait(timeout: float = WAIT_SECONDS) -> None:
    """Let a background compile finish (stopping it after ``timeout`` seconds)."""
    global _process
    if _process is None:
        return
    try:
        _process.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop()
    _process = None


def _stop() -> None:
    """Stop the background compile if it still runs (its cache files stay whole)."""
    process = _process
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
