"""One run's attempts: decide, write, verify; retries with backoff, the one rewrite.

The pieces :mod:`.worker` drives, for one run (:func:`drive`) or for a partition whose
written runs are verified together (:func:`step` with ``defer=True`` hands back a
:class:`Written` run, :func:`concluded` takes its verification). A write that fails with
a transient error (:func:`is_transient`) is tried again after a backoff, looking at the
target first; a run that does not verify is written once more, then reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .. import _tiled
from .._redact import redact
from ..exceptions import MigrationError
from .decide import REFUSE, REWRITE, SKIP, Decision, TargetRun, decide
from .options import MigrationOptions
from .readahead import ReadAhead, Tee
from .report import FAILED, MIGRATED, REWRITTEN, SKIPPED, RunOutcome
from .tally import SourceTally
from .target import delete_run, inspect_run, present_uids
from .verify import MISSING_FRAMES_ATTRIBUTE, MissingFrames, RunCheck, RunVerification, compare_run, read_check
from .writer import write_run

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = [
    "OnStart",
    "Result",
    "RunAttempts",
    "Step",
    "Tries",
    "VerificationFailed",
    "Written",
    "concluded",
    "drive",
    "finish",
    "is_transient",
    "step",
]

#: Called with a uid just before the run is written.
OnStart = Callable[[str], None]


class VerificationFailed(MigrationError):
    """A run written but not equal to its source: ``verification`` says how; ``events``, ``warnings`` of the write.

    The worker writes such a run once more (it does not raise this error to its caller);
    the class names the event in messages and for callers of the per-run pieces.
    """

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
class Tries:
    """What the attempts at one run have done so far.

    >>> Tries().status
    'migrated'
    """

    touched: bool = False  # an attempt deleted or wrote something of this run in the target
    status: str = MIGRATED  # what writing it is called: migrated, or rewritten when it was there before
    mismatch: RunVerification | None = None  # the failed verification that made us write it once more


@dataclass
class RunAttempts:
    """One run's attempts: what is known of it and what they did.

    >>> RunAttempts("abc", present=False, started_here=False).attempt
    0
    """

    uid: str
    present: bool | None  # None: ask the target
    started_here: bool
    known: TargetRun | None = None  # the partition's facts, for the first decision only
    tries: Tries = field(default_factory=Tries)
    attempt: int = 0
    seconds: float = 0.0  # spent on this run (its share of batch verification included)


@dataclass
class Written:
    """A run written (or found complete) whose verification is pending.

    >>> Written(RunCheck(tally), RunOutcome(uid, "migrated", 3)).found_complete   # doctest: +SKIP
    False
    """

    check: RunCheck
    outcome: RunOutcome  # what it is once it verifies
    found_complete: bool = False  # not written by this attempt: complete by its rows, begun by this job


Result = tuple[RunOutcome, Union[RunVerification, None]]
Step = Union[Result, Written, None]  # a result, a run to verify, or None: try again


def _decide(source: LegacySource, container: Container, run: RunAttempts, options: MigrationOptions) -> Decision:
    if run.present is None:
        run.present = run.uid in present_uids(container, [run.uid])
    known, run.known = run.known, None
    if run.present and run.tries.mismatch is not None:
        # The write did not verify: the one rewrite, whatever the row counts say.
        return Decision(REWRITE, "present but it did not verify")
    target = TargetRun(present=False)
    if run.present:
        target = known or inspect_run(
            container, run.uid, source.expected(run.uid, close_open_runs=options.close_open_runs)
        )
    return decide(target, started_here=run.started_here, overwrite=options.overwrite)


def _attempt(
    source: LegacySource,
    container: Container,
    run: RunAttempts,
    options: MigrationOptions,
    on_start: OnStart | None,
) -> Step:
    """One try at one run (see :func:`migrate_run`): a result, or the run written and to be verified."""
    t0, uid, tries = time.monotonic(), run.uid, run.tries
    decision = _decide(source, container, run, options)
    if decision.action == SKIP and options.verify and (run.started_here or tries.touched):
        # Complete by its row counts, but written (at least in part) by this job: it is
        # complete only if it verifies; otherwise it is written once more.
        check = read_check(source, uid, close_open_runs=options.close_open_runs, verify_data=options.verify_data)
        if isinstance(check, RunVerification):
            return _mismatched(container, run, check, 0, [])
        if tries.touched:  # an earlier attempt of this call wrote it all
            return Written(check, RunOutcome(uid, tries.status, seconds=time.monotonic() - t0), True)
        return Written(check, RunOutcome(uid, SKIPPED, reason=decision.reason + " (verified)"), True)
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
    outcome = RunOutcome(
        uid, tries.status, events, time.monotonic() - t0, warnings=warnings,
        fixes=list(written.fixes), missing_frames=dict(written.missing_frames),
    )
    if not options.verify:
        return outcome, None
    missing: MissingFrames | None = getattr(raw, MISSING_FRAMES_ATTRIBUTE, None)
    return Written(RunCheck(tally, missing_frames=missing), outcome)


def _verify_alone(container: Container, written: Written, options: MigrationOptions) -> RunVerification:
    """Verify one pending run on its own (a rewrite, a retry): :func:`.compare.compare_run`."""
    check = written.check
    return compare_run(
        check.tally, container[check.uid], root_map=options.root_map, missing_frames=check.missing_frames
    )


def _mismatched(
    container: Container, run: RunAttempts, verification: RunVerification, events: int, warnings: list[str]
) -> Step:
    """A run that does not verify: written once more (None: go again), or, the second time, FAILED."""
    mismatches = "; ".join(verification.mismatches)
    if run.tries.mismatch is None:
        logger.warning("Run %s does not verify (%s); writing it once more", run.uid, mismatches)
        run.tries.mismatch = verification
        run.present, run.started_here = None, True
        return None
    # Written twice, not equal to the source either time: keep it for inspection, report it.
    logger.warning("Run %s still does not verify after it was written again: %s", run.uid, mismatches)
    reason = f"verification failed after the run was written again: {mismatches}"
    return RunOutcome(run.uid, FAILED, events, reason=reason, warnings=warnings), verification


def concluded(
    container: Container,
    run: RunAttempts,
    written: Written,
    verification: RunVerification | Exception,
    options: MigrationOptions,
) -> Step:
    """What a pending run's verification (or the error it raised) makes of it.

    A result; or None: write it once more (it did not verify) or try again (a transient
    error, after the backoff).

    >>> concluded(container, run, written, verification, options)   # doctest: +SKIP
    (RunOutcome(uid=..., status='migrated', ...), RunVerification(uid=..., ok=True, ...))
    """
    if isinstance(verification, Exception):
        if is_transient(verification):
            return _failed(container, run, verification, options)
        verification = RunVerification(
            run.uid, False, [f"verification raised {type(verification).__name__}: {redact(verification)}"]
        )
    outcome = written.outcome
    if not verification.ok:
        if written.found_complete:
            return _mismatched(container, run, verification, 0, [])
        return _mismatched(container, run, verification, outcome.events, outcome.warnings)
    if written.found_complete:
        outcome.events = sum(verification.event_counts.values())
    return outcome, verification


def _failed(container: Container, run: RunAttempts, err: Exception, options: MigrationOptions) -> Step:
    """An attempt that raised: retried after a backoff (None) if transient and retries remain, else FAILED."""
    retry, uid = options.retry, run.uid
    reason = f"{type(err).__name__}: {redact(err)}"
    if is_transient(err) and run.attempt <= retry.retries:
        wait = retry.delay(run.attempt)
        logger.warning("Run %s, attempt %d failed (%s); retrying in %.1f s", uid, run.attempt, reason, wait)
        time.sleep(wait)
        # Look again; what an attempt of ours left behind may be rewritten.
        run.present, run.started_here = None, run.started_here or run.tries.touched
        return None
    logger.warning("Run %s failed after %d attempt(s): %s", uid, run.attempt, reason)
    if run.attempt > 1:
        reason += f" (after {run.attempt} attempts)"
    if run.tries.touched:  # never remove a run this job did not write
        reason += _remove_partial(container, uid)
    return RunOutcome(uid, FAILED, reason=reason), None


def step(
    source: LegacySource,
    container: Container,
    run: RunAttempts,
    options: MigrationOptions,
    on_start: OnStart | None,
    *,
    defer: bool,
) -> Step:
    """One attempt; with ``defer``, a written run comes back as :class:`Written`, unverified.

    >>> step(source, container, RunAttempts(uid, None, False), options, None, defer=True)  # doctest: +SKIP
    Written(check=..., outcome=..., found_complete=False)
    """
    t0 = time.monotonic()
    run.attempt += 1
    try:
        got = _attempt(source, container, run, options, on_start)
        if isinstance(got, Written) and not defer:
            try:
                verification: RunVerification | Exception = _verify_alone(container, got, options)
            except Exception as err:
                verification = err
            return concluded(container, run, got, verification, options)
        return got
    except Exception as err:
        return _failed(container, run, err, options)
    finally:
        run.seconds += time.monotonic() - t0


def finish(run: RunAttempts, result: Result) -> Result:
    """The result, with the attempts made and the seconds spent on the run.

    >>> finish(RunAttempts("abc", False, False), (RunOutcome("abc", "skipped"), None))[0].attempts
    0
    """
    outcome, verification = result
    outcome.attempts, outcome.seconds = run.attempt, run.seconds
    return outcome, verification


def drive(
    source: LegacySource,
    container: Container,
    run: RunAttempts,
    options: MigrationOptions,
    on_start: OnStart | None,
) -> Result:
    """Attempts, each verified on its own, until the run has a result.

    >>> drive(source, container, RunAttempts(uid, None, False), options, None)[0].status  # doctest: +SKIP
    'migrated'
    """
    while True:
        got = step(source, container, run, options, on_start, defer=False)
        if got is not None:
            assert not isinstance(got, Written)
            return finish(run, got)


