"""``Header``: one run, as databroker v1 presented it — the v1 mapping, forwarding to the run.

A Header holds a :class:`~databroker_compat.run.Run` (``header.run``), which does the
reading, and the :class:`~databroker_compat.Broker` it came from (``header.db``), whose
``get_table``/``get_documents``/``get_events`` its methods forward to, as v1's did. Its
``start``, ``stop`` and ``descriptors`` pass through the broker's ``prepare_hook``, as in
v1; the Header itself reads the run's own documents (``header.run.start``).
"""

from __future__ import annotations

import html
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union

from .fields import check_fields_exist
from .images import Images
from .layout import ALL, frame_index, is_external
from .run import Run
from .tables import stream_dataset

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from tiled.client.base import BaseClient

    from .broker import Broker

logger = logging.getLogger(__name__)

__all__ = ["ALL", "Header", "Headers", "as_headers"]


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

    def __init__(self, db: Broker, run_client: BaseClient) -> None:
        #: The broker this header came from.
        self.db = db
        #: Access to the run on the server (streams, descriptors, tables, arrays).
        self.run = Run(run_client)
        # What the broker's prepare_hook made of each document, with the hook that made it.
        self._prepared: dict[str, tuple[Callable[[str, Any], Any], Any]] = {}

    def _prepare(self, key: str, make: Callable[[Callable[[str, Any], Any]], Any]) -> Any:
        """``make(hook)`` with the broker's current hook, kept until the hook changes.

        v1 applied ``db.prepare_hook`` on every access; keeping the result while the hook
        stays the same gives the same documents and keeps ``h.start is h.start`` (writes
        to ``h.start`` stick). A new hook (``db.prepare_hook = f``) applies from then on.
        """
        hook = self.db.prepare_hook
        kept = self._prepared.get(key)
        if kept is not None and kept[0] == hook:
            return kept[1]
        value = make(hook)
        self._prepared[key] = (hook, value)
        return value

    # -- the documents, through the broker's prepare_hook ------------------
    @property
    def start(self) -> Any:
        """The start document, as the broker's ``prepare_hook`` makes it (a ``Document`` by default)."""
        return self._prepare("start", lambda hook: hook("start", self.run.start))

    @property
    def stop(self) -> Any:
        """The stop document (empty when the run has none), through the broker's ``prepare_hook``."""
        return self._prepare("stop", lambda hook: hook("stop", self.run.stop))

    @property
    def descriptors(self) -> list[Any]:
        """Every descriptor of every stream, in the order they were emitted, through ``prepare_hook``."""
        return self._prepare("descriptors", lambda hook: [hook("descriptor", d) for d in self.run.descriptors])

    # -- identity --------------------------------------------------------
    @property
    def uid(self) -> str:
        """The run's uid."""
        return self.run.uid

    @property
    def v2(self) -> BaseClient:
        """The Tiled client of this run."""
        return self.run.client

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Header) and self.uid == other.uid

    def __hash__(self) -> int:
        return hash(self.uid)

    # -- dict-like access (v1 headers were mappings) ----------------------
    def __getitem__(self, key: str) -> Any:
        if key in self._KEYS:
            return getattr(self, key)
        raise KeyError(f"A Header has the keys {list(self._KEYS)}, not {key!r}.")

    def keys(self) -> list[str]:
        """``["start", "descriptors", "stop"]``, as v1's header mapping."""
        return list(self._KEYS)

    def values(self) -> list[Any]:
        """The start document, the descriptors and the stop document."""
        return [self[k] for k in self._KEYS]

    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs of :meth:`keys` and :meth:`values`."""
        return [(k, self[k]) for k in self._KEYS]

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` for a key a Header does not have."""
        return self[key] if key in self._KEYS else default

    def __contains__(self, key: object) -> bool:
        return key in self._KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def to_dict(self) -> dict:
        """Plain dicts of the start, descriptors and stop documents."""
        return {
            "start": self.run.start.to_dict(),
            "descriptors": [d.to_dict() for d in self.run.descriptors],
            "stop": self.run.stop.to_dict(),
        }

    # -- streams and descriptors -----------------------------------------
    @property
    def stream_names(self) -> list[str]:
        """Names of the event streams, in the order their first descriptor was emitted."""
        return self.run.stream_names

    def fields(self, stream_name: Any = ALL) -> set[str]:
        """Names of the data keys in one stream (or all, the default)."""
        return self.run.fields(stream_name)

    def devices(self, stream_name: Any = ALL) -> set[str]:
        """Names of the devices (ophyd objects) read in one stream (or all)."""
        return self.run.devices(stream_name)

    def config_data(self, device_name: str) -> dict[str, list[dict]]:
        """Configuration readings of one device: ``{stream_name: [data, ...]}``, one per descriptor.

        >>> h.config_data("det")                        # doctest: +SKIP
        {'primary': [{'det_sigma': 1, 'det_center': 0, ...}]}
        """
        result: dict[str, list[dict]] = {}
        for d in self.run.descriptors:
            conf = d.get("configuration", {}).get(device_name)
            if conf is not None:
                result.setdefault(d["name"], []).append(dict(conf.get("data", {})))
        return result

    # -- data -------------------------------------------------------------
    def table(
        self,
        stream_name: Any = "primary",
        fields: Any = None,
        fill: bool = False,
        timezone: str | None = None,
        convert_times: bool = True,
        localize_times: bool = True,
    ) -> pd.DataFrame:
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
        check_fields_exist([field], [self.run])
        if field not in self.fields(stream_name):
            return
        node = self.run.array_nodes(stream_name).get(field)
        descriptor = self.run.first_descriptor(stream_name) if node is not None else None
        if node is not None and descriptor is not None and (fill or not is_external(descriptor["data_keys"][field])):
            seq_nums = self.table(stream_name=stream_name, fields=[], convert_times=False).index
            rows = [frame_index(s) for s in seq_nums]
            if rows == list(range(node.shape[0])):
                yield from Images([node])
            else:
                yield from Images([node])[[r for r in rows if 0 <= r < node.shape[0]]]
            return
        frame = self.table(stream_name=stream_name, fields=[field], fill=fill, convert_times=False)
        yield from frame[field]

    def xarray(self, stream_name: str = "primary") -> xr.Dataset:
        """One stream as an ``xarray.Dataset`` with a ``time`` dimension (values read now)."""
        return stream_dataset(self.run, stream_name)

    def xarray_dask(self, stream_name: str = "primary") -> xr.Dataset:
        """One stream as an ``xarray.Dataset`` whose array fields are lazy ``dask`` arrays.

        Scalars come from the events table; external (detector) fields and large internal
        arrays are dask arrays with the server's chunks, read only when computed.

        >>> ds = h.xarray_dask()                       # doctest: +SKIP
        >>> ds["img"][0].values.sum()                  # doctest: +SKIP
        4950.0
        """
        return stream_dataset(self.run, stream_name, lazy=True)

    # -- documents (see documents/) -----------------------------------------
    def documents(
        self, stream_name: Any = ALL, fields: Any = None, fill: bool = False, event_pages: bool = False
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
        return self.db.get_documents(self, stream_name=stream_name, fields=fields, fill=fill, event_pages=event_pages)

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, dict]]:
        """v1's deprecated name of :meth:`documents` (same arguments); warns ``DeprecationWarning``.

        >>> next(h.stream())[0]                 # doctest: +SKIP
        'start'
        """
        warnings.warn(
            "Header.stream() is the deprecated name of Header.documents(); call h.documents(...) instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.documents(*args, **kwargs)

    def events(self, stream_name: Any = "primary", fields: Any = None, fill: bool = False) -> Iterator[dict]:
        """The event documents of one stream (``ALL`` for every stream), in time order.

        >>> [ev["seq_num"] for ev in h.events()]  # doctest: +SKIP
        [1, 2, 3]
        """
        return self.db.get_events(self, stream_name=stream_name, fields=fields, fill=fill)

    # -- display ------------------------------------------------------------
    def _summary(self) -> list[tuple[str, str]]:
        start, stop = self.run.start, self.run.stop
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
        start = self.run.start
        fields = f"scan_id={start.get('scan_id')!r}, plan_name={start.get('plan_name')!r}"
        when = self._summary()[3][1]
        return f"<Header {self.uid[:8]} {fields}, time={when!r}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        return f"<table><caption>Header</caption>{rows}</table>"


#: What the v1 methods take as runs: one Header, or any iterable of them.
Headers = Union[Header, Iterable[Header]]


def as_headers(headers: Headers) -> list[Header]:
    """A list of Headers from one Header or any iterable of them (v1 took both).

    >>> as_headers(db[-1]) == [db[-1]]      # doctest: +SKIP
    True
    """
    if isinstance(headers, Header):
        return [headers]
    return list(headers)
