"""The documents of one run while TiledWriter writes it, each delivered once.

A :class:`RunFeed` re-reads a run from the server when told to (a websocket
notification, a poll) and gives the documents that are new since its last delivery,
built by the same re-emission as ``h.documents()``
(:class:`~databroker_compat.documents.stream.StreamDocuments`, merged by time): the
rows of each stream's events table past those already delivered, the descriptors and
resources not yet delivered, the stop once it is in.

What reaches the server, and when, is the writer's choice: TiledWriter sends a
stream's events when its batch fills (``batch_size``, 10,000 by default) and the rest
at the stop; external (detector) frames likewise. So a run's events arrive in the
writer's batches. Two rules keep what a feed delivers equal to what ``documents()``
gives for the finished run:

- *settle*: new documents found before the stop are held until a second read, at
  least ``settle`` seconds later, finds nothing more (at most :data:`MAX_HOLD_READS`
  reads). At the stop the writer sends every stream's last batch in a few quick
  requests; holding lets them all arrive, so they are merged by time as
  ``documents()`` merges them, and the stop delivers everything at once.
- *frames first*: an event whose external frames the server does not hold yet is held
  until it does (or until the stop), so that its resource and datum come before it.
- *descriptors in place*: the descriptor of a stream that has no event yet is delivered
  at once only if no other stream began before it (the first stream's is); otherwise
  with its stream's first event, or at the stop, where ``documents()`` puts it.

Across streams, events delivered in an earlier batch come before those of a later one,
even where ``documents()`` would interleave them by time (a ``baseline`` event sent
only at the stop, say); within a stream the order is always that of ``documents()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ..documents import PAGE_SIZE, merge_streams, to_plain
from ..documents.stream import StreamDocuments
from ..layout import is_all, is_external
from ..run import Run

if TYPE_CHECKING:
    from tiled.client.container import Container

__all__ = ["MAX_HOLD_READS", "RunFeed", "deliver"]

logger = logging.getLogger(__name__)

#: The most reads new documents are held for while they keep changing (see the module notes).
MAX_HOLD_READS = 10


class RunFeed:
    """What is new in one run on the server, read on demand.

    Parameters
    ----------
    container : tiled.client.container.Container
        The runs the run is one of (``db.run_container``).
    uid : str
        The run's start uid.
    stream_names : collection of str, or ALL
        Only these streams' descriptors and events (start and stop always come).
    settle : float
        Seconds new documents are held for before a second read (see the module notes).
    tables_before_stop : bool
        Read the events tables before the stop is in. False: descriptors as they come,
        events at the stop (see :data:`databroker_compat.live.watch.Watcher` for why
        polling does so).

    Examples
    --------
    >>> feed = RunFeed(db.run_container, uid, stream_names=ALL, settle=0.3)   # doctest: +SKIP
    >>> [name for name, _ in feed.read(time.monotonic())]                     # doctest: +SKIP
    ['start', 'descriptor']
    """

    def __init__(
        self, container: Container, uid: str, *, stream_names: Any, settle: float, tables_before_stop: bool = True
    ) -> None:
        self.container = container
        self.tables_before_stop = tables_before_stop
        self.uid = uid
        self.settle = settle
        self._streams: Collection[str] | None = None if is_all(stream_names) else set(stream_names)
        self._rows: dict[str, int] = {}  # events table rows delivered, per stream
        self._sent: set[tuple[str, str]] = set()  # descriptors and resources delivered
        self.started = False
        #: True once the stop document has been delivered.
        self.finished = False
        self._held_since: float | None = None
        self._held_count = -1
        self._held_reads = 0
        #: When the next read is due while documents are held (``time.monotonic()``), else None.
        self.recheck_at: float | None = None

    def __repr__(self) -> str:
        return f"<RunFeed {self.uid[:8]} rows={self._rows} finished={self.finished}>"

    def _wanted(self, stream_name: str) -> bool:
        return self._streams is None or stream_name in self._streams

    @staticmethod
    def _frames_on_server(run: Run, stream_name: str) -> int | None:
        """Rows whose external frames the server holds (None: the stream has no external key)."""
        descriptor = run.first_descriptor(stream_name)
        if descriptor is None:
            return None
        keys = [k for k, spec in descriptor["data_keys"].items() if is_external(spec)]
        if not keys:
            return None
        nodes = run.array_nodes(stream_name)
        return min(nodes[k].shape[0] if k in nodes else 0 for k in keys)

    def _new(self, run: Run, complete: bool) -> tuple[list[tuple[str, dict]], dict[str, int]]:
        """(new documents, events per stream among them), nothing marked delivered yet."""
        streams = []
        items = run.streams()
        for name in run.stream_names:
            if not self._wanted(name) or name not in items:
                continue
            first = self._rows.get(name, 0)
            if complete:
                stop = None
            elif not self.tables_before_stop:
                stop = first  # nothing from the table, which is not read
            else:
                stop = self._frames_on_server(run, name)
            rows = (first, stop)
            streams.append(
                StreamDocuments(run, name, items[name], fields=None, fill=False, page_size=PAGE_SIZE, rows=rows)
            )
        stream_of = {d["uid"]: d["name"] for d in run.descriptors}
        found: list[tuple[str, dict]] = []
        events: dict[str, int] = {}
        seen: set[tuple[str, str]] = set()
        for name, doc in merge_streams(streams):
            if name in ("descriptor", "resource"):
                key = (name, doc["uid"])
                if key in self._sent or key in seen:
                    continue
                seen.add(key)
            elif name == "event":
                stream = stream_of[doc["descriptor"]]
                events[stream] = events.get(stream, 0) + 1
            found.append((name, doc))
        if complete:
            return found, events
        # A descriptor of a stream with no event yet waits for its first event (or the
        # stop) if another stream began before it: that stream's unsent batch may hold
        # events older than the descriptor, which documents() puts before it.
        began = {s.name: s.descriptors[0]["time"] for s in streams if s.descriptors}
        new = [
            (name, doc)
            for name, doc in found
            if not (
                name == "descriptor"
                and not events.get(doc["name"])
                and not self._rows.get(doc["name"])
                and any(t < doc["time"] for other, t in began.items() if other != doc["name"])
            )
        ]
        return new, events

    def _hold(self, now: float, count: int) -> bool:
        """Whether ``count`` new documents (before the stop) are held for another read."""
        if self.settle <= 0:
            return False
        if self._held_since is None:
            self._held_since, self._held_count, self._held_reads = now, count, 1
            self.recheck_at = now + self.settle
            return True
        self._held_reads += 1
        changed = count != self._held_count
        self._held_count = count
        if self._held_reads >= MAX_HOLD_READS:
            return False
        if changed or now - self._held_since < self.settle:
            self.recheck_at = now + self.settle
            return True
        return False

    def read(self, now: float) -> list[tuple[str, dict]]:
        """Re-read the run; the documents to deliver now, in order (plain dicts).

        The start comes on the first read; held documents (see the module notes) come
        on a later one, and ``recheck_at`` says when that read is due.
        """
        run = Run(self.container[self.uid])
        out: list[tuple[str, dict]] = []
        if not self.started:
            out.append(("start", to_plain(run.start)))
            self.started = True
        complete = bool(run.stop)
        new, events = self._new(run, complete)
        if new and not complete and self._hold(now, len(new)):
            return out
        self._held_since, self.recheck_at = None, None
        for name, doc in new:
            if name in ("descriptor", "resource"):
                self._sent.add((name, doc["uid"]))
        for stream, count in events.items():
            self._rows[stream] = self._rows.get(stream, 0) + count
        out.extend(new)
        if complete:
            out.append(("stop", to_plain(run.stop)))
            self.finished = True
        return out


def deliver(
    callback: Callable[[str, Any], Any], documents: list[tuple[str, dict]], hook: Callable[[str, dict], Any]
) -> int:
    """Call ``callback(name, hook(name, doc))`` for each document; the number delivered.

    An exception from the callback is logged with the document it refused and delivery
    goes on (one failing callback must not stop the follower).

    >>> deliver(lambda name, doc: None, [("start", {"uid": "u"})], lambda name, doc: doc)
    1
    """
    for name, doc in documents:
        try:
            callback(name, hook(name, doc))
        except Exception:
            logger.exception("The live callback %r raised on a %r document; delivery goes on.", callback, name)
    return len(documents)
