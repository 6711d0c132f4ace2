"""Migrating runs where the work runs: one partition, its runs decided, written, verified in batches.

:func:`migrate_partition` is the task a job executes, inline, on a thread or on a
``dask.distributed`` worker. Per run it decides from the target's content, not from the
driver's memory, what to do (:func:`~.decide.decide`: write, skip, rewrite or refuse); the
facts of all of the partition's present runs come from one search and one deep search
(:func:`~.target.inspect_runs`). The runs it writes are verified together, up to
:data:`VERIFY_BATCH` at a time (:func:`~.compare.compare_runs`), and each result is passed
on only once verified. :func:`migrate_run` does the same for one run.

A write that fails with a transient error (:func:`is_transient`: the server answered
5xx or 429, went away, or a run appeared half-written under us) is retried with
exponential backoff and jitter: the next attempt starts by looking at the target
again, so a run the failed attempt left behind is removed first. A run whose
verification fails is written once more (and verified on its own); if it still does not
verify, it is a ``failed`` run whose reason lists the mismatches. Whether a run this job
wrote is complete is decided by verification, never by row counts alone. A run that keeps
failing is reported; the partition goes on. Because every decision is taken from the target,
running a partition twice (a dask worker died and its task was run again elsewhere)
moves nothing twice. The attempts themselves are :mod:`.attempts`'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .._redact import redact
from .attempts import (
    OnStart,
    Result,
    RunAttempts,
    VerificationFailed,
    Written,
    concluded,
    drive,
    finish,
    is_transient,
    step,
)
from .batch import find_runs
from .connect import is_open_source, open_cached
from .decide import TargetRun
from .options import DEFAULTS, MigrationOptions
from .report import RunOutcome
from .target import inspect_runs
from .verify import RunVerification, compare_runs

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = ["VERIFY_BATCH", "VerificationFailed", "is_transient", "migrate_partition", "migrate_run"]

#: Runs of a partition written before they are verified together (:func:`.compare.compare_runs`).
VERIFY_BATCH = 50
#: Called with each run's result (``{"outcome", "verification"}``) as soon as it is known.
OnResult = Callable[[dict[str, Any]], None]


def migrate_run(
    source: LegacySource,
    container: Container,
    uid: str,
    *,
    present: bool | None = None,
    started_here: bool = False,
    options: MigrationOptions = DEFAULTS,
    on_start: OnStart | None = None,
) -> tuple[RunOutcome, RunVerification | None]:
    """Migrate one run with retries; returns its outcome and, if verified, the verification.

    Which runs are complete is decided by verification, never by row counts alone: a
    run present in the target that this job began writing (``started_here``, or an
    earlier attempt of this call) is skipped only once it verifies. A run whose
    verification fails is written once more; if that does not verify either, the
    outcome is ``FAILED`` with the mismatches as its ``reason`` (and the verification
    is returned with it); the run is left in the target for inspection.
    (:func:`migrate_partition` does the same for many runs, verifying them in batches.)

    Parameters
    ----------
    source : LegacySource
    container : tiled container client
    uid : str
    present : bool or None
        Whether the run is in the target already (None: ask the target).
    started_here : bool
        An earlier pass of this job began writing it and did not finish well: rewrite
        it, unless it is complete and verifies.
    options : MigrationOptions
        ``batch_size``, ``verify``, ``verify_data``, ``root_map``, ``close_open_runs``,
        ``overwrite``, ``read_ahead``, ``retry``.
    on_start : callable, optional
        Called with the uid just before the run is written (the job records it).

    >>> outcome, verification = migrate_run(source, container, uid)   # doctest: +SKIP
    >>> outcome.status                                               # doctest: +SKIP
    'migrated'
    """
    run = RunAttempts(uid, present, started_here)
    return drive(source, container, run, options, on_start)


def _known(source: Any, container: Container, uids: list[str], options: MigrationOptions) -> tuple[
    set[str] | None, dict[str, TargetRun]
]:
    """Which runs the target holds (one search) and, for those, the decision's facts (one deep search)."""
    try:
        items = find_runs(container, uids)
    except Exception as err:  # the target is away: each run looks for itself, with retries
        logger.warning("Could not ask the target which runs it holds (%s); checking run by run", redact(err))
        return None, {}
    expected = {}
    for uid in items:
        try:
            expected[uid] = source.expected(uid, close_open_runs=options.close_open_runs)
        except Exception as err:  # the run's own attempt asks again, with retries
            logger.info("Run %s: reading what it should hold failed (%s)", uid, redact(err))
    try:
        return set(items), inspect_runs(container, expected, items) if expected else {}
    except Exception as err:
        logger.info("Inspecting the present runs together failed (%s); run by run", redact(err))
        return set(items), {}


def _verify_batch(
    source: LegacySource,
    container: Container,
    pending: list[tuple[RunAttempts, Written]],
    options: MigrationOptions,
    on_start: OnStart | None,
) -> list[tuple[RunAttempts, Result]]:
    """Verify the pending runs together; a run that does not verify, or raised, goes on on its own."""
    t0 = time.monotonic()
    try:
        compared = compare_runs(container, [w.check for _, w in pending], root_map=options.root_map)
    except Exception as err:  # the searches failed: each run is retried (or failed) on its own
        compared = {w.check.uid: err for _, w in pending}
    share = (time.monotonic() - t0) / max(len(pending), 1)
    done = []
    for run, written in pending:
        run.seconds += share
        got = concluded(container, run, written, compared[run.uid], options)
        if got is None:
            done.append((run, drive(source, container, run, options, on_start)))
        else:
            assert not isinstance(got, Written)
            done.append((run, finish(run, got)))
    return done


def migrate_partition(
    source: Any,
    target: Any,
    uids: list[str],
    *,
    started_here: Iterable[str] = (),
    options: MigrationOptions = DEFAULTS,
    on_start: OnStart | None = None,
    on_result: OnResult | None = None,
) -> list[dict[str, Any]]:
    """Migrate ``uids`` (one partition); returns one ``{"outcome", "verification"}`` dict per run.

    ``source`` and ``target`` are either open objects (a ``LegacySource``, a Tiled
    container) or specs a worker opens them from (see :mod:`.connect`); a worker opens
    each spec once and reuses the connection for later partitions. ``on_start`` (only
    where the job runs in the same process) is called with each uid before it is written,
    ``on_result`` with each run's result as soon as it is known.

    The partition's runs are decided from one search and one deep search of the target
    (:func:`.target.inspect_runs`), written, then verified :data:`VERIFY_BATCH` at a time
    (:func:`.compare.compare_runs`): a run's result is passed on only once it is verified,
    so a job killed in between finds the run recorded as started and verifies or rewrites
    it. A run that does not verify is written once more and verified on its own, as
    :func:`migrate_run` does.

    >>> migrate_partition(MongoSpec(uri), TiledSpec(url, key), [uid])   # doctest: +SKIP
    [{'outcome': {'uid': ..., 'status': 'migrated', ...}, 'verification': {...}}]
    """
    if callable(source) and not is_open_source(source):
        source = open_cached(source)
    if not hasattr(target, "context"):
        target = open_cached(target)
    container = _tiled.as_container(target)
    present, known = _known(source, container, uids, options)
    started = set(started_here)
    if present is not None and hasattr(source, "prefetch"):
        try:  # read the small runs to write in a few queries instead of a few per run
            source.prefetch([u for u in uids if u not in present])
        except Exception as err:
            logger.info("Reading ahead failed (%s); reading run by run", redact(err))
    results: dict[str, dict[str, Any]] = {}

    def emit(run: RunAttempts, result: Result) -> None:
        outcome, verification = result
        results[run.uid] = {"outcome": asdict(outcome), "verification": asdict(verification) if verification else None}
        if on_result is not None:
            on_result(results[run.uid])

    pending: list[tuple[RunAttempts, Written]] = []
    try:
        for uid in uids:
            run = RunAttempts(uid, None if present is None else uid in present, uid in started, known.get(uid))
            got = step(source, container, run, options, on_start, defer=True)
            while got is None:
                got = step(source, container, run, options, on_start, defer=True)
            if isinstance(got, Written):
                pending.append((run, got))
            else:
                emit(run, finish(run, got))
            if len(pending) >= VERIFY_BATCH or (pending and uid == uids[-1]):
                for done in _verify_batch(source, container, pending, options, on_start):
                    emit(*done)
                pending = []
    finally:
        if hasattr(source, "drop_prefetched"):
            source.drop_prefetched(uids)
    return [results[uid] for uid in dict.fromkeys(uids) if uid in results]
