"""Where trials run: in this process one at a time, or on Dask workers.

An engine takes trials and yields each trial's result dict (``run_trial``'s, with
"params" the trial's own overrides) as it finishes, in finishing order. Both engines
first *prepare* each trial: the base config path and every relative folder the trial
reads (``data.cache_dir``, ``data.path``, ``memory.llm_cache_dir``) become absolute, so a
worker with another working directory reads the same files; and the market of each
distinct data config is loaded once by the driver, so the Parquet cache is written
before any worker reads it (workers never race to write it).

``map`` pulls trials from its iterable lazily and keeps at most ``max_in_flight`` of them
running; a result is yielded before the next trial is pulled, so a search (Optuna's
ask/tell) can make the next trial from the results so far::

    with DaskEngine(workers=4) as engine:
        for result in engine.map(trials, sweep_dir, max_in_flight=engine.workers):
            ...

Dask workers are spawned (never forked: a forked torch, which the LSTM provider loads,
deadlocks) and the LocalCluster listens on 127.0.0.1 only, without a dashboard.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from backtester.data.cache import DEFAULT_CACHE_DIR
from backtester.errors import BtError, ConfigError
from backtester.experiments.trial import Trial, run_trial

ENGINES = ("local", "dask")
LOCAL_HTTP = "127.0.0.1:0"
# Folders a trial reads, made absolute for workers elsewhere (empty = derived, kept).
PATH_KEYS = ("data.cache_dir", "data.path", "memory.llm_cache_dir")  # made absolute


@runtime_checkable
class Engine(Protocol):
    """Runs trials somewhere and yields their result dicts as they finish."""

    name: str

    @property
    def workers(self) -> int:
        """How many trials run at once."""
        ...

    def map(self, trials: Iterable[Trial], sweep_dir: str | Path, *,
            max_in_flight: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``run_trial(trial, sweep_dir)`` of every trial, in finishing order."""
        ...

    def close(self) -> None:
        """Release workers and connections (idempotent)."""
        ...


class _Preparer:
    """Make trials portable (absolute paths) and write each distinct market cache once."""

    def __init__(self) -> None:
        self._loaded: set[str] = set()

    def __call__(self, trial: Trial) -> Trial:
        from backtester.config import DEFAULT_CONFIG_PATH, load_config

        config_path = trial.config_path
        if config_path is None and DEFAULT_CONFIG_PATH.exists():
            config_path = str(DEFAULT_CONFIG_PATH.resolve())
        elif config_path is not None:
            config_path = str(Path(config_path).resolve())
        try:
            config = load_config(config_path, dict(trial.overrides))
        except BtError:
            return replace(trial, config_path=config_path)  # run_trial records the error
        overrides = dict(trial.overrides)
        for dotted in PATH_KEYS:
            section, key = dotted.split(".")
            value = getattr(getattr(config, section), key)
            if dotted == "data.cache_dir" and value in ("", DEFAULT_CACHE_DIR):
                continue  # the user cache folder, the same for every worker on this machine
            if value and not Path(value).is_absolute():
                overrides[dotted] = str(Path(value).resolve())
        trial = replace(trial, overrides=overrides, config_path=config_path)
        self._load_market(load_config(config_path, overrides))
        return trial

    def _load_market(self, config: Any) -> None:
        from backtester.market import load_market, period_bounds, warmup_bars

        try:
            key = repr((config.to_dict()["data"], period_bounds(config), warmup_bars(config)))
            if key not in self._loaded:
                self._loaded.add(key)
                load_market(config)
        except BtError:
            pass  # the trial fails with this error in run_trial, where it is recorded


def crashed(trial: Trial, error: BaseException) -> dict[str, Any]:
    """The result dict of a trial that raised something other than a BtError (a bug, a
    lost worker): failed, with the exception's type and first line."""
    from backtester.experiments.trial import STATUS_FAILED

    line = (str(error).splitlines() or [""])[0]
    return {"trial_id": trial.trial_id, "params": dict(trial.overrides),
            "market": trial.market, "status": STATUS_FAILED,
            "error": f"{type(error).__name__}: {line}", "wall_s": float("nan")}


class LocalEngine:
    """Run trials in this process, one at a time (for debugging, and one-trial sweeps).

    A trial that raises something other than a BtError is recorded as failed like on
    Dask; with BT_DEBUG=1 set it raises instead, for the traceback.
    """

    name = "local"

    @property
    def workers(self) -> int:
        return 1

    def map(self, trials: Iterable[Trial], sweep_dir: str | Path, *,
            max_in_flight: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``run_trial(trial, sweep_dir)`` of each trial in order."""
        prepare = _Preparer()
        sweep_dir = str(Path(sweep_dir).resolve())
        for trial in trials:
            try:
                result = run_trial(prepare(trial), sweep_dir)
            except Exception as e:  # a bug: recorded like a failed trial, the rest go on
                if os.environ.get("BT_DEBUG"):
                    raise
                result = crashed(trial, e)
            yield result | {"params": dict(trial.overrides)}

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskEngine:
    """Run trials on Dask workers: a LocalCluster of this machine, or an existing cluster.

    Parameters
    ----------
    workers : int | None
        Worker processes of the LocalCluster (one thread each); None: the CPU count.
        Ignored with ``scheduler``.
    scheduler : str | None
        Address of an existing scheduler, e.g. "tcp://127.0.0.1:8786"; None starts a
        LocalCluster on 127.0.0.1 (closed by ``close``).
    connect_timeout : float
        Seconds to wait for ``scheduler`` to answer.

    Raises
    ------
    ConfigError
        When ``workers`` is below 1 or the scheduler cannot be reached.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, *, scheduler: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be at least 1, was {workers}")
        self._requested = workers
        self.scheduler = scheduler
        self.connect_timeout = connect_timeout
        self._cluster: Any = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The distributed.Client, started on first use."""
        if self._client is None:
            self._start()
        return self._client

    @property
    def cluster(self) -> Any:
        """The LocalCluster this engine started (None with ``scheduler`` or before use)."""
        return self._cluster

    @property
    def workers(self) -> int:
        if self._client is None and self.scheduler is None:
            return self._requested or os.cpu_count() or 1
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def _start(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            if self.scheduler is not None:
                try:
                    self._client = Client(self.scheduler, timeout=self.connect_timeout)
                except (OSError, TimeoutError) as e:
                    raise ConfigError(f"--scheduler {self.scheduler}: cannot reach the Dask "
                                      f"scheduler ({e}); start it with `dask scheduler` or "
                                      f"check the address") from None
                return
            self._cluster = LocalCluster(
                n_workers=self._requested or os.cpu_count() or 1, threads_per_worker=1,
                processes=True, host="127.0.0.1", dashboard_address=None,
                worker_dashboard_address=None, silence_logs=40,
                # no dashboard; the scheduler's health endpoints on a free local port
                scheduler_kwargs={"dashboard_address": LOCAL_HTTP})
            try:
                self._client = Client(self._cluster)
            except BaseException:
                self._cluster.close()
                self._cluster = None
                raise

    def map(self, trials: Iterable[Trial], sweep_dir: str | Path, *,
            max_in_flight: int | None = None) -> Iterator[dict[str, Any]]:
        """Submit ``run_trial`` per trial and yield results as they finish.

        At most ``max_in_flight`` trials are submitted at a time (None: all at once).
        Trials still running when the caller stops iterating (or on an error or
        KeyboardInterrupt) are cancelled.
        """
        from distributed import as_completed

        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, was {max_in_flight}")
        pending = iter(trials)
        first = next(pending, None)
        if first is None:
            return  # nothing to run: no cluster started
        pending = itertools.chain([first], pending)
        prepare = _Preparer()
        sweep_dir = str(Path(sweep_dir).resolve())
        client = self.client
        futures = as_completed()
        running: dict[Any, Trial] = {}

        def submit_next() -> bool:
            trial = next(pending, None)
            if trial is None:
                return False
            future = client.submit(run_trial, prepare(trial), sweep_dir, pure=False,
                                   key=f"trial-{trial.trial_id}-{os.urandom(4).hex()}")
            running[future] = trial
            futures.add(future)
            return True

        try:
            while (max_in_flight is None or len(running) < max_in_flight) and submit_next():
                pass
            while running:
                future = next(futures)
                trial = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # a bug or a lost worker: recorded, the rest go on
                    result = crashed(trial, e)
                future.release()
                yield result | {"params": dict(trial.overrides)}
                submit_next()
        finally:
            if running:
                client.cancel(list(running))

    def close(self) -> None:
        """Close the client and, when this engine started it, the LocalCluster."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_engine(name: str, *, workers: int | None = None,
                scheduler: str | None = None) -> LocalEngine | DaskEngine:
    """The engine called ``name`` ("local" or "dask"); ``scheduler`` implies dask."""
    if scheduler is not None and name == "local":
        raise ConfigError("--scheduler goes with --engine dask; drop --engine local")
    if name == "local":
        return LocalEngine()
    if name == "dask":
        return DaskEngine(workers, scheduler=scheduler)
    raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, was {name!r}")
