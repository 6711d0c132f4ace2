"""The migration job: select runs, write each through TiledWriter, record progress, report.

``migrate`` walks the source runs oldest first, in pages. For each page it asks the
target once which of those uids already exist, then:

- a run recorded as done in the job's state file is skipped without touching the target;
- a run present in the target and complete is skipped (``skipped``, "already present");
- a run present but half-written (no stop document in the target, or recorded as started
  by this job and never finished) is deleted and written again (``rewritten``);
- a run present with a stop but different content is *not* touched: it is reported as
  ``failed`` with the reason, unless ``overwrite=True``;
- any other run is written (``migrated``).

Progress is an append-only JSON-lines state file (one line per run event, flushed and
fsynced), so a job killed at any instant resumes where it stopped and moves nothing twice.
Writing runs can fan out over a thread pool (``workers``, default 1); each run is
written by its own writer. At the end the migrated runs are verified against the checksums taken from the
documents as they streamed past (no second read of the source).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import MigrationError
from .redact import redact
from .verify import RunVerification, SourceTally, VerificationReport, compare_run

logger = logging.getLogger(__name__)

__all__ = ["JobState", "MigrationReport", "RunOutcome", "migrate"]

MIGRATED = "migrated"
REWRITTEN = "rewritten"
SKIPPED = "skipped"
FAILED = "failed"
WOULD_MIGRATE = "would-migrate"
WOULD_REWRITE = "would-rewrite"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunOutcome:
    """What happened to one source run."""

    uid: str
    status: str
    events: int = 0
    seconds: float = 0.0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


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
    started: str = field(default_factory=_now)
    finished: str = ""
    runs: list[RunOutcome] = field(default_factory=list)
    verification: VerificationReport | None = None

    def _with(self, *statuses: str) -> list[RunOutcome]:
        return [r for r in self.runs if r.status in statuses]

    @property
    def migrated(self) -> list[RunOutcome]:
        return self._with(MIGRATED, REWRITTEN)

    @property
    def skipped(self) -> list[RunOutcome]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[RunOutcome]:
        return self._with(FAILED)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.migrated)

    @property
    def ok(self) -> bool:
        return not self.failed and (self.verification is None or self.verification.ok)

    def to_dict(self) -> dict:
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

    def write(self, path: str | os.PathLike) -> Path:
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
                f"  would migrate: {len(self._with(WOULD_MIGRATE))}, would rewrite: {len(self._with(WOULD_REWRITE))}, "
                f"already present: {len(self.skipped)}, problems: {len(self.failed)}"
            )
        else:
            lines.append(
                f"  migrated: {len(self._with(MIGRATED))} ({self.events} events), "
                f"rewritten after an interrupted write: {len(self._with(REWRITTEN))}, "
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


class JobState:
    """Append-only JSON-lines record of a job's progress (``None`` path: in memory only).

    Each line is ``{"uid", "status": "started"|"done"|"failed", "at", ...}``; the last
    line of a uid wins. Lines are flushed and fsynced, so a killed job loses at most the
    line it was writing (a torn last line is ignored on load).

    >>> state = JobState(None)
    >>> state.mark("abc", "done", events=3)
    >>> state.status("abc")
    'done'
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self._status: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._fh = None
        if self.path is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        logger.warning("Ignoring a torn line in the state file %s", self.path)
                        continue
                    self._status[record["uid"]] = record

    def status(self, uid: str) -> str | None:
        record = self._status.get(uid)
        return record["status"] if record else None

    def mark(self, uid: str, status: str, **extra: Any) -> None:
        record = {"uid": uid, "status": status, "at": _now(), **extra}
        with self._lock:
            self._status[uid] = record
            if self.path is None:
                return
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(record, default=str) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _present(container, uids: list[str]) -> set[str]:
    """Which of ``uids`` are keys of the target container (one request per page)."""
    from tiled.queries import In

    from .. import _tiled

    found: set[str] = set()
    item = container.search(In("start.uid", uids)).item
    for child in _tiled.iter_children(container.context, item, metadata=False):
        found.add(child["id"])
    return found


def _target_has_stop(container, uid: str) -> bool:
    return container[uid].metadata.get("stop") is not None


class _Tee:
    """Documents passed through a ``SourceTally``, keeping the reader's ``warnings`` list."""

    def __init__(self, documents, tally: SourceTally):
        self.warnings = getattr(documents, "warnings", None)
        self._it = tally.tee(documents)

    def __iter__(self):
        return self._it


class _Progress:
    """A tqdm bar over runs, with runs/s and events/s; silent when disabled or not a TTY."""

    def __init__(self, total: int | None, enabled: bool):
        self.bar = None
        self.events = 0
        self.t0 = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", desc="migrating", dynamic_ncols=True)

    def update(self, events: int) -> None:
        self.events += events
        if self.bar is not None:
            self.bar.update(1)
            elapsed = max(time.monotonic() - self.t0, 1e-9)
            self.bar.set_postfix(events=self.events, ev_per_s=f"{self.events / elapsed:,.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe(target) -> str:
    try:
        return target.uri
    except Exception:
        return repr(target)


def migrate(
    source,
    tiled_client,
    *,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    uids: Iterable[str] | None = None,
    batch_size: int = 10_000,
    dry_run: bool = False,
    progress: bool = True,
    verify: bool = True,
    state_path: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    workers: int = 1,
    close_open_runs: bool = True,
    overwrite: bool = False,
    page_size: int = 200,
) -> MigrationReport:
    """Migrate legacy MongoDB runs into a Tiled container through TiledWriter.

    Parameters
    ----------
    source : LegacySource
        The legacy databases (``LegacySource(db)`` or ``LegacySource.from_uris(...)``).
        Only read: nothing in MongoDB is modified.
    tiled_client : tiled container client
        Where the runs go (each run becomes a child keyed by its start uid).
    since, until : str or datetime, optional
        Select runs by start time, as the source's ``find_run_uids`` takes them.
    query : dict, optional
        A Mongo query on the start documents.
    uids : iterable of str, optional
        Exactly these runs instead of a selection.
    batch_size : int
        Events per table write in the writer.
    dry_run : bool
        Read and check everything, write nothing (no state file either).
    progress : bool
        Show a tqdm bar (only on a terminal).
    verify : bool
        Verify every run written by this call against the source documents it streamed.
    state_path : path, optional
        The job's JSON-lines state file; give the same one to resume a job.
    report_path : path, optional
        Also write the JSON report there.
    workers : int
        Runs written at the same time (threads). Keep 1 for a server whose tables
        live in DuckDB/SQLite (``tiled serve catalog`` defaults, ``SimpleTiledServer``):
        concurrent appends there fail with HTTP 500 and can leave tables empty. More
        workers are for PostgreSQL-backed servers (see docs/migration.md).
    close_open_runs : bool
        Give runs without a stop document a stop with ``exit_status="unknown"``
        (otherwise TiledWriter writes none of their events).
    overwrite : bool
        Replace runs present in the target with different content (default: report them).
    page_size : int
        Source uids handled per page (one target lookup per page).

    Returns
    -------
    MigrationReport

    Examples
    --------
    >>> from databroker_compat.migration import LegacySource, migrate   # doctest: +SKIP
    >>> report = migrate(LegacySource(mongo_db), tiled_client, since="2019-01-01")   # doctest: +SKIP
    >>> print(report.summary())   # doctest: +SKIP
    """
    from .. import _tiled
    from . import writer as _writer

    if batch_size < 1:
        raise MigrationError(f"batch_size must be a positive number of events, not {batch_size!r}.")
    if workers < 1:
        raise MigrationError(f"workers must be at least 1, not {workers!r}.")
    container = _tiled.as_container(tiled_client)
    report = MigrationReport(source=redact(getattr(source, "name", None) or repr(source)), target=redact(_describe(tiled_client)), dry_run=dry_run)
    state = JobState(None if dry_run else state_path)
    if uids is not None:
        selected: Iterable[str] = list(uids)
        total: int | None = len(selected)  # type: ignore[arg-type]
    else:
        selected = source.find_run_uids(since=since, until=until, query=query)
        try:
            total = source.count_runs(since=since, until=until, query=query)
        except Exception:  # a count is only for the progress bar
            total = None
    logger.info("Migrating %s run(s) from %s into %s%s", total if total is not None else "?", report.source, report.target, " (dry run)" if dry_run else "")
    bar = _Progress(total, progress)
    tallies: dict[str, SourceTally] = {}

    def write_one(uid: str, rewrite: bool) -> RunOutcome:
        t0 = time.monotonic()
        if rewrite:
            logger.info("Run %s was left half-written; deleting it to write it again", uid)
            _writer.delete_run(container, uid)
        state.mark(uid, "started")
        tally = SourceTally()
        documents = source.documents(uid, close_open_runs=close_open_runs)
        try:
            written = _writer.write_run(container, _Tee(documents, tally), batch_size=batch_size)
        except Exception as err:
            reason = f"{type(err).__name__}: {redact(err)}"
            logger.warning("Run %s failed: %s", uid, reason)
            try:
                if uid in _present(container, [uid]):
                    _writer.delete_run(container, uid)
            except Exception as cleanup:
                reason += f" (and removing the partial run failed: {redact(cleanup)}; the next pass rewrites it)"
            state.mark(uid, "failed", reason=reason)
            warnings = list(getattr(documents, "warnings", []))
            return RunOutcome(uid, FAILED, seconds=time.monotonic() - t0, reason=reason, warnings=warnings)
        tallies[uid] = tally
        events = sum(s.events for s in tally.streams.values())
        state.mark(uid, "done", events=events)
        warnings = list(dict.fromkeys([*getattr(documents, "warnings", []), *written.notes]))
        return RunOutcome(uid, REWRITTEN if rewrite else MIGRATED, events, time.monotonic() - t0, warnings=warnings)

    def plan(uid: str, present: bool) -> tuple[str, RunOutcome | None]:
        """Decide one run: ("write"|"rewrite", None) or ("", outcome)."""
        if not present:
            if not dry_run:
                return "write", None
            return "", RunOutcome(uid, WOULD_MIGRATE, warnings=list(source.expected(uid, close_open_runs=close_open_runs).warnings))
        expected = source.expected(uid, close_open_runs=close_open_runs)
        run_state = _writer.run_state(container, uid, expected)
        if run_state == "complete":
            return "", RunOutcome(uid, SKIPPED, reason="already present in the target with the same content")
        started_here = state.status(uid) in ("started", "failed")
        if started_here or overwrite or not _target_has_stop(container, uid):
            if dry_run:
                return "", RunOutcome(uid, WOULD_REWRITE, reason="present but incomplete in the target", warnings=list(expected.warnings))
            return "rewrite", None
        return "", RunOutcome(
            uid,
            FAILED,
            reason="a run with this uid is already in the target with different content; "
            "it was left untouched (inspect it, then pass overwrite=True / --overwrite to replace it)",
        )

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="migrate") if not dry_run else None
    pending: set[Future] = set()

    def collect(block: bool) -> None:
        nonlocal pending
        if not pending:
            return
        done, pending = wait(pending, return_when=FIRST_COMPLETED, timeout=None if block else 0)
        for fut in done:
            outcome = fut.result()
            report.runs.append(outcome)
            bar.update(outcome.events)

    try:
        for page in _pages(selected, page_size):
            todo = [u for u in page if state.status(u) != "done"]
            for uid in page:
                if state.status(uid) == "done":
                    report.runs.append(RunOutcome(uid, SKIPPED, reason="recorded as done in the job's state file"))
                    bar.update(0)
            present = _present(container, todo) if todo else set()
            for uid in todo:
                try:
                    action, outcome = plan(uid, uid in present)
                except Exception as err:
                    action, outcome = "", RunOutcome(uid, FAILED, reason=f"{type(err).__name__}: {redact(err)}")
                if outcome is not None:
                    report.runs.append(outcome)
                    bar.update(0)
                    continue
                while len(pending) >= 2 * workers:
                    collect(block=True)
                pending.add(pool.submit(write_one, uid, action == "rewrite"))
                collect(block=False)
        while pending:
            collect(block=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        state.close()

    if verify and not dry_run:
        verification = VerificationReport()
        for outcome in report.migrated:
            tally = tallies.get(outcome.uid)
            try:
                result = compare_run(tally, container[outcome.uid])
            except Exception as err:
                result = RunVerification(outcome.uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])
            verification.runs.append(result)
            if not result.ok:
                # The next pass of the job rewrites it (present, recorded as failed).
                state.mark(outcome.uid, "failed", reason="verification: " + "; ".join(result.mismatches))
        state.close()
        report.verification = verification
    report.finished = _now()
    if report_path is not None:
        report.write(report_path)
    logger.info("%s", report.summary().splitlines()[1].strip())
    return report
