"""What a migration job tells: one :class:`RunOutcome` per run, gathered in a :class:`MigrationReport`.

A run ends in one of these statuses: ``migrated``, ``rewritten`` (present but
half-written, written again), ``skipped`` (present and complete, or recorded as done),
``failed``; a dry run says ``would-migrate`` and ``would-rewrite`` instead of the first two.

Each run also has one *outcome* (:func:`outcome_of`), which the summary counts and
which adds up to the runs selected: ``equal`` (migrated as it was stored),
``with_fixes`` (migrated, with every fix recorded), ``incomplete`` (migrated, but some
events arrived without their frames), ``failed`` (not migrated, or written but not equal
to the source), ``skipped`` (already there). The exit status follows from them
(:meth:`MigrationReport.exit_code`). Every reason, warning, source and target is
redacted when the report is printed or saved.

>>> report = MigrationReport(source="mongodb://op:pw@host/db", target="http://tiled")
>>> report.runs.append(RunOutcome("a", MIGRATED, events=3))
>>> print(report.summary())
Migration mongodb://op:***@host/db -> http://tiled
  1 run(s): migrated equal: 1, migrated with fixes: 0, incomplete: 0, failed: 0, skipped: 0
  migrated: 1 (3 events), rewritten after an interrupted write: 0, skipped as present: 0, failed: 0
>>> report.exit_code()
0
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._redact import redact
from .fixes import MISSING_FRAMES
from .verify import VerificationReport

__all__ = [
    "EQUAL",
    "FAILED",
    "INCOMPLETE",
    "MIGRATED",
    "OUTCOMES",
    "OUTCOME_LABELS",
    "REWRITTEN",
    "SKIPPED",
    "WITH_FIXES",
    "WOULD_MIGRATE",
    "WOULD_REWRITE",
    "MigrationReport",
    "RunOutcome",
    "now",
    "outcome_of",
]

MIGRATED = "migrated"
REWRITTEN = "rewritten"
SKIPPED = "skipped"
FAILED = "failed"
WOULD_MIGRATE = "would-migrate"
WOULD_REWRITE = "would-rewrite"

#: Outcomes (besides ``failed`` and ``skipped``, which are also statuses).
EQUAL = "equal"
WITH_FIXES = "with_fixes"
INCOMPLETE = "incomplete"
#: Every outcome, in the order the summary counts them.
OUTCOMES = (EQUAL, WITH_FIXES, INCOMPLETE, FAILED, SKIPPED)
#: How the summary names them.
OUTCOME_LABELS = {
    EQUAL: "migrated equal",
    WITH_FIXES: "migrated with fixes",
    INCOMPLETE: "incomplete",
    FAILED: "failed",
    SKIPPED: "skipped",
}


def now() -> str:
    """The current UTC time, ISO 8601 to the second (report and state-file stamps)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    """What happened to one source run.

    Attributes
    ----------
    uid, status : str
    events : int
        Events written.
    seconds : float
    reason : str
        Why it failed or was skipped; for a run whose events arrived without some frames,
        which frames and why (filled in from ``fixes`` when not given).
    warnings : list of str
        One line per fix (the run's ``notes`` in Tiled, without the ``migration:`` prefix).
    attempts : int
    fixes : list of dict
        Every fix, as ``Fix.to_dict()``: ``kind``, ``message`` and, where they apply,
        ``stream``, ``key``, ``seq_nums``.
    missing_frames : dict
        Stream -> key -> ``seq_num`` values of the events that arrived without their frame.

    >>> RunOutcome("abc", SKIPPED, reason="already present").status
    'skipped'
    >>> RunOutcome("abc", MIGRATED, missing_frames={"primary": {"img": [2]}},
    ...            fixes=[{"kind": "missing_frames", "message": "primary/img arrived without 1 of 3 frames"}]).reason
    'primary/img arrived without 1 of 3 frames'
    """

    uid: str
    status: str
    events: int = 0
    seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1
    fixes: list[dict[str, Any]] = field(default_factory=list)
    missing_frames: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.reason and self.missing_frames and self.status != SKIPPED:
            self.reason = "; ".join(f["message"] for f in self.fixes if f.get("kind") == MISSING_FRAMES)


def outcome_of(run: RunOutcome, *, mismatched: bool = False) -> str:
    """The run's outcome, one of :data:`OUTCOMES` (``mismatched``: it did not verify).

    >>> outcome_of(RunOutcome("a", MIGRATED, fixes=[{"kind": "stop", "message": "..."}]))
    'with_fixes'
    >>> outcome_of(RunOutcome("a", MIGRATED), mismatched=True)
    'failed'
    """
    if run.status == FAILED or mismatched:
        return FAILED
    if run.status == SKIPPED:
        return SKIPPED
    if run.missing_frames:
        return INCOMPLETE
    return WITH_FIXES if run.fixes else EQUAL


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
    started: str = field(default_factory=now)
    finished: str = ""
    runs: list[RunOutcome] = field(default_factory=list)
    verification: VerificationReport | None = None
    allow_missing_files: bool = False

    def with_status(self, *statuses: str) -> list[RunOutcome]:
        """The runs whose status is one of ``statuses``."""
        return [r for r in self.runs if r.status in statuses]

    @property
    def migrated(self) -> list[RunOutcome]:
        return self.with_status(MIGRATED, REWRITTEN)

    @property
    def skipped(self) -> list[RunOutcome]:
        return self.with_status(SKIPPED)

    @property
    def failed(self) -> list[RunOutcome]:
        return self.with_status(FAILED)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.migrated)

    def _mismatched(self) -> set[str]:
        if self.verification is None:
            return set()
        return {v.uid for v in self.verification.failed}

    def outcomes(self) -> dict[str, str]:
        """Run uid -> outcome (one of :data:`OUTCOMES`)."""
        mismatched = self._mismatched()
        return {r.uid: outcome_of(r, mismatched=r.uid in mismatched) for r in self.runs}

    def outcome_counts(self) -> dict[str, int]:
        """Runs per outcome, every outcome listed; the counts add up to the runs reported."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome in self.outcomes().values():
            counts[outcome] += 1
        return counts

    @property
    def incomplete(self) -> list[RunOutcome]:
        """The runs (migrated, or that would be) whose events arrived without some frames."""
        outcomes = self.outcomes()
        return [r for r in self.runs if outcomes[r.uid] == INCOMPLETE]

    def exit_code(self) -> int:
        """0 when every run is in the target (or would be) as its source has it, 1 otherwise.

        1 when a run failed or did not verify, or is incomplete and ``allow_missing_files``
        is off.
        """
        counts = self.outcome_counts()
        if counts[FAILED] or (self.verification is not None and not self.verification.ok):
            return 1
        if counts[INCOMPLETE] and not self.allow_missing_files:
            return 1
        return 0

    @property
    def ok(self) -> bool:
        """Whether the job succeeded (:meth:`exit_code` is 0)."""
        return self.exit_code() == 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (secrets redacted)."""
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        outcomes = self.outcomes()
        return {
            "source": redact(self.source),
            "target": redact(self.target),
            "dry_run": self.dry_run,
            "started": self.started,
            "finished": self.finished,
            "counts": counts,
            "outcomes": self.outcome_counts(),
            "events_written": self.events,
            "allow_missing_files": self.allow_missing_files,
            "ok": self.ok,
            "exit_code": self.exit_code(),
            "runs": [
                asdict(r) | {"reason": redact(r.reason), "outcome": outcomes[r.uid]} for r in self.runs
            ],
            "verification": self.verification.to_dict() if self.verification is not None else None,
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON report to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def summary(self) -> str:
        """A short human summary: outcomes and statuses counted, then every failure, gap and fix with its run."""
        lines = [f"Migration {redact(self.source)} -> {redact(self.target)}" + (" (dry run)" if self.dry_run else "")]
        counts = self.outcome_counts()
        would = "would be " if self.dry_run else ""
        lines.append(
            f"  {len(self.runs)} run(s): "
            + ", ".join(f"{would if o != SKIPPED else ''}{OUTCOME_LABELS[o]}: {counts[o]}" for o in OUTCOMES)
        )
        if self.dry_run:
            lines.append(
                f"  would migrate: {len(self.with_status(WOULD_MIGRATE))}, "
                f"would rewrite: {len(self.with_status(WOULD_REWRITE))}, "
                f"already present: {len(self.skipped)}, problems: {len(self.failed)}"
            )
        else:
            lines.append(
                f"  migrated: {len(self.with_status(MIGRATED))} ({self.events} events), "
                f"rewritten after an interrupted write: {len(self.with_status(REWRITTEN))}, "
                f"skipped as present: {len(self.skipped)}, failed: {len(self.failed)}"
            )
        for r in self.failed:
            lines.append(f"  FAILED {r.uid}: {redact(r.reason)}")
        for r in self.incomplete:
            allowed = " (allowed: --allow-missing-files)" if self.allow_missing_files else ""
            lines.append(f"  INCOMPLETE{allowed} {r.uid}: {redact(r.reason)}")
        warned = [r for r in self.runs if r.warnings]
        if warned:
            lines.append(f"  fixes and warnings on {len(warned)} run(s):")
            for r in warned:
                for w in r.warnings:
                    lines.append(f"    {r.uid}: {redact(w)}")
        if self.verification is not None:
            lines.append("  " + self.verification.summary().replace("\n", "\n  "))
        return "\n".join(lines)
