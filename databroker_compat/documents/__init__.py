"""Bluesky document streams rebuilt from what TiledWriter stores.

:func:`run_documents` gives the ``(name, doc)`` stream of one run in the order the
RunEngine emitted it: start, each descriptor before its first event, events
interleaved by time across streams, each resource and datum before the events that
reference them, stop last. Each stream's documents come from
:class:`~databroker_compat.documents.stream.StreamDocuments`; this module merges them,
packs pages and filters fields. See docs/compat.md for every field that cannot come
back exactly.
"""

from __future__ import annotations

import functools
import heapq
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..fields import FieldPatterns, check_fields_exist, header_values
from ..layout import datum_id_for, event_uid_for, is_all, is_external, resource_uid_for
from ..model import Document, descriptors_from_stream, to_plain
from ..run import Run
from .stream import StreamDocuments

__all__ = [
    "DROP",
    "PAGE_SIZE",
    "Document",
    "FieldFilter",
    "datum_id_for",
    "descriptors_from_stream",
    "event_uid_for",
    "is_external",
    "merge_streams",
    "resource_uid_for",
    "resolve_fields",
    "run_documents",
    "runs_documents",
    "to_plain",
]

logger = logging.getLogger(__name__)

#: Rows turned into documents at a time.
PAGE_SIZE = 1000


class _Drop:
    """Marks a document that a filter removed from the stream."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


#: Returned by a :class:`FieldFilter` method for a document it removes from the stream.
DROP = _Drop()


def _keyed_parts(doc: dict) -> tuple[str, ...]:
    """The parts of an event (or event page) keyed by data key."""
    return tuple(p for p in ("data", "timestamps", "filled") if p in doc)


def _descriptor_fields(
    patterns: FieldPatterns, descriptor: Mapping[str, Any], start: Mapping[str, Any], stop: Mapping[str, Any]
) -> tuple[set[str], dict[str, Any], dict[str, Any]]:
    """(data keys kept, added data, added timestamps) of one descriptor's events, as v1."""
    keys = set(patterns.select(descriptor["data_keys"], descriptor.get("object_keys")))
    data, timestamps = header_values(patterns, descriptor, start, stop, taken=keys)
    return keys, data, timestamps


@functools.lru_cache(maxsize=None)
def _field_filter_class() -> type:
    """``FieldFilter``, defined on first use: event_model (and numpy) load only then."""
    from event_model import DocumentRouter

    class FieldFilter(DocumentRouter):
        """Keep only the fields asked for in events, as databroker v1's ``fields=`` did.

        ``fields`` are v1's entries: data keys, device names or regular expressions
        (see :class:`~databroker_compat.fields.FieldPatterns`). Per descriptor, events
        keep the data keys selected and gain, as in v1, the configuration, start and
        stop values the entries name (``start`` and ``stop`` are the run's documents;
        see :func:`~databroker_compat.fields.header_values`). A descriptor with neither
        is dropped with its events; the others pass whole. An event left with no data
        is dropped, as in v1. A method returning :data:`DROP` removes the document.

        >>> from databroker_compat.documents import FieldFilter
        >>> f = FieldFilter({"det", "plan_name"}, start={"time": 1.0, "plan_name": "scan"})
        >>> f("descriptor", {"uid": "d", "data_keys": {"det": {}, "motor": {}}})[1]["uid"]
        'd'
        >>> f("event", {"descriptor": "d", "data": {"det": 1, "motor": 2},
        ...             "timestamps": {"det": 0, "motor": 0}, "filled": {}})[1]["data"]
        {'det': 1, 'plan_name': 'scan'}
        """

        def __init__(
            self, fields: Iterable[str], start: Mapping[str, Any] | None = None, stop: Mapping[str, Any] | None = None
        ) -> None:
            super().__init__()
            self.patterns = FieldPatterns([fields] if isinstance(fields, str) else fields)
            # Not ``self.start``/``self.stop``: those are the router's methods for the documents.
            self.run_start: Mapping[str, Any] = start or {}
            self.run_stop: Mapping[str, Any] = stop or {}
            self._kept: dict[str, tuple[set[str], dict[str, Any], dict[str, Any]]] = {}

        def descriptor(self, doc: Any) -> Any:
            keys, data, timestamps = _descriptor_fields(self.patterns, doc, self.run_start, self.run_stop)
            if not keys and not data:
                return DROP
            self._kept[doc["uid"]] = (keys, data, timestamps)
            return doc

        def _trim(self, doc: Any, rows: int | None) -> Any:
            kept = self._kept.get(doc["descriptor"])
            if kept is None:
                return DROP
            keys, extra_data, extra_stamps = kept
            trimmed = {part: {k: v for k, v in doc[part].items() if k in keys} for part in _keyed_parts(doc)}
            if extra_data:
                if rows is None:
                    trimmed["data"].update(extra_data)
                    trimmed["timestamps"].update(extra_stamps)
                else:
                    trimmed["data"].update((k, [v] * rows) for k, v in extra_data.items())
                    trimmed["timestamps"].update((k, [v] * rows) for k, v in extra_stamps.items())
            if not trimmed.get("data"):
                return DROP
            return {**doc, **trimmed}

        def event(self, doc: Any) -> Any:
            return self._trim(doc, None)

        def event_page(self, doc: Any) -> Any:
            return self._trim(doc, len(doc["seq_num"]))

    FieldFilter.__module__ = __name__
    return FieldFilter


def __getattr__(name: str) -> Any:
    if name == "FieldFilter":
        return _field_filter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def merge_streams(streams: Sequence[StreamDocuments]) -> Iterator[tuple[str, dict]]:
    """Documents of several streams interleaved by time (ties keep stream order).

    >>> list(merge_streams([]))
    []
    """

    def keyed(index: int, stream: StreamDocuments) -> Iterator[tuple[float, int, int, str, dict]]:
        for counter, (t, name, doc) in enumerate(stream.documents()):
            yield t, index, counter, name, doc

    for _t, _i, _c, name, doc in heapq.merge(*(keyed(i, s) for i, s in enumerate(streams))):
        yield name, doc


def _paged(documents: Iterable[tuple[str, Any]], page_size: int) -> Iterator[tuple[str, Any]]:
    """Pack runs of events of one descriptor into event pages, their datums into datum pages.

    Datums come just before the event that references them; a page's datum pages are
    emitted before its event page, so every datum still precedes its event.
    """
    from event_model import pack_datum_page, pack_event_page

    events: list[Any] = []
    page_datums: list[Any] = []  # datums of the events in ``events``
    pending: list[Any] = []  # datums of the next event

    def datum_pages(datums: list[Any]) -> Iterator[tuple[str, Any]]:
        by_resource: dict[str, list[Any]] = {}
        for datum in datums:
            by_resource.setdefault(datum["resource"], []).append(datum)
        for group in by_resource.values():
            yield "datum_page", pack_datum_page(*group)

    def flush_page() -> Iterator[tuple[str, Any]]:
        yield from datum_pages(page_datums)
        if events:
            yield "event_page", pack_event_page(*events)
        events.clear()
        page_datums.clear()

    for name, doc in documents:
        if name == "datum":
            pending.append(doc)
        elif name == "event":
            if events and (events[0]["descriptor"] != doc["descriptor"] or len(events) >= page_size):
                yield from flush_page()
            page_datums.extend(pending)
            pending.clear()
            events.append(doc)
        else:
            yield from flush_page()
            yield from datum_pages(pending)
            pending.clear()
            yield name, doc
    yield from flush_page()
    yield from datum_pages(pending)


def run_documents(
    run: Run,
    *,
    stream_name: Any = None,
    fields: Iterable[str] | None = None,
    fill: bool = False,
    event_pages: bool = False,
    page_size: int = PAGE_SIZE,
    prepare_hook: Callable[[str, dict], Any] | None = None,
) -> Iterator[tuple[str, Any]]:
    """The ``(name, doc)`` stream of one run, in the order the RunEngine emitted it.

    Parameters
    ----------
    run : Run
        The run (``header.run``).
    stream_name : str, optional
        Only this event stream; ``None`` (or ``ALL``) for every stream.
    fields : iterable of str, optional
        Only these fields in events, as v1's ``fields=``: data keys, device names or
        regular expressions select data keys, and entries naming configuration, start
        or stop values add them to every event (see :class:`FieldFilter`). Descriptors
        given neither are left out with their events.
    fill : bool
        Put external (detector) data in the events instead of datum ids.
    event_pages : bool
        Emit ``event_page`` and ``datum_page`` documents instead of single ones.
    page_size : int
        Rows turned into documents at a time (and the largest page).
    prepare_hook : callable, optional
        ``f(name, doc)`` applied to every document on its way out.

    Examples
    --------
    >>> for name, doc in run_documents(db[-1].run):   # doctest: +SKIP
    ...     print(name)
    start
    descriptor
    event
    stop
    """
    if page_size < 1:
        raise ValueError(f"page_size must be a positive number of rows, not {page_size!r}.")
    every = stream_name is None or is_all(stream_name)
    if not every and not isinstance(stream_name, str):
        raise TypeError(f"stream_name must be a stream name (str) or ALL, not {type(stream_name).__name__}.")
    hook = prepare_hook or (lambda name, doc: doc)
    patterns = None if fields is None else FieldPatterns([fields] if isinstance(fields, str) else fields)
    field_filter = None if patterns is None else _field_filter_class()(patterns.names, run.start, run.stop)
    items = run.streams()
    streams = []
    for name in run.stream_names:
        if not (every or name == stream_name) or name not in items:
            continue
        keys: set[str] | None = None
        if patterns is not None:
            chosen = [_descriptor_fields(patterns, d, run.start, run.stop) for d in run.descriptors_of(name)]
            if not any(k or data for k, data, _ in chosen):
                continue  # a stream holding none of the fields is left out without reading it
            keys = set().union(*(k for k, _, _ in chosen))
        streams.append(StreamDocuments(run, name, items[name], fields=keys, fill=fill, page_size=page_size))

    def generate() -> Iterator[tuple[str, dict]]:
        yield "start", to_plain(run.start)
        body = merge_streams(streams)
        yield from (_paged(body, page_size) if event_pages else body)
        if run.stop:
            yield "stop", to_plain(run.stop)
        else:
            message = (
                f"Run {run.uid} has no stop document: it is still running, or it was "
                "interrupted before the stop reached TiledWriter. The writer sends events to "
                "Tiled in batches and at the stop document, so events it had not sent are "
                "not on the server and the stream ends without a stop."
            )
            logger.warning("%s", message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    for name, doc in generate():
        if field_filter is not None:
            name, doc = field_filter(name, doc)
            if doc is DROP:
                continue
        yield name, hook(name, doc)


def runs_documents(
    runs: Sequence[Run],
    *,
    stream_name: Any = None,
    fields: Any = None,
    fill: bool = False,
    event_pages: bool = False,
    prepare_hook: Callable[[str, dict], Any] | None = None,
) -> Iterator[tuple[str, Any]]:
    """The document streams of several runs, one after the other (``fields`` as v1 read them).

    ``fields`` (data keys, device names or regular expressions) is checked now: a
    field no run holds raises ``UnknownField`` before any document is read. The other
    parameters are those of :func:`run_documents`.

    >>> [name for name, _ in runs_documents([h.run for h in db[-2:]])]   # doctest: +SKIP
    ['start', 'descriptor', 'event', 'stop', 'start', 'descriptor', 'event', 'stop']
    """
    names = None if fields is None else ([fields] if isinstance(fields, str) else list(fields))
    check_fields_exist(names, runs)

    def generate() -> Iterator[tuple[str, Any]]:
        for run in runs:
            yield from run_documents(
                run, stream_name=stream_name, fields=names, fill=fill, event_pages=event_pages, prepare_hook=prepare_hook
            )

    return generate()


def resolve_fields(runs: Sequence[Run], fields: Any) -> list[set[str] | None]:
    """Per run, the data keys ``fields`` selects (names or regular expressions, as v1).

    ``None`` (every field) for each run when ``fields`` is ``None``. A field that no
    run holds raises ``UnknownField``.

    Device names select the device's data keys (see :class:`~databroker_compat.fields.FieldPatterns`).

    >>> resolve_fields([h.run], ["det", "motor.*"])   # doctest: +SKIP
    [{'det', 'motor', 'motor_setpoint'}]
    """
    if fields is None:
        return [None] * len(runs)
    names = [fields] if isinstance(fields, str) else list(fields)
    check_fields_exist(names, runs)
    patterns = FieldPatterns(names)
    return [
        {key for d in run.descriptors for key in patterns.select(d["data_keys"], d.get("object_keys"))} for run in runs
    ]
