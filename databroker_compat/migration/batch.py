"""Partition-level facts of the target: many runs' nodes and stream nodes in a few searches.

The worker decides and verifies a partition's runs from what the target holds. Asked run
by run, that costs a metadata request and a listing of the run's children per run;
asked here, it costs, per batch of runs:

- **one search** of the container, ``In("start.uid", uids)`` (one request per
  :data:`IN_VALUES` uids and per :data:`PAGE` hits): each item holds the run's metadata
  (start and stop documents) and, in its structure, ``count``: how many children the
  run node has;
- **one deep search** of the container for the stream nodes,
  ``In("uid", descriptor uids)`` with ``max_depth=2`` (a stream node's metadata is its
  first descriptor; one request per :data:`IN_VALUES` descriptor uids and per
  :data:`PAGE` hits). It needs a server that offers deep search
  (``"search_deep" in item["links"]``, SQL catalogs do).

A run's streams are known from the batch (:attr:`RunNode.streams`) only when every child
of the run was found as a stream: the run's ``count`` equals the number of stream nodes
found under it. Otherwise (an extra or renamed stream, a stream whose descriptor uid is
not the source's, an older writer's ``streams`` node, no deep search) ``streams`` is
``None`` and the caller asks run by run, as before, so nothing the per-run path would
report goes unreported.

What no search gives: a table's rows. The table structure in a listing (with or without
``include_data_sources``) holds the Arrow schema, ``npartitions`` and the columns, and
its data source only the SQL table's name and dataset id, never a row count; so row counts
and checksums still need one table read per stream (Tiled has no multi-node table read:
``/container/full`` cannot serialise Bluesky metadata).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _tiled
from ..layout import is_stream

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = [
    "IN_VALUES",
    "PAGE",
    "RunNode",
    "Searches",
    "Shares",
    "deep_search_supported",
    "find_runs",
    "find_streams",
    "run_nodes",
]

#: Values of one ``In`` query per request (keeps the URL far below 8 KiB).
IN_VALUES = 100
#: Hits per page (Tiled's largest page).
PAGE = 300
#: Depth of a stream node below the container of the runs.
STREAM_DEPTH = 2


@dataclass
class Searches:
    """Requests the batch's searches sent (retries not counted).

    >>> Searches().requests
    0
    """

    requests: int = 0


@dataclass
class RunNode:
    """What one batch knows of one run node.

    Attributes
    ----------
    uid : str
    item : dict
        The run node's item: ``attributes.metadata`` (start, stop) and
        ``attributes.structure.count`` (its children).
    streams : dict or None
        Stream name -> stream node item, when the deep search found every child of the
        run as a stream; ``None``: not known from the batch (ask the run itself).
    """

    uid: str
    item: dict
    streams: dict[str, dict] | None = None

    @property
    def metadata(self) -> dict:
        """The run's metadata (start and stop documents)."""
        return dict(self.item["attributes"].get("metadata") or {})

    @property
    def children(self) -> int | None:
        """How many children the run node has (``None`` if the server did not say)."""
        return (self.item["attributes"].get("structure") or {}).get("count")


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), IN_VALUES):
        yield values[i : i + IN_VALUES]


def _search(context: Any, url: str, key: str, values: list[str], counter: Searches, **extra: Any) -> Iterator[dict]:
    """The items ``In(key, values)`` matches under ``url`` (a search or search-deep link), paged."""
    # tiled's own encoding of In (queries.In.encode), spelt out: the client's helper is private.
    query: dict[str, Any] = {
        "filter[in][condition][key]": key,
        "filter[in][condition][value]": json.dumps(values),
        **extra,
    }
    params = {**query, "page[offset]": 0, "page[limit]": PAGE}
    next_url: str | None = url
    while next_url is not None:
        body = _tiled.get_json(context, next_url, params=params)
        counter.requests += 1
        yield from body["data"]
        next_url = body["links"].get("next")
        # The next link carries the page but not the query: without it, the next page
        # would list every child of the container.
        params = query


def find_runs(container: Container, uids: Iterable[str], counter: Searches | None = None) -> dict[str, dict]:
    """The items of the runs among ``uids`` in ``container``, by uid (one search per 100 uids).

    >>> items = find_runs(container, uids)                  # doctest: +SKIP
    >>> items[uid]["attributes"]["structure"]["count"]       # doctest: +SKIP
    1
    """
    counter = counter if counter is not None else Searches()
    wanted = list(dict.fromkeys(uids))
    found: dict[str, dict] = {}
    for chunk in _chunks(wanted):
        for item in _search(container.context, container.item["links"]["search"], "start.uid", chunk, counter):
            if item["id"] in chunk:
                found[item["id"]] = item
    return found


def deep_search_supported(container: Container) -> bool:
    """Whether the server offers deep search under ``container``.

    >>> deep_search_supported(container)   # doctest: +SKIP
    True
    """
    return "search_deep" in container.item["links"]


def find_streams(
    container: Container,
    runs: Mapping[str, dict],
    descriptor_uids: Mapping[str, Iterable[str]],
    counter: Searches | None = None,
) -> dict[str, dict[str, dict] | None]:
    """Stream name -> stream item for each run of ``runs``, from one deep search.

    ``runs`` are run items (from :func:`find_runs`); ``descriptor_uids`` the source's
    descriptor uids per run. A run maps to ``None`` unless every one of its children was
    found as a stream (see the module's notes); every run does when the server has no
    deep search.

    >>> find_streams(container, items, {uid: [descriptor_uid]})[uid]["primary"]["id"]   # doctest: +SKIP
    'primary'
    """
    counter = counter if counter is not None else Searches()
    result: dict[str, dict[str, dict] | None] = dict.fromkeys(runs)
    if not runs or not deep_search_supported(container):
        return result
    wanted = list(dict.fromkeys(u for run in runs for u in descriptor_uids.get(run, ())))
    base = [p for p in [*container.item["attributes"].get("ancestors", []), container.item["id"]] if p]
    found: dict[str, dict[str, dict]] = {}
    for chunk in _chunks(wanted):
        url = container.item["links"]["search_deep"]
        for item in _search(container.context, url, "uid", chunk, counter, max_depth=STREAM_DEPTH):
            ancestors = list(item["attributes"].get("ancestors") or [])
            if len(ancestors) != len(base) + 1 or ancestors[:-1] != base or not is_stream(item):
                continue
            if ancestors[-1] in runs:
                found.setdefault(ancestors[-1], {})[item["id"]] = item
    for uid, item in runs.items():
        streams = found.get(uid, {})
        if RunNode(uid, item).children == len(streams):
            result[uid] = streams
    return result


def run_nodes(
    container: Container, uids: Iterable[str], descriptor_uids: Mapping[str, Iterable[str]], counter: Searches
) -> dict[str, RunNode]:
    """The :class:`RunNode` of each run of ``uids`` present in ``container``: one search, one deep search.

    >>> nodes = run_nodes(container, uids, {uid: [descriptor_uid]}, Searches())   # doctest: +SKIP
    >>> sorted(nodes[uid].streams)                                               # doctest: +SKIP
    ['primary']
    """
    items = find_runs(container, uids, counter)
    streams = find_streams(container, items, descriptor_uids, counter) if descriptor_uids else {}
    return {uid: RunNode(uid, item, streams.get(uid)) for uid, item in items.items()}


@dataclass
class Shares:
    """Requests of a batch's searches, divided among its runs so that they sum to the total.

    >>> shares = Shares(3, 4)
    >>> [shares.next() for _ in range(4)]
    [1, 1, 1, 0]
    """

    total: int
    runs: int
    given: int = field(default=0, init=False)

    def next(self) -> int:
        """The share of the next run (the remainder goes one each to the first runs)."""
        base, extra = divmod(self.total, max(self.runs, 1))
        share = base + (1 if self.given < extra else 0)
        self.given += 1
        return share
