"""Sweeps on Dask: a LocalCluster of 2 spawned workers on 127.0.0.1 gives the local
engine's results.parquet, and `bt sweep --scheduler` submits to an existing cluster.

Each test starts and closes its cluster itself (a few seconds each); the local reference
sweep is shared with test_sweep.py's fixtures."""

from __future__ import annotations

from pathlib import Path

import dask
import pandas as pd
import pytest
from typer.testing import CliRunner

from backtester.cli import app
from backtester.errors import ConfigError
from backtester.experiments.engines import DaskEngine
from backtester.experiments.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "configs" / "default.toml")


def _same_figures(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left.drop(columns="wall_s"), right.drop(columns="wall_s"),
                                  check_exact=True)


def _listening_hosts(cluster) -> set[str]:
    """Addresses the cluster listens on: the scheduler's (in this process) and every
    socket of its worker and nanny processes."""
    import psutil

    hosts = {cluster.scheduler.http_server.address,
             cluster.scheduler.address.split("://")[1].rsplit(":", 1)[0]}
    for child in psutil.Process().children(recursive=True):
        hosts |= {c.laddr.ip for c in child.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN}
    return hosts


@pytest.fixture(scope="module")
def dask_engine():
    """A DaskEngine with its own LocalCluster of 2 workers, closed (and checked closed)
    at the end of the module."""
    engine = DaskEngine(workers=2)
    engine.client  # start it
    cluster = engine.cluster
    yield engine
    engine.close()
    assert cluster.status.name == "closed" and engine.cluster is None


def test_a_local_cluster_gives_the_local_engines_results(dask_engine, grid_spec, local_sweep,
                                                         tmp_path):
    # Arrange
    cluster = dask_engine.cluster
    assert len(dask_engine.client.scheduler_info(n_workers=-1)["workers"]) == 2
    assert _listening_hosts(cluster) == {"127.0.0.1"}
    # Act
    outcome = run_sweep(grid_spec, engine=dask_engine, out=tmp_path, sweep_id="grid")
    # Assert
    _same_figures(pd.read_parquet(tmp_path / "grid" / "results.parquet"),
                  pd.read_parquet(local_sweep.sweep_dir / "results.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "grid" / "returns.parquet"),
                                  pd.read_parquet(local_sweep.sweep_dir / "returns.parquet"))
    assert outcome.summary["deflated_sharpe"] == local_sweep.summary["deflated_sharpe"]


def test_map_pulls_the_next_trial_only_after_yielding_a_result(dask_engine, grid_spec,
                                                               tmp_path):
    # Arrange: a search-like generator that records when each trial is asked for
    events: list[str] = []

    def asked():
        for trial in grid_spec.trials[:3]:
            events.append(f"ask {trial.trial_id}")
            yield trial

    # Act
    for result in dask_engine.map(asked(), tmp_path, max_in_flight=2):
        events.append(f"tell {result['trial_id']}")
    # Assert: two in flight at first, then one asked per result told
    assert events[:2] == ["ask t0001", "ask t0002"]
    assert events[2].startswith("tell ") and events[3] == "ask t0003"
    assert sorted(e for e in events if e.startswith("tell")) == [
        "tell t0001", "tell t0002", "tell t0003"]


def test_bt_sweep_submits_to_an_existing_scheduler(grid_set, local_sweep, tmp_path):
    from distributed import LocalCluster

    # Arrange: a cluster of this test, as `dask scheduler` + `dask worker` would be
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, silence_logs=40,
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        # Act
        outcome = CliRunner().invoke(app, [
            "sweep", "-c", DEFAULT, "--scheduler", cluster.scheduler_address, "--out",
            str(tmp_path), "--sweep-id", "remote", *(a for f in grid_set for a in ("--set", f))])
        # Assert: the cluster is still up (the engine closed only its client)
        assert outcome.exit_code == 0, outcome.output
        assert cluster.status.name == "running"
    _same_figures(pd.read_parquet(tmp_path / "remote" / "results.parquet"),
                  pd.read_parquet(local_sweep.sweep_dir / "results.parquet"))


def test_an_unreachable_scheduler_is_one_line():
    engine = DaskEngine(scheduler="tcp://127.0.0.1:9", connect_timeout=1.0)

    with pytest.raises(ConfigError, match=r"^--scheduler tcp://127.0.0.1:9: cannot reach the "
                                          r"Dask scheduler .*; start it with `dask scheduler`"):
        engine.client
