"""The v0 API v1 still carried, which beamline code still calls: filling events, resource uids.

PyXRF fills events itself (``db.fill_event(ev)``, ``db.fill_events(events, descriptors)``)
and CHX and FXI code asks for the resource uids of a run (``db.get_resource_uids(h)``).
TiledWriter keeps no datum ids: the ids this package hands out are derived from the run,
stream and data key (:func:`~databroker_compat.layout.datum_id_for`), so a datum id leads
back to its frame once its run and stream are known — from the descriptors given, or, for
an event alone, from its descriptor uid (a deep search of the catalog's streams) or the runs
this broker handed out recently (:class:`RecentRuns`). The frames are read as
``get_events(fill=True)`` reads them: chunk-aligned row reads of the stream's array nodes.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiled.queries import Key

from .arrays import ArrayNode, read_rows
from .exceptions import UnknownDatum
from .handlers import warn_handlers_unused
from .layout import datum_id_for, frame_index, is_external, resource_uid_for
from .lookup import runs_for_key
from .queries import STREAM_DEPTH, stream_path
from .run import HasRun, Run, as_run

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["FILL_BATCH_BYTES", "FILL_BATCH_EVENTS", "RECENT_RUNS", "RecentRuns", "V0Methods"]

#: How many runs a broker remembers having handed out (to trace lone events back).
RECENT_RUNS = 32
#: Frames read at once by ``fill_events``: at most this many bytes, or this many events.
FILL_BATCH_BYTES = 64 * 2**20
FILL_BATCH_EVENTS = 1000


class RecentRuns:
    """The runs a broker handed out most recently (at most ``limit``), newest last.

    >>> recent = RecentRuns(limit=2)
    >>> recent.get("unknown") is None
    True
    """

    def __init__(self, limit: int = RECENT_RUNS) -> None:
        self.limit = limit
        self._runs: OrderedDict[str, Run] = OrderedDict()
        #: Descriptor uid -> (run uid, stream name), for descriptors already traced.
        self.streams: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def note_stream(self, descriptor_uid: str, run_uid: str, stream_name: str) -> None:
        """Remember where a descriptor belongs (the oldest of ``32 * limit`` are forgotten)."""
        self.streams[descriptor_uid] = (run_uid, stream_name)
        while len(self.streams) > 32 * self.limit:
            self.streams.popitem(last=False)

    def add(self, run: Run) -> None:
        """Remember ``run`` (the oldest one is forgotten past ``limit``)."""
        self._runs[run.uid] = run
        self._runs.move_to_end(run.uid)
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)

    def get(self, uid: str) -> Run | None:
        """The run of this uid, if it was handed out recently."""
        return self._runs.get(uid)

    def newest_first(self) -> list[Run]:
        """The runs remembered, the most recently handed out first."""
        return list(reversed(self._runs.values()))


@dataclass(frozen=True)
class _Stream:
    """Where an event's datum ids lead: a run, one of its streams, the stream's data keys."""

    run: Run
    name: str
    data_keys: Mapping[str, Any]


@dataclass(frozen=True)
class _Slot:
    """One value of one event to fill: a row of an array node."""

    event: dict
    key: str
    node: ArrayNode
    row: int
    datum_id: str


def _row_of(stream: _Stream, key: str, datum_id: str, seq_num: Any) -> int | None:
    """The frame a datum id of ``stream``'s ``key`` names (``None``: not one of its ids).

    The id is checked against the layout's own rule (``datum_id_for``), never parsed by
    a copy of it: the event's ``seq_num`` gives the usual frame, the id's last part others.
    """
    candidates = [frame_index(seq_num)] if isinstance(seq_num, int) else []
    tail = datum_id.rsplit("/", 1)[-1]
    if tail.isdigit():
        candidates.append(int(tail))
    for row in candidates:
        if datum_id_for(stream.run.uid, stream.name, key, row) == datum_id:
            return row
    return None


class V0Methods:
    """``fill_event``, ``fill_events`` and ``get_resource_uids`` of a :class:`~databroker_compat.Broker`.

    A base class of ``Broker``; it reads the broker's runs (``run_container``, the node
    itself as ``_children``), the runs it handed out (``_recent``) and its ``prepare_hook``.
    """

    _recent: RecentRuns
    _children: Container

    if TYPE_CHECKING:

        @property
        def run_container(self) -> Container: ...

        def prepare_hook(self, name: str, doc: dict) -> Any: ...

    def fill_event(self, event: dict, inplace: bool = True, handler_registry: Any = None) -> Any:
        """Replace the datum ids in one event's ``data`` by the frames they name (v0's ``fill_event``).

        The event's run and stream are found from its descriptor uid (on the server, or
        among the runs this broker handed out). ``filled[key]`` becomes the datum id.
        ``inplace=True`` (the default, as v0) changes and returns ``event``; otherwise a
        copy is filled and returned, through :attr:`prepare_hook`. ``handler_registry``
        is accepted and not used: the server reads the files.

        Raises
        ------
        UnknownDatum
            The event cannot be traced to a run of this catalog (a ``KeyError``): pass its
            descriptors, ``db.fill_events([event], h.descriptors)``.

        >>> ev = next(db.get_events(h, fill=False))           # doctest: +SKIP
        >>> db.fill_event(ev)["data"]["img"].shape             # doctest: +SKIP
        (10, 10)
        """
        warn_handlers_unused(handler_registry, "fill_event(handler_registry=...)")
        (filled,) = self.fill_events([event], (), inplace=inplace)
        return filled

    def fill_events(
        self, events: Iterable[dict], descriptors: Iterable[Mapping], fields: Any = True, inplace: bool = False
    ) -> Iterator[Any]:
        """Yield the events with their datum ids replaced by the frames they name (v0's ``fill_events``).

        Parameters
        ----------
        events : iterable of dict
            Event documents (``data``, ``filled``, ``descriptor``, ``seq_num``).
        descriptors : iterable of dict
            Their descriptors (``h.descriptors``): each gives its events' run
            (``run_start``) and stream (``name``). An event whose descriptor is not among
            them is traced as :meth:`fill_event` traces it.
        fields : True, False or iterable of str
            The data keys to fill: all external ones (``True``, the default), none
            (``False``: the events pass unchanged), or these.
        inplace : bool
            Fill the events given (``True``), or copies of them, passed through
            :attr:`prepare_hook` (``False``, the default, as v0).

        A key is filled when ``filled[key]`` is false (an event without ``filled`` gets
        every datum id filled); ``filled[key]`` then holds the datum id. Frames are read
        a batch of events at a time, in chunk-aligned requests.

        >>> events = db.get_events(h, fill=False)                        # doctest: +SKIP
        >>> [ev["data"]["img"].shape for ev in db.fill_events(events, h.descriptors)]   # doctest: +SKIP
        [(10, 10), (10, 10), (10, 10)]
        """
        if fields is False:
            yield from events
            return
        wanted = None if fields is True else {fields} if isinstance(fields, str) else set(fields)
        given = {d["uid"]: d for d in descriptors}
        batch: list[tuple[dict, list[_Slot]]] = []
        size = 0
        for event in events:
            if not inplace:
                event = copy.deepcopy(dict(event))
            slots = self._slots(event, given, wanted)
            batch.append((event, slots))
            size += sum(slot.node.frame_bytes for slot in slots)
            if size >= FILL_BATCH_BYTES or len(batch) >= FILL_BATCH_EVENTS:
                yield from self._filled(batch, inplace)
                batch, size = [], 0
        yield from self._filled(batch, inplace)

    def get_resource_uids(self, header: HasRun) -> set[str]:
        """The uids of the resources of a run's external data (v0's ``get_resource_uids``).

        The same uids ``h.documents()`` gives its resource documents: one per external
        data key of each stream that holds frames.

        >>> db.get_resource_uids(db[-1])     # doctest: +SKIP
        {'6f1c...'}
        """
        run = as_run(header)
        uids = set()
        for stream in run.stream_names:
            descriptor = run.first_descriptor(stream)
            nodes = run.array_nodes(stream)
            data_keys: Mapping[str, Any] = descriptor["data_keys"] if descriptor is not None else {}
            for key, spec in data_keys.items():
                node = nodes.get(key)
                if is_external(spec) and node is not None and node.shape and node.shape[0] > 0:
                    uids.add(resource_uid_for(run.uid, stream, key))
        return uids

    # -- tracing events to their runs ---------------------------------------------------
    def _slots(self, event: dict, given: Mapping[str, Mapping], fields: set[str] | None) -> list[_Slot]:
        data = event.get("data") or {}
        filled = event.get("filled")
        todo = []
        for key, value in data.items():
            if fields is not None and key not in fields:
                continue
            if filled is not None and filled.get(key, True):
                continue  # v0's rule: only keys marked unfilled
            if filled is None and not isinstance(value, str):
                continue
            todo.append(key)
        if not todo:
            return []
        stream = self._stream_of(event, given, [data[k] for k in todo])
        slots = []
        for key in todo:
            if not is_external(stream.data_keys.get(key, {})):
                continue
            slots.append(self._slot(event, stream, key, data[key]))
        return slots

    def _slot(self, event: dict, stream: _Stream, key: str, datum_id: Any) -> _Slot:
        row = _row_of(stream, key, datum_id, event.get("seq_num")) if isinstance(datum_id, str) else None
        node = stream.run.array_nodes(stream.name).get(key)
        if row is None or node is None or not 0 <= row < node.shape[0]:
            raise UnknownDatum(
                f"{datum_id!r} (data key {key!r}) is not a datum id of stream {stream.name!r} of run "
                f"{stream.run.uid}: fill events with the descriptors of their own run, "
                "db.fill_events(events, h.descriptors).",
                datum_id=datum_id,
                key=key,
            )
        return _Slot(event, key, node, row, datum_id)

    def _stream_of(self, event: dict, given: Mapping[str, Mapping], datum_ids: list[Any]) -> _Stream:
        descriptor_uid = event.get("descriptor")
        descriptor = given.get(descriptor_uid) if isinstance(descriptor_uid, str) else None
        if descriptor is not None:
            return _Stream(self._run_of(descriptor["run_start"]), descriptor["name"], descriptor["data_keys"])
        found = self._stream_noted(descriptor_uid) or self._stream_on_server(descriptor_uid)
        found = found or self._stream_handed_out(descriptor_uid, datum_ids)
        if found is None:
            raise UnknownDatum(
                f"Cannot tell which run the event of descriptor {descriptor_uid!r} belongs to (its "
                f"datum ids: {datum_ids[:3]}); pass its run's descriptors: "
                "db.fill_events(events, h.descriptors).",
                datum_id=datum_ids[0] if datum_ids else None,
                descriptor=descriptor_uid,
            )
        if isinstance(descriptor_uid, str):
            self._recent.note_stream(descriptor_uid, found.run.uid, found.name)
        return found

    def _run_of(self, uid: str) -> Run:
        run = self._recent.get(uid)
        if run is None:
            run = Run(runs_for_key(self.run_container, uid, children=self._children))
            self._recent.add(run)
        return run

    def _stream_noted(self, descriptor_uid: Any) -> _Stream | None:
        noted = self._recent.streams.get(descriptor_uid) if isinstance(descriptor_uid, str) else None
        if noted is None:
            return None
        run = self._run_of(noted[0])
        for descriptor in run.descriptors_of(noted[1]):
            if descriptor["uid"] == descriptor_uid:
                return _Stream(run, noted[1], descriptor["data_keys"])
        return None

    def _stream_on_server(self, descriptor_uid: Any) -> _Stream | None:
        """The stream whose (first) descriptor has this uid, by one deep search of the streams."""
        if not isinstance(descriptor_uid, str) or "search_deep" not in self._children.item["links"]:
            return None
        found = self._children.search_deep(Key("uid") == descriptor_uid, max_depth=STREAM_DEPTH)
        for path in found.keys():
            located = stream_path(path)
            if located is None:
                continue
            run = self._run_of(located[0])
            descriptor = run.first_descriptor(located[1])
            if descriptor is not None and descriptor["uid"] == descriptor_uid:
                return _Stream(run, located[1], descriptor["data_keys"])
        return None

    def _stream_handed_out(self, descriptor_uid: Any, datum_ids: list[Any]) -> _Stream | None:
        """The stream, among the runs handed out recently, with this descriptor or these datum ids."""
        ids = [d for d in datum_ids if isinstance(d, str)]
        for run in self._recent.newest_first():
            for descriptor in run.descriptors:
                stream = _Stream(run, descriptor["name"], descriptor["data_keys"])
                if descriptor["uid"] == descriptor_uid or any(
                    _row_of(stream, key, datum_id, None) is not None for key in stream.data_keys for datum_id in ids
                ):
                    return stream
        return None

    # -- reading ----------------------------------------------------------------------
    def _filled(self, batch: list[tuple[dict, list[_Slot]]], inplace: bool) -> Iterator[Any]:
        """The events of a batch, filled: each array node's rows read in one pass."""
        by_node: dict[tuple[str, ...], list[_Slot]] = {}
        for _event, slots in batch:
            for slot in slots:
                by_node.setdefault(slot.node.path, []).append(slot)
        for slots in by_node.values():
            values = read_rows(slots[0].node, [slot.row for slot in slots])
            for slot, value in zip(slots, values, strict=True):
                slot.event["data"][slot.key] = value
                slot.event.setdefault("filled", {})[slot.key] = slot.datum_id
        for event, _slots in batch:
            yield event if inplace else self.prepare_hook("event", event)
