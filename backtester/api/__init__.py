"""The Python API of bt, for notebooks and scripts: ``configure`` a run, ``run`` it on
the embedded market, a file or a DataFrame, and read the ``Result`` as pandas;
``open_run`` and ``open_memory`` read what earlier runs left, without writing.

Modules: ``_config`` (configs and DataFrames of bars), ``_run``, ``_result``
(``Result``, ``open_run``), ``_memory`` (``Memory``, ``open_memory``).
"""

from backtester.api._config import OPTION_KEYS, configure, frame_to_bars
from backtester.api._memory import Memory, open_memory
from backtester.api._result import Result, open_run
from backtester.api._run import run

__all__ = ["OPTION_KEYS", "Memory", "Result", "configure", "frame_to_bars", "open_memory",
           "open_run", "run"]
