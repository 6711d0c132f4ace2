"""``Header``: one run, as databroker v1 presented it."""

from __future__ import annotations

import html
import logging
from datetime import datetime
from typing import Any, Iterator

from . import _tiled
from .documents import Document, descriptors_from_stream, sorted_by_time, to_plain

logger = logging.getLogger(__name__)

__all__ = ["ALL", "Header"]


class _AllStreams:
    """Sentinel meaning "every stream" (``stream_name=ALL``), as in databroker v1."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL"

    def __reduce__(self):
        return (_AllStreams, ())


ALL = _AllStreams()


class Header:
    """One Bluesky run: its documents, its streams and its data.

    Headers come from a :class:`~databroker_compat.Broker` (``db[-1]``, ``db[uid]``,
    ``db(...)``). The start and stop documents come with the lookup; descriptors are
    fetched once, on first use, with one request for all streams.

    >>> h = db[-1]                                  # doctest: +SKIP
    >>> h.start.plan_name, h.stop["exit_status"]    # doctest: +SKIP
    ('scan', 'success')
    """

    _KEYS = ("start", "descriptors", "stop")

    def __init__(self, db, run_client):
        self.db = db
        self._run = run_client
        metadata = run_client.metadata
        self.start = Document(to_plain(metadata["start"]))
        self.stop = Document(to_plain(metadata.get("stop") or {}))
        self._stream_items: dict[str, dict] | None = None
        self._descriptors: list[Document] | None = None

    # -- identity --------------------------------------------------------
    @property
    def uid(self) -> str:
        return self.start["uid"]

    @property
    def v2(self):
        """The Tiled client of this run."""
        return self._run

    def __eq__(self, other) -> bool:
        return isinstance(other, Header) and self.uid == other.uid

    def __hash__(self) -> int:
        return hash(self.uid)

    # -- dict-like access (v1 headers were mappings) ----------------------
    def __getitem__(self, key: str):
        if key in self._KEYS:
            return getattr(self, key)
        raise KeyError(f"A Header has the keys {list(self._KEYS)}, not {key!r}.")

    def keys(self):
        return list(self._KEYS)

    def values(self):
        return [self[k] for k in self._KEYS]

    def items(self):
        return [(k, self[k]) for k in self._KEYS]

    def get(self, key: str, default=None):
        return self[key] if key in self._KEYS else default

    def __contains__(self, key) -> bool:
        return key in self._KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def to_dict(self) -> dict:
        """Plain dicts of the start, descriptors and stop documents."""
        return {
            "start": self.start.to_dict(),
            "descriptors": [d.to_dict() for d in self.descriptors],
            "stop": self.stop.to_dict(),
        }

    # -- streams and descriptors -----------------------------------------
    def _streams(self) -> dict[str, dict]:
        """Stream name -> Tiled item of the stream node (one request, cached)."""
        if self._stream_items is None:
            context = self._run.context
            items = {}
            for item in _tiled.iter_children(context, self._run.item):
                if item["id"] == "streams" and not _is_stream(item):
                    # Older writers put streams one level down.
                    items.update(
                        (child["id"], child) for child in _tiled.iter_children(context, item)
                    )
                elif _is_stream(item):
                    items[item["id"]] = item
            self._stream_items = items
        return self._stream_items

    def _stream_path(self, stream_name: str) -> list[str]:
        return _tiled.node_path(self._streams()[stream_name])

    @property
    def descriptors(self) -> list[Document]:
        """Every descriptor of every stream, in the order they were emitted."""
        if self._descriptors is None:
            found = []
            for name, item in self._streams().items():
                found.extend(descriptors_from_stream(self.uid, name, item["attributes"]["metadata"]))
            self._descriptors = sorted_by_time(found)
        return self._descriptors

    @property
    def stream_names(self) -> list[str]:
        """Names of the event streams, in the order their first descriptor was emitted."""
        names: list[str] = []
        for d in self.descriptors:
            if d["name"] not in names:
                names.append(d["name"])
        return names

    def _descriptors_of(self, stream_name=ALL) -> list[Document]:
        return [d for d in self.descriptors if stream_name is ALL or d["name"] == stream_name]

    def fields(self, stream_name=ALL) -> set[str]:
        """Names of the data keys in one stream (or all, the default)."""
        return {key for d in self._descriptors_of(stream_name) for key in d["data_keys"]}

    def devices(self, stream_name=ALL) -> set[str]:
        """Names of the devices (ophyd objects) read in one stream (or all)."""
        return {obj for d in self._descriptors_of(stream_name) for obj in d.get("object_keys", {})}

    def config_data(self, device_name: str) -> dict[str, list[dict]]:
        """Configuration readings of one device: ``{stream_name: [data, ...]}``, one per descriptor.

        >>> h.config_data("det")                        # doctest: +SKIP
        {'primary': [{'det_sigma': 1, 'det_center': 0, ...}]}
        """
        result: dict[str, list[dict]] = {}
        for d in self.descriptors:
            conf = d.get("configuration", {}).get(device_name)
            if conf is not None:
                result.setdefault(d["name"], []).append(dict(conf.get("data", {})))
        return result

    # -- data -------------------------------------------------------------
    def table(
        self,
        stream_name: Any = "primary",
        fields=None,
        fill: bool = False,
        timezone: str | None = None,
        convert_times: bool = True,
        localize_times: bool = True,
    ):
        """One stream as a ``pandas.DataFrame`` indexed by ``seq_num`` (see ``Broker.get_table``)."""
        return self.db.get_table(
            self,
            stream_name=stream_name,
            fields=fields,
            fill=fill,
            timezone=timezone,
            convert_times=convert_times,
            localize_times=localize_times,
        )

    def data(self, field: str, stream_name: str = "primary", fill: bool = True) -> Iterator[Any]:
        """Yield the values of one field, event by event.

        Frames of external (detector) fields are read lazily, a chunk at a time, as
        the generator advances; with ``fill=False`` they are datum ids.

        >>> next(h.data("img")).shape                  # doctest: +SKIP
        (10, 10)
        """
        from .documents import is_external
        from .images import array_nodes
        from .tables import check_fields_exist

        check_fields_exist([field], [self])
        if field not in self.fields(stream_name):
            return
        node = array_nodes(self, stream_name).get(field)
        spec = next(d for d in self.descriptors if d["name"] == stream_name)["data_keys"][field]
        if node is not None and (fill or not is_external(spec)):
            from .images import Images

            seq_nums = self.table(stream_name=stream_name, fields=[], convert_times=False).index
            rows = [int(s) - 1 for s in seq_nums]
            if rows == list(range(node.shape[0])):
                yield from Images([node])
            else:
                yield from Images([node])[[r for r in rows if 0 <= r < node.shape[0]]]
            return
        frame = self.table(stream_name=stream_name, fields=[field], fill=fill, convert_times=False)
        yield from frame[field]

    def xarray(self, stream_name: str = "primary"):
        """One stream as an ``xarray.Dataset`` with a ``time`` dimension (values read now)."""
        from .tables import stream_dataset

        return stream_dataset(self, stream_name)

    def xarray_dask(self, stream_name: str = "primary"):
        """One stream as an ``xarray.Dataset`` whose array fields are lazy ``dask`` arrays.

        Scalars come from the events table; external (detector) fields and large internal
        arrays are dask arrays with the server's chunks, read only when computed.

        >>> ds = h.xarray_dask()                       # doctest: +SKIP
        >>> ds["img"][0].values.sum()                  # doctest: +SKIP
        4950.0
        """
        from .tables import stream_dataset

        return stream_dataset(self, stream_name, lazy=True)

    # -- documents (see documents.py) -------------------------------------
    def documents(
        self, stream_name: Any = ALL, fields=None, fill: bool = False, event_pages: bool = False
    ) -> Iterator[tuple[str, dict]]:
        """The run's ``(name, doc)`` stream, in the order the RunEngine emitted it.

        Start first, each descriptor before its first event, events interleaved by
        time across streams, each resource and datum before the events that reference
        them, stop last. Rows are fetched and turned into documents as you iterate.
        See ``Broker.get_documents`` for the parameters and docs/documents.md for the
        fields that cannot come back exactly.

        >>> for name, doc in h.documents():      # doctest: +SKIP
        ...     callback(name, doc)
        """
        return self.db.get_documents(
            self, stream_name=stream_name, fields=fields, fill=fill, event_pages=event_pages
        )

    def events(self, stream_name: Any = "primary", fields=None, fill: bool = False) -> Iterator[dict]:
        """The event documents of one stream (``ALL`` for every stream), in time order.

        >>> [ev["seq_num"] for ev in h.events()]  # doctest: +SKIP
        [1, 2, 3]
        """
        return self.db.get_events(self, stream_name=stream_name, fields=fields, fill=fill)

    # -- display ------------------------------------------------------------
    def _summary(self) -> list[tuple[str, str]]:
        start, stop = self.start, self.stop
        when = datetime.fromtimestamp(start.get("time", 0)).isoformat(sep=" ", timespec="seconds")
        rows = [
            ("uid", self.uid),
            ("scan_id", str(start.get("scan_id", ""))),
            ("plan_name", str(start.get("plan_name", ""))),
            ("time", when),
            ("exit_status", str(stop.get("exit_status", "(no stop document)"))),
        ]
        if stop.get("num_events"):
            rows.append(("num_events", str(dict(stop["num_events"]))))
        return rows

    def __repr__(self) -> str:
        start = self.start
        fields = f"scan_id={start.get('scan_id')!r}, plan_name={start.get('plan_name')!r}"
        when = self._summary()[3][1]
        return f"<Header {self.uid[:8]} {fields}, time={when!r}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        return f"<table><caption>Header</caption>{rows}</table>"


def _is_stream(item: dict) -> bool:
    specs = {s["name"] if isinstance(s, dict) else s for s in item["attributes"].get("specs") or []}
    if "BlueskyEventStream" in specs:
        return True
    # Without the spec, a stream is a container whose metadata is a descriptor.
    md = item["attributes"].get("metadata") or {}
    return item["attributes"]["structure_family"] == "container" and "data_keys" in md
