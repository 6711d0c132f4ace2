"""Array nodes of a stream, and reading their rows: chunk-aligned requests and dask arrays.

TiledWriter registers an external data key (detector files named by Resource/Datum or
StreamResource/StreamDatum documents) as an *array node* of its stream, with the event
axis first: ``shape == (number of events, *frame shape)``. Large internal arrays get an
array node of the same layout. The Tiled server opens the files; the client asks for
slices of the node through the ``/array/full`` endpoint and receives raw bytes.

:func:`read_rows` reads any rows of a node in requests aligned on its chunks
(:func:`row_groups` plans them); :func:`dask_array` is a lazy view with the node's
chunks. Tables, documents, ``xarray`` datasets and ``get_images`` all read through here.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from . import _tiled
from .exceptions import ExternalDataUnavailable

if TYPE_CHECKING:
    import dask.array
    import numpy
    from tiled.client.context import Context

logger = logging.getLogger(__name__)

__all__ = [
    "REQUEST_BYTES",
    "ArrayNode",
    "dask_array",
    "fetch_array_nodes",
    "node_from_item",
    "read_rows",
    "read_span",
    "row_groups",
]

#: One request reads at most this many bytes (whole chunks, or rows of one chunk).
REQUEST_BYTES = 8 * 2**20


@dataclass(frozen=True)
class ArrayNode:
    """One array node of a stream, as the server describes it (no data read yet).

    ``shape[0]`` counts events; ``row_chunks`` are the chunk sizes along that axis.
    ``files`` are the asset URIs of external data (empty for data the server holds).

    >>> node = ArrayNode(None, "img", ("run", "primary", "img"), (3, 10, 10), "<f8", (1, 1, 1))
    >>> node.frame_shape, node.frame_bytes
    ((10, 10), 800)
    """

    context: Any = field(repr=False, compare=False)
    key: str
    path: tuple[str, ...]
    shape: tuple[int, ...]
    dtype_str: str
    row_chunks: tuple[int, ...]
    mimetype: str = ""
    files: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def dtype(self) -> numpy.dtype:
        """The numpy dtype of the node's values."""
        import numpy

        return numpy.dtype(self.dtype_str)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The shape of one event's value (all axes but the first)."""
        return tuple(self.shape[1:])

    @property
    def frame_bytes(self) -> int:
        """The size of one event's value, in bytes."""
        size = self.dtype.itemsize
        for n in self.frame_shape:
            size *= n
        return size

    @property
    def is_external(self) -> bool:
        """Whether the node reads detector files (not data the server holds itself)."""
        return bool(self.files) and not self.mimetype.startswith("application/x-zarr")

    def files_for_rows(self, start: int, stop: int) -> list[str]:
        """The files that hold rows ``start:stop`` (all files when that cannot be told).

        >>> node = ArrayNode(None, "k", ("k",), (2, 1), "<u1", (1, 1), "multipart/related", ("a", "b"))
        >>> node.files_for_rows(1, 2)
        ['b']
        """
        if self.mimetype.startswith("multipart/related") and self.shape[0]:
            per_row, extra = divmod(len(self.files), self.shape[0])
            if per_row and not extra:
                return list(self.files[start * per_row : stop * per_row])
        return list(self.files)

    def read(
        self, selection: str, shape: tuple[int, ...], rows: tuple[int, int], out: numpy.ndarray | None = None
    ) -> numpy.ndarray:
        """Read ``selection`` (Tiled slice syntax) as a writable array of ``shape``.

        The response is streamed straight into ``out`` (allocated when not given, and
        C-contiguous), so a frame costs its own size in memory and no more. ``rows`` is
        the range of event rows the selection covers, used to name the files in an
        error message.

        >>> node.read("0:2,:,:", (2, 10, 10), (0, 2)).shape   # doctest: +SKIP
        (2, 10, 10)
        """
        import numpy

        if out is None:
            out = numpy.empty(shape, dtype=self.dtype)
        if 0 in shape:
            return out
        _tiled.read_array_into(
            self.context,
            self.path,
            selection,
            out.reshape(-1).view("u1").data,
            label=repr(self.key),
            unreadable=lambda status, text: self.unreadable(status, text, rows),
        )
        return out

    def unreadable(self, status: int, text: str, rows: tuple[int, int]) -> ExternalDataUnavailable:
        """The error for rows the server could not read (HTTP ``status``), naming the files.

        >>> node = ArrayNode(None, "img", ("r", "primary", "img"), (2, 1), "<u1", (2,), "image/tiff",
        ...                  ("file://localhost/data/a.tif",))
        >>> err = node.unreadable(500, "", (0, 1))
        >>> err.files, err.key
        (['/data/a.tif'], 'img')
        """
        where = "/".join(self.path)
        files = self.files_for_rows(*rows)
        if self.is_external and files:
            shown = [_file_path(f) for f in files]
            more = f" (and {len(files) - 5} more)" if len(files) > 5 else ""
            return ExternalDataUnavailable(
                f"The Tiled server could not read rows {rows[0]}:{rows[1]} of {self.key!r} "
                f"({where}; HTTP {status}). It reads them from {', '.join(shown[:5])}{more}: check "
                "that the file exists and that the server's readable storage (tiled serve "
                "-r DIR, or readable_storage=) covers it. The run's other data and its "
                "metadata can still be read.",
                key=self.key,
                rows=rows,
                files=shown,
                status=status,
            )
        return ExternalDataUnavailable(
            f"The Tiled server could not read rows {rows[0]}:{rows[1]} of {self.key!r} "
            f"({where}; HTTP {status}: {text[:200]}).",
            key=self.key,
            rows=rows,
            files=[],
            status=status,
        )


def _file_path(uri: str) -> str:
    prefix = "file://localhost"
    if uri.startswith(prefix):
        return uri[len(prefix) :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri


def node_from_item(context: Context, item: dict) -> ArrayNode:
    """The :class:`ArrayNode` of an array node's item (with its data sources, if listed).

    >>> item = {"id": "img", "attributes": {"ancestors": ["r", "primary"], "structure": {
    ...     "shape": [3, 4], "chunks": [[2, 1], [4]],
    ...     "data_type": {"endianness": "little", "kind": "u", "itemsize": 2}}}}
    >>> node = node_from_item(None, item)
    >>> node.path, node.dtype_str, node.row_chunks
    (('r', 'primary', 'img'), '<u2', (2, 1))
    """
    attributes = item["attributes"]
    structure = attributes["structure"]
    files: list[str] = []
    mimetype = ""
    for source in attributes.get("data_sources") or []:
        mimetype = mimetype or source.get("mimetype") or ""
        assets = sorted(source.get("assets") or [], key=lambda a: a.get("num") or 0)
        files.extend(a["data_uri"] for a in assets)
    shape = tuple(structure["shape"])
    chunks = structure.get("chunks") or [[n] for n in shape]
    return ArrayNode(
        context=context,
        key=item["id"],
        path=tuple(_tiled.node_path(item)),
        shape=shape,
        dtype_str=_tiled.numpy_dtype(structure["data_type"]).str,
        row_chunks=tuple(chunks[0]) if shape else (),
        mimetype=mimetype,
        files=tuple(files),
        metadata=dict(attributes.get("metadata") or {}),
    )


def fetch_array_nodes(context: Context, stream_item: dict) -> dict[str, ArrayNode]:
    """The array nodes among the children of a stream node, by key (one request per 300).

    Their data sources (file names, for error messages) are asked for too; a server
    that will not show them to this user is asked again without them.

    >>> fetch_array_nodes(run.context, stream_item)["img"].shape      # doctest: +SKIP
    (3, 10, 10)
    """
    search: str | None = stream_item["links"]["search"]
    nodes: dict[str, ArrayNode] = {}
    params: dict[str, Any] = {"page[offset]": 0, "page[limit]": 300, "include_data_sources": True}
    while search is not None:
        try:
            body = _tiled.get_json(context, search, params=params)
        except httpx.HTTPStatusError as err:
            if not params.pop("include_data_sources", False) or err.response.status_code >= 500:
                raise
            # A server that will not show data sources to this user: frames are
            # still readable, only error messages cannot name the files.
            logger.info("Data sources of %s are not available: %s", search, err)
            continue
        for item in body["data"]:
            if item["attributes"]["structure_family"] == "array":
                nodes[item["id"]] = node_from_item(context, item)
        search, params = body["links"].get("next"), {}
    return nodes


def row_groups(node: ArrayNode, rows: Sequence[int]) -> list[tuple[int, int, int]]:
    """Split sorted positions into requests: ``(first position, start row, stop row)``.

    Consecutive rows are read together up to ``REQUEST_BYTES``, never crossing a chunk
    boundary unless the whole chunk is wanted; one frame is always one request.

    >>> node = ArrayNode(None, "k", ("k",), (6, 1), "<u1", (2, 2, 2))
    >>> row_groups(node, [0, 1, 3, 5])
    [(0, 0, 2), (2, 3, 4), (3, 5, 6)]
    """
    bounds = list(itertools.accumulate(node.row_chunks, initial=0))
    budget = max(1, REQUEST_BYTES // max(node.frame_bytes, 1))
    groups: list[tuple[int, int, int]] = []
    position = 0
    rows = list(rows)
    while position < len(rows):
        start = rows[position]
        stop = start + 1
        # The chunk holding ``start`` and the end of the run of consecutive rows.
        chunk_end = bounds[min(bisect.bisect_right(bounds, start), len(bounds) - 1)]
        while (
            position + (stop - start) < len(rows)
            and rows[position + (stop - start)] == stop
            and stop - start < budget
        ):
            if stop >= chunk_end:
                # Crossing into the next chunk: only when that whole chunk fits.
                next_end = bounds[min(bisect.bisect_right(bounds, stop), len(bounds) - 1)]
                last = position + (next_end - start) - 1
                if next_end - start > budget or last >= len(rows) or rows[last] != next_end - 1:
                    break
                chunk_end = next_end
            stop += 1
        groups.append((position, start, stop))
        position += stop - start
    return groups


def read_rows(node: ArrayNode, rows: Iterable[int]) -> numpy.ndarray:
    """Rows (any order, repeats allowed) of ``node`` as one array, in chunk-aligned requests.

    >>> read_rows(node, [2, 0, 2]).shape    # doctest: +SKIP
    (3, 10, 10)
    """
    import numpy

    wanted = numpy.asarray(list(rows) if not isinstance(rows, range) else rows, dtype="int64")
    out = numpy.empty((len(wanted), *node.frame_shape), dtype=node.dtype)
    if not len(wanted):
        return out
    tail = ",:" * len(node.frame_shape)
    if len(wanted) == 1 or (numpy.diff(wanted) == 1).all():
        # Consecutive rows: stream each request into its place in ``out``.
        for position, start, stop in row_groups(node, wanted.tolist()):
            part = out[position : position + stop - start]
            node.read(f"{start}:{stop}{tail}", part.shape, (start, stop), out=part)
        return out
    order = numpy.argsort(wanted, kind="stable")
    sorted_rows = wanted[order]
    unique, first = numpy.unique(sorted_rows, return_index=True)
    for position, start, stop in row_groups(node, unique.tolist()):
        block = node.read(f"{start}:{stop}{tail}", (stop - start, *node.frame_shape), (start, stop))
        for i in range(stop - start):
            # Every position asking for this row gets it.
            lo = first[position + i]
            hi = first[position + i + 1] if position + i + 1 < len(first) else len(sorted_rows)
            out[order[lo:hi]] = block[i]
    return out


def read_span(node: ArrayNode, start: int = 0, stop: int | None = None) -> numpy.ndarray:
    """Rows ``start:stop`` of ``node``, clipped to the rows it has (``stop=None``: to the end).

    >>> read_span(node, 1, 99).shape     # doctest: +SKIP
    (2, 10, 10)
    """
    stop = node.shape[0] if stop is None else min(stop, node.shape[0])
    start = max(0, start)
    return read_rows(node, range(start, max(start, stop)))


class _SliceReader:
    """An array-like over a node for ``dask.array.from_array``: each block is one request."""

    def __init__(self, node: ArrayNode) -> None:
        self.node = node
        self.shape = node.shape
        self.dtype = node.dtype
        self.ndim = len(node.shape)

    def __getitem__(self, index: Any) -> numpy.ndarray:
        import numpy

        if not isinstance(index, tuple):
            index = (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        parts, shape, spans = [], [], []
        for axis, item in enumerate(index):
            if isinstance(item, (int, numpy.integer)):
                start = int(item) + self.shape[axis] if item < 0 else int(item)
                parts.append(str(start))
                spans.append((start, start + 1))
                continue
            if not isinstance(item, slice) or item.step not in (None, 1):
                raise TypeError(f"Only integers and contiguous slices are read from Tiled, not {item!r}.")
            start, stop, _ = item.indices(self.shape[axis])
            stop = max(start, stop)
            parts.append(f"{start}:{stop}")
            shape.append(stop - start)
            spans.append((start, stop))
        return self.node.read(",".join(parts), tuple(shape), spans[0] if spans else (0, 0))


def dask_array(node: ArrayNode) -> dask.array.Array:
    """A ``dask.array.Array`` over ``node`` with the node's chunks; nothing is read until computed.

    >>> dask_array(ArrayNode(None, "img", ("img",), (3, 10, 10), "<f8", (1, 1, 1))).chunks
    ((1, 1, 1), (10,), (10,))
    """
    import uuid

    import dask.array
    import numpy

    chunks = (node.row_chunks, *((n,) for n in node.frame_shape)) if node.shape else ()
    return dask.array.from_array(
        _SliceReader(node),
        chunks=chunks,
        name=f"tiled-{node.key}-{uuid.uuid4().hex}",
        asarray=False,
        lock=False,
        meta=numpy.empty((0,) * len(node.shape), dtype=node.dtype),
    )
