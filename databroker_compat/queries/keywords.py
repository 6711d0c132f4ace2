"""The keywords v1's ``db(...)`` read itself, instead of taking them as start-document conditions.

v1 passed every keyword of ``db(...)`` to MongoDB as a condition on the start document,
except these, which it treated specially. Each is treated deliberately here, so that none
becomes a ``start.<keyword>`` condition that silently matches nothing:

===============  ===============================================================
``since``        ``start.time >= since`` (v1's string formats, numbers, datetimes)
``until``        ``start.time < until``
``start_time``   v1's deprecated name of ``since``: accepted, with a ``DeprecationWarning``
``stop_time``    v1's deprecated name of ``until``: accepted, with a ``DeprecationWarning``
``data_key``     runs whose descriptors declare this data key (:class:`DataKey`), found
                 with Tiled's deep search of the streams; a server without it raises
                 :class:`~databroker_compat.exceptions.QueryNotSupported`
text search      ``db("words")``, the first positional argument (``text_search=``)
===============  ===============================================================

>>> current_names({"start_time": 10, "plan_name": "scan"})   # doctest: +SKIP
{'since': 10, 'plan_name': 'scan'}
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tiled.queries import In, KeyPresent

from ..exceptions import ConflictingArguments, QueryNotSupported
from ..layout import LEGACY_STREAMS_NODE
from .translate import server_path

if TYPE_CHECKING:
    from tiled.client.container import Container

__all__ = [
    "DEPRECATED_NAMES",
    "STREAM_DEPTH",
    "UIDS_PER_QUERY",
    "DataKey",
    "check_data_keys",
    "current_names",
    "data_key_node",
    "runs_declaring",
    "stream_path",
    "uid_queries",
]

#: v1's old names of ``since`` and ``until``.
DEPRECATED_NAMES = {"start_time": "since", "stop_time": "until"}
#: Run uids per ``In`` query: about 4 KiB of URL, well under the servers' limits.
UIDS_PER_QUERY = 100
#: How deep a deep search for streams goes: a stream sits right below its run, or one
#: level further down (under ``streams``) for older writers.
STREAM_DEPTH = 3


@dataclass(frozen=True)
class DataKey:
    """``db(data_key=name)``: the runs whose descriptors declare the data key ``name``.

    A search node of its own: it is answered by a deep search of the catalog's stream
    nodes (:func:`runs_declaring`), not by a condition on the start document.
    """

    name: str


def current_names(query: Mapping, *, stacklevel: int = 2) -> dict:
    """``query`` with v1's deprecated ``start_time``/``stop_time`` renamed ``since``/``until``.

    Warns (``DeprecationWarning``, pointing ``stacklevel`` frames up) when an old name is
    used. Both names of one argument raise
    :class:`~databroker_compat.exceptions.ConflictingArguments` (a ``TypeError``, as v1).

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     current_names({"start_time": 10, "plan_name": "scan"})
    {'plan_name': 'scan', 'since': 10}
    """
    renamed = dict(query)
    for old, new in DEPRECATED_NAMES.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise ConflictingArguments(
                f"Give {new!r} or its deprecated name {old!r}, not both (databroker v1 refused "
                f"both too); write {new}=... only.",
                argument=new,
                deprecated=old,
            )
        warnings.warn(
            f"db({old}=...) is v1's deprecated spelling of db({new}=...); write {new}= instead.",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        renamed[new] = renamed.pop(old)
    return renamed


def data_key_node(value: Any) -> DataKey:
    """The :class:`DataKey` node of ``db(data_key=value)``, or ``QueryNotSupported``.

    >>> data_key_node("det")
    DataKey(name='det')
    """
    if not isinstance(value, str) or not value:
        raise QueryNotSupported(
            f"data_key takes the name of one data key (db(data_key='det')), not {value!r}.", value=value
        )
    if "." in value or not server_path(value):  # one plain key: a dot would name a nested one
        raise QueryNotSupported(
            f"db(data_key={value!r}): a data key with characters other than letters, digits and '_' "
            f"cannot be searched on the server. Write instead: "
            f"[h for h in db(...) if {value!r} in h.fields()] (one request per run: narrow the search first).",
            value=value,
        )
    return DataKey(value)


def _deep_search_message(name: str) -> str:
    return (
        f"db(data_key={name!r}) needs a server that searches the streams of runs (Tiled's deep "
        "search), and this one does not, so it would have to list every run. Write instead: "
        f"[h for h in db(...) if {name!r} in h.fields()] (one request per run: narrow the search "
        "first, e.g. db(plan_name=..., since=...))."
    )


def check_data_keys(nodes: Iterable[Any], container: Container) -> None:
    """Raise ``QueryNotSupported`` now if ``nodes`` hold a :class:`DataKey` the server cannot answer.

    Asks nothing of the server: whether it offers deep search is in the node's links.

    >>> check_data_keys([DataKey("det")], db.run_container)   # doctest: +SKIP
    """
    for node in nodes:
        if isinstance(node, DataKey) and "search_deep" not in container.item["links"]:
            raise QueryNotSupported(_deep_search_message(node.name), data_key=node.name)


def runs_declaring(container: Container, name: str) -> list[str]:
    """The keys (start uids) of the runs of ``container`` with a stream declaring data key ``name``.

    One deep search of the stream nodes for ``data_keys.<name>`` (a page per 100 matching
    streams): the runs that do not declare it are never listed.

    >>> runs_declaring(db.run_container, "det")   # doctest: +SKIP
    ['0c9f...', ...]
    """
    if "search_deep" not in container.item["links"]:
        raise QueryNotSupported(_deep_search_message(name), data_key=name)
    found = container.search_deep(KeyPresent(f"data_keys.{name}"), max_depth=STREAM_DEPTH)
    uids: dict[str, None] = {}
    for path in found.keys():
        located = stream_path(path)
        if located is not None:
            uids[located[0]] = None
    return list(uids)


def stream_path(path: tuple[str, ...]) -> tuple[str, str] | None:
    """``(run key, stream name)`` of a deep-search result path, or ``None`` if it is not a stream of a run.

    A stream is ``(run, stream)``, or ``(run, "streams", stream)`` as older writers nested it;
    anything deeper (the streams of a catalog nested in this one) is not.

    >>> stream_path(("r1", "primary")), stream_path(("r1", "streams", "primary")), stream_path(("sub", "r1", "primary"))
    (('r1', 'primary'), ('r1', 'primary'), None)
    """
    if len(path) == 2:
        return path[0], path[1]
    if len(path) == 3 and path[1] == LEGACY_STREAMS_NODE:
        return path[0], path[2]
    return None


def uid_queries(uids: list[str]) -> list[In]:
    """``In("start.uid", ...)`` queries of at most :data:`UIDS_PER_QUERY` uids each (one per chunk).

    >>> [len(q.value) for q in uid_queries([str(i) for i in range(250)])]
    [100, 100, 50]
    """
    return [In("start.uid", uids[i : i + UIDS_PER_QUERY]) for i in range(0, len(uids), UIDS_PER_QUERY)]
