"""Searching as databroker v1 did: ``db(...)``, its filters and aliases, and the lazy ``Results``.

:class:`Searching` holds the v1 search methods of a :class:`~databroker_compat.Broker`
(``db(...)``, ``add_filter``, ``alias``, ``stats``, ...); :class:`Results` is what a
search returns; :class:`SavedSearches` keeps a broker's filters and aliases.
"""

from __future__ import annotations

import heapq
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union

from .exceptions import AmbiguousKey, RunNotFound
from .lookup import SEARCH_RESULTS, oldest_first, runs_for_key, runs_in_list
from .queries import (
    DataKey,
    Plan,
    backend_of,
    check_data_keys,
    current_names,
    data_key_node,
    matches,
    parse,
    plan_search,
    runs_declaring,
    time_range,
    uid_queries,
)

if TYPE_CHECKING:
    from tiled.client.base import BaseClient
    from tiled.client.container import Container

    from .header import Header
    from .live import Follower, LiveSubscription

logger = logging.getLogger(__name__)

__all__ = ["Results", "SavedSearches", "Searching", "build_nodes", "headers_of"]

# Runs per request when iterating: Tiled's largest page (its default is 100). Fewer,
# larger pages cost less, as every page re-runs the query on the server.
PAGE_SIZE = 300


def build_nodes(db: Searching, text_search: str | None, query: Mapping, *, stacklevel: int = 3) -> tuple:
    """Parse ``db(...)`` arguments: conditions, and the keywords v1 read itself.

    ``since``/``until`` (or v1's deprecated ``start_time``/``stop_time``, with a
    ``DeprecationWarning`` pointing ``stacklevel`` frames up) are read in
    ``db.timezone``; ``data_key`` becomes a :class:`~databroker_compat.queries.DataKey`
    node (see :mod:`databroker_compat.queries.keywords`).

    >>> build_nodes(db, None, {"plan_name": "scan", "since": "2024-01"})   # doctest: +SKIP
    """
    query = current_names(query, stacklevel=stacklevel)
    since, until = query.pop("since", None), query.pop("until", None)
    data_key = query.pop("data_key", None)  # None: no condition, as in v1
    nodes: tuple = parse(query, text_search)
    if since is not None or until is not None:
        nodes += parse(time_range(since, until, getattr(db, "timezone", None)))
    if data_key is not None:
        nodes += (data_key_node(data_key),)
    return nodes


#: What an alias names: a query dict, or a function returning one.
AliasQuery = Union[dict, Callable[..., dict]]


class SavedSearches:
    """The conditions a broker keeps for later searches: its filters and its aliases.

    Filters (``db.add_filter``) are one query dict that every search and lookup must
    also meet; a key given again replaces its condition, as in v1. Aliases
    (``db.alias``, ``db.dynamic_alias``) name a query dict, or a function returning one.
    Conditions are parsed when they are saved, so a bad one fails at once.

    >>> saved = SavedSearches()
    >>> saved.add_filter(db, {"owner": "alice"}); saved.filters     # doctest: +SKIP
    {'owner': 'alice'}
    """

    def __init__(self) -> None:
        self.filters: dict = {}
        self.aliases: dict[str, AliasQuery] = {}

    def add_filter(self, db: Searching, query: Mapping) -> None:
        """Merge ``query`` into the filters (parsed first: a bad filter is not kept).

        v1's old names ``start_time``/``stop_time`` are kept as ``since``/``until``.
        """
        merged = {**self.filters, **current_names(query, stacklevel=3)}
        build_nodes(db, None, merged)
        self.filters = merged

    def clear_filters(self) -> None:
        """Forget every filter."""
        self.filters = {}

    def add_alias(self, db: Searching, name: str, query: AliasQuery) -> None:
        """Name ``query`` (a dict, parsed now, or a callable returning one) as ``db.<name>``."""
        if not isinstance(query, Mapping) and not callable(query):
            raise TypeError(f"dynamic_alias needs a callable returning a query dict, not {query!r}.")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"An alias must be a Python identifier, not {name!r}.")
        if hasattr(type(db), name) or name in vars(db):
            raise ValueError(f"{name!r} is already an attribute of Broker; choose another alias name.")
        if isinstance(query, Mapping):
            query = current_names(query, stacklevel=3)
            build_nodes(db, None, query)
        self.aliases[name] = query

    def query_of(self, db: Searching, name: str) -> dict | None:
        """The conditions alias ``name`` stands for now (``None``: no such alias).

        A function of no arguments is called as is; a function of one gets the broker.
        """
        if name not in self.aliases:
            return None
        query = self.aliases[name]
        if callable(query):
            return query(db) if _takes_an_argument(query) else query()
        return query


def _takes_an_argument(func: Callable) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.default is p.empty and p.kind in positional for p in params)


class Searching:
    """The v1 search methods of a :class:`~databroker_compat.Broker`: ``db(...)``, filters, aliases.

    A base class of ``Broker``; it reads the broker's runs (``run_container``), its
    ``timezone`` and the filters and aliases it keeps (``_searches``).
    """

    _searches: SavedSearches
    timezone: str | None

    if TYPE_CHECKING:

        @property
        def run_container(self) -> Container: ...

        def header_of(self, run: BaseClient) -> Header: ...

    def __call__(self, text_search: str | None = None, **query: Any) -> Results:
        """Search as v1 did: keyword arguments are MongoDB-style conditions on the start document.

        ``since``/``until`` bound ``start.time`` (strings read in ``self.timezone``;
        v1's deprecated names ``start_time``/``stop_time`` work, with a
        ``DeprecationWarning``); ``data_key="det"`` finds the runs whose descriptors
        declare that key; ``start.``/``stop.`` prefixes choose the document; operators
        ``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $not $all $size $and $or
        $nor $where``. Active filters (:meth:`add_filter`) apply. Returns a lazy
        :class:`~databroker_compat.results.Results`, oldest run first.

        >>> res = db(plan_name="scan", scan_id={"$gt": 10}, since="2024-01")   # doctest: +SKIP
        >>> res[-1].start["scan_id"]                                           # doctest: +SKIP
        118
        """
        nodes = build_nodes(self, None, self._searches.filters)
        return Results(self, nodes + build_nodes(self, text_search, query))

    def add_filter(self, **query: Any) -> None:
        """Add conditions that every later search and lookup must also meet.

        As in v1, filters are one dict: a key given again replaces its earlier condition.

        >>> db.add_filter(owner="alice", since="2024-01")   # doctest: +SKIP
        """
        self._searches.add_filter(self, query)  # a bad filter fails here, not at the next search

    def clear_filters(self) -> None:
        """Remove every filter added by :meth:`add_filter`.

        >>> db.clear_filters()   # doctest: +SKIP
        """
        self._searches.clear_filters()

    @property
    def filters(self) -> dict:
        """The active filters (a copy), as one query dict.

        >>> db.filters   # doctest: +SKIP
        {'owner': 'alice'}
        """
        return dict(self._searches.filters)

    def alias(self, key: str, **query: Any) -> None:
        """Name a search: ``db.alias("cal", plan_name="calib")`` makes ``db.cal`` run it.

        >>> db.alias("cal", plan_name="calib"); len(db.cal)   # doctest: +SKIP
        3
        """
        self._searches.add_alias(self, key, query)

    def dynamic_alias(self, key: str, func: Callable[..., dict]) -> None:
        """Name a search whose conditions ``func()`` returns each time it is used.

        As in v1, ``func`` takes no arguments; a function of one argument gets the broker.

        >>> db.dynamic_alias("today", lambda: {"since": time.time() - 86400})   # doctest: +SKIP
        """
        self._searches.add_alias(self, key, func)

    @property
    def aliases(self) -> dict:
        """Alias name -> query dict (:meth:`alias`) or callable (:meth:`dynamic_alias`)."""
        return dict(self._searches.aliases)

    def __getattr__(self, name: str) -> Results:
        # Only aliases get here (every attribute is set in __init__); a private name is
        # never an alias, and must not recurse while the instance is being built or copied.
        query = None if name.startswith("_") else self._searches.query_of(self, name)
        if query is not None:
            return self(**query)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def stats(self) -> dict:
        """What v1's ``stats()`` summarised, for a Tiled catalog.

        v1 returned MongoDB collection statistics; a Tiled server has no such thing.
        This gives the number of runs (with the active filters), the server address
        and the SQL backend searches run on.

        >>> db.stats()   # doctest: +SKIP
        {'runs': 11, 'uri': 'http://localhost:8000/api/v1/', 'backend': 'sqlite'}
        """
        return {
            "runs": len(self()),
            "uri": str(self.run_container.context.api_uri).split("?")[0],
            "backend": backend_of(self.run_container),
        }


class Results:
    """Runs matching a search, oldest first; lazy, and iterable more than once.

    Nothing is asked of the server until the results are used. Each iteration asks
    again, so runs written since appear. ``len()`` counts on the server when the
    search runs there exactly. ``results[key]`` takes the keys ``db[key]`` takes,
    within the results: ``results[-1]`` is the newest match, ``results[42]`` the most
    recent match with ``scan_id`` 42, ``results["a1b2c"]`` a uid prefix,
    ``results[-3:]`` the newest three. Calling the results searches within them.

    >>> res = db(plan_name="scan", since="2024-01")     # doctest: +SKIP
    >>> len(res), res[-1].start["scan_id"]              # doctest: +SKIP
    (12, 118)
    >>> [h.start["uid"] for h in res(sample="Si")]      # doctest: +SKIP
    ['0b7c...', ...]
    """

    def __init__(self, db: Searching, nodes: tuple, *, base: Container | None = None) -> None:
        self._db = db
        self._nodes = tuple(nodes)
        self._base = db.run_container if base is None else base
        check_data_keys(self._nodes, self._base)  # a data_key this server cannot answer fails now
        self._prepared: tuple[list[Container], tuple | None] | None = None

    # -- searching --------------------------------------------------------
    def __call__(self, text_search: str | None = None, **query: Any) -> Results:
        """Search within these results (all conditions of both must hold).

        >>> db(plan_name="scan")(sample="Si")    # doctest: +SKIP
        """
        return Results(self._db, self._nodes + build_nodes(self._db, text_search, query), base=self._base)

    def _prepare(self) -> tuple[list[Container], tuple | None]:
        """(server-side containers, client-side check or None), planned once.

        One container, unless ``data_key`` names runs in more than one ``In`` query's
        worth: then one per chunk of their uids, merged by start time when iterated.
        """
        if self._prepared is None:
            conditions = tuple(n for n in self._nodes if not isinstance(n, DataKey))
            plan: Plan = plan_search(conditions, self._base)
            container = self._base
            for query in plan.queries:
                container = container.search(query)
            containers = [container]
            uids: set[str] | None = None
            for node in self._nodes:
                if isinstance(node, DataKey):
                    found = set(runs_declaring(self._base, node.name))
                    uids = found if uids is None else uids & found
            if uids is not None:
                containers = [container.search(query) for query in uid_queries(sorted(uids))]
            self._prepared = (containers, None if plan.exact else conditions)
        return self._prepared

    def _runs(self) -> Iterator[BaseClient]:
        """Run clients of the matches, oldest first."""
        containers, check = self._prepare()
        pages = [oldest_first(c).values().page_size(PAGE_SIZE) for c in containers]
        runs = pages[0] if len(pages) == 1 else heapq.merge(*pages, key=_start_time)
        for run in runs:
            if check is None or matches(check, _documents(run)):
                yield run

    # -- the sequence -----------------------------------------------------
    def __iter__(self) -> Iterator[Header]:
        for run in self._runs():
            yield self._db.header_of(run)

    def __len__(self) -> int:
        containers, check = self._prepare()
        if check is None:
            return sum(len(c) for c in containers)
        return sum(1 for _ in self._runs())

    def __bool__(self) -> bool:
        containers, check = self._prepare()
        if check is None:
            return any(len(c) > 0 for c in containers)
        return next(self._runs(), None) is not None

    def __getitem__(self, key: Any) -> Any:
        containers, check = self._prepare()
        if check is None and len(containers) == 1:
            found = runs_for_key(containers[0], key, where=SEARCH_RESULTS, subject="results")
        else:
            found = runs_in_list(list(self._runs()), key, where=SEARCH_RESULTS, subject="results")
        return headers_of(self._db, found)

    def __contains__(self, header: Any) -> bool:
        uid = header.uid if hasattr(header, "uid") else header
        try:
            self[uid]
        except (RunNotFound, AmbiguousKey):
            return False
        return True

    def __repr__(self) -> str:
        return f"<Results of {len(self._nodes)} condition(s) over {self._db!r}>"

    # -- live runs (see live/) ----------------------------------------------
    def follow(self, **kwargs: Any) -> Follower:
        """Headers of runs matching these results that appear from now on (``Broker.follow``'s arguments).

        A condition on the stop document (``exit_status="success"``) is met once the
        stop is in; a run is yielded the first time it matches.

        >>> for h in db(plan_name="scan").follow(timeout=600):   # doctest: +SKIP
        ...     print(h.start["scan_id"])
        """
        from .live import follow

        return follow(self._db, self, **kwargs)  # type: ignore[arg-type]  # the db of Results is a Broker

    def subscribe(self, callback: Callable[[str, Any], Any], **kwargs: Any) -> LiveSubscription:
        """Feed ``callback`` the documents of each new run matching these results (``Broker.subscribe``).

        >>> sub = db(plan_name="scan").subscribe(print)   # doctest: +SKIP
        """
        from .live import subscribe

        return subscribe(self._db, self, callback, **kwargs)  # type: ignore[arg-type]


def _start_time(run: BaseClient) -> float:
    return run.metadata["start"]["time"]


def _documents(run: BaseClient) -> dict:
    metadata = run.metadata
    return {"start": metadata.get("start") or {}, "stop": metadata.get("stop") or {}}


def headers_of(db: Searching, found: Any) -> Any:
    """The Header (or nested lists of Headers) of run clients found by a lookup.

    >>> headers_of(db, [run_a, run_b])     # doctest: +SKIP
    [<Header ...>, <Header ...>]
    """
    if isinstance(found, list):
        return [headers_of(db, f) for f in found]
    return db.header_of(found)
