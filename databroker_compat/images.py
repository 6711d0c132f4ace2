"""Frames of detector images and other array data, read lazily from Tiled (v1's ``get_images``).

:func:`get_images` returns an :class:`Images` sequence that reads only the frames asked
for, in requests aligned on the array node's chunks (see :mod:`databroker_compat.arrays`
for the array nodes themselves). :func:`read_frames` reads rows of one array field.
Handlers are accepted and not used (:mod:`databroker_compat.handlers`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Union

from . import arrays
from .arrays import ArrayNode, dask_array, read_rows, read_span, row_groups
from .handlers import HandlerRegistry, warn_handlers_unused
from .run import HasRun, Run, as_run

if TYPE_CHECKING:
    import numpy

logger = logging.getLogger(__name__)

__all__ = ["ArrayNode", "HandlerRegistry", "Images", "array_nodes", "dask_array", "get_images", "read_frames"]

#: A run, or anything holding one as ``.run`` (a ``Header``).
RunSource = Union[Run, HasRun]


def array_nodes(source: RunSource, stream_name: str) -> dict[str, ArrayNode]:
    """The array nodes of one stream of a run, by data key (one request, cached on the run).

    >>> array_nodes(h, "primary")["img"].shape      # doctest: +SKIP
    (3, 10, 10)
    """
    return as_run(source).array_nodes(stream_name)


def read_frames(source: RunSource, stream_name: str, field: str, start: int = 0, stop: int | None = None) -> numpy.ndarray:
    """Rows ``start:stop`` (0-based event index, i.e. ``seq_num - 1``) of an array field.

    Returns a ``numpy.ndarray`` of shape ``(stop - start, *frame_shape)``. Reads only those
    rows, in as few requests as the node's chunks allow. ``source`` is a ``Header`` or
    its ``Run``.

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
    return read_span(as_run(source).array_node(stream_name, field), start, stop)


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

    def __init__(
        self, nodes: Sequence[ArrayNode], positions: tuple[numpy.ndarray, numpy.ndarray] | None = None
    ) -> None:
        import numpy

        if not nodes:
            raise ValueError("Images needs at least one array node.")
        shapes = {n.frame_shape for n in nodes}
        if len(shapes) > 1:
            raise ValueError(f"The runs' frames differ in shape ({sorted(shapes)}); read them one run at a time.")
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
    def dtype(self) -> numpy.dtype:
        """The frames' numpy dtype."""
        return self._nodes[0].dtype

    pixel_type = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """``(number of frames, *frame_shape)``."""
        return (len(self), *self.frame_shape)

    @property
    def ndim(self) -> int:
        """``1 + len(frame_shape)``."""
        return 1 + len(self.frame_shape)

    def __len__(self) -> int:
        return int(len(self._rows))

    def __getitem__(self, key: Any) -> Any:
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
                raise TypeError(f"Index frames with an int, a slice, a list of ints or a boolean mask, not {key!r}.")
            selection = numpy.where(selection < 0, selection + len(self), selection)
            if len(selection) and (selection.min() < 0 or selection.max() >= len(self)):
                raise IndexError(f"Frame index out of range: this sequence has {len(self)} frames.")
        return Images(self._nodes, (self._which[selection], self._rows[selection]))

    def get_frame(self, index: int) -> numpy.ndarray:
        """Frame ``index`` (pims' name for ``imgs[index]``)."""
        return self[int(index)]

    def _blocks(self) -> Iterator[tuple[int, numpy.ndarray]]:
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
                budget = max(1, arrays.REQUEST_BYTES // max(node.frame_bytes, 1))
                while stop < n and stop - position < budget and self._which[stop] == which and (
                    stop + 1 >= n or self._rows[stop + 1] != self._rows[stop] + 1
                ):
                    stop += 1
                yield position, read_rows(node, self._rows[position:stop])
            else:
                for offset, start, end in row_groups(node, self._rows[position:stop].tolist()):
                    yield position + offset, read_rows(node, range(start, end))
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

    def read(self) -> numpy.ndarray:
        """All frames of this (sub)sequence as one ``numpy.ndarray``."""
        import numpy

        out = numpy.empty(self.shape, dtype=self.dtype)
        for position, block in self._blocks():
            out[position : position + len(block)] = block
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> numpy.ndarray:
        out = self.read()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"<Images: {len(self)} frames of shape {self.frame_shape}, dtype {self.dtype}>"


def _runs_of(sources: RunSource | Sequence[RunSource]) -> list[Run]:
    """v1 took one Header or any iterable of them."""
    if isinstance(sources, Run):
        return [sources]
    if hasattr(sources, "run"):  # a Header (which iterates over its keys, not runs)
        return [sources.run]
    return [as_run(s) for s in sources]


def get_images(
    sources: RunSource | Sequence[RunSource], name: str, stream_name: str = "primary", handler_registry: Any = None
) -> Images:
    """Frames of data key ``name`` in ``stream_name`` of one or more runs, lazily.

    Parameters
    ----------
    sources : Header, Run, or a list of them
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
    warn_handlers_unused(handler_registry, "get_images(handler_registry=...)")
    runs = _runs_of(sources)
    if not runs:
        raise ValueError("get_images needs at least one Header.")
    return Images([run.array_node(stream_name, name) for run in runs])
