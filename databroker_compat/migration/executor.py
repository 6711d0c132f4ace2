"""Where a job's partitions run: inline, on threads, or on ``dask.distributed`` workers.

- ``workers == 1`` and no scheduler: inline, in this process;
- a source that only this process can open (an in-memory ``mongomock`` database):
  a pool of ``workers`` threads in this process, sharing the source;
- otherwise ``dask.distributed``: the cluster at ``scheduler``, or a ``LocalCluster``
  of ``workers`` single-threaded worker processes started here (and closed at the
  end). Each worker opens its own MongoDB and Tiled connections from the specs
  (:mod:`.connect`); partitions go to the target specs in turn.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..exceptions import BadArgument
from .connect import source_spec, target_specs
from .options import MigrationOptions
from .worker import OnResult, OnStart, migrate_partition

logger = logging.getLogger(__name__)

__all__ = ["DASK", "INLINE", "THREADS", "Executor"]

INLINE = "inline"
THREADS = "threads"
DASK = "dask"


class Executor:
    """Runs partitions (:func:`~.worker.migrate_partition`) where the job's options say.

    Parameters
    ----------
    source : LegacySource
        The open source (its ``spec``, if any, is what dask workers open).
    container : tiled container client
        The target.
    options : MigrationOptions
        ``workers`` and what each worker is given.
    scheduler : str or dask.distributed.Client, optional
        A running scheduler's address, or a client of it.
    also_served_by : list of str, optional
        Base URIs of more Tiled server processes on the same catalog.
    api_key : str, optional
        The API key workers use (default: the one of ``container``).

    Attributes
    ----------
    mode : str
        ``"inline"``, ``"threads"`` or ``"dask"``.
    on_start, on_result : callable or None
        Set by the job to record each run as it starts and ends (same process only;
        dask results are recorded when their partition comes back).
    """

    def __init__(
        self,
        source: Any,
        container: Any,
        options: MigrationOptions,
        *,
        scheduler: Any = None,
        also_served_by: list[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.source, self.container = source, container
        self.options = options
        self.workers = options.workers
        self.on_start: OnStart | None = None
        self.on_result: OnResult | None = None
        self._cluster: Any = None
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._own_client = False
        self._specs: list[Any] = []
        self._source_spec = spec = source_spec(source)
        if self.workers == 1 and scheduler is None and not also_served_by:
            self.mode = INLINE
        elif spec is None:
            if scheduler is not None:
                raise BadArgument(
                    "scheduler= needs a source that worker processes can open: give "
                    "LegacySource.from_uris(...) or a MongoSpec, not an in-memory database.",
                    option="scheduler",
                )
            self.mode = THREADS
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="migrate")
        else:
            from dask.distributed import Client, LocalCluster

            self.mode = DASK
            self._specs = target_specs(container, also_served_by=also_served_by, api_key=api_key)
            if scheduler is None:
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
                self._client = Client(self._cluster)
                self._own_client = True
            else:
                self._own_client = not hasattr(scheduler, "submit")
                self._client = Client(scheduler) if self._own_client else scheduler
                self.workers = max(self.workers, len(self._client.scheduler_info().get("workers", {})) or 1)
        logger.info("Partitions run %s%s", self.mode, f" on {self.workers} worker(s)" if self.mode != INLINE else "")

    def submit(self, index: int, uids: list[str], *, started_here: list[str]) -> Any:
        """Start partition number ``index``; returns its future (done already when inline)."""
        kwargs: dict[str, Any] = {"started_here": started_here, "options": self.options}
        if self.mode != DASK:
            kwargs["on_start"], kwargs["on_result"] = self.on_start, self.on_result
        if self.mode == INLINE:
            fut: Future[Any] = Future()
            try:
                fut.set_result(migrate_partition(self.source, self.container, uids, **kwargs))
            except Exception as err:
                fut.set_exception(err)
            return fut
        if self.mode == THREADS:
            assert self._pool is not None
            return self._pool.submit(migrate_partition, self.source, self.container, uids, **kwargs)
        target = self._specs[index % len(self._specs)]
        key = f"migrate-partition-{index}-{os.getpid()}-{time.monotonic_ns()}"
        return self._client.submit(migrate_partition, self._source_spec, target, uids, pure=False, key=key, **kwargs)

    def wait_one(self, pending: set[Any]) -> tuple[set[Any], set[Any]]:
        """Wait until at least one of ``pending`` is done: (done, not done)."""
        if self.mode == DASK:
            from dask.distributed import wait as dask_wait

            result = dask_wait(list(pending), return_when="FIRST_COMPLETED")
            done = set(result.done)
            return done, pending - done
        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return set(done), set(rest)

    def close(self) -> None:
        """Stop the threads, and the dask client and cluster this executor started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
