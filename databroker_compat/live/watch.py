"""The follower's loop: which runs are new, matched, open, complete, and what each has new.

A :class:`Watcher` looks for runs of a search (a broker's ``db()``, with its filters, or
``db(...)``) that appear after it starts, and for the run that is open then. It checks
the server in full every ``interval`` seconds (one search on ``start.time``, so a run
is found by any way its start can be seen), and, when the server streams
(:mod:`~databroker_compat.live.sources`), at once on each websocket update: a new run
or a run's metadata (its stop) in the catalog, a new stream, table rows or frames in a
run being fed. Each check asks the server; an update only says *when* to ask, so an
update missed during a dropped connection costs latency, never a document.

Who uses it: ``follow`` gets ``on_match``/``on_complete`` calls with a
:class:`~databroker_compat.Header`; ``subscribe`` gets ``on_documents`` calls with
what :class:`~databroker_compat.live.feed.RunFeed` has new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .feed import RunFeed
from .sources import NodeWatch

if TYPE_CHECKING:
    from ..broker import Broker
    from ..header import Header
    from ..results import Results

__all__ = ["CHECK_INTERVAL", "MARGIN", "POLL_INTERVAL", "SETTLE", "Watcher"]

logger = logging.getLogger(__name__)

#: Seconds between checks of a server without a streaming cache (``poll_interval`` default).
POLL_INTERVAL = 1.0
#: Seconds between full checks when websocket updates come (they catch what an update missed).
CHECK_INTERVAL = 5.0
#: Seconds new documents of a run are held for before a second read (see ``live/feed.py``).
SETTLE = 0.3
#: A run whose ``start.time`` is up to this many seconds before the follower started (or
#: before the newest run seen) still counts as new: clocks of the RunEngine and the
#: follower may differ by that much.
MARGIN = 120.0


class _Tracked:
    """One matched run the watcher follows."""

    __slots__ = ("complete", "feed", "start_time", "uid")

    def __init__(self, uid: str, start_time: float) -> None:
        self.uid = uid
        self.start_time = start_time
        self.complete = False
        self.feed: RunFeed | None = None


class Watcher:
    """Find the runs of ``results`` that appear from now on, and what is new in them.

    Parameters
    ----------
    db : Broker
        Gives the run container, ``header_of`` and ``prepare_hook``.
    results : Results
        The search the runs must match (``db()`` for the broker's filters).
    mode : str
        ``"websocket"`` or ``"poll"`` (see :func:`~databroker_compat.live.sources.choose_mode`).
    interval : float
        Seconds between full checks.
    feeds : bool
        Keep a :class:`~databroker_compat.live.feed.RunFeed` per matched run (``subscribe``).
    stream_names : collection of str or ALL
        The streams the feeds give.
    settle : float
        See :class:`~databroker_compat.live.feed.RunFeed`.

    >>> w = Watcher(db, db(), mode="poll", interval=1.0, on_match=print)   # doctest: +SKIP
    >>> w.start(); w.step(); w.close()                                      # doctest: +SKIP
    """

    def __init__(
        self,
        db: Broker,
        results: Results,
        *,
        mode: str,
        interval: float,
        feeds: bool = False,
        stream_names: Any = None,
        settle: float = SETTLE,
        on_match: Callable[[Header], None] | None = None,
        on_complete: Callable[[Header], None] | None = None,
        on_documents: Callable[[str, list[tuple[str, dict]]], None] | None = None,
    ) -> None:
        self.db = db
        self.results = results
        self.mode = mode
        self.interval = interval
        self.feeds = feeds
        self.stream_names = stream_names
        self.settle = settle
        self.on_match = on_match or (lambda header: None)
        self.on_complete = on_complete or (lambda header: None)
        self.on_documents = on_documents or (lambda uid, docs: None)
        self.container = db.run_container
        self._root = list(self.container.path_parts)
        self._wake = threading.Condition()
        self._check: set[str] = set()  # runs to look up at once (websocket updates)
        self._dirty: set[str] = set()  # fed runs to re-read at once
        self._content: dict[str, float] = {}  # fed run -> when a websocket update last said it changed
        self._read_at: dict[str, float] = {}  # fed run -> when it was last read
        self._full = True  # a full check is due
        self._resync = False  # a websocket subscription started again: re-read every feed
        self._ignored: set[str] = set()  # complete when the watcher started, or given up
        self._runs: dict[str, _Tracked] = {}
        self._newest = 0.0
        self._started_at = 0.0
        self._next_full = 0.0
        self._lost_since: float | None = None
        self._nodes: NodeWatch | None = None

    # -- websocket updates ------------------------------------------------------------
    def _updated(self, path: list[str], update: Any) -> None:
        """A websocket update (on a subscription thread): note what to check, wake the loop."""
        relative = path[len(self._root) :]
        with self._wake:
            if update is None:
                self._full = self._resync = True
            elif not relative:  # the catalog: a run created, or its metadata (the stop) updated
                self._check.add(str(update.key))
            else:  # a run's stream, table or array: read it once the writer is quiet
                self._content[relative[0]] = time.monotonic()
            self._wake.notify_all()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Note the runs there now (complete ones are not new), find the open one, subscribe."""
        now = time.time()
        self._started_at = self._newest = now
        if self.mode == "websocket":
            self._nodes = NodeWatch(self.container.context, self._updated)
            self._nodes.watch(self._root, "container", keep=True)
        for header in self.results(since=now - MARGIN):
            if header.run.stop:
                self._ignored.add(header.uid)
            else:
                self._see(header)
        try:
            newest = self.results[-1]
        except KeyError:  # no run yet
            newest = None
        if newest is not None and not newest.run.stop and newest.uid not in self._runs:
            self._see(newest)

    def close(self) -> None:
        """Stop the websocket subscriptions; say which fed runs never got their stop."""
        if self._nodes is not None:
            self._nodes.close()
        for tracked in self._runs.values():
            if tracked.feed is not None and tracked.feed.started and not tracked.feed.finished:
                logger.warning(
                    "Run %s had no stop document when the follower stopped: its documents so far were "
                    "delivered, the rest were not.",
                    tracked.uid,
                )

    # -- what a check does ----------------------------------------------------------------
    def _see(self, header: Header) -> None:
        """A matched run, as the server has it now."""
        uid = header.uid
        if uid in self._ignored:
            return
        tracked = self._runs.get(uid)
        start_time = float(header.run.start.get("time", 0.0))
        if tracked is None:
            tracked = self._runs[uid] = _Tracked(uid, start_time)
            self._newest = max(self._newest, start_time)
            self._give_up_older(tracked)
            self.on_match(header)
            if self.feeds:
                tracked.feed = RunFeed(
                    self.container,
                    uid,
                    stream_names=self.stream_names,
                    settle=self.settle,
                    tables_before_stop=self.mode == "websocket",
                )
                if self._nodes is not None and not header.run.stop:  # a finished run's nodes are closed
                    self._nodes.watch([*self._root, uid], "container", children=True)
                    with self._wake:  # what the writer did before the subscription: read when quiet
                        self._content[uid] = time.monotonic()
                with self._wake:
                    self._dirty.add(uid)
        if header.run.stop and not tracked.complete:
            tracked.complete = True
            self.on_complete(header)
            if tracked.feed is not None:
                with self._wake:
                    self._dirty.add(uid)
        if tracked.complete and (tracked.feed is None or tracked.feed.finished):
            self._forget(uid)

    def _forget(self, uid: str) -> None:
        self._runs.pop(uid, None)
        with self._wake:
            self._content.pop(uid, None)
        self._read_at.pop(uid, None)
        self._ignored.add(uid)

    def _give_up_older(self, newer: _Tracked) -> None:
        """Open runs that started before ``newer``: interrupted (a RunEngine writes one run at a time)."""
        for tracked in list(self._runs.values()):
            if tracked is newer or tracked.complete or tracked.start_time >= newer.start_time:
                continue
            # What we know of it may be older than the news of ``newer``: ask again.
            for header in self.results(uid=tracked.uid):
                self._see(header)
            if tracked.complete:
                continue
            logger.warning(
                "Run %s has no stop document and run %s started after it: it was probably interrupted "
                "(a RunEngine writes one run at a time). It is no longer followed%s.",
                tracked.uid,
                newer.uid,
                "; its documents so far were delivered" if tracked.feed is not None else "",
            )
            self._forget(tracked.uid)

    def _window(self) -> float:
        return max(self._started_at, self._newest) - MARGIN

    def step(self) -> None:
        """One check: what the websocket updates named, and in full when due; feeds read."""
        now = time.monotonic()
        with self._wake:
            full = self._full or now >= self._next_full
            resync = self._resync or self.mode == "poll"
            check, dirty = self._check, self._dirty
            self._check, self._dirty, self._full, self._resync = set(), set(), False, False
        try:
            if full:
                self._next_full = now + self.interval
                found = {h.uid: h for h in self.results(since=self._window())}
                open_runs = [uid for uid, t in self._runs.items() if not t.complete and uid not in found]
                for uid in open_runs:  # open runs older than the window: looked up one by one
                    check.add(uid)
                for header in found.values():
                    self._see(header)
            for uid in check - self._ignored:
                for header in self.results(uid=uid):
                    self._see(header)
            self._read_feeds(full and resync, dirty)
        except Exception as err:
            if not (_tiled.is_transient(err) or isinstance(err, (ConnectionError, OSError))):
                raise
            with self._wake:
                self._check |= check
                self._dirty |= dirty
                self._full = self._resync = True
            self._next_full = now + self.interval
            if self._lost_since is None:
                self._lost_since = now
                logger.warning(
                    "Lost contact with the Tiled server while following runs (%r); trying again every %.1f s. "
                    "Nothing is lost: the runs are re-read when it answers.",
                    err,
                    self.interval,
                )
            return
        if self._lost_since is not None:
            logger.warning("The Tiled server answers again after %.1f s; following resumes.", now - self._lost_since)
            self._lost_since = None

    def _read_feeds(self, full: bool, dirty: set[str]) -> None:
        """Read the feeds that have something new (``full``: every feed), when reading is safe.

        With websockets, a feed is read when an update says its run changed; a timed full
        check finds new runs and stops (its search lists them), and re-reads every feed
        only after a subscription was started again or the server did not answer.

        Reading a table while TiledWriter appends to it can hang or crash a tiled 0.2.20
        server with DuckDB storage (measured; docs/live.md). So a run's tables are read
        only when the writer is quiet: with websockets, :data:`SETTLE` seconds after
        the last update of the run (an update comes just before each write), or at
        once when its stop is in (the writer has written every table then); when
        polling, where quiet cannot be told, only once the stop is in (the feeds are
        made with ``tables_before_stop=False``).
        """
        now = time.monotonic()
        for uid, tracked in list(self._runs.items()):
            feed = tracked.feed
            if feed is None:
                continue
            due = feed.recheck_at is not None and now >= feed.recheck_at
            with self._wake:
                changed = self._content.get(uid, float("-inf"))
            news = changed > self._read_at.get(uid, float("-inf"))
            if not (full or uid in dirty or due or news or self.mode == "poll"):
                continue
            if self.mode == "websocket" and not tracked.complete and now - changed < self.settle:
                continue  # the writer may be writing: wait() wakes when it has been quiet
            self._read_at[uid] = now
            try:
                documents = feed.read(now)
            except KeyError:  # not visible (yet, or any more) through this search
                continue
            if documents:
                self.on_documents(uid, documents)
            if feed.finished:
                tracked.complete = True
                self._forget(uid)

    def wait(self, until: float | None = None) -> None:
        """Sleep until something is to be checked, the next full check, or ``until`` (monotonic)."""
        deadlines = [self._next_full]
        deadlines += [t.feed.recheck_at for t in self._runs.values() if t.feed is not None and t.feed.recheck_at]
        with self._wake:
            deadlines += [
                changed + self.settle
                for uid, changed in self._content.items()
                if uid in self._runs and changed > self._read_at.get(uid, float("-inf"))
            ]
        if until is not None:
            deadlines.append(until)
        if self.mode == "poll":
            deadlines.append(time.monotonic() + self.interval)
        with self._wake:
            if self._check or self._dirty or self._full:
                return
            self._wake.wait(max(0.0, min(deadlines) - time.monotonic()))

    def interrupt(self) -> None:
        """Wake :meth:`wait` now (from another thread)."""
        with self._wake:
            self._wake.notify_all()
