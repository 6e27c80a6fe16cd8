"""The background compile of the engine kernel (engine/warmup.py), in fresh processes
with an empty Numba cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, cache_dir) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_cold_start_fills_the_cache_and_the_run_loads_the_kernel_from_it(tmp_path):
    out = run_python(
        """
        import numpy as np
        from backtester.engine import Decisions, simulate, warmup
        from backtester.engine.kernels import simulate_nb
        warmup.start()
        print(warmup._process is not None)
        prices = np.full((5, 3), 100.0)
        simulate(prices, prices, prices, prices, Decisions.empty(5, 3))  # waits first
        print(warmup._process is None, simulate_nb.stats.cache_hits.total() == 1,
              simulate_nb.stats.cache_misses.total() == 0)
        """, tmp_path)
    assert out.split() == ["True"] * 4
    # warm: nothing starts
    assert run_python("""
        from backtester.engine import warmup
        warmup.start()
        print(warmup._process is None)
        """, tmp_path).split() == ["True"]


def test_a_compile_still_running_at_exit_is_stopped(tmp_path):
    # The parent exits right after starting a compile that takes seconds; its exit
    # handler terminates the child and reaps it, so the pid is gone once run_python returns.
    pid = int(run_python("""
        from backtester.engine import warmup
        warmup.start()
        print(warmup._process.pid)
        """, tmp_path))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
