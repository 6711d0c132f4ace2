"""Bluesky documents rebuilt from what TiledWriter stores.

TiledWriter keeps the start and stop documents whole, each stream's first descriptor
(less ``name``, ``object_keys`` and ``run_start``) as the stream node's metadata, and
later descriptors of a stream only as ``{uid, time, configuration}`` entries in
``_config_updates``. This module turns those back into documents, deterministically.
See docs/compat.md for every field that cannot come back exactly.
"""

from __future__ import annotations

import bisect
import copy
import functools
import heapq
import logging
import posixpath
import re
import uuid as _uuid
import warnings
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote, urlparse

__all__ = [
    "DROP",
    "Document",
    "FieldFilter",
    "datum_id_for",
    "descriptors_from_stream",
    "event_uid_for",
    "resource_uid_for",
    "resolve_fields",
    "run_documents",
    "to_plain",
]

logger = logging.getLogger(__name__)

# dtype -> dtype_numpy as the writer's normaliser fills it in when a data key has none.
_DEFAULT_NUMPY_DTYPE = {
    "number": "<f8",
    "array": "<f8",
    "boolean": "|b1",
    "string": "<U0",
    "integer": "<i8",
}
# Keys the writer adds to the stream metadata that are not part of a descriptor.
_STREAM_ONLY_KEYS = {"_config_updates"}


class Document(dict):
    """A document: a ``dict`` whose keys can also be read as attributes.

    >>> d = Document({"plan_name": "scan", "sample": {"name": "Si"}})
    >>> d.plan_name, d.sample.name, d["plan_name"]
    ('scan', 'Si', 'scan')
    """

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(
                f"This document has no key {key!r}; its keys are {sorted(self)}."
            ) from None
        return Document(value) if type(value) is dict else value

    def __dir__(self):
        return [*super().__dir__(), *(k for k in self if isinstance(k, str) and k.isidentifier())]

    def __copy__(self):
        return Document(self)

    def __deepcopy__(self, memo):
        return Document(copy.deepcopy(dict(self), memo))

    def to_dict(self) -> dict:
        """A plain ``dict`` deep copy."""
        return to_plain(self)


def to_plain(obj: Any) -> Any:
    """Deep-copy mappings and sequences from Tiled's views into plain dicts and lists."""
    if isinstance(obj, dict) or hasattr(obj, "items") and hasattr(obj, "keys"):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _restore_data_keys(data_keys: dict) -> dict:
    """Undo what the writer's normaliser added to data keys where it can be told apart."""
    out = {}
    for key, spec in data_keys.items():
        spec = dict(spec)
        if spec.get("dtype_numpy") is not None and spec.get("dtype_numpy") == _DEFAULT_NUMPY_DTYPE.get(
            spec.get("dtype")
        ):
            # The normaliser derives exactly this value from ``dtype`` when the
            # original had none; the common case (ophyd) never sends one.
            del spec["dtype_numpy"]
        out[key] = spec
    return out


def _object_keys(data_keys: dict) -> dict:
    object_keys: dict[str, list[str]] = {}
    for key, spec in data_keys.items():
        name = spec.get("object_name")
        if name is not None:
            object_keys.setdefault(name, []).append(key)
    return object_keys


def descriptors_from_stream(run_uid: str, stream_name: str, metadata: dict) -> list[Document]:
    """The descriptor documents of one stream, first one first.

    ``metadata`` is the stream node's metadata. Later descriptors (configuration
    updates) carry the first descriptor's data keys, hints and object keys: the writer
    keeps only their ``uid``, ``time`` and ``configuration``.

    >>> md = {"uid": "d1", "time": 1.0, "data_keys": {"x": {"dtype": "number",
    ...       "shape": [], "source": "s", "object_name": "x", "dtype_numpy": "<f8"}},
    ...       "configuration": {}, "hints": {}}
    >>> [d["uid"] for d in descriptors_from_stream("r1", "primary", md)]
    ['d1']
    >>> descriptors_from_stream("r1", "primary", md)[0]["object_keys"]
    {'x': ['x']}
    """
    metadata = to_plain(metadata)
    first = {k: v for k, v in metadata.items() if k not in _STREAM_ONLY_KEYS}
    data_keys = _restore_data_keys(first.get("data_keys", {}))
    first["data_keys"] = data_keys
    if "configuration" in first:
        first["configuration"] = {
            obj: {**conf, "data_keys": _restore_data_keys(conf.get("data_keys", {}))}
            if "data_keys" in conf
            else conf
            for obj, conf in first["configuration"].items()
        }
    first["name"] = stream_name
    first["run_start"] = run_uid
    first["object_keys"] = _object_keys(data_keys)
    descriptors = [Document(first)]
    for update in metadata.get("_config_updates", []) or []:
        later = copy.deepcopy(first)
        later["uid"] = update["uid"]
        later["time"] = update["time"]
        if "configuration" in update:
            merged = copy.deepcopy(first.get("configuration", {}))
            for obj, conf in update["configuration"].items():
                merged.setdefault(obj, {}).update(conf)
                if "data_keys" in merged[obj]:
                    merged[obj]["data_keys"] = _restore_data_keys(merged[obj]["data_keys"])
            later["configuration"] = merged
        descriptors.append(Document(later))
    return descriptors


def sorted_by_time(descriptors: Iterable[dict]) -> list:
    """Descriptors in the order they were emitted (time, then uid)."""
    return sorted(descriptors, key=lambda d: (d.get("time", 0), d.get("uid", "")))


# -- identifiers Tiled does not keep, derived deterministically ------------------
_NAMESPACE = _uuid.UUID("5f0c2c8e-3c1a-4f7e-9a55-2b7d6a0c1e42")


def resource_uid_for(run_uid: str, stream_name: str, data_key: str) -> str:
    """The uid given to the resource of one external key of one stream.

    TiledWriter does not keep resource uids; this one is stable across calls and
    processes, so datum ids built on it stay consistent.

    >>> resource_uid_for("r", "primary", "img") == resource_uid_for("r", "primary", "img")
    True
    """
    return str(_uuid.uuid5(_NAMESPACE, f"resource/{run_uid}/{stream_name}/{data_key}"))


def datum_id_for(run_uid: str, stream_name: str, data_key: str, index: int) -> str:
    """The datum id of frame ``index`` (0-based) of one external key: ``<resource uid>/<index>``."""
    return f"{resource_uid_for(run_uid, stream_name, data_key)}/{index}"


def event_uid_for(descriptor_uid: str, seq_num: int) -> str:
    """A stable event uid, derived from the descriptor uid and ``seq_num``."""
    return str(_uuid.uuid5(_NAMESPACE, f"event/{descriptor_uid}/{seq_num}"))


# -- re-emission of a run's document stream ------------------------------------
#
# The stream is rebuilt per event stream from the stream node: its descriptors (from
# the metadata), its events (from the ``internal`` table, read once as Arrow and turned
# into documents one page at a time), resource and datum documents for its external
# keys (from the array nodes the writer registered), then the streams are merged by
# time. Tiled's table endpoints return a whole table or a whole partition (TiledWriter
# writes every row to partition 0); no endpoint gives a row range of a table, so per
# stream the columns the caller asked for are held in their compact Arrow form while
# the Python documents are built page by page.

#: Rows turned into documents at a time.
PAGE_SIZE = 1000
_INTERNAL_TABLE = "internal"
# Data keys the writer renames because they collide with its bookkeeping columns.
_RESERVED_COLUMNS = {"time": "time_", "seq_num": "seq_num_"}
# The frame number in the datum_kwargs of the usual specs (``index`` otherwise).
_POINT_NUMBER_SPECS = {"AD_HDF5", "AD_TIFF", "AD_CBF", "AD_SPE", "AD_EIGER", "AD_EIGER2", "TPX_HDF5"}
# Data-source parameters the writer's consolidators add; not part of resource_kwargs.
_CONSOLIDATOR_PARAMETERS = {"spec", "join_method", "chunk_shape", "template", "swmr", "locking"}


class _Drop:
    """Marks a document that a filter removed from the stream."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()


def is_external(spec: dict) -> bool:
    """Whether a data key's values live outside the events (in detector files).

    The writer's rule: a data key that has an ``external`` entry at all is external (its
    normaliser turns ``external: None`` into ``""`` and still routes the key to files).

    >>> is_external({"external": "FILESTORE:"}), is_external({"external": ""}), is_external({})
    (True, True, False)
    """
    return "external" in spec


def _column_of(key: str) -> str:
    return _RESERVED_COLUMNS.get(key, key)


@functools.lru_cache(maxsize=None)
def _field_filter_class():
    """``FieldFilter``, defined on first use: event_model (and numpy) load only then."""
    from event_model import DocumentRouter

    class FieldFilter(DocumentRouter):
        """Keep only the named data keys in events, as databroker v1's ``fields=`` did.

        Descriptors that hold none of the fields are dropped with their events; the
        other descriptors pass whole, their events (and event pages) trimmed to the
        fields. A method returning :data:`DROP` removes the document from the stream.

        >>> from databroker_compat.documents import FieldFilter
        >>> f = FieldFilter({"det"})
        >>> f("descriptor", {"uid": "d", "data_keys": {"det": {}, "motor": {}}})[1]["uid"]
        'd'
        >>> f("event", {"descriptor": "d", "data": {"det": 1, "motor": 2},
        ...             "timestamps": {"det": 0, "motor": 0}, "filled": {}})[1]["data"]
        {'det': 1}
        """

        def __init__(self, fields: set[str]):
            super().__init__()
            self.fields = set(fields)
            self._kept: set[str] = set()

        def descriptor(self, doc):
            if self.fields.isdisjoint(doc["data_keys"]):
                return DROP
            self._kept.add(doc["uid"])
            return doc

        def _trim(self, doc):
            if doc["descriptor"] not in self._kept:
                return DROP
            trimmed = {
                part: {k: v for k, v in doc[part].items() if k in self.fields} for part in _keyed_parts(doc)
            }
            return {**doc, **trimmed}

        def event(self, doc):
            return self._trim(doc)

        def event_page(self, doc):
            return self._trim(doc)

    FieldFilter.__module__ = __name__
    return FieldFilter


def __getattr__(name: str):
    if name == "FieldFilter":
        return _field_filter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _keyed_parts(doc: dict) -> tuple[str, ...]:
    """The parts of an event (or event page) keyed by data key."""
    return tuple(p for p in ("data", "timestamps", "filled") if p in doc)


def _frame_index(seq_num: int) -> int:
    return int(seq_num) - 1


class _ExternalKey:
    """One external key of one stream: its resource document and datum ids."""

    def __init__(self, header, stream_name: str, key: str, item: dict):
        self.key = key
        self.item = item
        self.uid = resource_uid_for(header.uid, stream_name, key)
        self.run_uid = header.uid
        self.stream_name = stream_name
        self._header = header
        self._resource: dict | None = None

    @property
    def spec(self) -> str:
        return str((self.item["attributes"].get("metadata") or {}).get("spec", ""))

    def resource(self) -> dict:
        """The resource document, rebuilt from the array node's data source."""
        if self._resource is None:
            from . import _tiled

            source = _tiled.data_source(self._header.v2.context, _tiled.node_path(self.item))
            path, kwargs = _resource_location(source)
            self._resource = {
                "spec": self.spec or "UNKNOWN",
                "root": posixpath.dirname(path),
                "resource_path": posixpath.basename(path),
                "resource_kwargs": kwargs,
                "path_semantics": "posix",
                "uid": self.uid,
                "run_start": self.run_uid,
            }
        return self._resource

    def datum(self, seq_num: int) -> dict:
        index = _frame_index(seq_num)
        name = "point_number" if self.spec.upper() in _POINT_NUMBER_SPECS else "index"
        return {
            "resource": self.uid,
            "datum_kwargs": {name: index},
            "datum_id": datum_id_for(self.run_uid, self.stream_name, self.key, index),
        }

    def datum_id(self, seq_num: int) -> str:
        return datum_id_for(self.run_uid, self.stream_name, self.key, _frame_index(seq_num))


def _resource_location(source: dict | None) -> tuple[str, dict]:
    """(file path, resource_kwargs) of an array node's data source."""
    if not source:
        return "", {}
    assets = sorted(source.get("assets") or [], key=lambda a: a.get("num") or 0)
    paths = [unquote(urlparse(a["data_uri"]).path) for a in assets]
    if len(paths) > 1:
        # One file per frame (NPY_SEQ and the like): the common stem, without the counter.
        path = posixpath.commonprefix(paths).rstrip("0123456789").rstrip("_-.")
    elif paths and str(source.get("mimetype", "")).startswith("multipart/"):
        path = re.sub(r"[_\-.]?\d+(\.[A-Za-z0-9]+)?$", "", paths[0])
    else:
        path = paths[0] if paths else ""
    kwargs = {k: v for k, v in (source.get("parameters") or {}).items() if k not in _CONSOLIDATOR_PARAMETERS}
    return path, kwargs


_ARRAY_PAGE_BYTES = 64 * 1024 * 1024


class _Stream:
    """The documents of one event stream, in the order they were emitted."""

    def __init__(self, header, stream_name: str, item: dict, *, fields, fill: bool, page_size: int):
        self.header = header
        self.name = stream_name
        self.item = item
        self.fill = fill
        self.page_size = page_size
        self.descriptors = [d for d in header.descriptors if d["name"] == stream_name]
        self.data_keys = self.descriptors[0]["data_keys"] if self.descriptors else {}
        self.keys = [k for k in self.data_keys if fields is None or k in fields]

    # -- reading --------------------------------------------------------------
    def _parts(self) -> dict[str, dict]:
        from . import _tiled

        return {
            child["id"]: child
            for child in _tiled.iter_children(self.header.v2.context, self.item, metadata=True)
        }

    def _read_table(self, parts: dict[str, dict]):
        from . import _tiled

        table_item = parts.get(_INTERNAL_TABLE)
        if table_item is None:
            return None
        available = set(table_item["attributes"]["structure"].get("columns") or [])
        wanted = ["seq_num", "time"]
        for key in self.keys:
            column = _column_of(key)
            for name in (column, f"ts_{column}"):
                if name in available:
                    wanted.append(name)
        table = _tiled.read_table(self.header.v2.context, _tiled.node_path(table_item), columns=wanted)
        if table is None:
            return None
        seq = table.column("seq_num")
        if len(seq) > 1:
            import pyarrow.compute as pc

            if not pc.all(pc.greater(seq.slice(1), seq.slice(0, len(seq) - 1))).as_py():
                table = table.sort_by("seq_num")
        return table

    def _read_rows(self, item: dict, start: int, stop: int):
        """Rows ``start:stop`` of an array node (the first axis is the event axis).

        Read through the images module's chunk-aligned reader: requests stay small
        (a server refuses answers over its size limit) and a file the server cannot
        read is named in the error.
        """
        from .images import _read_rows, array_nodes

        node = array_nodes(self.header, self.name)[item["id"]]
        stop = min(stop, node.shape[0])
        return _read_rows(node, range(start, max(start, stop)))

    def _rows_per_page(self, items) -> int:
        """The page size, lowered so that one page of array data stays near 64 MiB."""
        import numpy

        from .images import array_nodes

        nodes = array_nodes(self.header, self.name)
        row_bytes = sum(
            int(numpy.prod(nodes[item["id"]].frame_shape)) * nodes[item["id"]].dtype.itemsize
            for item in items
            if item["id"] in nodes
        )
        if not row_bytes:
            return self.page_size
        return max(1, min(self.page_size, _ARRAY_PAGE_BYTES // row_bytes))

    # -- documents --------------------------------------------------------------
    def documents(self) -> Iterator[tuple[float, str, dict]]:
        """Yield ``(sort time, name, doc)``; the sort time never decreases."""
        descriptors = [copy.deepcopy(dict(d)) for d in self.descriptors]
        if not descriptors:
            return
        times = [d["time"] for d in descriptors]
        parts = self._parts()
        table = self._read_table(parts)
        externals: dict[str, _ExternalKey] = {}
        arrays: dict[str, dict] = {}
        missing = []
        for key in self.keys:
            column = _column_of(key)
            if is_external(self.data_keys[key]):
                if key in parts:
                    externals[key] = _ExternalKey(self.header, self.name, key, parts[key])
                else:
                    missing.append(key)
            elif table is not None and column in table.column_names:
                continue
            elif column in parts:
                arrays[key] = parts[column]
            else:
                missing.append(key)
        n_rows = 0 if table is None else table.num_rows
        if missing and n_rows:
            logger.warning(
                "Stream %r of run %s holds no data for %s; its events come without them.",
                self.name, self.header.uid, missing,
            )

        clock = float("-inf")
        emitted = 0  # descriptors emitted so far

        def emit_descriptors(until: float):
            nonlocal emitted, clock
            while emitted < len(descriptors) and (emitted == 0 or descriptors[emitted]["time"] <= until):
                clock = max(clock, descriptors[emitted]["time"])
                yield clock, "descriptor", descriptors[emitted]
                emitted += 1

        table_keys = [k for k in self.keys if table is not None and _column_of(k) in table.column_names]
        resources_sent: set[str] = set()
        array_items = [*arrays.values(), *(ext.item for ext in externals.values())] if self.fill else list(arrays.values())
        page_size = self._rows_per_page(array_items) if array_items else self.page_size
        for start in range(0, n_rows, page_size):
            page = table.slice(start, page_size)
            rows = page.num_rows
            seq_nums = page.column("seq_num").to_pylist()
            row_times = page.column("time").to_pylist()
            values = {k: page.column(_column_of(k)).to_pylist() for k in table_keys}
            stamps = {
                k: page.column(f"ts_{_column_of(k)}").to_pylist()
                for k in self.keys
                if f"ts_{_column_of(k)}" in page.column_names
            }
            for key, item in arrays.items():
                values[key] = self._read_rows(item, start, start + rows).tolist()
            filled_values = {}
            if self.fill:
                for key, ext in externals.items():
                    filled_values[key] = self._read_rows(ext.item, start, start + rows)
            for i in range(rows):
                seq_num, t = seq_nums[i], row_times[i]
                yield from emit_descriptors(t)
                clock = max(clock, t)
                descriptor_uid = descriptors[max(bisect.bisect_right(times, t) - 1, 0)]["uid"]
                data = {}
                timestamps = {}
                for key in self.keys:
                    if key in values:
                        data[key] = values[key][i]
                    elif key in filled_values:
                        rows_of_key = filled_values[key]
                        data[key] = rows_of_key[i] if i < len(rows_of_key) else None
                    elif key in externals:
                        data[key] = externals[key].datum_id(seq_num)
                    else:
                        continue
                    stamp = stamps.get(key)
                    timestamps[key] = stamp[i] if stamp is not None else t
                filled = {}
                for key, ext in externals.items():
                    if ext.uid not in resources_sent:
                        resources_sent.add(ext.uid)
                        yield clock, "resource", dict(ext.resource())
                    datum = ext.datum(seq_num)
                    yield clock, "datum", datum
                    filled[key] = datum["datum_id"] if self.fill else False
                yield clock, "event", {
                    "uid": event_uid_for(descriptor_uid, seq_num),
                    "time": t,
                    "data": data,
                    "timestamps": timestamps,
                    "seq_num": seq_num,
                    "filled": filled,
                    "descriptor": descriptor_uid,
                }
        yield from emit_descriptors(float("inf"))


def _merged(streams: list[_Stream]) -> Iterator[tuple[str, dict]]:
    """Documents of several streams interleaved by time (ties keep stream order)."""

    def keyed(index: int, stream: _Stream):
        for counter, (t, name, doc) in enumerate(stream.documents()):
            yield t, index, counter, name, doc

    for _t, _i, _c, name, doc in heapq.merge(*(keyed(i, s) for i, s in enumerate(streams))):
        yield name, doc


def _paged(documents: Iterable[tuple[str, dict]], page_size: int) -> Iterator[tuple[str, dict]]:
    """Pack runs of events of one descriptor into event pages, their datums into datum pages.

    Datums come just before the event that references them; a page's datum pages are
    emitted before its event page, so every datum still precedes its event.
    """
    from event_model import pack_datum_page, pack_event_page

    events: list[dict] = []
    page_datums: list[dict] = []  # datums of the events in ``events``
    pending: list[dict] = []  # datums of the next event

    def datum_pages(datums):
        by_resource: dict[str, list[dict]] = {}
        for datum in datums:
            by_resource.setdefault(datum["resource"], []).append(datum)
        for group in by_resource.values():
            yield "datum_page", pack_datum_page(*group)

    def flush_page():
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
    header,
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
    header : Header
        The run.
    stream_name : str, optional
        Only this event stream; ``None`` (or ``ALL``) for every stream.
    fields : iterable of str, optional
        Only these data keys in events; descriptors holding none of them are left out
        with their events.
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
    >>> for name, doc in run_documents(db[-1]):   # doctest: +SKIP
    ...     print(name)
    start
    descriptor
    event
    stop
    """
    from .header import ALL

    if page_size < 1:
        raise ValueError(f"page_size must be a positive number of rows, not {page_size!r}.")
    field_set = None if fields is None else set([fields] if isinstance(fields, str) else fields)
    wanted = None if stream_name is None or stream_name is ALL else stream_name
    if wanted is not None and not isinstance(wanted, str):
        raise TypeError(f"stream_name must be a stream name (str) or ALL, not {type(wanted).__name__}.")
    hook = prepare_hook or (lambda name, doc: doc)
    field_filter = _field_filter_class()(field_set) if field_set is not None else None
    items = header._streams()
    streams = [
        _Stream(header, name, items[name], fields=field_set, fill=fill, page_size=page_size)
        for name in header.stream_names
        if (wanted is None or name == wanted) and name in items
    ]
    if field_set is not None:
        # Streams holding none of the fields are left out without reading them.
        streams = [s for s in streams if s.keys]

    def generate():
        yield "start", copy.deepcopy(dict(header.start))
        body = _merged(streams)
        yield from (_paged(body, page_size) if event_pages else body)
        if header.stop:
            yield "stop", copy.deepcopy(dict(header.stop))
        else:
            message = (
                f"Run {header.uid} has no stop document: it is still running, or it was "
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


def resolve_fields(headers: list, fields) -> list[set[str] | None]:
    """Per run, the data keys ``fields`` selects (names or regular expressions, as v1).

    ``None`` (every field) for each run when ``fields`` is ``None``. A field that no
    run holds raises ``UnknownField``.
    """
    if fields is None:
        return [None] * len(headers)
    from .tables import _compile, _matches, check_fields_exist

    fields = [fields] if isinstance(fields, str) else list(fields)
    check_fields_exist(fields, headers)
    patterns = _compile(fields)
    return [{key for key in h.fields() if _matches(key, fields, patterns)} for h in headers]
