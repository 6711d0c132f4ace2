"""databroker v1 / MongoDB-style queries, translated to ``tiled.queries``.

A v1 search is a dict of MongoDB conditions on the start document
(``{"plan_name": "scan", "scan_id": {"$in": [1, 5]}}``). Tiled keeps the start and
stop documents of a run in its metadata, so each condition becomes a query on
``start.<key>`` (or ``stop.<key>``) executed by the server.

One concept in four stages, one module each:

- :mod:`~databroker_compat.queries.parse`: the query dict as nodes (:func:`parse`);
  what cannot run raises :class:`~databroker_compat.exceptions.QueryNotSupported`;
- :mod:`~databroker_compat.queries.times`: ``since``/``until`` (:func:`time_range`),
  read by the package's one time parser, :func:`databroker_compat._time.to_timestamp`;
- :mod:`~databroker_compat.queries.translate`: server-side Tiled queries
  (:func:`plan_search`), exact where the catalog's SQL agrees with MongoDB, a superset
  elsewhere;
- :mod:`~databroker_compat.queries.evaluate`: MongoDB semantics on the client
  (:func:`matches`), to check the runs of a superset;
- :mod:`~databroker_compat.queries.keywords`: the keywords v1 read itself
  (``since``/``until``, their deprecated names ``start_time``/``stop_time``, ``data_key``).

The support matrix (operator x backend x server/client) is in ``docs/searching.md``.

>>> from databroker_compat.queries import parse, matches
>>> nodes = parse({"plan_name": "scan", "num_points": {"$gt": 3}})
>>> matches(nodes, {"start": {"plan_name": "scan", "num_points": 5}, "stop": {}})
True
"""

from __future__ import annotations

from .evaluate import matches
from .keywords import (
    DEPRECATED_NAMES,
    STREAM_DEPTH,
    UIDS_PER_QUERY,
    DataKey,
    check_data_keys,
    current_names,
    data_key_node,
    runs_declaring,
    stream_path,
    uid_queries,
)
from .parse import FIELD_OPERATORS, STOP_KEYS, Cond, Group, Node, Text, Where, is_number, parse
from .times import TIME_FORMATS, normalize_time, time_range
from .translate import (
    POSTGRESQL,
    SCHEMA_TYPES,
    SQLITE,
    UNKNOWN,
    Plan,
    Translator,
    backend_of,
    plan_search,
    server_path,
)

__all__ = [
    "DEPRECATED_NAMES",
    "FIELD_OPERATORS",
    "POSTGRESQL",
    "SCHEMA_TYPES",
    "SQLITE",
    "STOP_KEYS",
    "STREAM_DEPTH",
    "TIME_FORMATS",
    "UIDS_PER_QUERY",
    "UNKNOWN",
    "Cond",
    "DataKey",
    "Group",
    "Node",
    "Plan",
    "Text",
    "Translator",
    "Where",
    "backend_of",
    "check_data_keys",
    "current_names",
    "data_key_node",
    "is_number",
    "matches",
    "normalize_time",
    "parse",
    "plan_search",
    "runs_declaring",
    "server_path",
    "stream_path",
    "time_range",
    "uid_queries",
]
