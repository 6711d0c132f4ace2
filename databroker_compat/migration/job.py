"""The migration job: select runs, partition them, run the partitions, record progress, report.

``migrate`` walks the source runs oldest first, in pages. A run recorded as done in the
job's state file (:mod:`.state`) is skipped without touching the target. The others
are grouped into partitions (:mod:`.partition`: large runs alone, small runs together)
and each partition runs inline, on threads or on ``dask.distributed`` workers
(:mod:`.executor`), where :mod:`.worker` decides run by run from the target's content
(:mod:`.decide`):

- a run present in the target and complete is skipped (``skipped``, "already present");
- a run present but half-written (no stop document in the target, or recorded as failed
  by an earlier pass of this job) is deleted and written again (``rewritten``);
- a run present with a stop but different content is *not* touched: it is reported as
  ``failed`` with the reason, unless ``overwrite=True``;
- any other run is written (``migrated``), then verified against the checksums taken
  from its documents as they streamed past (no second read of the source).

Each run's files are surveyed before it is written (through the job's root map), and
every fix is recorded in its outcome. A run whose events arrived without some frames is
*incomplete*: recorded as failed in the state file (so that the next pass, e.g. with a
corrected root map, writes it again) and the job's exit status is 1, unless
``allow_missing_files`` is given (then it is recorded as done and listed as incomplete).

Transient failures (5xx, a server that went away) are retried per run with backoff.
Progress is an append-only JSON-lines state file (one line per finished run, flushed
and fsynced), kept by this process only, so a job killed at any instant resumes where
it stopped and moves nothing twice. A dry run (:mod:`.plan`) takes the same decisions
and writes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from .. import _tiled
from .._redact import redact
from ..exceptions import BadArgument
from .connect import is_open_source, source_spec
from .executor import DASK, INLINE, Executor
from .frames import RootMap
from .options import DEFAULTS, MigrationOptions, RetryPolicy
from .partition import pages, plan_partitions
from .plan import DONE_REASON, dry_run
from .progress import Progress
from .report import FAILED, MIGRATED, REWRITTEN, SKIPPED, MigrationReport, RunOutcome, now
from .state import DONE, JobState
from .target import delete_run
from .verify import RunVerification, VerificationReport

logger = logging.getLogger(__name__)

__all__ = ["JobState", "MigrationOptions", "MigrationReport", "RetryPolicy", "RunOutcome", "migrate", "run_job"]


def _describe(target: Any) -> str:
    try:
        return str(target.uri)
    except Exception:
        return repr(target)


def _open_source(source: Any) -> Any:
    """An open source: ``source`` itself, or what its spec opens."""
    if is_open_source(source):
        return source
    spec = source_spec(source)
    if spec is None:
        raise BadArgument(
            f"source must be a LegacySource or a MongoSpec, not {type(source).__name__}.", option="source"
        )
    opened = spec()
    opened.spec = spec
    return opened


def migrate(
    source: Any,
    tiled_client: Any,
    *,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    uids: Iterable[str] | None = None,
    batch_size: int = DEFAULTS.batch_size,
    dry_run: bool = DEFAULTS.dry_run,
    progress: bool = DEFAULTS.progress,
    verify: bool = DEFAULTS.verify,
    state_path: str | os.PathLike[str] | None = None,
    report_path: str | os.PathLike[str] | None = None,
    workers: int = DEFAULTS.workers,
    scheduler: Any = None,
    also_served_by: list[str] | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    close_open_runs: bool = DEFAULTS.close_open_runs,
    overwrite: bool = DEFAULTS.overwrite,
    page_size: int = DEFAULTS.page_size,
    partition_runs: int = DEFAULTS.partition_runs,
    large_run_events: int = DEFAULTS.large_run_events,
    timezone: str | None = DEFAULTS.timezone,
    root_map: RootMap | Iterable[str] | dict[str, str] | None = DEFAULTS.root_map,
    allow_missing_files: bool = DEFAULTS.allow_missing_files,
    verify_data: str = DEFAULTS.verify_data,
    close_streams: bool | None = DEFAULTS.close_streams,
) -> MigrationReport:
    """Migrate legacy MongoDB runs into a Tiled container through TiledWriter.

    Parameters
    ----------
    source : LegacySource or MongoSpec
        The legacy databases (``LegacySource(db)`` or ``LegacySource.from_uris(...)``).
        Only read: nothing in MongoDB is modified.
    tiled_client : tiled container client
        Where the runs go (each run becomes a child keyed by its start uid).
    since, until : str, datetime or float, optional
        Select runs by start time (``since`` inclusive, ``until`` exclusive), read as
        ``db(since=...)`` reads them: ``"2019"``, ``"2019-01"``, ``"2019-01-01 12:00"``,
        ISO 8601, a datetime or epoch seconds; times that name no zone are in ``timezone``.
    query : dict, optional
        A Mongo query on the start documents.
    uids : iterable of str, optional
        Exactly these runs instead of a selection.
    batch_size : int
        Events per table write in the writer.
    dry_run : bool
        Read and check everything, write nothing (no state file either; an existing one
        is read, so the dry run decides as the real pass would).
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
    timezone : str, optional
        IANA zone for ``since``/``until`` times that name none (default: this machine's).
    root_map : RootMap, list of "OLD=NEW" or dict, optional
        Old file-system prefixes of the resources and where the files are now; files are
        looked for, and registered in Tiled, at the mapped paths.
    allow_missing_files : bool
        Accept runs whose events arrived without some frames (files, datums or
        resources missing): recorded as done and listed as incomplete, and the report is
        ``ok``. By default they make the report not ``ok`` (exit status 1).
    verify_data : str
        How much array data verification reads: ``"sample"`` or ``"full"``.
    close_streams : bool or None
        Send the writer's stream-close requests: None (default) asks each target once
        and skips them on a server with no streaming cache and no webhook API; True or
        False decides (False also skips ``StreamClosed`` webhooks).

    Returns
    -------
    MigrationReport

    Raises
    ------
    BadArgument
        An option that cannot be used (``workers=0``, ``batch_size=0``, ...), before
        anything is read; a ``ValueError`` whose ``option`` and ``value`` say which.

    Examples
    --------
    >>> from databroker_compat.migration import LegacySource, migrate   # doctest: +SKIP
    >>> report = migrate(LegacySource(mongo_db), tiled_client, since="2019-01")   # doctest: +SKIP
    >>> print(report.summary())   # doctest: +SKIP
    """
    options = MigrationOptions(
        batch_size=batch_size,
        workers=workers,
        page_size=page_size,
        partition_runs=partition_runs,
        large_run_events=large_run_events,
        retry=retry if retry is not None else DEFAULTS.retry,
        verify=verify,
        close_open_runs=close_open_runs,
        overwrite=overwrite,
        dry_run=dry_run,
        progress=progress,
        timezone=timezone,
        root_map=root_map if isinstance(root_map, RootMap) else RootMap.parse(root_map),
        allow_missing_files=allow_missing_files,
        verify_data=verify_data,
        close_streams=close_streams,
    )
    return run_job(
        source,
        tiled_client,
        options,
        since=since,
        until=until,
        query=query,
        uids=uids,
        state_path=state_path,
        report_path=report_path,
        scheduler=scheduler,
        also_served_by=also_served_by,
        api_key=api_key,
    )


def run_job(
    source: Any,
    tiled_client: Any,
    options: MigrationOptions,
    *,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    uids: Iterable[str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    report_path: str | os.PathLike[str] | None = None,
    scheduler: Any = None,
    also_served_by: list[str] | None = None,
    api_key: str | None = None,
) -> MigrationReport:
    """:func:`migrate` with its options as one :class:`MigrationOptions` object.

    >>> report = run_job(source, client, MigrationOptions(batch_size=500), since="2019")   # doctest: +SKIP
    """
    source = _open_source(source)
    if options.root_map and hasattr(source, "set_root_map"):
        source.set_root_map(options.root_map)
    container = _tiled.as_container(tiled_client)
    name = getattr(source, "name", None) or repr(source)
    report = MigrationReport(
        source=redact(name),
        target=redact(_describe(tiled_client)),
        dry_run=options.dry_run,
        allow_missing_files=options.allow_missing_files,
    )
    state = JobState(state_path, read_only=options.dry_run)
    total: int | None
    selected: Iterable[str]
    if uids is not None:
        selected = chosen = list(uids)
        total = len(chosen)
    else:
        selection = {"since": since, "until": until, "query": query, "timezone": options.timezone}
        selected = source.find_run_uids(**selection)
        try:
            total = source.count_runs(**selection)
        except Exception:  # a count is only for the progress bar
            total = None
    logger.info(
        "Migrating %s run(s) from %s into %s%s",
        total if total is not None else "?",
        report.source,
        report.target,
        " (dry run)" if options.dry_run else "",
    )
    bar = Progress(total, options.progress)
    verification = VerificationReport() if options.verify and not options.dry_run else None

    def take(outcome: RunOutcome, checked: RunVerification | None = None) -> None:
        report.runs.append(outcome)
        bar.update(outcome.events if outcome.status in (MIGRATED, REWRITTEN) else 0)
        if checked is not None and verification is not None:
            verification.runs.append(checked)

    try:
        if options.dry_run:
            dry_run(source, container, selected, options, state, take)
        else:
            _run_partitions(source, tiled_client, selected, options, state, take, scheduler, also_served_by, api_key)
    finally:
        bar.close()
        state.close()
    report.verification = verification
    report.finished = now()
    if report_path is not None:
        report.write(report_path)
    if not options.dry_run:
        logger.info("%s", report.summary().splitlines()[1].strip())
    return report


def _run_partitions(
    source: Any,
    tiled_client: Any,
    selected: Iterable[str],
    options: MigrationOptions,
    state: JobState,
    take: Callable[[RunOutcome, RunVerification | None], None],
    scheduler: Any,
    also_served_by: list[str] | None,
    api_key: str | None,
) -> None:
    """Partition the selected runs page by page and run the partitions, recording each run.

    A run this job wrote and recorded as failed (it did not verify, or arrived without
    some frames) is removed from the target first, so that the pass writes it again
    (``rewritten``) even if it looks complete: the decision :func:`~.decide.decide` takes
    with ``failed_before``, which the dry run asks.
    """
    container = _tiled.as_container(tiled_client)
    removed: set[str] = set()
    executor = Executor(
        source, tiled_client, options, scheduler=scheduler, also_served_by=also_served_by, api_key=api_key
    )
    pending: dict[Any, list[str]] = {}

    def record(result: dict[str, Any]) -> None:
        outcome, checked = result["outcome"], result.get("verification")
        if outcome["status"] == FAILED:
            state.mark(outcome["uid"], "failed", reason=outcome["reason"])
        elif checked is not None and not checked["ok"]:
            # The next pass of the job rewrites it (present, recorded as failed).
            state.mark(
                outcome["uid"], "failed", reason="verification: " + "; ".join(checked["mismatches"]), written=True
            )
        elif outcome.get("missing_frames") and not options.allow_missing_files:
            # Incomplete: the next pass (a corrected root map, the files restored) writes it again.
            state.mark(outcome["uid"], "failed", reason="incomplete: " + outcome["reason"], written=True)
        else:
            state.mark(outcome["uid"], DONE, events=outcome["events"], outcome=outcome["status"])

    executor.on_start = lambda uid: state.mark(uid, "started")
    executor.on_result = record

    def collect(fut: Any) -> None:
        uids_of = pending.pop(fut)
        try:
            results = fut.result()
        except Exception as err:  # the whole partition: source unreachable, worker lost too often
            reason = f"{type(err).__name__}: {redact(err)}"
            logger.warning("A partition of %d run(s) failed: %s", len(uids_of), reason)
            for uid in uids_of:
                state.mark(uid, "failed", reason=reason)
                take(RunOutcome(uid, FAILED, reason=reason), None)
            return
        for result in results:
            if executor.mode == DASK:
                record(result)
            outcome = RunOutcome(**result["outcome"])
            if outcome.uid in removed and outcome.status == MIGRATED:
                outcome.status = REWRITTEN
            checked = RunVerification(**result["verification"]) if result.get("verification") else None
            take(outcome, checked)

    try:
        index = 0
        for page in pages(selected, options.page_size):
            todo = []
            for uid in page:
                if state.status(uid) == DONE:
                    take(RunOutcome(uid, SKIPPED, reason=DONE_REASON), None)
                    continue
                if state.failed_before(uid):
                    try:
                        delete_run(container, uid)
                        removed.add(uid)
                    except Exception as err:  # the worker decides from what the target holds
                        logger.warning("Could not remove run %s to write it again: %s", uid, redact(err))
                todo.append(uid)
            if not todo:
                continue
            try:
                sizes = source.event_estimates(todo)
            except Exception as err:  # sizes only shape partitions
                logger.info("Could not estimate run sizes (%s); one run per partition", redact(err))
                sizes = {}
            pairs = [(uid, sizes.get(uid)) for uid in todo]
            parts = plan_partitions(pairs, max_runs=options.partition_runs, large_run_events=options.large_run_events)
            for part in parts:
                while len(pending) >= 2 * executor.workers:
                    done, _ = executor.wait_one(set(pending))
                    for fut in done:
                        collect(fut)
                started = [u for u in part.uids if state.started_here(u)]
                fut = executor.submit(index, part.uids, started_here=started)
                index += 1
                pending[fut] = part.uids
                if executor.mode == INLINE:
                    collect(fut)
        while pending:
            done, _ = executor.wait_one(set(pending))
            for fut in done:
                collect(fut)
    finally:
        executor.close()
