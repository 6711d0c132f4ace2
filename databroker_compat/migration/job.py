"""The migration job: select runs, partition them, run the partitions, record progress, report.

``migrate`` walks the source runs oldest first, in pages. A run recorded as done in the
job's state file is skipped without touching the target. The others are grouped into
partitions (:mod:`.partition`: large runs alone, small runs together) and each
partition runs inline, on threads or on ``dask.distributed`` workers, where
:mod:`.worker` decides run by run from the target's content:

- a run present in the target and complete is skipped (``skipped``, "already present");
- a run present but half-written (no stop document in the target, or recorded as failed
  by an earlier pass of this job) is deleted and written again (``rewritten``);
- a run present with a stop but different content is *not* touched: it is reported as
  ``failed`` with the reason, unless ``overwrite=True``;
- any other run is written (``migrated``), then verified against the checksums taken
  from its documents as they streamed past (no second read of the source).

Transient failures (5xx, a server that went away) are retried per run with backoff.
Progress is an append-only JSON-lines state file (one line per finished run, flushed
and fsynced), kept by this process only, so a job killed at any instant resumes where
it stopped and moves nothing twice.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import MigrationError
from .partition import GROUP_RUNS, LARGE_RUN_EVENTS, plan_partitions
from .redact import redact
from .verify import RunVerification, VerificationReport
from .worker import FAILED, MIGRATED, REWRITTEN, SKIPPED, RetryPolicy, RunOutcome, present_uids

logger = logging.getLogger(__name__)

__all__ = ["JobState", "MigrationReport", "RetryPolicy", "RunOutcome", "migrate"]

WOULD_MIGRATE = "would-migrate"
WOULD_REWRITE = "would-rewrite"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class MigrationReport:
    """The result of a migration job, as JSON (``to_dict``/``write``) or text (``summary``).

    >>> report = MigrationReport(source="mongodb://host/db", target="http://tiled")
    >>> report.summary().splitlines()[0]
    'Migration mongodb://host/db -> http://tiled'
    """

    source: str
    target: str
    dry_run: bool = False
    started: str = field(default_factory=_now)
    finished: str = ""
    runs: list[RunOutcome] = field(default_factory=list)
    verification: VerificationReport | None = None

    def _with(self, *statuses: str) -> list[RunOutcome]:
        return [r for r in self.runs if r.status in statuses]

    @property
    def migrated(self) -> list[RunOutcome]:
        return self._with(MIGRATED, REWRITTEN)

    @property
    def skipped(self) -> list[RunOutcome]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[RunOutcome]:
        return self._with(FAILED)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.migrated)

    @property
    def ok(self) -> bool:
        return not self.failed and (self.verification is None or self.verification.ok)

    def to_dict(self) -> dict:
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "source": redact(self.source),
            "target": redact(self.target),
            "dry_run": self.dry_run,
            "started": self.started,
            "finished": self.finished,
            "counts": counts,
            "events_written": self.events,
            "ok": self.ok,
            "runs": [asdict(r) | {"reason": redact(r.reason)} for r in self.runs],
            "verification": self.verification.to_dict() if self.verification is not None else None,
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write the JSON report to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def summary(self) -> str:
        """A short human summary: counts, then every failure and warning with its run."""
        lines = [f"Migration {redact(self.source)} -> {redact(self.target)}" + (" (dry run)" if self.dry_run else "")]
        if self.dry_run:
            lines.append(
                f"  would migrate: {len(self._with(WOULD_MIGRATE))}, would rewrite: {len(self._with(WOULD_REWRITE))}, "
                f"already present: {len(self.skipped)}, problems: {len(self.failed)}"
            )
        else:
            lines.append(
                f"  migrated: {len(self._with(MIGRATED))} ({self.events} events), "
                f"rewritten after an interrupted write: {len(self._with(REWRITTEN))}, "
                f"skipped as present: {len(self.skipped)}, failed: {len(self.failed)}"
            )
        for r in self.failed:
            lines.append(f"  FAILED {r.uid}: {redact(r.reason)}")
        warned = [r for r in self.runs if r.warnings]
        if warned:
            lines.append(f"  warnings on {len(warned)} run(s):")
            for r in warned:
                for w in r.warnings:
                    lines.append(f"    {r.uid}: {redact(w)}")
        if self.verification is not None:
            lines.append("  " + self.verification.summary().replace("\n", "\n  "))
        return "\n".join(lines)


class JobState:
    """Append-only JSON-lines record of a job's progress (``None`` path: in memory only).

    Each line is ``{"uid", "status": "started"|"done"|"failed", "at", ...}``; the last
    line of a uid wins. Lines are flushed and fsynced, so a killed job loses at most the
    line it was writing (a torn last line is ignored on load).

    >>> state = JobState(None)
    >>> state.mark("abc", "done", events=3)
    >>> state.status("abc")
    'done'
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self._status: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._fh = None
        if self.path is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        logger.warning("Ignoring a torn line in the state file %s", self.path)
                        continue
                    self._status[record["uid"]] = record

    def status(self, uid: str) -> str | None:
        record = self._status.get(uid)
        return record["status"] if record else None

    def mark(self, uid: str, status: str, **extra: Any) -> None:
        record = {"uid": uid, "status": status, "at": _now(), **extra}
        with self._lock:
            self._status[uid] = record
            if self.path is None:
                return
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(record, default=str) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class _Progress:
    """A tqdm bar over runs, with runs/s and events/s; silent when disabled or not a TTY."""

    def __init__(self, total: int | None, enabled: bool):
        self.bar = None
        self.events = 0
        self.t0 = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", desc="migrating", dynamic_ncols=True)

    def update(self, events: int) -> None:
        self.events += events
        if self.bar is not None:
            self.bar.update(1)
            elapsed = max(time.monotonic() - self.t0, 1e-9)
            self.bar.set_postfix(events=self.events, ev_per_s=f"{self.events / elapsed:,.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe(target) -> str:
    try:
        return target.uri
    except Exception:
        return repr(target)


class _Executor:
    """Where partitions run: inline, on threads, or on ``dask.distributed`` workers.

    - ``workers == 1`` and no scheduler: inline, in this process;
    - a source that only this process can open (an in-memory ``mongomock`` database):
      a pool of ``workers`` threads in this process, sharing the source;
    - otherwise ``dask.distributed``: the cluster at ``scheduler``, or a
      ``LocalCluster`` of ``workers`` single-threaded worker processes started here
      (and closed at the end). Each worker opens its own MongoDB and Tiled connections
      from the specs (:mod:`.connect`); partitions go to the target specs in turn.
    """

    def __init__(self, source, container, *, workers: int, scheduler, also_served_by, api_key):
        from .connect import source_spec, target_specs

        self.source, self.container = source, container
        self.workers = workers
        # Set by the job to record each run as it starts and ends (same process only;
        # dask results are recorded when their partition comes back).
        self.on_start = self.on_result = None
        self._cluster = self._client = self._pool = None
        self._own_client = False
        self._specs = None
        spec = source_spec(source)
        if workers == 1 and scheduler is None and not also_served_by:
            self.mode = "inline"
        elif spec is None:
            if scheduler is not None:
                raise MigrationError(
                    "scheduler= needs a source that worker processes can open: give "
                    "LegacySource.from_uris(...) or a MongoSpec, not an in-memory database."
                )
            self.mode = "threads"
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="migrate")
        else:
            from dask.distributed import Client, LocalCluster

            self.mode = "dask"
            self._source_spec = spec
            self._specs = target_specs(container, also_served_by=also_served_by, api_key=api_key)
            if scheduler is None:
                self._cluster = LocalCluster(
                    n_workers=workers,
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
                self.workers = max(workers, len(self._client.scheduler_info().get("workers", {})) or 1)
        logger.info("Partitions run %s%s", self.mode, f" on {self.workers} worker(s)" if self.mode != "inline" else "")

    def submit(self, index: int, uids: list[str], **kwargs):
        from .worker import migrate_partition

        if self.mode != "dask":
            kwargs["on_start"], kwargs["on_result"] = self.on_start, self.on_result
        if self.mode == "inline":
            fut: Any = Future()
            try:
                fut.set_result(migrate_partition(self.source, self.container, uids, **kwargs))
            except Exception as err:
                fut.set_exception(err)
            return fut
        if self.mode == "threads":
            return self._pool.submit(migrate_partition, self.source, self.container, uids, **kwargs)
        target = self._specs[index % len(self._specs)]
        return self._client.submit(
            migrate_partition, self._source_spec, target, uids, pure=False, key=f"migrate-partition-{index}-{os.getpid()}-{time.monotonic_ns()}", **kwargs
        )

    def wait_one(self, pending: set) -> tuple[set, set]:
        if self.mode == "dask":
            from dask.distributed import wait as dask_wait

            result = dask_wait(list(pending), return_when="FIRST_COMPLETED")
            done = set(result.done)
            return done, pending - done
        done, rest = wait(pending, return_when=FIRST_COMPLETED)
        return set(done), set(rest)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def migrate(
    source,
    tiled_client,
    *,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    uids: Iterable[str] | None = None,
    batch_size: int = 10_000,
    dry_run: bool = False,
    progress: bool = True,
    verify: bool = True,
    state_path: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    workers: int = 1,
    scheduler: Any = None,
    also_served_by: list[str] | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    close_open_runs: bool = True,
    overwrite: bool = False,
    page_size: int = 200,
    partition_runs: int = GROUP_RUNS,
    large_run_events: int = LARGE_RUN_EVENTS,
) -> MigrationReport:
    """Migrate legacy MongoDB runs into a Tiled container through TiledWriter.

    Parameters
    ----------
    source : LegacySource or MongoSpec
        The legacy databases (``LegacySource(db)`` or ``LegacySource.from_uris(...)``).
        Only read: nothing in MongoDB is modified.
    tiled_client : tiled container client
        Where the runs go (each run becomes a child keyed by its start uid).
    since, until : str or datetime, optional
        Select runs by start time, as the source's ``find_run_uids`` takes them.
    query : dict, optional
        A Mongo query on the start documents.
    uids : iterable of str, optional
        Exactly these runs instead of a selection.
    batch_size : int
        Events per table write in the writer.
    dry_run : bool
        Read and check everything, write nothing (no state file either).
    progress : bool
        Show a tqdm bar (only on a terminal).
    verify : bool
        Verify every run right after writing it, against the source documents it
        streamed (a mismatch is rewritten once more, then reported).
    state_path : path, optional
        The job's JSON-lines state file; give the same one to resume a job.
    report_path : path, optional
        Also write the JSON report there.
    workers : int
        Partitions run at the same time. With 1 (and no ``scheduler``) everything runs
        in this process. More start a ``dask.distributed`` ``LocalCluster`` of that many
        worker processes when the source can be opened elsewhere (``from_uris``), else
        threads. Keep 1 for a server whose tables live in DuckDB/SQLite
        (``tiled serve catalog`` defaults, ``SimpleTiledServer``): concurrent appends
        there fail with HTTP 500; more workers are for PostgreSQL-backed servers.
    scheduler : str or dask.distributed.Client, optional
        A running ``dask.distributed`` scheduler (``"tcp://host:8786"``) or client to
        run the partitions on.
    also_served_by : list of str, optional
        Base URIs of other Tiled server processes serving the same catalog; partitions
        are spread over all of them.
    api_key : str, optional
        The API key workers use (default: the one of ``tiled_client``); never logged.
    retry : RetryPolicy, optional
        Retries of a run after a transient failure (default: 5, backoff 1 s to 30 s).
    close_open_runs : bool
        Give runs without a stop document a stop with ``exit_status="unknown"``
        (otherwise TiledWriter writes none of their events).
    overwrite : bool
        Replace runs present in the target with different content (default: report them).
    page_size : int
        Source uids handled per page (one size estimate per page).
    partition_runs, large_run_events : int
        Small runs are grouped up to ``partition_runs`` per partition; a run of
        ``large_run_events`` or more is a partition of its own.

    Returns
    -------
    MigrationReport

    Examples
    --------
    >>> from databroker_compat.migration import LegacySource, migrate   # doctest: +SKIP
    >>> report = migrate(LegacySource(mongo_db), tiled_client, since="2019-01-01")   # doctest: +SKIP
    >>> print(report.summary())   # doctest: +SKIP
    """
    from .. import _tiled
    from .connect import source_spec

    if batch_size < 1:
        raise MigrationError(f"batch_size must be a positive number of events, not {batch_size!r}.")
    if workers < 1:
        raise MigrationError(f"workers must be at least 1, not {workers!r}.")
    if not hasattr(source, "documents"):
        spec = source_spec(source)
        if spec is None:
            raise MigrationError(f"source must be a LegacySource or a MongoSpec, not {type(source).__name__}.")
        source = spec()
        source.spec = spec
    container = _tiled.as_container(tiled_client)
    report = MigrationReport(source=redact(getattr(source, "name", None) or repr(source)), target=redact(_describe(tiled_client)), dry_run=dry_run)
    state = JobState(None if dry_run else state_path)
    if uids is not None:
        selected: Iterable[str] = list(uids)
        total: int | None = len(selected)  # type: ignore[arg-type]
    else:
        selected = source.find_run_uids(since=since, until=until, query=query)
        try:
            total = source.count_runs(since=since, until=until, query=query)
        except Exception:  # a count is only for the progress bar
            total = None
    logger.info("Migrating %s run(s) from %s into %s%s", total if total is not None else "?", report.source, report.target, " (dry run)" if dry_run else "")
    bar = _Progress(total, progress)
    options = {"batch_size": batch_size, "verify": verify, "close_open_runs": close_open_runs, "overwrite": overwrite}
    verification = VerificationReport() if verify and not dry_run else None

    def take(outcome: RunOutcome, checked: RunVerification | None = None) -> None:
        report.runs.append(outcome)
        bar.update(outcome.events if outcome.status in (MIGRATED, REWRITTEN) else 0)
        if checked is not None and verification is not None:
            verification.runs.append(checked)

    if dry_run:
        try:
            for page in _pages(selected, page_size):
                present = present_uids(container, page)
                for uid in page:
                    try:
                        take(_dry_plan(source, container, uid, uid in present, close_open_runs))
                    except Exception as err:
                        take(RunOutcome(uid, FAILED, reason=f"{type(err).__name__}: {redact(err)}"))
        finally:
            bar.close()
        report.finished = _now()
        if report_path is not None:
            report.write(report_path)
        return report

    executor = _Executor(source, tiled_client, workers=workers, scheduler=scheduler, also_served_by=also_served_by, api_key=api_key)
    pending: dict[Any, list[str]] = {}

    def record(result: dict) -> None:
        outcome, checked = result["outcome"], result.get("verification")
        if outcome["status"] == FAILED:
            state.mark(outcome["uid"], "failed", reason=outcome["reason"])
        elif checked is not None and not checked["ok"]:
            # The next pass of the job rewrites it (present, recorded as failed).
            state.mark(outcome["uid"], "failed", reason="verification: " + "; ".join(checked["mismatches"]))
        else:
            state.mark(outcome["uid"], "done", events=outcome["events"], outcome=outcome["status"])

    executor.on_start = lambda uid: state.mark(uid, "started")
    executor.on_result = record

    def collect(fut) -> None:
        uids_of = pending.pop(fut)
        try:
            results = fut.result()
        except Exception as err:  # the whole partition: source unreachable, worker lost too often
            reason = f"{type(err).__name__}: {redact(err)}"
            logger.warning("A partition of %d run(s) failed: %s", len(uids_of), reason)
            for uid in uids_of:
                state.mark(uid, "failed", reason=reason)
                take(RunOutcome(uid, FAILED, reason=reason))
            return
        for result in results:
            if executor.mode == "dask":
                record(result)
            outcome = RunOutcome(**result["outcome"])
            checked = RunVerification(**result["verification"]) if result.get("verification") else None
            take(outcome, checked)

    try:
        index = 0
        for page in _pages(selected, page_size):
            todo = []
            for uid in page:
                if state.status(uid) == "done":
                    take(RunOutcome(uid, SKIPPED, reason="recorded as done in the job's state file"))
                else:
                    todo.append(uid)
            if not todo:
                continue
            try:
                sizes = source.event_estimates(todo)
            except Exception as err:  # sizes only shape partitions
                logger.info("Could not estimate run sizes (%s); one run per partition", redact(err))
                sizes = {}
            pairs = [(uid, sizes.get(uid)) for uid in todo]
            for part in plan_partitions(pairs, max_runs=partition_runs, large_run_events=large_run_events):
                while len(pending) >= 2 * executor.workers:
                    done, _ = executor.wait_one(set(pending))
                    for fut in done:
                        collect(fut)
                started = [u for u in part.uids if state.status(u) in ("started", "failed")]
                fut = executor.submit(index, part.uids, started_here=started, options=options, retry=retry)
                index += 1
                pending[fut] = part.uids
                if executor.mode == "inline":
                    collect(fut)
        while pending:
            done, _ = executor.wait_one(set(pending))
            for fut in done:
                collect(fut)
    finally:
        executor.close()
        bar.close()
        state.close()

    report.verification = verification
    report.finished = _now()
    if report_path is not None:
        report.write(report_path)
    logger.info("%s", report.summary().splitlines()[1].strip())
    return report


def _dry_plan(source, container, uid: str, present: bool, close_open_runs: bool) -> RunOutcome:
    """What a real pass would do with one run, without writing."""
    from . import writer as _writer

    expected = source.expected(uid, close_open_runs=close_open_runs)
    if not present:
        return RunOutcome(uid, WOULD_MIGRATE, warnings=list(expected.warnings))
    if _writer.run_state(container, uid, expected) == "complete":
        return RunOutcome(uid, SKIPPED, reason="already present in the target with the same content")
    if container[uid].metadata.get("stop") is None:
        return RunOutcome(uid, WOULD_REWRITE, reason="present but incomplete in the target", warnings=list(expected.warnings))
    return RunOutcome(
        uid,
        FAILED,
        reason="a run with this uid is already in the target with different content; "
        "a real pass leaves it untouched (inspect it, then pass overwrite=True / --overwrite to replace it)",
    )
