"""Migrating runs where the work runs: one partition, run by run, with retries.

:func:`migrate_partition` is the task a job executes, inline, on a thread or on a
``dask.distributed`` worker. Per run (:func:`migrate_run`) it decides from the target's
content, not from the driver's memory, what to do (:func:`~.decide.decide`: write,
skip, rewrite or refuse).

A write that fails with a transient error (:func:`is_transient`: the server answered
5xx or 429, went away, or a run appeared half-written under us) is retried with
exponential backoff and jitter: the next attempt starts by looking at the target
again, so a run the failed attempt left behind is removed first. A run whose
verification fails is rewritten once more the same way. A run that keeps failing is
reported; the partition goes on. Because every decision is taken from the target,
running a partition twice (a dask worker died and its task was run again elsewhere)
moves nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .._redact import redact
from ..exceptions import MigrationError
from .connect import is_open_source, open_cached
from .decide import REFUSE, REWRITE, SKIP, TargetRun, decide
from .options import DEFAULTS, MigrationOptions
from .readahead import ReadAhead, Tee
from .report import FAILED, MIGRATED, REWRITTEN, SKIPPED, RunOutcome
from .target import delete_run, inspect_run, present_uids
from .verify import RunVerification, SourceTally, compare_run
from .writer import write_run

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = ["is_transient", "migrate_partition", "migrate_run"]

#: Called with a uid just before the run is written.
OnStart = Callable[[str], None]
#: Called with each run's result (``{"outcome", "verification"}``) as soon as it is known.
OnResult = Callable[[dict[str, Any]], None]


class _VerificationFailed(MigrationError):
    def __init__(self, verification: RunVerification) -> None:
        super().__init__("; ".join(verification.mismatches), uid=verification.uid, mismatches=verification.mismatches)
        self.verification = verification


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
    (to MongoDB or any socket), a failed verification. Not transient: any other 4xx
    (bad data, no permission), a source that does not hold the run, a bug.

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
        if isinstance(err, _VerificationFailed):
            return True
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


def _attempt(
    source: LegacySource,
    container: Container,
    uid: str,
    present: bool | None,
    started_here: bool,
    options: MigrationOptions,
    on_start: OnStart | None,
    touched: list[bool],
) -> tuple[RunOutcome, RunVerification | None]:
    """One try at one run. ``touched[0]`` becomes True once it deletes or writes in the target."""
    t0 = time.monotonic()
    if present is None:
        present = uid in present_uids(container, [uid])
    target = TargetRun(present=False)
    if present:
        target = inspect_run(container, uid, source.expected(uid, close_open_runs=options.close_open_runs))
    decision = decide(target, started_here=started_here, overwrite=options.overwrite)
    if decision.action == SKIP:
        return RunOutcome(uid, SKIPPED, reason=decision.reason), None
    if decision.action == REFUSE:
        return RunOutcome(uid, FAILED, reason=decision.reason), None
    if decision.action == REWRITE:
        logger.info("Run %s: %s; deleting it to write it again", uid, decision.reason)
        touched[0] = True
        delete_run(container, uid)
    if on_start is not None:
        on_start(uid)
    touched[0] = True
    tally = SourceTally()
    documents: Any = source.documents(uid, close_open_runs=options.close_open_runs)
    if options.read_ahead:
        documents = ReadAhead(documents)
    try:
        written = write_run(container, Tee(documents, tally), batch_size=options.batch_size)
    finally:
        if isinstance(documents, ReadAhead):
            documents.close()
    events = sum(s.events for s in tally.streams.values())
    warnings = list(dict.fromkeys([*(getattr(documents, "warnings", None) or []), *written.notes]))
    verification = None
    if options.verify:
        try:
            verification = compare_run(tally, container[uid])
        except Exception as err:
            if is_transient(err):
                raise
            verification = RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])
        if not verification.ok:
            raise _VerificationFailed(verification)
    status = REWRITTEN if decision.action == REWRITE else MIGRATED
    return RunOutcome(uid, status, events, time.monotonic() - t0, warnings=warnings), verification


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

    Parameters
    ----------
    source : LegacySource
    container : tiled container client
    uid : str
    present : bool or None
        Whether the run is in the target already (None: ask the target).
    started_here : bool
        An earlier pass of this job wrote it and did not finish: rewrite it even if it
        has a stop document.
    options : MigrationOptions
        ``batch_size``, ``verify``, ``close_open_runs``, ``overwrite``, ``read_ahead``, ``retry``.
    on_start : callable, optional
        Called with the uid just before the run is written (the job records it).

    >>> outcome, verification = migrate_run(source, container, uid)   # doctest: +SKIP
    >>> outcome.status                                               # doctest: +SKIP
    'migrated'
    """
    retry = options.retry
    t0 = time.monotonic()
    attempt = 0
    touched = [False]  # whether an attempt deleted or wrote anything of this run in the target
    while True:
        attempt += 1
        try:
            outcome, verification = _attempt(source, container, uid, present, started_here, options, on_start, touched)
            outcome.attempts = attempt
            outcome.seconds = time.monotonic() - t0
            return outcome, verification
        except Exception as err:
            reason = f"{type(err).__name__}: {redact(err)}"
            if is_transient(err) and attempt <= retry.retries:
                wait = retry.delay(attempt)
                logger.warning("Run %s, attempt %d failed (%s); retrying in %.1f s", uid, attempt, reason, wait)
                time.sleep(wait)
                # Look again; what an attempt of ours left behind may be rewritten.
                present, started_here = None, started_here or touched[0]
                continue
            if isinstance(err, _VerificationFailed):
                # Written, but not equal to the source: keep it for inspection, report it.
                logger.warning("Run %s written but verification failed: %s", uid, reason)
                outcome = RunOutcome(uid, MIGRATED, seconds=time.monotonic() - t0, attempts=attempt)
                return outcome, err.verification
            logger.warning("Run %s failed after %d attempt(s): %s", uid, attempt, reason)
            if attempt > 1:
                reason += f" (after {attempt} attempts)"
            if touched[0]:  # never remove a run this job did not write
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
