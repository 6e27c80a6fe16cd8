"""Experiments at scale: sweeps, searches and Monte Carlo paths of complete chunked runs.

Every trial is one ``run_backtest`` (the code path of `bt run`) with its own memory folder
under the sweep folder, so trials never share learned state; engines (local, Dask) only
decide where trials run.
"""
