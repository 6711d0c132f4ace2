"""Migrating runs where the work runs: one partition, run by run, with retries.

:func:`migrate_partition` is the task a job executes, inline, on a thread or on a
``dask.distributed`` worker. Per run (:func:`migrate_run`) it decides from the target's
content, not from the driver's memory, what to do (:func:`~.decide.decide`: write,
skip, rewrite or refuse).

A write that fails with a transient error (:func:`is_transient`: the server answered
5xx or 429, went away, or a run appeared half-written under us) is retried with
exponential backoff and jitter: the next attempt starts by looking at the target
again, so a run the failed attempt left behind is removed first. A run whose
verification fails is written once more; if it still does not verify, it is a
``failed`` run whose reason lists the mismatches. Whether a run this job wrote is
complete is decided by verification, never by row counts alone. A run that keeps
failing is reported; the partition goes on. Because every decision is taken from the target,
running a partition twice (a dask worker died and its task was run again elsewhere)
moves nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .._redact import redact
from ..exceptions import MigrationError
from .connect import is_open_source, open_cached
from .decide import REFUSE, REWRITE, SKIP, Decision, TargetRun, decide
from .options import DEFAULTS, MigrationOptions
from .readahead import ReadAhead, Tee
from .report import FAILED, MIGRATED, REWRITTEN, SKIPPED, RunOutcome
from .tally import SourceTally
from .target import delete_run, inspect_run, present_uids
from .verify import MISSING_FRAMES_ATTRIBUTE, RunVerification, compare_run, verify_run
from .writer import write_run

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = ["VerificationFailed", "is_transient", "migrate_partition", "migrate_run"]

#: Called with a uid just before the run is written.
OnStart = Callable[[str], None]
#: Called with each run's result (``{"outcome", "verification"}``) as soon as it is known.
OnResult = Callable[[dict[str, Any]], None]


class VerificationFailed(MigrationError):
    """A run written but not equal to its source: ``verification`` says how; ``events``, ``warnings`` of the write."""

    def __init__(
        self, verification: RunVerification, *, events: int = 0, warnings: list[str] | None = None
    ) -> None:
        super().__init__(
            f"Run {verification.uid} does not match its source: " + "; ".join(verification.mismatches),
            uid=verification.uid,
            mismatches=verification.mismatches,
        )
        self.verification = verification
        self.events = events
        self.warnings = list(warnings or [])


_MONGO_NETWORK_ERRORS = {
    # pymongo's network errors, matched by name so pymongo is not imported here
    "AutoReconnect",
    "NetworkTimeout",
    "ConnectionFailure",
    "ServerSelectionTimeoutError",
    "ExecutionTimeout",
}


def is_transient(err: BaseException | None) -> bool:
    """Whether ``err`` (or an error it was raised from) is worth retrying later.

    Transient: what :func:`databroker_compat._tiled.is_transient` retries (a transport
    error, an HTTP 5xx or 429), and, for the migration, an HTTP 409 (the run appeared
    while we wrote it: an earlier attempt's request got through), a network error
    (to MongoDB or any socket). Not transient: any other 4xx (bad data, no permission),
    a source that does not hold the run, a bug. (A failed verification is no error to
    retry: :func:`migrate_run` writes such a run once more, then reports it.)

    >>> import httpx
    >>> is_transient(httpx.ConnectError("refused"))
    True
    >>> is_transient(ValueError("bad value"))
    False
    """
    import httpx

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, httpx.HTTPStatusError):
            return err.response.status_code == 409 or _tiled.is_transient(err)
        if _tiled.is_transient(err) or isinstance(err, (ConnectionError, TimeoutError)):
            return True
        if {cls.__name__ for cls in type(err).__mro__} & _MONGO_NETWORK_ERRORS:
            return True
        err = err.__cause__ or err.__context__
    return False


def _remove_partial(container: Container, uid: str) -> str:
    """Delete what a failed attempt left of ``uid``; '' or a note on why it could not."""
    try:
        if uid in present_uids(container, [uid]):
            delete_run(container, uid)
    except Exception as cleanup:
        return f" (and removing the partial run failed: {redact(cleanup)}; the next pass rewrites it)"
    return ""


@dataclass
class _Tries:
    """What the attempts at one run have done so far."""

    touched: bool = False  # an attempt deleted or wrote something of this run in the target
    status: str = MIGRATED  # what writing it is called: migrated, or rewritten when it was there before
    mismatch: RunVerification | None = None  # the failed verification that made us write it once more


def _verify_written(
    tally: SourceTally, container: Container, uid: str, options: MigrationOptions, documents: Any
) -> RunVerification:
    """Verify the run just written against the documents the writer received."""
    missing = getattr(documents, MISSING_FRAMES_ATTRIBUTE, None)
    try:
        return compare_run(tally, container[uid], root_map=options.root_map, missing_frames=missing)
    except Exception as err:
        if is_transient(err):
            raise
        return RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])


def _attempt(
    source: LegacySource,
    container: Container,
    uid: str,
    present: bool | None,
    started_here: bool,
    options: MigrationOptions,
    on_start: OnStart | None,
    tries: _Tries,
) -> tuple[RunOutcome, RunVerification | None]:
    """One try at one run (see :func:`migrate_run`); raises :class:`VerificationFailed` on a mismatch."""
    t0 = time.monotonic()
    if present is None:
        present = uid in present_uids(container, [uid])
    if present and tries.mismatch is not None:
        # The write did not verify: the one rewrite, whatever the row counts say.
        decision = Decision(REWRITE, "present but it did not verify")
    else:
        target = TargetRun(present=False)
        if present:
            target = inspect_run(container, uid, source.expected(uid, close_open_runs=options.close_open_runs))
        decision = decide(target, started_here=started_here, overwrite=options.overwrite)
    if decision.action == SKIP and options.verify and (started_here or tries.touched):
        # Complete by its row counts, but written (at least in part) by this job: it is
        # complete only if it verifies; otherwise it is written once more.
        present_run = verify_run(
            source, container, uid, close_open_runs=options.close_open_runs,
            root_map=options.root_map, verify_data=options.verify_data,
        )
        if not present_run.ok:
            raise VerificationFailed(present_run)
        events = sum(present_run.event_counts.values())
        if tries.touched:  # an earlier attempt of this call wrote it all
            return RunOutcome(uid, tries.status, events, time.monotonic() - t0), present_run
        return RunOutcome(uid, SKIPPED, events, reason=decision.reason + " (verified)"), present_run
    if decision.action == SKIP:
        return RunOutcome(uid, SKIPPED, reason=decision.reason), None
    if decision.action == REFUSE:
        return RunOutcome(uid, FAILED, reason=decision.reason), None
    if not tries.touched:
        tries.status = REWRITTEN if decision.action == REWRITE else MIGRATED
    if decision.action == REWRITE:
        logger.info("Run %s: %s; deleting it to write it again", uid, decision.reason)
        tries.touched = True
        delete_run(container, uid)
    if on_start is not None:
        on_start(uid)
    tries.touched = True
    tally = SourceTally(verify_data=options.verify_data)
    raw: Any = source.documents(uid, close_open_runs=options.close_open_runs)
    documents = ReadAhead(raw) if options.read_ahead else raw
    try:
        written = write_run(
            container, Tee(documents, tally), batch_size=options.batch_size, close_streams=options.close_streams
        )
    finally:
        if isinstance(documents, ReadAhead):
            documents.close()
    events = sum(s.events for s in tally.streams.values())
    warnings = list(dict.fromkeys([*(getattr(documents, "warnings", None) or []), *written.notes]))
    if tries.mismatch is not None:
        warnings.append("the run in the target did not verify (" + "; ".join(tries.mismatch.mismatches) + "); written again")
    verification = None
    if options.verify:
        verification = _verify_written(tally, container, uid, options, raw)
        if not verification.ok:
            raise VerificationFailed(verification, events=events, warnings=warnings)
    outcome = RunOutcome(
        uid, tries.status, events, time.monotonic() - t0, warnings=warnings,
        fixes=list(written.fixes), missing_frames=dict(written.missing_frames),
    )
    return outcome, verification


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
    retry = options.retry
    t0 = time.monotonic()
    attempt = 0
    tries = _Tries()
    while True:
        attempt += 1
        try:
            outcome, verification = _attempt(source, container, uid, present, started_here, options, on_start, tries)
            outcome.attempts = attempt
            outcome.seconds = time.monotonic() - t0
            return outcome, verification
        except VerificationFailed as err:
            mismatches = "; ".join(err.verification.mismatches)
            if tries.mismatch is None:
                logger.warning("Run %s does not verify (%s); writing it once more", uid, mismatches)
                tries.mismatch = err.verification
                present, started_here = None, True
                continue
            # Written twice, not equal to the source either time: keep it for inspection, report it.
            logger.warning("Run %s still does not verify after it was written again: %s", uid, mismatches)
            reason = f"verification failed after the run was written again: {mismatches}"
            outcome = RunOutcome(
                uid, FAILED, err.events, time.monotonic() - t0, reason=reason, warnings=err.warnings, attempts=attempt
            )
            return outcome, err.verification
        except Exception as err:
            reason = f"{type(err).__name__}: {redact(err)}"
            if is_transient(err) and attempt <= retry.retries:
                wait = retry.delay(attempt)
                logger.warning("Run %s, attempt %d failed (%s); retrying in %.1f s", uid, attempt, reason, wait)
                time.sleep(wait)
                # Look again; what an attempt of ours left behind may be rewritten.
                present, started_here = None, started_here or tries.touched
                continue
            logger.warning("Run %s failed after %d attempt(s): %s", uid, attempt, reason)
            if attempt > 1:
                reason += f" (after {attempt} attempts)"
            if tries.touched:  # never remove a run this job did not write
                reason += _remove_partial(container, uid)
            return RunOutcome(uid, FAILED, seconds=time.monotonic() - t0, reason=reason, attempts=attempt), None


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

    >>> migrate_partition(MongoSpec(uri), TiledSpec(url, key), [uid])   # doctest: +SKIP
    [{'outcome': {'uid': ..., 'status': 'migrated', ...}, 'verification': {...}}]
    """
    if callable(source) and not is_open_source(source):
        source = open_cached(source)
    if not hasattr(target, "context"):
        target = open_cached(target)
    container = _tiled.as_container(target)
    try:
        present: set[str] | None = present_uids(container, uids)
    except Exception as err:  # the target is away: each run looks for itself, with retries
        logger.warning("Could not ask the target which runs it holds (%s); checking run by run", redact(err))
        present = None
    started = set(started_here)
    if present is not None and hasattr(source, "prefetch"):
        try:  # read the small runs to write in a few queries instead of a few per run
            source.prefetch([u for u in uids if u not in present])
        except Exception as err:
            logger.info("Reading ahead failed (%s); reading run by run", redact(err))
    results: list[dict[str, Any]] = []
    try:
        for uid in uids:
            outcome, verification = migrate_run(
                source,
                container,
                uid,
                present=None if present is None else uid in present,
                started_here=uid in started,
                options=options,
                on_start=on_start,
            )
            result = {"outcome": asdict(outcome), "verification": asdict(verification) if verification else None}
            if on_result is not None:
                on_result(result)
            results.append(result)
    finally:
        if hasattr(source, "drop_prefetched"):
            source.drop_prefetched(uids)
    return results
