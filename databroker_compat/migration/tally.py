"""The source side of verification: what a run's documents say, collected as they stream past.

:class:`SourceTally` sees every document the writer gets (start, descriptors, resources,
datums, events or event pages, stop) and keeps, without holding frames:

- the start and stop documents and the descriptor uids of each stream;
- per stream, the event count and a checksum of the values and of the timestamps of
  every internal key (:class:`~.checksums.StreamChecksums`);
- per stream and array key (:class:`ArrayTally`, :class:`ArrayKey`): the events that carry
  a value and those that do not, and the frames to compare. By default
  (``verify_data="sample"``) those are, per resource, the first, the last and one chosen
  at random (for values inline in the events: per key); with ``"full"``, every frame.
  A datum-backed frame is kept as its resource and ``datum_kwargs`` (read from the files
  later, :func:`.frames.read_datum`); an inline one as its checksum.

Memory: one small record per datum until its event has passed (the writer holds the same),
three per resource, and with ``"full"`` one per event of each array key.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..exceptions import BadArgument
from .checksums import FrameFacts, StreamChecksums, frame_facts, is_absent
from .options import VERIFY_DATA_LEVELS

__all__ = ["ArrayKey", "ArrayTally", "DatumRef", "Pick", "SourceTally"]


@dataclass(frozen=True)
class DatumRef:
    """A frame in the files: the resource document and the datum's ``datum_kwargs``."""

    resource: dict | None
    datum_kwargs: dict


@dataclass
class Pick:
    """One event chosen for a check: its seq_num and its source frame (where to read it, or its facts)."""

    seq: int
    ref: DatumRef | FrameFacts | Any  # Any: a raw inline value, its facts taken when needed

    def resolved(self) -> Pick:
        """This pick with an inline value replaced by its :class:`FrameFacts`."""
        if isinstance(self.ref, (DatumRef, FrameFacts)):
            return self
        return Pick(self.seq, frame_facts(self.ref, has_dtype=hasattr(self.ref, "dtype")))


@dataclass
class _Group:
    """The frames of one resource (or of one inline key): first, last and one at random."""

    first: Pick | None = None
    last: Pick | None = None
    chosen: Pick | None = None
    seen: int = 0


@dataclass
class ArrayKey:
    """What the source says about one array key of one stream.

    Attributes
    ----------
    stream, key : str
    external : bool
        Its values are datums (frames in files); otherwise arrays inline in the events.
    declared_dtype : str
        The descriptor's ``dtype_numpy`` (``""`` if it declares none).
    full : bool
        Every frame is to be compared (``verify_data="full"``), not a sample.
    carried : int
        Events that carry a value of the key.
    last_seq : int
        The highest seq_num among them.
    without : list of int
        Seq_nums of the stream's events that carry no value of the key.
    streamed_rows : int
        Rows announced by stream_datum documents (such keys are only counted).
    unresolved : list of str
        Datum ids of events whose datum never went past.
    """

    stream: str
    key: str
    external: bool
    declared_dtype: str = ""
    full: bool = False
    rng: random.Random = field(default_factory=random.Random, repr=False)
    carried: int = 0
    last_seq: int = 0
    without: list[int] = field(default_factory=list)
    streamed_rows: int = 0
    unresolved: list[str] = field(default_factory=list)
    _groups: dict[str, _Group] = field(default_factory=dict, repr=False)
    _every: list[Pick] = field(default_factory=list, repr=False)

    def add(self, seq: int, group: str, ref: Any) -> None:
        """Record that event ``seq`` carries a value: a :class:`DatumRef` (of resource ``group``) or an inline value."""
        self.carried += 1
        self.last_seq = max(self.last_seq, seq)
        pick = Pick(seq, ref)
        if self.full:
            self._every.append(pick.resolved())
            return
        g = self._groups.setdefault(group, _Group())
        g.seen += 1
        if g.first is None:
            g.first = pick.resolved()
        elif self.rng.random() * g.seen < 1.0:  # a reservoir of one: every frame equally likely
            g.chosen = pick.resolved()
        g.last = pick  # an inline value's facts are taken only if it stays the last

    def picks(self) -> list[Pick]:
        """The events to compare, by seq_num, each once."""
        if self.full:
            chosen = self._every
        else:
            chosen = [p.resolved() for g in self._groups.values() for p in (g.first, g.chosen, g.last) if p is not None]
        unique = {p.seq: p for p in chosen}
        return [unique[s] for s in sorted(unique)]


class ArrayTally:
    """Feed it ``(name, doc)`` pairs (events through :meth:`event`); it keeps :class:`ArrayKey` facts.

    Parameters
    ----------
    verify_data : {"sample", "full"}
        Which frames to compare (see this module's notes).
    rng : random.Random, optional
        Where the random choice per resource comes from (a seeded one repeats it).

    >>> tally = ArrayTally()
    >>> tally("descriptor", {"uid": "d", "name": "primary", "data_keys": {
    ...     "img": {"dtype": "array", "shape": [2, 2], "source": "s", "external": "FILESTORE:"}}})
    >>> tally.keys[("primary", "img")].external
    True
    """

    def __init__(self, verify_data: str = "sample", rng: random.Random | None = None) -> None:
        if verify_data not in VERIFY_DATA_LEVELS:
            raise BadArgument(
                f"verify_data must be one of {', '.join(VERIFY_DATA_LEVELS)}, not {verify_data!r}.",
                option="verify_data",
                value=verify_data,
            )
        self.full = verify_data == "full"
        self.rng = rng if rng is not None else random.Random()
        self.keys: dict[tuple[str, str], ArrayKey] = {}
        self._of_descriptor: dict[str, list[ArrayKey]] = {}
        self._resources: dict[str, dict] = {}
        self._datums: dict[str, tuple[str, dict]] = {}
        self._stream_resources: dict[str, str] = {}  # stream_resource uid -> its data key

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "descriptor":
            self._descriptor(doc)
        elif name == "resource":
            self._resources[doc["uid"]] = copy.deepcopy(dict(doc))
        elif name == "datum":
            self._datums[doc["datum_id"]] = (doc["resource"], copy.deepcopy(dict(doc.get("datum_kwargs") or {})))
        elif name == "datum_page":
            from event_model import unpack_datum_page

            for datum in unpack_datum_page(cast(Any, doc)):
                self("datum", cast(Mapping[str, Any], datum))
        elif name == "stream_resource":
            self._stream_resources[doc["uid"]] = str(doc.get("data_key", ""))
        elif name == "stream_datum":
            data_key = self._stream_resources.get(doc.get("stream_resource", ""), "")
            for key in self._of_descriptor.get(doc.get("descriptor", ""), []):
                if key.key == data_key:
                    key.streamed_rows = max(key.streamed_rows, int(doc["indices"]["stop"]))

    def _descriptor(self, doc: Mapping[str, Any]) -> None:
        stream = doc.get("name", "primary")
        keys = []
        for key, spec in (doc.get("data_keys") or {}).items():
            external = bool(spec.get("external"))
            if not external and not (spec.get("shape") or []):
                continue  # a scalar: the table's checksums cover it
            if (stream, key) not in self.keys:
                self.keys[(stream, key)] = ArrayKey(
                    stream, key, external, str(spec.get("dtype_numpy") or ""), self.full, self.rng
                )
            keys.append(self.keys[(stream, key)])
        self._of_descriptor[doc["uid"]] = keys

    def event(self, doc: Mapping[str, Any]) -> None:
        """Take one event (event pages unpacked by the caller)."""
        data = doc.get("data") or {}
        seq = int(doc["seq_num"])
        for key in self._of_descriptor.get(doc["descriptor"], ()):
            value = data.get(key.key)
            if is_absent(value):
                key.without.append(seq)
            elif key.external and isinstance(value, str):
                datum = self._datums.pop(value, None)  # as in the writer, a datum serves one event
                if datum is None:
                    key.unresolved.append(value)
                    key.carried += 1
                    key.last_seq = max(key.last_seq, seq)
                    continue
                resource_uid, kwargs = datum
                key.add(seq, resource_uid, DatumRef(self._resources.get(resource_uid), kwargs))
            else:
                key.add(seq, "", value)

    def of_stream(self, stream: str) -> list[ArrayKey]:
        """The array keys of one stream."""
        return [k for (s, _), k in self.keys.items() if s == stream]


class SourceTally:
    """Feed it ``(name, doc)`` pairs; it keeps start, stop, descriptor uids, checksums and array facts.

    Parameters
    ----------
    verify_data : {"sample", "full"}
        Which frames of array data are compared (:class:`ArrayTally`).
    rng : random.Random, optional
        The source of the random frame chosen per resource (seed it to repeat a check).

    >>> tally = SourceTally()
    >>> tally("start", {"uid": "u", "time": 0.0})
    >>> tally.start["uid"]
    'u'
    """

    def __init__(self, *, verify_data: str = "sample", rng: random.Random | None = None) -> None:
        self.start: dict | None = None
        self.stop: dict | None = None
        self.descriptors: dict[str, list[str]] = {}
        self.streams: dict[str, StreamChecksums] = {}
        self.arrays = ArrayTally(verify_data, rng)
        self._stream_of: dict[str, str] = {}
        self._inline: dict[str, list[str]] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.start = doc
        elif name == "stop":
            self.stop = doc
        elif name == "descriptor":
            stream = doc.get("name", "primary")
            self.descriptors.setdefault(stream, []).append(doc["uid"])
            self.streams.setdefault(stream, StreamChecksums())
            self._stream_of[doc["uid"]] = stream
            self._inline[doc["uid"]] = [k for k, spec in doc.get("data_keys", {}).items() if not spec.get("external")]
            self.arrays(name, doc)
        elif name == "event":
            self._event(doc)
        elif name == "event_page":
            from event_model import unpack_event_page

            for event in unpack_event_page(cast(Any, doc)):
                self._event(cast(dict, event))
        else:
            self.arrays(name, doc)

    def _event(self, doc: dict) -> None:
        desc = doc["descriptor"]
        stream = self.streams[self._stream_of[desc]]
        stream.events += 1
        data, stamps = doc.get("data", {}), doc.get("timestamps") or {}
        for key in self._inline[desc]:
            if key in data:
                stream.add(key, doc["seq_num"], data[key])
                stream.add_stamp(key, doc["seq_num"], stamps.get(key))
        self.arrays.event(doc)

    def tee(self, documents: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        """Yield ``documents`` unchanged, tallying each on the way."""
        for name, doc in documents:
            self(name, doc)
            yield name, doc
