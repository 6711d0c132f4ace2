"""The documents of one event stream, rebuilt from its stream node, in emission order.

Per stream: its descriptors (from the metadata), its events (from the ``internal``
table, read once as Arrow and turned into documents one page at a time), and resource
and datum documents for its external keys (from the array nodes the writer
registered). Tiled's table endpoints return a whole table or a whole partition
(TiledWriter writes every row to partition 0); no endpoint gives a row range of a
table, so the columns asked for are held in their compact Arrow form while the Python
documents are built page by page.
"""

from __future__ import annotations

import bisect
import logging
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .. import _tiled
from ..arrays import ArrayNode, read_span
from ..layout import (
    BOOKKEEPING_COLUMNS,
    INTERNAL_TABLE,
    column_of,
    datum_id_for,
    emitted_key_order,
    event_uid_for,
    frame_index,
    is_external,
    resource_uid_for,
    timestamp_column,
)
from ..model import to_plain
from ..run import Run

if TYPE_CHECKING:
    import numpy
    import pyarrow

__all__ = ["ARRAY_PAGE_BYTES", "ExternalKey", "StreamDocuments", "resource_location"]

logger = logging.getLogger(__name__)

#: One page of array data (rows of array nodes turned into documents at once) stays near this size.
ARRAY_PAGE_BYTES = 64 * 1024 * 1024
# The frame number in the datum_kwargs of the usual specs (``index`` otherwise).
_POINT_NUMBER_SPECS = {"AD_HDF5", "AD_TIFF", "AD_CBF", "AD_SPE", "AD_EIGER", "AD_EIGER2", "TPX_HDF5"}
# Data-source parameters the writer's consolidators add; not part of resource_kwargs.
_CONSOLIDATOR_PARAMETERS = {"spec", "join_method", "chunk_shape", "template", "swmr", "locking"}


class ExternalKey:
    """One external key of one stream: its resource document and datum ids.

    >>> ext = ExternalKey(run, "primary", "img", item)   # doctest: +SKIP
    >>> ext.datum(1)["datum_kwargs"]                     # doctest: +SKIP
    {'point_number': 0}
    """

    def __init__(self, run: Run, stream_name: str, key: str, item: dict) -> None:
        self.key = key
        self.item = item
        self.uid = resource_uid_for(run.uid, stream_name, key)
        self.run_uid = run.uid
        self.stream_name = stream_name
        self._run = run
        self._resource: dict | None = None

    @property
    def spec(self) -> str:
        """The resource spec the writer kept in the array node's metadata (``""`` if none)."""
        return str((self.item["attributes"].get("metadata") or {}).get("spec", ""))

    def resource(self) -> dict:
        """The resource document, rebuilt from the array node's data source (one request, cached)."""
        if self._resource is None:
            source = _tiled.data_source(self._run.context, _tiled.node_path(self.item))
            path, kwargs = resource_location(source)
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
        """The datum document of the event ``seq_num``."""
        index = frame_index(seq_num)
        name = "point_number" if self.spec.upper() in _POINT_NUMBER_SPECS else "index"
        return {
            "resource": self.uid,
            "datum_kwargs": {name: index},
            "datum_id": datum_id_for(self.run_uid, self.stream_name, self.key, index),
        }

    def datum_id(self, seq_num: int) -> str:
        """The datum id of the event ``seq_num``."""
        return datum_id_for(self.run_uid, self.stream_name, self.key, frame_index(seq_num))


def resource_location(source: dict | None) -> tuple[str, dict]:
    """(file path, resource_kwargs) of an array node's data source.

    >>> resource_location({"assets": [{"data_uri": "file://localhost/data/scan.h5", "num": None}],
    ...                    "mimetype": "application/x-hdf5", "parameters": {"dataset": "/entry", "swmr": True}})
    ('/data/scan.h5', {'dataset': '/entry'})
    """
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


class StreamDocuments:
    """The documents of one event stream, in the order they were emitted.

    >>> docs = StreamDocuments(h.run, "primary", item, fields=None, fill=False, page_size=1000)  # doctest: +SKIP
    >>> [name for _, name, _ in docs.documents()][:2]                                           # doctest: +SKIP
    ['descriptor', 'event']

    ``rows=(first, stop)`` gives the events of table rows ``first:stop`` only (``stop``
    ``None``: to the end; ``stop <= first``: none, and the table is not read), with every
    descriptor and the resources of those events: a live follower
    (:mod:`databroker_compat.live`) reads what is new in a run being written.
    """

    def __init__(
        self,
        run: Run,
        stream_name: str,
        item: dict,
        *,
        fields: set[str] | None,
        fill: bool,
        page_size: int,
        rows: tuple[int, int | None] = (0, None),
    ) -> None:
        self.run = run
        self.rows = rows
        self.name = stream_name
        self.item = item
        self.fill = fill
        self.page_size = page_size
        self.descriptors = run.descriptors_of(stream_name)
        self.data_keys = self.descriptors[0]["data_keys"] if self.descriptors else {}
        self.keys = [k for k in self.data_keys if fields is None or k in fields]

    # -- reading --------------------------------------------------------------
    def _read_table(self, parts: dict[str, dict]) -> pyarrow.Table | None:
        table_item = parts.get(INTERNAL_TABLE)
        if table_item is None:
            return None
        available = set(table_item["attributes"]["structure"].get("columns") or [])
        wanted = list(BOOKKEEPING_COLUMNS)
        for key in self.keys:
            for name in (column_of(key), timestamp_column(key)):
                if name in available:
                    wanted.append(name)
        table = _tiled.read_table(self.run.context, _tiled.node_path(table_item), columns=wanted)
        if table is None:
            return None
        seq = table.column("seq_num")
        if len(seq) > 1:
            import pyarrow.compute as pc

            if not pc.all(pc.greater(seq.slice(1), seq.slice(0, len(seq) - 1))).as_py():
                table = table.sort_by("seq_num")
        return table

    def _node(self, item: dict) -> ArrayNode:
        return self.run.array_nodes(self.name)[item["id"]]

    def _read_rows(self, item: dict, start: int, stop: int) -> numpy.ndarray:
        """Rows ``start:stop`` of an array node (the first axis is the event axis).

        Read in chunk-aligned requests: requests stay small (a server refuses answers
        over its size limit) and a file the server cannot read is named in the error.
        """
        return read_span(self._node(item), start, stop)

    def _rows_per_page(self, items: Iterable[dict]) -> int:
        """The page size, lowered so that one page of array data stays near 64 MiB."""
        nodes = self.run.array_nodes(self.name)
        row_bytes = sum(nodes[item["id"]].frame_bytes for item in items if item["id"] in nodes)
        if not row_bytes:
            return self.page_size
        return max(1, min(self.page_size, ARRAY_PAGE_BYTES // row_bytes))

    # -- documents --------------------------------------------------------------
    def documents(self) -> Iterator[tuple[float, str, dict]]:
        """Yield ``(sort time, name, doc)``; the sort time never decreases."""
        descriptors = [to_plain(d) for d in self.descriptors]
        if not descriptors:
            return
        times = [d["time"] for d in descriptors]
        parts = self.run.stream_children(self.name)
        first_row, stop_row = self.rows
        # No rows wanted: the table is not read at all (a live feed before the stop).
        table = None if stop_row is not None and stop_row <= first_row else self._read_table(parts)
        # Events hold their keys in the order the RunEngine put them in, which the
        # table's columns keep (the descriptor's data_keys may differ, or be reordered).
        stored = (parts[INTERNAL_TABLE]["attributes"]["structure"].get("columns") or []) if INTERNAL_TABLE in parts else []
        data_order = emitted_key_order(self.keys, stored)
        stamp_order = emitted_key_order(self.keys, stored, column=timestamp_column)
        externals: dict[str, ExternalKey] = {}
        arrays: dict[str, dict] = {}
        missing = []
        for key in self.keys:
            column = column_of(key)
            if is_external(self.data_keys[key]):
                if key in parts:
                    externals[key] = ExternalKey(self.run, self.name, key, parts[key])
                else:
                    missing.append(key)
            elif table is not None and column in table.column_names:
                continue
            elif column in parts:
                arrays[key] = parts[column]
            else:
                missing.append(key)
        n_rows = 0 if table is None else table.num_rows
        stop_row = n_rows if stop_row is None else min(stop_row, n_rows)
        if missing and stop_row > first_row:
            logger.warning(
                "Stream %r of run %s holds no data for %s; its events come without them.",
                self.name, self.run.uid, missing,
            )

        clock = float("-inf")
        emitted = 0  # descriptors emitted so far

        def emit_descriptors(until: float) -> Iterator[tuple[float, str, dict]]:
            nonlocal emitted, clock
            while emitted < len(descriptors) and (emitted == 0 or descriptors[emitted]["time"] <= until):
                clock = max(clock, descriptors[emitted]["time"])
                yield clock, "descriptor", descriptors[emitted]
                emitted += 1

        table_keys = [k for k in self.keys if table is not None and column_of(k) in table.column_names]
        resources_sent: set[str] = set()
        array_items = [*arrays.values(), *(ext.item for ext in externals.values())] if self.fill else list(arrays.values())
        page_size = self._rows_per_page(array_items) if array_items else self.page_size
        for start in range(first_row, stop_row, page_size):
            assert table is not None  # n_rows > 0
            page = table.slice(start, min(page_size, stop_row - start))
            rows = page.num_rows
            seq_nums = page.column("seq_num").to_pylist()
            row_times = page.column("time").to_pylist()
            values: dict[str, Any] = {k: page.column(column_of(k)).to_pylist() for k in table_keys}
            stamps = {
                k: page.column(timestamp_column(k)).to_pylist()
                for k in self.keys
                if timestamp_column(k) in page.column_names
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
                stamped = {}
                for key in data_order:
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
                    stamped[key] = stamp[i] if stamp is not None else t
                timestamps = {key: stamped[key] for key in stamp_order if key in stamped}
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
