"""Verify migrated runs in Tiled against their legacy source.

Per run: the start and stop documents, the descriptor uids of each stream, the event
count of each stream, a checksum of every column of the events table (values and
timestamps), and the array
data (:mod:`.verify_arrays`: frames per event, shape, dtype, the event→frame mapping and
checksums of the sampled frames, or of every frame with ``verify_data="full"``). The
comparison itself is :mod:`.compare`'s (one run, or a batch of runs in a few searches);
this module reads the source side and reports.

A column's checksum is the sum (mod 2**64) of a hash of ``(key, seq_num, value)`` over
the events that carry a value, so it can be built while the documents stream past, in
any order, without holding a run in memory; the target side reads each stream's table
once. An event without a value of a key (the key absent from the event, ``None`` or NaN)
adds nothing, on either side: the table holds a null (or NaN) in that row, which is
what was written.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .._redact import redact
from .checksums import StreamChecksums
from .compare import MISSING_FRAMES_ATTRIBUTE, MissingFrames, RunCheck, RunVerification, compare_run, compare_runs
from .frames import RootMap
from .tally import ArrayTally, SourceTally

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = [
    "BATCH_RUNS",
    "MISSING_FRAMES_ATTRIBUTE",
    "MissingFrames",
    "RunCheck",
    "RunVerification",
    "SourceTally",
    "StreamChecksums",
    "VerificationReport",
    "compare_run",
    "compare_runs",
    "read_check",
    "verify",
    "verify_run",
]

#: Runs :func:`verify` compares per batch (one search and one deep search each).
BATCH_RUNS = 25


@dataclass
class VerificationReport:
    """All runs checked; ``failed`` lists the runs with a mismatch."""

    runs: list[RunVerification] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def failed(self) -> list[RunVerification]:
        return [r for r in self.runs if not r.ok]

    @property
    def frames_checked(self) -> int:
        """Frames of array data compared, over all runs."""
        return sum(sum(r.frames_checked.values()) for r in self.runs)

    @property
    def requests(self) -> int:
        """Requests sent to the target by the comparisons, over all runs."""
        return sum(r.requests for r in self.runs)

    def to_dict(self) -> dict:
        return {
            "checked": len(self.runs),
            "ok": self.ok,
            "frames_checked": self.frames_checked,
            "requests": self.requests,
            "failed": [asdict(r) for r in self.failed],
        }

    def summary(self) -> str:
        lines = [
            f"verified {len(self.runs)} run(s): {len(self.runs) - len(self.failed)} ok, {len(self.failed)} mismatched"
            f" ({self.frames_checked} frames of array data compared; {self.requests} requests)"
        ]
        for r in self.failed:
            lines.append(f"  {r.uid}: " + "; ".join(r.mismatches))
        return "\n".join(lines)



def read_check(
    source: LegacySource,
    uid: str,
    *,
    close_open_runs: bool = True,
    verify_data: str = "sample",
    rng: random.Random | None = None,
) -> RunCheck | RunVerification:
    """Read one run from ``source`` into a :class:`RunCheck`; a failed verification if it has no start.

    The events whose frames the writer could not keep are the documents' own
    ``missing_frames``, when they list them.

    >>> read_check(source, "9d5c...").tally.stop["exit_status"]   # doctest: +SKIP
    'success'
    """
    tally = SourceTally(verify_data=verify_data, rng=rng)
    documents = source.documents(uid, close_open_runs=close_open_runs)
    for _ in tally.tee(documents):
        pass
    if tally.start is None:
        return RunVerification(uid, False, ["no start document in the source"])
    return RunCheck(tally, missing_frames=getattr(documents, MISSING_FRAMES_ATTRIBUTE, None))


def verify_run(
    source: LegacySource,
    tiled_client: Any,
    uid: str,
    *,
    close_open_runs: bool = True,
    root_map: RootMap | None = None,
    verify_data: str = "sample",
    rng: random.Random | None = None,
) -> RunVerification:
    """Verify one run: read it from ``source`` and compare with ``tiled_client[uid]``.

    ``root_map``, ``verify_data`` and ``rng`` are as for :func:`compare_run` and
    :class:`SourceTally`; the events whose frames the writer could not keep are the
    documents' own ``missing_frames``, when they list them.

    Examples
    --------
    >>> verify_run(source, client, "9d5c...").ok   # doctest: +SKIP
    True
    """
    container: Container = _tiled.as_container(tiled_client)
    check = read_check(source, uid, close_open_runs=close_open_runs, verify_data=verify_data, rng=rng)
    if isinstance(check, RunVerification):
        return check
    try:
        run_client = container[uid]
    except KeyError:
        return RunVerification(uid, False, ["run missing in target"])
    return compare_run(check.tally, run_client, root_map=root_map, missing_frames=check.missing_frames)


def _raised(uid: str, err: BaseException) -> RunVerification:
    logger.warning("Verification of run %s failed: %s", uid, redact(err))
    return RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])


def verify(
    source: LegacySource,
    tiled_client: Any,
    *,
    uids: Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    close_open_runs: bool = True,
    timezone: str | None = None,
    root_map: RootMap | None = None,
    verify_data: str = "sample",
) -> VerificationReport:
    """Compare every selected source run with the target and report mismatches.

    The runs are compared :data:`BATCH_RUNS` at a time with :func:`compare_runs` (the
    same checks as :func:`verify_run`, the metadata and streams of a batch in two searches).

    Parameters
    ----------
    source : LegacySource
        The legacy MongoDB source.
    tiled_client : tiled container client
        The node the runs were migrated into.
    uids : iterable of str, optional
        Only these runs; otherwise the runs ``since``/``until``/``query`` select
        (times read as :func:`~databroker_compat.migration.migrate` reads them, naive
        ones in ``timezone``, this machine's zone by default).
    close_open_runs : bool
        As given to the migration (decides what stop document the source implies).
    root_map : RootMap, optional
        As given to the migration: where the legacy files are read from.
    verify_data : {"sample", "full"}
        Compare the first, last and one random frame per resource (default), or every frame.

    Returns
    -------
    VerificationReport

    Examples
    --------
    >>> report = verify(LegacySource(mongo_db), client)   # doctest: +SKIP
    >>> report.ok                                          # doctest: +SKIP
    True
    """
    ArrayTally(verify_data)  # a bad level raises BadArgument now, not once per run
    if uids is None:
        uids = source.find_run_uids(since=since, until=until, query=query, timezone=timezone)
    container: Container = _tiled.as_container(tiled_client)
    report = VerificationReport()
    selected = iter(uids)
    while batch := list(itertools.islice(selected, BATCH_RUNS)):
        found: dict[str, RunVerification | RunCheck] = {}
        for uid in batch:
            try:
                found[uid] = read_check(source, uid, close_open_runs=close_open_runs, verify_data=verify_data)
            except Exception as err:
                found[uid] = _raised(uid, err)
        checks = [c for c in found.values() if isinstance(c, RunCheck)]
        try:
            compared = compare_runs(container, checks, root_map=root_map) if checks else {}
        except Exception as err:  # the batch's searches failed: each run is reported
            compared = {c.uid: err for c in checks}
        for uid in batch:
            result = found[uid]
            if isinstance(result, RunCheck):
                outcome = compared[uid]
                result = _raised(uid, outcome) if isinstance(outcome, Exception) else outcome
            if not result.ok:
                logger.warning("Run %s does not match its source: %s", uid, "; ".join(result.mismatches))
            report.runs.append(result)
    return report
