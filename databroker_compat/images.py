"""Frames of detector images and other array data, read lazily from Tiled.

TiledWriter registers an external data key (detector files named by Resource/Datum or
StreamResource/StreamDatum documents) as an *array node* of its stream, with the event
axis first: ``shape == (number of events, *frame shape)``. Large internal arrays get an
array node of the same layout. The Tiled server opens the files; the client asks for
slices of the node through the ``/array/full`` endpoint and receives raw bytes.

:func:`get_images` returns a :class:`Images` sequence that reads only the frames asked
for, in requests aligned on the node's chunks. :func:`read_frames` is the small
building block the rest of the package (tables, documents, xarray) reads with.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from . import _tiled
from .exceptions import ExternalDataUnavailable, ServerUnavailable, UnknownField

logger = logging.getLogger(__name__)

__all__ = ["ArrayNode", "HandlerRegistry", "Images", "array_nodes", "dask_array", "get_images", "read_frames"]

# One request reads at most this many bytes (whole chunks, or rows of one chunk).
REQUEST_BYTES = 8 * 2**20
_CACHE_ATTRIBUTE = "_array_nodes_cache"


# -- array nodes ---------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayNode:
    """One array node of a stream, as the server describes it (no data read yet).

    ``shape[0]`` counts events; ``row_chunks`` are the chunk sizes along that axis.
    ``files`` are the asset URIs of external data (empty for data the server holds).
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
    def dtype(self):
        import numpy

        return numpy.dtype(self.dtype_str)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def frame_bytes(self) -> int:
        size = self.dtype.itemsize
        for n in self.frame_shape:
            size *= n
        return size

    @property
    def is_external(self) -> bool:
        return bool(self.files) and not self.mimetype.startswith("application/x-zarr")

    def files_for_rows(self, start: int, stop: int) -> list[str]:
        """The files that hold rows ``start:stop`` (all files when that cannot be told)."""
        if self.mimetype.startswith("multipart/related") and self.shape[0]:
            per_row, extra = divmod(len(self.files), self.shape[0])
            if per_row and not extra:
                return list(self.files[start * per_row : stop * per_row])
        return list(self.files)

    def read(self, selection: str, shape: tuple[int, ...], rows: tuple[int, int], out=None):
        """Read ``selection`` (Tiled slice syntax) as a writable array of ``shape``.

        The response is streamed straight into ``out`` (allocated when not given, and
        C-contiguous), so a frame costs its own size in memory and no more. ``rows`` is
        the range of event rows the selection covers, used to name the files in an
        error message.
        """
        import httpx
        import numpy

        if out is None:
            out = numpy.empty(shape, dtype=self.dtype)
        if 0 in shape:
            return out
        target = memoryview(out.reshape(-1).view("u1"))
        url = f"{self.context.api_uri}array/full/{_tiled._url_path(*self.path)}"
        http = self.context.http_client
        for attempt in (1, 2):
            try:
                request = {"params": {"slice": selection}, "headers": {"Accept": _tiled.OCTET}}
                with http.stream("GET", url, **request) as response:
                    if response.is_error:
                        response.read()
                        if response.status_code >= 500 or response.status_code in (404, 410):
                            raise self._unavailable(response, rows)
                        _tiled.handle_error(response)
                    filled = 0
                    for piece in response.iter_bytes():
                        if filled + len(piece) > len(target):
                            raise ExternalDataUnavailable(
                                f"The server sent more than the {len(target)} bytes of "
                                f"{self.key!r}[{selection}] its structure announces."
                            )
                        target[filled : filled + len(piece)] = piece
                        filled += len(piece)
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as err:
                # A kept-alive connection the server closed (as it does after a 500):
                # a GET is safe to send once more.
                if attempt == 2:
                    raise ServerUnavailable(
                        f"The Tiled server at {self.context.api_uri} closed the connection ({err!r})."
                    ) from err
            except httpx.TransportError as err:
                raise ServerUnavailable(
                    f"The Tiled server at {self.context.api_uri} did not answer ({err!r}). "
                    "Check that it is running and reachable, then try again."
                ) from err
        if filled != len(target):
            raise ExternalDataUnavailable(
                f"The server sent {filled} bytes for {self.key!r}[{selection}], not the {len(target)} "
                "its structure announces; the files may have changed since the run was written."
            )
        return out

    def _unavailable(self, response, rows) -> ExternalDataUnavailable:
        where = "/".join(self.path)
        files = self.files_for_rows(*rows)
        if self.is_external and files:
            shown = ", ".join(_tiled_path(f) for f in files[:5])
            more = f" (and {len(files) - 5} more)" if len(files) > 5 else ""
            return ExternalDataUnavailable(
                f"The Tiled server could not read rows {rows[0]}:{rows[1]} of {self.key!r} "
                f"({where}; HTTP {response.status_code}). It reads them from {shown}{more}: check "
                "that the file exists and that the server's readable storage (tiled serve "
                "-r DIR, or readable_storage=) covers it. The run's other data and its "
                "metadata can still be read."
            )
        return ExternalDataUnavailable(
            f"The Tiled server could not read rows {rows[0]}:{rows[1]} of {self.key!r} "
            f"({where}; HTTP {response.status_code}: {response.text[:200]})."
        )


def _tiled_path(uri: str) -> str:
    prefix = "file://localhost"
    if uri.startswith(prefix):
        return uri[len(prefix) :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri


def _node_from_item(context, item: dict) -> ArrayNode:
    from .tables import _numpy_dtype

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
        dtype_str=_numpy_dtype(structure["data_type"]).str,
        row_chunks=tuple(chunks[0]) if shape else (),
        mimetype=mimetype,
        files=tuple(files),
        metadata=dict(attributes.get("metadata") or {}),
    )


def array_nodes(header, stream_name: str) -> dict[str, ArrayNode]:
    """The array nodes of one stream of a run, by data key (one request, cached on the header).

    >>> array_nodes(h, "primary")["img"].shape      # doctest: +SKIP
    (3, 10, 10)
    """
    import httpx

    cache = header.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    if stream_name not in cache:
        streams = header._streams()
        if stream_name not in streams:
            cache[stream_name] = {}
        else:
            context = header.v2.context
            search = streams[stream_name]["links"]["search"]
            nodes = {}
            params = {"page[offset]": 0, "page[limit]": 300, "include_data_sources": True}
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
                        nodes[item["id"]] = _node_from_item(context, item)
                search, params = body["links"].get("next"), {}
            cache[stream_name] = nodes
    return cache[stream_name]


def _row_groups(node: ArrayNode, rows) -> list[tuple[int, int, int]]:
    """Split sorted positions into requests: ``(first position, start row, stop row)``.

    Consecutive rows are read together up to ``REQUEST_BYTES``, never crossing a chunk
    boundary unless the whole chunk is wanted; one frame is always one request.
    """
    import bisect
    import itertools

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


def read_frames(header, stream_name: str, field: str, start: int = 0, stop: int | None = None):
    """Rows ``start:stop`` (0-based event index, i.e. ``seq_num - 1``) of an array field.

    Returns a ``numpy.ndarray`` of shape ``(stop - start, *frame_shape)``. Reads only those
    rows, in as few requests as the node's chunks allow. This signature is stable: the
    documents, tables and xarray paths use it.

    Raises
    ------
    UnknownField
        The stream has no array node ``field`` (internal scalar and small array fields live
        in the events table instead).
    ExternalDataUnavailable
        The server could not read the files; the message names them.

    >>> read_frames(h, "primary", "img", 0, 2).shape      # doctest: +SKIP
    (2, 10, 10)
    """
    node = _node_or_raise(header, stream_name, field)
    stop = node.shape[0] if stop is None else min(stop, node.shape[0])
    start = max(0, start)
    return _read_rows(node, range(start, max(start, stop)))


def _node_or_raise(header, stream_name: str, field: str) -> ArrayNode:
    nodes = array_nodes(header, stream_name)
    if field in nodes:
        return nodes[field]
    if stream_name not in header.stream_names:
        raise UnknownField(
            f"Run {header.uid[:8]} has no stream {stream_name!r}; its streams are {header.stream_names}."
        )
    if field in header.fields(stream_name):
        raise UnknownField(
            f"{field!r} of stream {stream_name!r} is stored in the events table, not as an array "
            "of frames; read it with h.table(fields=[...]) or h.data(...)."
        )
    raise UnknownField(
        f"Stream {stream_name!r} of run {header.uid[:8]} has no field {field!r}; "
        f"its fields are {sorted(header.fields(stream_name))}."
    )


def _read_rows(node: ArrayNode, rows):
    """Rows (any order, repeats allowed) of ``node`` as one array."""
    import numpy

    rows = numpy.asarray(list(rows) if not isinstance(rows, range) else rows, dtype="int64")
    out = numpy.empty((len(rows), *node.frame_shape), dtype=node.dtype)
    if not len(rows):
        return out
    tail = ",:" * len(node.frame_shape)
    if len(rows) == 1 or (numpy.diff(rows) == 1).all():
        # Consecutive rows: stream each request into its place in ``out``.
        for position, start, stop in _row_groups(node, rows.tolist()):
            node.read(f"{start}:{stop}{tail}", out[position : position + stop - start].shape, (start, stop),
                      out=out[position : position + stop - start])
        return out
    order = numpy.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    unique, first = numpy.unique(sorted_rows, return_index=True)
    for position, start, stop in _row_groups(node, unique.tolist()):
        block = node.read(f"{start}:{stop}{tail}", (stop - start, *node.frame_shape), (start, stop))
        for i in range(stop - start):
            # Every position asking for this row gets it.
            lo = first[position + i]
            hi = first[position + i + 1] if position + i + 1 < len(first) else len(sorted_rows)
            out[order[lo:hi]] = block[i]
    return out


class _SliceReader:
    """An array-like over a node for ``dask.array.from_array``: each block is one request."""

    def __init__(self, node: ArrayNode):
        self.node = node
        self.shape = node.shape
        self.dtype = node.dtype
        self.ndim = len(node.shape)

    def __getitem__(self, index):
        if not isinstance(index, tuple):
            index = (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        import numpy

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


def dask_array(node: ArrayNode):
    """A ``dask.array.Array`` over ``node`` with the node's chunks; nothing is read until computed.

    >>> dask_array(array_nodes(h, "primary")["img"]).chunks   # doctest: +SKIP
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


# -- the sequence users see ------------------------------------------------------------
class Images:
    """A lazy, sliceable sequence of frames, one per event (databroker v1's ``get_images``).

    ``len(imgs)`` counts events; ``imgs[k]`` reads frame ``k`` (one request);
    ``imgs[10:20]``, ``imgs[[1, 5]]`` and ``imgs[::2]`` give new lazy sequences;
    ``numpy.asarray(imgs[10:20])`` reads those frames in requests aligned on the
    server's chunks; iteration reads a chunk at a time. Nothing reads the whole stack.

    >>> imgs = db.get_images(db[-1], "img")     # doctest: +SKIP
    >>> len(imgs), imgs.frame_shape, imgs.dtype # doctest: +SKIP
    (3, (10, 10), dtype('float64'))
    >>> imgs[0].sum()                           # doctest: +SKIP
    4950.0
    """

    def __init__(self, nodes: Sequence[ArrayNode], positions=None):
        import numpy

        if not nodes:
            raise ValueError("Images needs at least one array node.")
        shapes = {n.frame_shape for n in nodes}
        if len(shapes) > 1:
            raise ValueError(
                f"The runs' frames differ in shape ({sorted(shapes)}); read them one run at a time."
            )
        self._nodes = list(nodes)
        if positions is None:
            which = numpy.concatenate([numpy.full(n.shape[0], i, dtype="int64") for i, n in enumerate(nodes)])
            rows = numpy.concatenate([numpy.arange(n.shape[0], dtype="int64") for n in nodes])
            positions = (which, rows)
        self._which, self._rows = positions

    # pims-like description
    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame (of one event: ``(n, y, x)`` when an event holds n frames)."""
        return self._nodes[0].frame_shape

    @property
    def dtype(self):
        """The frames' numpy dtype."""
        return self._nodes[0].dtype

    pixel_type = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.frame_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.frame_shape)

    def __len__(self) -> int:
        return int(len(self._rows))

    def __getitem__(self, key):
        import numpy

        if isinstance(key, (int, numpy.integer)):
            n = len(self)
            index = int(key) + n if key < 0 else int(key)
            if not 0 <= index < n:
                raise IndexError(f"Frame {key} is out of range: this sequence has {n} frames.")
            node = self._nodes[self._which[index]]
            row = int(self._rows[index])
            tail = ",:" * len(node.frame_shape)
            return node.read(f"{row}{tail}" if tail else str(row), node.frame_shape, (row, row + 1))
        if isinstance(key, slice):
            selection = numpy.arange(len(self))[key]
        else:
            selection = numpy.asarray(key)
            if selection.dtype == bool:
                if selection.shape != (len(self),):
                    raise IndexError(f"A boolean mask must have length {len(self)}, not {selection.shape}.")
                selection = numpy.flatnonzero(selection)
            elif selection.dtype.kind not in "iu":
                raise TypeError(
                    f"Index frames with an int, a slice, a list of ints or a boolean mask, not {key!r}."
                )
            selection = numpy.where(selection < 0, selection + len(self), selection)
            if len(selection) and (selection.min() < 0 or selection.max() >= len(self)):
                raise IndexError(f"Frame index out of range: this sequence has {len(self)} frames.")
        return Images(self._nodes, (self._which[selection], self._rows[selection]))

    def get_frame(self, index: int):
        """Frame ``index`` (pims' name for ``imgs[index]``)."""
        return self[int(index)]

    def _blocks(self) -> Iterator[tuple[int, Any]]:
        """Yield ``(first position, frames)`` in request-sized blocks, in order."""
        n = len(self)
        position = 0
        while position < n:
            # The longest run of consecutive rows of one node from here.
            which = self._which[position]
            stop = position + 1
            while stop < n and self._which[stop] == which and self._rows[stop] == self._rows[stop - 1] + 1:
                stop += 1
            node = self._nodes[which]
            if stop - position == 1:
                # Not a run: gather the scattered rows of this node up to the next run.
                budget = max(1, REQUEST_BYTES // max(node.frame_bytes, 1))
                while stop < n and stop - position < budget and self._which[stop] == which and (
                    stop + 1 >= n or self._rows[stop + 1] != self._rows[stop] + 1
                ):
                    stop += 1
                yield position, _read_rows(node, self._rows[position:stop])
            else:
                for offset, start, end in _row_groups(node, self._rows[position:stop].tolist()):
                    yield position + offset, _read_rows(node, range(start, end))
            position = stop

    def __iter__(self) -> Iterator[Any]:
        blocks = self._blocks()
        while True:
            try:
                _, block = next(blocks)
            except StopIteration:
                return
            frames = list(block)
            del block  # only the frames handed out keep a block alive while the next one is read
            while frames:
                yield frames.pop(0)

    def read(self):
        """All frames of this (sub)sequence as one ``numpy.ndarray``."""
        import numpy

        out = numpy.empty(self.shape, dtype=self.dtype)
        for position, block in self._blocks():
            out[position : position + len(block)] = block
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.read()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"<Images: {len(self)} frames of shape {self.frame_shape}, dtype {self.dtype}>"


def get_images(headers, name: str, stream_name: str = "primary", handler_registry=None) -> Images:
    """Frames of data key ``name`` in ``stream_name`` of one or more runs, lazily.

    Parameters
    ----------
    headers : Header or list of Header
    name : str
        The data key (``"pilatus_image"``); an external key or a large internal array.
    stream_name : str
    handler_registry : dict, optional
        Accepted for compatibility and not used: the Tiled server reads the files
        (a warning says so, once).

    >>> imgs = get_images(db[-1], "img")   # doctest: +SKIP
    >>> imgs[-1].shape                    # doctest: +SKIP
    (10, 10)
    """
    from .header import Header

    warn_handlers_unused(handler_registry, "get_images(handler_registry=...)")
    headers = [headers] if isinstance(headers, Header) else list(headers)
    if not headers:
        raise ValueError("get_images needs at least one Header.")
    return Images([_node_or_raise(h, stream_name, name) for h in headers])


# -- handlers: accepted, documented, not used -----------------------------------------
_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_handlers_unused(handlers, where: str) -> None:
    """Warn once per call site kind that client-side handlers do not apply on Tiled."""
    if not handlers:
        return
    with _warned_lock:
        if where in _warned:
            return
        _warned.add(where)
    message = (
        f"{where}: handlers are not used with Tiled. The Tiled server opens the detector files "
        "itself (through its adapters, chosen by the data's MIME type); the client only reads "
        "arrays. To support a new file format, register an adapter on the server "
        "(tiled's adapters_by_mimetype) and map its spec with TiledWriter(spec_to_mimetype=...)."
    )
    logger.warning("%s", message)
    warnings.warn(message, UserWarning, stacklevel=3)


class HandlerRegistry(dict):
    """``db.reg``: v1's asset registry, kept for ``register_handler`` calls in old scripts.

    Registering records the handler (so ``db.reg.handler_reg`` shows it) and warns once
    that the Tiled server, not this client, reads the files.

    >>> db.reg.register_handler("AD_HDF5", object)   # doctest: +SKIP
    """

    @property
    def handler_reg(self) -> dict:
        return dict(self)

    def register_handler(self, spec: str, handler, overwrite: bool = False) -> None:
        """Record ``handler`` for ``spec`` (v1 signature); it is not used on Tiled."""
        if not isinstance(spec, str):
            raise TypeError(f"A handler is registered for a spec name (str), not {spec!r}.")
        if spec in self and self[spec] is not handler and not overwrite:
            raise KeyError(
                f"A handler is already registered for {spec!r}; pass overwrite=True to replace it."
            )
        self[spec] = handler
        warn_handlers_unused({spec: handler}, "register_handler")

    def deregister_handler(self, spec: str) -> None:
        """Forget the handler of ``spec``, if any."""
        self.pop(spec, None)
