"""The dry run: what a real pass would do with each run, found without writing anything.

Each run gets the decision a real pass takes (:func:`~.decide.decide`, with the same
``overwrite`` and the same state file, read but never written), reported as
``would-migrate``, ``would-rewrite``, ``skipped`` or ``failed`` (refused). A run the real
pass would write is read whole, through the same reader (normalisation, the survey of
its files after the root map, every fix), writing nothing: the outcome lists the fixes
the real pass will make and the frames it will miss, and a run the real pass would fail
on (frames that disagree) fails here with the same reason. The frames of keys written
inline are not read (the first frame of each resource is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._redact import redact
from ..exceptions import MigrationError
from .decide import REFUSE, REWRITE, SKIP, WRITE, TargetRun, decide
from .options import MigrationOptions
from .partition import pages
from .report import FAILED, SKIPPED, WOULD_MIGRATE, WOULD_REWRITE, RunOutcome
from .state import DONE, JobState
from .target import inspect_run, present_uids

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = ["DONE_REASON", "dry_run", "plan_run", "planned_outcome"]

#: The reason of a run skipped because the job's state file records it as done.
DONE_REASON = "recorded as done in the job's state file"

_STATUS = {WRITE: WOULD_MIGRATE, SKIP: SKIPPED, REWRITE: WOULD_REWRITE, REFUSE: FAILED}


def planned_outcome(
    uid: str,
    target: TargetRun,
    *,
    started_here: bool,
    options: MigrationOptions,
    failed_before: bool = False,
    warnings: Iterable[str] = (),
    fixes: Iterable[dict] = (),
    missing_frames: dict[str, dict[str, list[int]]] | None = None,
    events: int = 0,
) -> RunOutcome:
    """The dry run's outcome for one run, from what the target holds and what reading the run found (pure).

    >>> planned_outcome("u", TargetRun(present=True, has_stop=True), started_here=False,
    ...                 options=MigrationOptions(overwrite=True)).status
    'would-rewrite'
    """
    decision = decide(target, started_here=started_here, overwrite=options.overwrite, failed_before=failed_before)
    if decision.action not in (WRITE, REWRITE):
        return RunOutcome(uid, _STATUS[decision.action], reason=decision.reason)
    return RunOutcome(
        uid,
        _STATUS[decision.action],
        events=events,
        reason=decision.reason,
        warnings=list(warnings),
        fixes=list(fixes),
        missing_frames=dict(missing_frames or {}),
    )


def _read_run(source: LegacySource, uid: str, options: MigrationOptions) -> tuple[int, Any]:
    """Read a run's documents as a real pass would, writing nothing: (events, the reader)."""
    documents = source.documents(uid, close_open_runs=options.close_open_runs, read_frames=False)
    events = 0
    for name, doc in documents:
        if name == "event":
            events += 1
        elif name == "event_page":
            events += len(doc.get("seq_num", []))
    return events, documents


def plan_run(
    source: LegacySource,
    container: Container,
    uid: str,
    *,
    present: bool,
    started_here: bool,
    options: MigrationOptions,
    failed_before: bool = False,
) -> RunOutcome:
    """What a real pass would do with one run (``present``: the target has its uid).

    >>> plan_run(source, container, uid, present=False, started_here=False, options=DEFAULTS).status   # doctest: +SKIP
    'would-migrate'
    """
    expected = source.expected(uid, close_open_runs=options.close_open_runs)
    target = inspect_run(container, uid, expected) if present else TargetRun(present=False)
    decision = decide(target, started_here=started_here, overwrite=options.overwrite, failed_before=failed_before)
    if decision.action not in (WRITE, REWRITE):
        return planned_outcome(uid, target, started_here=started_here, options=options, failed_before=failed_before)
    try:
        events, documents = _read_run(source, uid, options)
    except MigrationError as err:  # what the real pass's writer would raise, with the same reason
        return RunOutcome(uid, FAILED, reason=f"{type(err).__name__}: {redact(err)}")
    return planned_outcome(
        uid,
        target,
        started_here=started_here,
        options=options,
        failed_before=failed_before,
        warnings=documents.warnings,
        fixes=[f.to_dict() for f in documents.fixes],
        missing_frames=documents.missing_frames,
        events=events,
    )


def dry_run(
    source: LegacySource,
    container: Container,
    selected: Iterable[str],
    options: MigrationOptions,
    state: JobState,
    take: Callable[[RunOutcome], None],
) -> None:
    """Plan every selected run, page by page, handing each outcome to ``take``.

    A run the state file records as done is skipped, as a real pass skips it; a run
    it records as started or failed counts as begun by this job. A run whose plan
    fails (the source cannot be read) is reported as ``failed`` with the reason.
    """
    for page in pages(selected, options.page_size):
        present = present_uids(container, page)
        for uid in page:
            if state.status(uid) == DONE:
                take(RunOutcome(uid, SKIPPED, reason=DONE_REASON))
                continue
            try:
                take(
                    plan_run(
                        source,
                        container,
                        uid,
                        present=uid in present,
                        started_here=state.started_here(uid),
                        options=options,
                        failed_before=state.failed_before(uid),
                    )
                )
            except Exception as err:
                take(RunOutcome(uid, FAILED, reason=f"{type(err).__name__}: {redact(err)}"))
