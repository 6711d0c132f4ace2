"""Run access: one run on the server, its streams, descriptors, tables and array nodes.

A :class:`Run` is what the read path (tables, documents, images) works on. It asks the
server for the run's stream nodes once (one request, cached) and rebuilds the
descriptors from their metadata; array nodes are listed once per stream, on first use.
Everything it learns is cached on the ``Run`` itself. A
:class:`~databroker_compat.header.Header` holds one as ``header.run``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, Union

from . import _tiled
from .arrays import ArrayNode, fetch_array_nodes
from .exceptions import UnknownField
from .layout import ALL, INTERNAL_TABLE, LEGACY_STREAMS_NODE, is_all, is_stream
from .model import Document, descriptors_from_stream, sorted_by_time, to_plain

if TYPE_CHECKING:
    import pyarrow
    from tiled.client.base import BaseClient
    from tiled.client.context import Context

logger = logging.getLogger(__name__)

__all__ = ["HasRun", "Run", "as_run"]


class Run:
    """One Bluesky run on a Tiled server, read through :mod:`databroker_compat._tiled`.

    Parameters
    ----------
    client : tiled.client.base.BaseClient
        The run's node (specs include ``BlueskyRun``). Its metadata gives the start
        and stop documents; nothing else is read until asked for.

    Examples
    --------
    >>> run = Run(catalog[uid])                          # doctest: +SKIP
    >>> run.stream_names, sorted(run.fields("primary"))  # doctest: +SKIP
    (['primary', 'baseline'], ['det', 'motor'])
    """

    def __init__(self, client: BaseClient) -> None:
        self.client = client
        metadata = client.metadata
        #: The start document.
        self.start = Document(to_plain(metadata["start"]))
        #: The stop document (empty when the run has none).
        self.stop = Document(to_plain(metadata.get("stop") or {}))
        self._stream_items: dict[str, dict] | None = None
        self._descriptors: list[Document] | None = None
        self._array_nodes: dict[str, dict[str, ArrayNode]] = {}

    def __repr__(self) -> str:
        return f"<Run {self.uid[:8]}>"

    # -- identity ---------------------------------------------------------------
    @property
    def uid(self) -> str:
        """The run's uid (its start document's)."""
        return self.start["uid"]

    @property
    def context(self) -> Context:
        """The Tiled context (server address, authenticated HTTP client) of the run."""
        return self.client.context

    # -- streams and descriptors -------------------------------------------------
    def streams(self) -> dict[str, dict]:
        """Stream name -> Tiled item of the stream node (one request, cached).

        Streams written by older writers one level down (under ``streams``) count too.
        """
        if self._stream_items is None:
            items: dict[str, dict] = {}
            for item in _tiled.iter_children(self.context, self.client.item):
                if item["id"] == LEGACY_STREAMS_NODE and not is_stream(item):
                    items.update((child["id"], child) for child in _tiled.iter_children(self.context, item))
                elif is_stream(item):
                    items[item["id"]] = item
            self._stream_items = items
        return self._stream_items

    def stream_path(self, stream_name: str) -> list[str]:
        """The path segments of a stream node (``KeyError`` for a stream the run lacks)."""
        return _tiled.node_path(self.streams()[stream_name])

    @property
    def descriptors(self) -> list[Document]:
        """Every descriptor of every stream, in the order they were emitted."""
        if self._descriptors is None:
            found: list[Document] = []
            for name, item in self.streams().items():
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

    def descriptors_of(self, stream_name: Any = ALL) -> list[Document]:
        """The descriptors of one stream (``ALL``: of every stream), in emission order."""
        every = is_all(stream_name)
        return [d for d in self.descriptors if every or d["name"] == stream_name]

    def first_descriptor(self, stream_name: str) -> Document | None:
        """The first descriptor of a stream (it holds the data keys); ``None`` if none."""
        return next((d for d in self.descriptors if d["name"] == stream_name), None)

    def fields(self, stream_name: Any = ALL) -> set[str]:
        """Names of the data keys in one stream (or all, the default)."""
        return {key for d in self.descriptors_of(stream_name) for key in d["data_keys"]}

    def devices(self, stream_name: Any = ALL) -> set[str]:
        """Names of the devices (ophyd objects) read in one stream (or all)."""
        return {obj for d in self.descriptors_of(stream_name) for obj in d.get("object_keys", {})}

    # -- the nodes of one stream -------------------------------------------------
    def stream_children(self, stream_name: str) -> dict[str, dict]:
        """Key -> item of every child of a stream node (its table and arrays), one request."""
        return {child["id"]: child for child in _tiled.iter_children(self.context, self.streams()[stream_name])}

    def read_internal_table(self, stream_name: str, columns: list[str] | None = None) -> pyarrow.Table | None:
        """The stream's events table (``columns`` only, if given); ``None`` when it has none."""
        return _tiled.read_table(self.context, [*self.stream_path(stream_name), INTERNAL_TABLE], columns=columns)

    def array_nodes(self, stream_name: str) -> dict[str, ArrayNode]:
        """The array nodes of one stream, by data key (one request, cached on this run).

        >>> run.array_nodes("primary")["img"].shape      # doctest: +SKIP
        (3, 10, 10)
        """
        if stream_name not in self._array_nodes:
            streams = self.streams()
            if stream_name not in streams:
                self._array_nodes[stream_name] = {}
            else:
                self._array_nodes[stream_name] = fetch_array_nodes(self.context, streams[stream_name])
        return self._array_nodes[stream_name]

    def array_node(self, stream_name: str, field: str) -> ArrayNode:
        """The array node of one field, or ``UnknownField`` saying where the field is instead.

        >>> run.array_node("primary", "det")              # doctest: +SKIP
        Traceback (most recent call last):
        UnknownField: 'det' of stream 'primary' is stored in the events table, ...
        """
        nodes = self.array_nodes(stream_name)
        if field in nodes:
            return nodes[field]
        if stream_name not in self.stream_names:
            raise UnknownField(
                f"Run {self.uid[:8]} has no stream {stream_name!r}; its streams are {self.stream_names}.",
                stream_name=stream_name,
                field=field,
            )
        if field in self.fields(stream_name):
            raise UnknownField(
                f"{field!r} of stream {stream_name!r} is stored in the events table, not as an array "
                "of frames; read it with h.table(fields=[...]) or h.data(...).",
                stream_name=stream_name,
                field=field,
            )
        raise UnknownField(
            f"Stream {stream_name!r} of run {self.uid[:8]} has no field {field!r}; "
            f"its fields are {sorted(self.fields(stream_name))}.",
            stream_name=stream_name,
            field=field,
        )


class HasRun(Protocol):
    """Anything that holds a :class:`Run` as ``.run`` (a ``Header`` does)."""

    @property
    def run(self) -> Run: ...


def as_run(source: Union[Run, HasRun]) -> Run:
    """The :class:`Run` of ``source``: itself, or its ``.run`` (a ``Header``'s).

    >>> h = db[-1]                         # doctest: +SKIP
    >>> as_run(h) is h.run, as_run(h.run) is h.run   # doctest: +SKIP
    (True, True)
    """
    return source if isinstance(source, Run) else source.run
