"""Tables (``pandas.DataFrame``) and datasets (``xarray.Dataset``) of event streams."""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

from . import _tiled
from .documents import datum_id_for
from .exceptions import UnknownField

logger = logging.getLogger(__name__)

INTERNAL_TABLE = "internal"
# Columns the writer adds to the internal table that are not data keys.
_BOOKKEEPING = ("seq_num", "time")


def is_external(spec: dict) -> bool:
    """Whether a data key's data lives in detector files rather than in the events."""
    return "external" in spec and spec["external"] is not None


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
    names = set()
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
            f"The fields {missing} were not found in the data keys or configuration of the "
            f"run(s) {[h.uid[:8] for h in headers]}. Known fields: {sorted(known)}."
        )


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


def _stream_children(header, stream_name: str) -> dict[str, dict]:
    context = header.v2.context
    return {
        item["id"]: item
        for item in _tiled.iter_children(context, header._streams()[stream_name], metadata=False)
    }


def _read_whole_array(header, item: dict):
    import numpy

    structure = item["attributes"]["structure"]
    dtype = _numpy_dtype(structure["data_type"])
    return _tiled.read_array(
        header.v2.context, _tiled.node_path(item), dtype=dtype, shape=tuple(structure["shape"])
    ) if numpy.prod(structure["shape"]) else numpy.empty(structure["shape"], dtype=dtype)


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
    table = _tiled.read_table(header.v2.context, [*path, INTERNAL_TABLE])
    if table is None:
        raw = pd.DataFrame({"seq_num": pd.Series([], dtype="int64"), "time": pd.Series([], dtype="float64")})
    else:
        raw = _arrow_to_frame(table)
    seq_nums = raw["seq_num"].to_numpy()

    frame = pd.DataFrame(index=pd.Index(seq_nums, name="seq_num"))
    frame["time"] = _convert_times(
        pd.Series(raw["time"].to_numpy(), index=frame.index),
        timezone or header.db.timezone or _local_timezone(),
        convert_times,
        localize_times,
    )
    children = None
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
        # External and filled, or an internal array the writer stored as its own node.
        if children is None:
            children = _stream_children(header, stream_name)
        if key not in children:
            logger.warning("Stream %r of run %s has no data for key %r.", stream_name, header.uid, key)
            frame[key] = [None] * len(frame)
            continue
        array = _read_whole_array(header, children[key])
        rows = [array[int(s) - 1] if 0 < int(s) <= len(array) else None for s in seq_nums]
        frame[key] = pd.Series(rows, index=frame.index, dtype=object)

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


def stream_dataset(header, stream_name: str):
    """One stream as an ``xarray.Dataset``: dimension ``time``, one variable per data key."""
    import numpy
    import xarray

    frame = stream_frame(header, stream_name, convert_times=False, localize_times=False, fill=True)
    if not len(frame.columns):
        return xarray.Dataset()
    times = frame["time"].to_numpy()
    variables = {}
    descriptor = next(d for d in header.descriptors if d["name"] == stream_name)
    for key in frame.columns:
        if key == "time":
            continue
        shape = descriptor["data_keys"].get(key, {}).get("shape") or []
        column = list(frame[key])
        values = numpy.stack(column) if len(column) and len(shape) else frame[key].to_numpy()
        dims = ("time", *(f"dim_{key}_{i}" for i in range(numpy.ndim(values) - 1)))
        variables[key] = xarray.Variable(dims, values, attrs=dict(descriptor["data_keys"].get(key, {})))
    ds = xarray.Dataset(variables, coords={"time": times, "seq_num": ("time", frame.index.to_numpy())})
    return ds
