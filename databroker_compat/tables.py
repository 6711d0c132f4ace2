"""Tables (``pandas.DataFrame``) and datasets (``xarray.Dataset``) of event streams.

Every function here takes :class:`~databroker_compat.run.Run` objects (``header.run``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .arrays import ArrayNode, dask_array, read_rows
from .fields import FieldPatterns, check_fields_exist, header_values
from .layout import BOOKKEEPING_COLUMNS, datum_id_for, frame_index, is_all, is_external
from .run import Run

if TYPE_CHECKING:
    import numpy
    import pandas as pd
    import pyarrow
    import xarray

logger = logging.getLogger(__name__)

__all__ = ["get_table", "stream_dataset", "stream_frame"]


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
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


def _convert_times(times: pd.Series, timezone: str, convert: bool, localize: bool) -> pd.Series:
    import pandas as pd

    if not (convert or localize):
        return times
    converted = pd.to_datetime(times, unit="s")
    if localize:
        converted = converted.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    return converted


def _arrow_to_frame(table: pyarrow.Table) -> pd.DataFrame:
    """``pyarrow.Table`` -> ``DataFrame`` keeping list columns as numpy arrays per row."""
    return table.to_pandas(types_mapper=None, split_blocks=True, self_destruct=True)


def _shape_rows(values: list, shape: Sequence[int]) -> list:
    """Give nested-list cells of multi-dimensional keys their numpy shape."""
    import numpy

    if len(shape) < 2:
        return values
    return [numpy.stack(v).reshape(shape) if v is not None else v for v in values]


def _filled_rows(node: ArrayNode, seq_nums: numpy.ndarray) -> list:
    """One array per event (``None`` where the node has no row for that ``seq_num``)."""
    rows = [frame_index(s) for s in seq_nums]
    present = [r for r in rows if 0 <= r < node.shape[0]]
    values = iter(read_rows(node, present))
    return [next(values) if 0 <= r < node.shape[0] else None for r in rows]


def stream_frame(
    run: Run,
    stream_name: str,
    *,
    fields: Any = None,
    fill: bool = False,
    timezone: str | None = None,
    convert_times: bool = True,
    localize_times: bool = True,
) -> pd.DataFrame:
    """One stream of one run as a DataFrame, with databroker v1's conventions.

    ``timezone`` is the zone times are localised to (this machine's when ``None``).

    >>> stream_frame(h.run, "primary", fields=["det"], timezone="UTC")   # doctest: +SKIP
    """
    import pandas as pd

    streams = run.streams()
    descriptor = run.first_descriptor(stream_name)
    if stream_name not in streams or descriptor is None:
        return pd.DataFrame()
    data_keys = descriptor["data_keys"]
    patterns = FieldPatterns(fields) if fields is not None else None
    selected = list(data_keys) if patterns is None else patterns.select(data_keys, descriptor.get("object_keys"))

    # Ask only for the columns wanted (the per-key timestamp columns double the bytes);
    # a key the writer stored as its own array node is simply absent from the answer.
    columns = [*BOOKKEEPING_COLUMNS, *(k for k in selected if not is_external(data_keys[k]))]
    # The server answers a column subset in alphabetical order, and a PostgreSQL catalog
    # (JSONB) keeps the descriptor's data keys in its own canonical order: the original
    # key order then survives only in the table's own column order. Read every column
    # when the descriptor's order may be that canonical one, to recover it.
    order_lost = len(selected) > 1 and list(data_keys) == sorted(data_keys, key=_jsonb_key_order)
    table = run.read_internal_table(stream_name, columns=None if order_lost else columns)
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
        timezone or _local_timezone(),
        convert_times,
        localize_times,
    )
    children: dict[str, ArrayNode] | None = None
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
            frame[key] = [datum_id_for(run.uid, stream_name, key, frame_index(s)) for s in seq_nums]
            continue
        # External and filled, or an internal array the writer stored as its own node:
        # read only the rows of these events, in chunk-aligned requests.
        if children is None:
            children = run.array_nodes(stream_name)
        if key not in children:
            logger.warning("Stream %r of run %s has no data for key %r.", stream_name, run.uid, key)
            frame[key] = [None] * len(frame)
            continue
        frame[key] = pd.Series(_filled_rows(children[key], seq_nums), index=frame.index, dtype=object)

    if patterns is not None:
        _add_header_values(frame, run, descriptor, patterns, set(data_keys))
    return frame


def _add_header_values(
    frame: pd.DataFrame, run: Run, descriptor: dict, patterns: FieldPatterns, data_keys: set[str]
) -> None:
    """v1 put requested configuration, start and stop values in the table as constant columns."""
    values, _ = header_values(patterns, descriptor, run.start, run.stop, taken=data_keys | set(frame.columns))
    for key, value in values.items():
        frame[key] = [value] * len(frame)


def get_table(
    runs: Sequence[Run],
    *,
    stream_name: Any = "primary",
    fields: Any = None,
    fill: bool = False,
    timezones: Sequence[str | None] | None = None,
    convert_times: bool = True,
    localize_times: bool = True,
) -> pd.DataFrame:
    """Tables of several runs, concatenated in the order given.

    ``timezones`` gives, per run, the zone its times are localised to (this machine's
    where ``None``); ``stream_name=ALL`` (or databroker's own ``ALL``) takes every stream of each run.

    >>> get_table([h.run], fields=["det"], timezones=["UTC"])   # doctest: +SKIP
    """
    import pandas as pd

    check_fields_exist(fields, runs)
    zones = list(timezones) if timezones is not None else [None] * len(runs)
    frames = []
    for run, zone in zip(runs, zones, strict=True):
        names = run.stream_names if is_all(stream_name) else [stream_name]
        for name in names:
            frame = stream_frame(
                run,
                name,
                fields=fields,
                fill=fill,
                timezone=zone,
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


def stream_dataset(run: Run, stream_name: str, *, lazy: bool = False) -> xarray.Dataset:
    """One stream as an ``xarray.Dataset``: dimension ``time``, one variable per data key.

    Fields kept as array nodes (external detector data, large internal arrays) are
    ``dask`` arrays with the node's chunks when ``lazy`` (nothing read until computed),
    and read in chunk-aligned requests otherwise.

    >>> stream_dataset(h.run, "primary", lazy=True)["img"].chunks   # doctest: +SKIP
    """
    import numpy
    import xarray

    descriptor = run.first_descriptor(stream_name)
    if stream_name not in run.streams() or descriptor is None:
        return xarray.Dataset()
    data_keys = descriptor["data_keys"]
    nodes = run.array_nodes(stream_name)
    in_table = [k for k in data_keys if k not in nodes]
    frame = stream_frame(run, stream_name, fields=in_table, convert_times=False, localize_times=False, fill=False)
    times = frame["time"].to_numpy()
    rows = frame.index.to_numpy().astype("int64") - 1
    variables = {}
    for key in data_keys:
        spec = data_keys[key]
        values: Any
        if key in nodes:
            node = nodes[key]
            if len(rows) and (rows.min() < 0 or rows.max() >= node.shape[0]):
                logger.warning(
                    "Stream %r of run %s: %r has %d rows for %d events; left out of the dataset.",
                    stream_name, run.uid, key, node.shape[0], len(rows),
                )
                continue
            if lazy:
                values = dask_array(node)
                if not (len(rows) == node.shape[0] and (rows == numpy.arange(len(rows))).all()):
                    values = values[rows]
            else:
                values = read_rows(node, rows)
        elif key in frame.columns:
            shape = spec.get("shape") or []
            column = list(frame[key])
            values = numpy.stack(column) if len(column) and len(shape) else frame[key].to_numpy()
        else:
            continue
        dims = ("time", *(f"dim_{key}_{i}" for i in range(numpy.ndim(values) - 1)))
        variables[key] = xarray.Variable(dims, values, attrs=dict(spec))
    return xarray.Dataset(variables, coords={"time": times, "seq_num": ("time", frame.index.to_numpy())})
