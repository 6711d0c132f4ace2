"""What a migration job tells: one :class:`RunOutcome` per run, gathered in a :class:`MigrationReport`.

A run ends in one of these statuses: ``migrated``, ``rewritten`` (present but
half-written, written again), ``skipped`` (present and complete, or recorded as done),
``failed``; a dry run says ``would-migrate`` and ``would-rewrite`` instead of the first two.
Every reason, warning, source and target is redacted when the report is printed or saved.

>>> report = MigrationReport(source="mongodb://op:pw@host/db", target="http://tiled")
>>> report.runs.append(RunOutcome("a", MIGRATED, events=3))
>>> print(report.summary())
Migration mongodb://op:***@host/db -> http://tiled
  migrated: 1 (3 events), rewritten after an interrupted write: 0, skipped as present: 0, failed: 0
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._redact import redact
from .verify import VerificationReport

__all__ = [
    "FAILED",
    "MIGRATED",
    "REWRITTEN",
    "SKIPPED",
    "WOULD_MIGRATE",
    "WOULD_REWRITE",
    "MigrationReport",
    "RunOutcome",
    "now",
]

MIGRATED = "migrated"
REWRITTEN = "rewritten"
SKIPPED = "skipped"
FAILED = "failed"
WOULD_MIGRATE = "would-migrate"
WOULD_REWRITE = "would-rewrite"


def now() -> str:
    """The current UTC time, ISO 8601 to the second (report and state-file stamps)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    """What happened to one source run.

    >>> RunOutcome("abc", SKIPPED, reason="already present").status
    'skipped'
    """

    uid: str
    status: str
    events: int = 0
    seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1


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

    @property
    def ok(self) -> bool:
        return not self.failed and (self.verification is None or self.verification.ok)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (secrets redacted)."""
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

    def write(self, path: str | os.PathLike[str]) -> Path:
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
        warned = [r for r in self.runs if r.warnings]
        if warned:
            lines.append(f"  warnings on {len(warned)} run(s):")
            for r in warned:
                for w in r.warnings:
                    lines.append(f"    {r.uid}: {redact(w)}")
        if self.verification is not None:
            lines.append("  " + self.verification.summary().replace("\n", "\n  "))
        return "\n".join(lines)
