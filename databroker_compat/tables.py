"""Tables (``pandas.DataFrame``) and datasets (``xarray.Dataset``) of event streams."""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

from . import _tiled
from .documents import datum_id_for, is_external
from .exceptions import UnknownField

logger = logging.getLogger(__name__)

INTERNAL_TABLE = "internal"
# Columns the writer adds to the internal table that are not data keys.
_BOOKKEEPING = ("seq_num", "time")


def _compile(fields: Iterable[str]):
    """v1 matched ``fields`` as exact names or as regular expressions."""
    patterns = []
    for f in fields:
        try:
            patterns.append(re.compile(f))
        except re.error:
            patterns.append(re.compile(re.escape(f)))
    return patterns


def _matches(name: str, fields: list[str], patterns) -> bool:
    return name in fields or any(p.fullmatch(name) for p in patterns)


def _header_fields(header) -> set[str]:
    """Names ``fields=`` may ask for: data keys, configuration keys, start and stop keys."""
    names = set(header.start) | set(header.stop)
    for d in header.descriptors:
        names.update(d["data_keys"])
        for conf in d.get("configuration", {}).values():
            names.update(conf.get("data", {}))
    return names


def check_fields_exist(fields, headers) -> None:
    """Raise ``UnknownField`` (a ``ValueError``, as in v1) for fields no run holds."""
    if not fields:
        return
    fields = list(fields)
    patterns = _compile(fields)
    known: set[str] = set()
    for h in headers:
        known |= _header_fields(h)
    missing = [
        f for f, p in zip(fields, patterns) if f not in known and not any(p.fullmatch(k) for k in known)
    ]
    if missing:
        raise UnknownField(
            f"The fields {missing} were not found in the data keys, configuration, start or stop of the "
            f"run(s) {[h.uid[:8] for h in headers]}. Known fields: {sorted(known)}."
        )


def _jsonb_key_order(key: str):
    """The order PostgreSQL's JSONB gives object keys: shorter first, then bytewise."""
    encoded = key.encode()
    return (len(encoded), encoded)


def _ordered_keys(selected: list[str], table_columns: list[str], order_lost: bool) -> list[str]:
    """Data keys in emission order: the table's column order where the catalog lost it."""
    if not order_lost:
        return selected
    position = {name: i for i, name in enumerate(table_columns)}
    return sorted(selected, key=lambda k: (k not in position, position.get(k, 0)))


def _local_timezone() -> str:
    import tzlocal

    return tzlocal.get_localzone_name() or "UTC"


def _convert_times(times, timezone: str | None, convert: bool, localize: bool):
    import pandas as pd

    if not (convert or localize):
        return times
    converted = pd.to_datetime(times, unit="s")
    if localize:
        converted = converted.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    return converted


def _arrow_to_frame(table):
    """``pyarrow.Table`` -> ``DataFrame`` keeping list columns as numpy arrays per row."""
    return table.to_pandas(types_mapper=None, split_blocks=True, self_destruct=True)


def _shape_rows(values, shape):
    """Give nested-list cells of multi-dimensional keys their numpy shape."""
    import numpy

    if len(shape) < 2:
        return values
    return [numpy.stack(v).reshape(shape) if v is not None else v for v in values]


def _filled_rows(node, seq_nums) -> list:
    """One array per event (``None`` where the node has no row for that ``seq_num``)."""
    from .images import _read_rows

    rows = [int(s) - 1 for s in seq_nums]
    present = [r for r in rows if 0 <= r < node.shape[0]]
    values = iter(_read_rows(node, present))
    return [next(values) if 0 <= r < node.shape[0] else None for r in rows]


def _numpy_dtype(data_type: dict):
    import numpy

    endianness = {"little": "<", "big": ">", "not_applicable": "|"}[data_type["endianness"]]
    return numpy.dtype(f"{endianness}{data_type['kind']}{data_type['itemsize']}")


def stream_frame(
    header,
    stream_name: str,
    *,
    fields=None,
    fill: bool = False,
    timezone: str | None = None,
    convert_times: bool = True,
    localize_times: bool = True,
):
    """One stream of one run as a DataFrame, with databroker v1's conventions."""
    import pandas as pd

    streams = header._streams()
    if stream_name not in streams:
        return pd.DataFrame()
    descriptor = next(d for d in header.descriptors if d["name"] == stream_name)
    data_keys = descriptor["data_keys"]
    field_list = list(fields) if fields is not None else None
    patterns = _compile(field_list or [])
    if field_list is None:
        selected = list(data_keys)
    else:
        selected = [k for k in data_keys if _matches(k, field_list, patterns)]

    path = _tiled.node_path(streams[stream_name])
    # Ask only for the columns wanted (the per-key timestamp columns double the bytes);
    # a key the writer stored as its own array node is simply absent from the answer.
    columns = [*_BOOKKEEPING, *(k for k in selected if not is_external(data_keys[k]))]
    # The server answers a column subset in alphabetical order, and a PostgreSQL catalog
    # (JSONB) keeps the descriptor's data keys in its own canonical order: the original
    # key order then survives only in the table's own column order. Read every column
    # when the descriptor's order may be that canonical one, to recover it.
    order_lost = len(selected) > 1 and list(data_keys) == sorted(data_keys, key=_jsonb_key_order)
    table = _tiled.read_table(
        header.v2.context, [*path, INTERNAL_TABLE], columns=None if order_lost else columns
    )
    if table is None:
        raw = pd.DataFrame({"seq_num": pd.Series([], dtype="int64"), "time": pd.Series([], dtype="float64")})
    else:
        raw = _arrow_to_frame(table)
        if not raw["seq_num"].is_monotonic_increasing:
            # A server may hand rows back out of order (PostgreSQL after deletes);
            # events are in seq_num order, as v1 gave them.
            raw = raw.sort_values("seq_num", kind="stable", ignore_index=True)
    seq_nums = raw["seq_num"].to_numpy()

    frame = pd.DataFrame(index=pd.Index(seq_nums, name="seq_num"))
    frame["time"] = _convert_times(
        pd.Series(raw["time"].to_numpy(), index=frame.index),
        timezone or header.db.timezone or _local_timezone(),
        convert_times,
        localize_times,
    )
    children = None
    selected = _ordered_keys(selected, list(raw.columns), order_lost)
    for key in selected:
        spec = data_keys[key]
        if key in raw.columns:
            values = _shape_rows(list(raw[key]), spec.get("shape") or [])
            frame[key] = values if len(values) and len(spec.get("shape") or []) > 1 else raw[key].to_numpy()
            continue
        if len(frame) == 0:
            frame[key] = pd.Series([], dtype=object)
            continue
        if is_external(spec) and not fill:
            frame[key] = [datum_id_for(header.uid, stream_name, key, int(s) - 1) for s in seq_nums]
            continue
        # External and filled, or an internal array the writer stored as its own node:
        # read only the rows of these events, in chunk-aligned requests.
        if children is None:
            from .images import array_nodes

            children = array_nodes(header, stream_name)
        if key not in children:
            logger.warning("Stream %r of run %s has no data for key %r.", stream_name, header.uid, key)
            frame[key] = [None] * len(frame)
            continue
        frame[key] = pd.Series(_filled_rows(children[key], seq_nums), index=frame.index, dtype=object)

    if field_list is not None:
        _add_header_values(frame, header, descriptor, field_list, patterns, set(data_keys))
    return frame


def _add_header_values(frame, header, descriptor, fields, patterns, data_keys: set) -> None:
    """v1 put requested configuration, start and stop values in the table as constant columns."""
    sources: list[dict] = []
    for conf in descriptor.get("configuration", {}).values():
        sources.append(dict(conf.get("data", {})))
    sources += [dict(header.start), dict(header.stop)]
    for source in sources:
        for key, value in source.items():
            if key in data_keys or key in frame.columns or not _matches(key, fields, patterns):
                continue
            frame[key] = [value] * len(frame)


def get_table(
    headers,
    *,
    stream_name: Any = "primary",
    fields=None,
    fill: bool = False,
    timezone: str | None = None,
    convert_times: bool = True,
    localize_times: bool = True,
):
    """Tables of several runs, concatenated in the order given."""
    import pandas as pd

    from .header import ALL

    check_fields_exist(fields, headers)
    frames = []
    for h in headers:
        names = h.stream_names if stream_name is ALL else [stream_name]
        for name in names:
            frame = stream_frame(
                h,
                name,
                fields=fields,
                fill=fill,
                timezone=timezone,
                convert_times=convert_times,
                localize_times=localize_times,
            )
            if len(frame.columns):
                frames.append(frame)
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    result = pd.concat(frames)
    result.index.name = "seq_num"
    return result


def stream_dataset(header, stream_name: str, *, lazy: bool = False):
    """One stream as an ``xarray.Dataset``: dimension ``time``, one variable per data key.

    Fields kept as array nodes (external detector data, large internal arrays) are
    ``dask`` arrays with the node's chunks when ``lazy`` (nothing read until computed),
    and read in chunk-aligned requests otherwise.
    """
    import numpy
    import xarray

    from .images import _read_rows, array_nodes, dask_array

    if stream_name not in header._streams():
        return xarray.Dataset()
    descriptor = next(d for d in header.descriptors if d["name"] == stream_name)
    data_keys = descriptor["data_keys"]
    nodes = array_nodes(header, stream_name)
    in_table = [k for k in data_keys if k not in nodes]
    frame = stream_frame(
        header, stream_name, fields=in_table, convert_times=False, localize_times=False, fill=False
    )
    times = frame["time"].to_numpy()
    rows = frame.index.to_numpy().astype("int64") - 1
    variables = {}
    for key in data_keys:
        spec = data_keys[key]
        if key in nodes:
            node = nodes[key]
            if len(rows) and (rows.min() < 0 or rows.max() >= node.shape[0]):
                logger.warning(
                    "Stream %r of run %s: %r has %d rows for %d events; left out of the dataset.",
                    stream_name, header.uid, key, node.shape[0], len(rows),
                )
                continue
            if lazy:
                values = dask_array(node)
                if not (len(rows) == node.shape[0] and (rows == numpy.arange(len(rows))).all()):
                    values = values[rows]
            else:
                values = _read_rows(node, rows)
        elif key in frame.columns:
            shape = spec.get("shape") or []
            column = list(frame[key])
            values = numpy.stack(column) if len(column) and len(shape) else frame[key].to_numpy()
        else:
            continue
        dims = ("time", *(f"dim_{key}_{i}" for i in range(numpy.ndim(values) - 1)))
        variables[key] = xarray.Variable(dims, values, attrs=dict(spec))
    return xarray.Dataset(variables, coords={"time": times, "seq_num": ("time", frame.index.to_numpy())})
