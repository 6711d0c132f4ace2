"""Migrating runs where the work runs: one partition, run by run, with retries.

:func:`migrate_partition` is the task a job executes, inline, on a thread or on a
``dask.distributed`` worker. Per run (:func:`migrate_run`) it decides from the target's
content, not from the driver's memory, what to do:

- absent: write it;
- present and complete (same start, stop, streams and row counts): skip it;
- present but half-written (no stop, or marked failed by an earlier pass of the job):
  delete it and write it again;
- present with a stop and different content: leave it and report it, unless
  ``overwrite``.

A write that fails with a transient error (the server answered 5xx or 429, went away,
or a run appeared half-written under us) is retried with exponential backoff and
jitter: the next attempt starts by looking at the target again, so a run the failed
attempt left behind is removed first. A run whose verification fails is rewritten
once more the same way. A run that keeps failing is reported; the partition goes on.
Because every decision is taken from the target, running a partition twice (a dask
worker died and its task was run again elsewhere) moves nothing twice.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..exceptions import MigrationError
from .redact import redact
from .verify import RunVerification, SourceTally, compare_run

logger = logging.getLogger(__name__)

__all__ = ["RetryPolicy", "RunOutcome", "is_transient", "migrate_partition", "migrate_run"]

MIGRATED = "migrated"
REWRITTEN = "rewritten"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class RunOutcome:
    """What happened to one source run."""

    uid: str
    status: str
    events: int = 0
    seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a run is retried after a transient failure.

    The wait before attempt ``n + 1`` is ``min(backoff_max, backoff * 2**(n-1))``
    seconds, times a random factor in [0.5, 1] so that workers that failed together do
    not come back together.

    >>> RetryPolicy(retries=3, backoff=1.0, backoff_max=4.0).delay(3, jitter=False)
    4.0
    """

    retries: int = 5
    backoff: float = 1.0
    backoff_max: float = 30.0

    def delay(self, attempt: int, *, jitter: bool = True) -> float:
        base = min(self.backoff_max, self.backoff * 2 ** max(attempt - 1, 0))
        return base * (random.uniform(0.5, 1.0) if jitter else 1.0)


class _VerificationFailed(MigrationError):
    def __init__(self, verification: RunVerification):
        super().__init__("; ".join(verification.mismatches))
        self.verification = verification


_TRANSIENT_NAMES = {
    # pymongo's network errors, matched by name so pymongo is not imported here
    "AutoReconnect",
    "NetworkTimeout",
    "ConnectionFailure",
    "ServerSelectionTimeoutError",
    "ExecutionTimeout",
}


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is worth retrying later.

    Transient: a transport error (refused, reset, timed out), an HTTP 5xx or 429, an
    HTTP 409 (the run appeared while we wrote it: an earlier attempt's request got
    through), a MongoDB network error, a failed verification. Not transient: any other
    4xx (bad data, no permission), a source that does not hold the run, a bug.

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
        if isinstance(err, httpx.TransportError):
            return True
        if isinstance(err, httpx.HTTPStatusError):
            status = err.response.status_code
            return status >= 500 or status in (409, 429)
        if isinstance(err, (ConnectionError, TimeoutError)):
            return True
        if {cls.__name__ for cls in type(err).__mro__} & _TRANSIENT_NAMES:
            return True
        err = err.__cause__ or err.__context__
    return False


class _Tee:
    """Documents passed through a ``SourceTally``, keeping the reader's ``warnings`` list."""

    def __init__(self, documents, tally: SourceTally):
        self.warnings = getattr(documents, "warnings", None)
        self._it = tally.tee(documents)

    def __iter__(self):
        return self._it


class _ReadAhead:
    """Iterate a run's documents read by a background thread, a bounded number ahead.

    Reading MongoDB (decoding, normalising) and writing to Tiled (waiting for the
    server) then overlap instead of taking turns. At most ``depth`` documents wait in
    between, so memory stays bounded; the reader's ``warnings`` list is handed through
    (it is complete once the stop document has been read). ``close()`` stops the thread
    when the consumer gives up early.
    """

    _END = object()
    _CHUNK = 500

    def __init__(self, documents, depth: int = 4_000):
        import queue
        import threading

        self.warnings = getattr(documents, "warnings", None)
        self._queue: Any = queue.Queue(maxsize=max(depth // self._CHUNK, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(documents,), name="migrate-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, documents) -> None:
        chunk: list = []
        try:
            for pair in documents:
                chunk.append(pair)
                if len(chunk) >= self._CHUNK:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(self._END)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def __iter__(self):
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:
            self.close()

    def close(self) -> None:
        import queue

        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=10)


def present_uids(container, uids: list[str]) -> set[str]:
    """Which of ``uids`` are keys of the target container (one search, one page per 100 hits)."""
    from tiled.queries import In

    if not uids:
        return set()
    # The search client sends the query with every page request; a hand-made listing
    # of the container's own search link would list all of its children instead.
    return set(container.search(In("start.uid", list(uids))).keys()) & set(uids)


def _remove_partial(container, uid: str) -> str:
    """Delete what a failed attempt left of ``uid``; '' or a note on why it could not."""
    from . import writer as _writer

    try:
        if uid in present_uids(container, [uid]):
            _writer.delete_run(container, uid)
    except Exception as cleanup:
        return f" (and removing the partial run failed: {redact(cleanup)}; the next pass rewrites it)"
    return ""


def _attempt(source, container, uid: str, present: bool | None, started_here: bool, options: dict, on_start, touched: list):
    """One try at one run. ``touched[0]`` becomes True once it deletes or writes in the target."""
    from . import writer as _writer

    t0 = time.monotonic()
    close_open_runs = options.get("close_open_runs", True)
    if present is None:
        present = uid in present_uids(container, [uid])
    rewrite = False
    if present:
        expected = source.expected(uid, close_open_runs=close_open_runs)
        state = _writer.run_state(container, uid, expected)
        if state == "complete":
            return RunOutcome(uid, SKIPPED, reason="already present in the target with the same content"), None
        has_stop = container[uid].metadata.get("stop") is not None
        if not (started_here or options.get("overwrite") or not has_stop):
            return (
                RunOutcome(
                    uid,
                    FAILED,
                    reason="a run with this uid is already in the target with different content; "
                    "it was left untouched (inspect it, then pass overwrite=True / --overwrite to replace it)",
                ),
                None,
            )
        logger.info("Run %s is in the target but incomplete or different; deleting it to write it again", uid)
        touched[0] = True
        _writer.delete_run(container, uid)
        rewrite = True
    if on_start is not None:
        on_start(uid)
    touched[0] = True
    tally = SourceTally()
    documents = source.documents(uid, close_open_runs=close_open_runs)
    if options.get("read_ahead", True):
        documents = _ReadAhead(documents)
    try:
        written = _writer.write_run(container, _Tee(documents, tally), batch_size=options.get("batch_size", 10_000))
    finally:
        if isinstance(documents, _ReadAhead):
            documents.close()
    events = sum(s.events for s in tally.streams.values())
    warnings = list(dict.fromkeys([*getattr(documents, "warnings", []), *written.notes]))
    verification = None
    if options.get("verify", True):
        try:
            verification = compare_run(tally, container[uid])
        except Exception as err:
            if is_transient(err):
                raise
            verification = RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])
        if not verification.ok:
            raise _VerificationFailed(verification)
    outcome = RunOutcome(uid, REWRITTEN if rewrite else MIGRATED, events, time.monotonic() - t0, warnings=warnings)
    return outcome, verification


def migrate_run(
    source,
    container,
    uid: str,
    *,
    present: bool | None = None,
    started_here: bool = False,
    options: dict | None = None,
    retry: RetryPolicy | None = None,
    on_start=None,
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
    options : dict
        ``batch_size``, ``verify``, ``close_open_runs``, ``overwrite``.
    retry : RetryPolicy
    on_start : callable, optional
        Called with the uid just before the run is written (the job records it).

    >>> outcome, verification = migrate_run(source, container, uid)   # doctest: +SKIP
    >>> outcome.status                                               # doctest: +SKIP
    'migrated'
    """
    options = options or {}
    retry = retry or RetryPolicy()
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
    source,
    target,
    uids: list[str],
    *,
    started_here: list[str] | tuple[str, ...] = (),
    options: dict | None = None,
    retry: RetryPolicy | None = None,
    on_start=None,
    on_result=None,
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
    from .. import _tiled
    from .connect import open_cached

    if callable(source) and not hasattr(source, "documents"):
        source = open_cached(source)
    if not hasattr(target, "context"):
        target = open_cached(target)
    container = _tiled.as_container(target)
    retry = retry or RetryPolicy()
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
    results = []
    try:
        results = _each_run(source, container, uids, present, started, options, retry, on_start, on_result)
    finally:
        if hasattr(source, "drop_prefetched"):
            source.drop_prefetched(uids)
    return results


def _each_run(source, container, uids, present, started, options, retry, on_start, on_result) -> list[dict[str, Any]]:
    results = []
    for uid in uids:
        outcome, verification = migrate_run(
            source,
            container,
            uid,
            present=None if present is None else uid in present,
            started_here=uid in started,
            options=options,
            retry=retry,
            on_start=on_start,
        )
        result = {"outcome": asdict(outcome), "verification": asdict(verification) if verification else None}
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
