"""What TiledWriter stores, and how: the one owner of the layout's names and rules.

A run written by ``bluesky_tiled_plugins.TiledWriter`` (spec version 3.0)::

    <start uid>            container, specs [BlueskyRun]; metadata {"start", "stop", "notes"?}
    └─ <stream name>       container, specs [BlueskyEventStream, composite]; metadata: the descriptor
       ├─ internal         table: seq_num, time, <internal keys>, ts_<key>
       ├─ <external key>   array over detector files (event axis first)
       └─ <large array>    array held by the server (event axis first)

Older writers put the streams one level down, under a ``streams`` container. Every
module that needs one of these names or rules takes it from here. See
``docs/architecture.md`` and the project's ``TILED_LAYOUT.md`` notes.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "ALL",
    "BOOKKEEPING_COLUMNS",
    "INTERNAL_TABLE",
    "LEGACY_STREAMS_NODE",
    "RESERVED_COLUMNS",
    "RUN_SPEC",
    "STREAM_SPEC",
    "TIMESTAMP_PREFIX",
    "column_of",
    "datum_id_for",
    "emitted_key_order",
    "event_uid_for",
    "frame_index",
    "is_all",
    "is_external",
    "is_stream",
    "resource_uid_for",
    "spec_names",
    "timestamp_column",
]

#: The spec of a run node.
RUN_SPEC = "BlueskyRun"
#: The spec of a stream node.
STREAM_SPEC = "BlueskyEventStream"
#: The table node of a stream that holds its events' internal data.
INTERNAL_TABLE = "internal"
#: The container older writers put the streams in.
LEGACY_STREAMS_NODE = "streams"
#: Columns the writer adds to the internal table that are not data keys.
BOOKKEEPING_COLUMNS = ("seq_num", "time")
#: Data keys the writer renames because they collide with its bookkeeping columns.
RESERVED_COLUMNS = {"time": "time_", "seq_num": "seq_num_"}
#: The prefix of a data key's per-event timestamp column.
TIMESTAMP_PREFIX = "ts_"


class _AllStreams:
    """Sentinel meaning "every stream" (``stream_name=ALL``), as in databroker v1."""

    _instance: _AllStreams | None = None

    def __new__(cls) -> _AllStreams:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL"

    def __reduce__(self) -> tuple:
        return (_AllStreams, ())


#: Every stream, as ``stream_name=ALL`` meant in databroker v1.
ALL = _AllStreams()


def is_all(value: Any) -> bool:
    """Whether ``value`` means "every stream": this package's :data:`ALL` or databroker's own.

    Scripts written for databroker pass ``databroker.ALL`` (a class named ``ALL`` in a
    ``databroker`` module: ``databroker.utils.ALL`` in 1.x and 2.x, ``databroker.core.ALL``
    in 0.x). It is recognised by its name and module, so databroker is never imported.

    >>> is_all(ALL), is_all("primary"), is_all(None)
    (True, False, False)
    >>> is_all(type("ALL", (), {"__module__": "databroker.utils"}))
    True
    >>> is_all(type("ALL", (), {"__module__": "elsewhere"}))
    False
    """
    if value is ALL:
        return True
    if not isinstance(value, type) or value.__name__ != "ALL":
        return False
    return str(getattr(value, "__module__", "")).partition(".")[0] == "databroker"


def column_of(key: str) -> str:
    """The internal-table column of a data key (``time`` and ``seq_num`` are renamed).

    >>> column_of("det"), column_of("time")
    ('det', 'time_')
    """
    return RESERVED_COLUMNS.get(key, key)


def timestamp_column(key: str) -> str:
    """The column of a data key's per-event timestamps.

    >>> timestamp_column("det"), timestamp_column("seq_num")
    ('ts_det', 'ts_seq_num_')
    """
    return f"{TIMESTAMP_PREFIX}{column_of(key)}"


def emitted_key_order(
    keys: Sequence[str], columns: Sequence[str], column: Callable[[str], str] = column_of
) -> list[str]:
    """``keys`` in the order the RunEngine's events held them, from the internal table's columns.

    The writer builds the table from the events' rows (``seq_num``, ``time``, the
    ``data``, then the ``timestamps`` as ``ts_<key>``), so its columns keep the order of
    the first event's ``data`` and ``timestamps``, also where the descriptor's
    ``data_keys`` came in another order (a baseline stream) or a catalog lost it
    (PostgreSQL's JSONB). ``column`` maps a key to its column (:func:`timestamp_column`
    for timestamps). Keys not in the table (external keys, arrays stored as their own
    nodes) keep their place in ``keys``; the others fill the remaining places in column order.

    >>> emitted_key_order(["m2", "m1", "img"], ["seq_num", "time", "m1", "m2"])
    ['m1', 'm2', 'img']
    >>> emitted_key_order(["b", "a"], ["ts_a", "ts_b"], column=timestamp_column)
    ['a', 'b']
    """
    position = {name: i for i, name in enumerate(columns)}
    stored = sorted((k for k in keys if column(k) in position), key=lambda k: position[column(k)])
    placed = iter(stored)
    return [next(placed) if column(k) in position else k for k in keys]


def is_external(spec: Mapping[str, Any]) -> bool:
    """Whether a data key's values live outside the events (in detector files).

    The writer's rule: a data key that has an ``external`` entry at all is external (its
    normaliser turns ``external: None`` into ``""`` and still routes the key to files).

    >>> is_external({"external": "FILESTORE:"}), is_external({"external": ""}), is_external({})
    (True, True, False)
    """
    return "external" in spec


def spec_names(item: Mapping[str, Any]) -> set[str]:
    """The spec names of a node, from its item (specs are dicts or plain names).

    >>> sorted(spec_names({"attributes": {"specs": [{"name": "BlueskyRun"}, "x"]}}))
    ['BlueskyRun', 'x']
    """
    return {s["name"] if isinstance(s, Mapping) else str(s) for s in item["attributes"].get("specs") or []}


def is_stream(item: Mapping[str, Any]) -> bool:
    """Whether a child node of a run is an event stream.

    A stream has the ``BlueskyEventStream`` spec; without it (a writer that set no specs),
    a stream is a container or composite node whose metadata is a descriptor.

    >>> is_stream({"attributes": {"specs": [{"name": "BlueskyEventStream"}]}})
    True
    >>> is_stream({"attributes": {"specs": [], "structure_family": "container",
    ...            "metadata": {"data_keys": {}}}})
    True
    >>> is_stream({"attributes": {"specs": [], "structure_family": "container", "metadata": {}}})
    False
    """
    if STREAM_SPEC in spec_names(item):
        return True
    attributes = item["attributes"]
    metadata = attributes.get("metadata") or {}
    return attributes.get("structure_family") in ("container", "composite") and "data_keys" in metadata


# -- identifiers Tiled does not keep, derived deterministically ------------------
_NAMESPACE = _uuid.UUID("5f0c2c8e-3c1a-4f7e-9a55-2b7d6a0c1e42")


def resource_uid_for(run_uid: str, stream_name: str, data_key: str) -> str:
    """The uid given to the resource of one external key of one stream.

    TiledWriter does not keep resource uids; this one is stable across calls and
    processes, so datum ids built on it stay consistent.

    >>> resource_uid_for("r", "primary", "img") == resource_uid_for("r", "primary", "img")
    True
    """
    return str(_uuid.uuid5(_NAMESPACE, f"resource/{run_uid}/{stream_name}/{data_key}"))


def frame_index(seq_num: int) -> int:
    """The row (0-based) of an array node that holds the frame of event ``seq_num``.

    >>> frame_index(1)
    0
    """
    return int(seq_num) - 1


def datum_id_for(run_uid: str, stream_name: str, data_key: str, index: int) -> str:
    """The datum id of frame ``index`` (0-based) of one external key: ``<resource uid>/<index>``.

    >>> datum_id_for("r", "primary", "img", 2).endswith("/2")
    True
    """
    return f"{resource_uid_for(run_uid, stream_name, data_key)}/{index}"


def event_uid_for(descriptor_uid: str, seq_num: int) -> str:
    """A stable event uid, derived from the descriptor uid and ``seq_num``.

    >>> event_uid_for("d", 1) == event_uid_for("d", 1) != event_uid_for("d", 2)
    True
    """
    return str(_uuid.uuid5(_NAMESPACE, f"event/{descriptor_uid}/{seq_num}"))
