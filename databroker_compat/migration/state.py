"""The job's state file: an append-only JSON-lines record of each run's progress.

Only the process that runs the job writes it. A job killed at any instant loses at
most the line it was writing, and the next pass reads the rest: runs recorded as
``done`` are skipped, runs recorded as ``started`` or ``failed`` may be rewritten
even if the target holds a stop document for them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

from .report import now

logger = logging.getLogger(__name__)

__all__ = ["DONE", "FAILED", "STARTED", "JobState"]

STARTED = "started"
DONE = "done"
FAILED = "failed"


class JobState:
    """Append-only JSON-lines record of a job's progress (``None`` path: in memory only).

    Each line is ``{"uid", "status": "started"|"done"|"failed", "at", ...}``; the last
    line of a uid wins. Lines are flushed and fsynced, so a killed job loses at most the
    line it was writing (a torn last line is ignored on load).

    Parameters
    ----------
    path : path or None
        The file; read now if it exists, created on the first :meth:`mark`.
    read_only : bool
        Read the file but never write it (a dry run): :meth:`mark` only updates memory.

    >>> state = JobState(None)
    >>> state.mark("abc", "done", events=3)
    >>> state.status("abc")
    'done'
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self._status: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
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
        """The last recorded status of ``uid``, or None."""
        record = self._status.get(uid)
        return record["status"] if record else None

    def started_here(self, uid: str) -> bool:
        """Whether an earlier pass of this job began ``uid`` and did not finish it well."""
        return self.status(uid) in (STARTED, FAILED)

    def failed_before(self, uid: str) -> bool:
        """Whether an earlier pass of this job wrote ``uid`` and recorded it as failed (or incomplete).

        Only runs marked ``failed`` with ``written=True`` (the job wrote them, and they did
        not verify or arrived without some frames): a run refused because the target held
        different content is not one, and is never rewritten without ``overwrite``.

        >>> state = JobState(None)
        >>> state.mark("a", FAILED, reason="incomplete: ...", written=True)
        >>> state.mark("b", FAILED, reason="different content")
        >>> state.failed_before("a"), state.failed_before("b")
        (True, False)
        """
        record = self._status.get(uid)
        return bool(record and record["status"] == FAILED and record.get("written"))

    def mark(self, uid: str, status: str, **extra: Any) -> None:
        """Record ``status`` for ``uid`` (one line, flushed and fsynced)."""
        record = {"uid": uid, "status": status, "at": now(), **extra}
        with self._lock:
            self._status[uid] = record
            if self.path is None or self.read_only:
                return
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # kept open for the job
                if self._fh.tell() and not self._ends_with_newline():
                    self._fh.write("\n")  # end a line torn by a kill, so the next record stays whole
            self._fh.write(json.dumps(record, default=str) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def _ends_with_newline(self) -> bool:
        assert self.path is not None
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def close(self) -> None:
        """Close the file (the state stays readable in memory)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
