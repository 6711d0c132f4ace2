"""``Results``: the lazy answer to ``db(...)``, as databroker v1 returned it."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union

from .exceptions import AmbiguousKey, RunNotFound
from .lookup import SEARCH_RESULTS, oldest_first, runs_for_key, runs_in_list
from .queries import Plan, matches, parse, plan_search, time_range

if TYPE_CHECKING:
    from tiled.client.base import BaseClient
    from tiled.client.container import Container

    from .broker import Broker
    from .header import Header

logger = logging.getLogger(__name__)

__all__ = ["Results", "SavedSearches", "build_nodes"]

# Runs per request when iterating: Tiled's largest page (its default is 100). Fewer,
# larger pages cost less, as every page re-runs the query on the server.
PAGE_SIZE = 300


def build_nodes(db: Broker, text_search: str | None, query: Mapping) -> tuple:
    """Parse ``db(...)`` arguments (``since``/``until`` read in ``db.timezone``).

    >>> build_nodes(db, None, {"plan_name": "scan", "since": "2024-01"})   # doctest: +SKIP
    """
    query = dict(query)
    since, until = query.pop("since", None), query.pop("until", None)
    nodes = parse(query, text_search)
    if since is not None or until is not None:
        nodes += parse(time_range(since, until, getattr(db, "timezone", None)))
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

    def add_filter(self, db: Broker, query: Mapping) -> None:
        """Merge ``query`` into the filters (parsed first: a bad filter is not kept)."""
        merged = {**self.filters, **query}
        build_nodes(db, None, merged)
        self.filters = merged

    def clear_filters(self) -> None:
        """Forget every filter."""
        self.filters = {}

    def add_alias(self, db: Broker, name: str, query: AliasQuery) -> None:
        """Name ``query`` (a dict, parsed now, or a callable returning one) as ``db.<name>``."""
        if not isinstance(query, Mapping) and not callable(query):
            raise TypeError(f"dynamic_alias needs a callable returning a query dict, not {query!r}.")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"An alias must be a Python identifier, not {name!r}.")
        if hasattr(type(db), name) or name in vars(db):
            raise ValueError(f"{name!r} is already an attribute of Broker; choose another alias name.")
        if isinstance(query, Mapping):
            build_nodes(db, None, query)
            query = dict(query)
        self.aliases[name] = query

    def query_of(self, db: Broker, name: str) -> dict | None:
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

    def __init__(self, db: Broker, nodes: tuple, *, base: Container | None = None) -> None:
        self._db = db
        self._nodes = tuple(nodes)
        self._base = db.run_container if base is None else base
        self._prepared: tuple[Container, tuple | None] | None = None

    # -- searching --------------------------------------------------------
    def __call__(self, text_search: str | None = None, **query: Any) -> Results:
        """Search within these results (all conditions of both must hold).

        >>> db(plan_name="scan")(sample="Si")    # doctest: +SKIP
        """
        return Results(self._db, self._nodes + build_nodes(self._db, text_search, query), base=self._base)

    def _prepare(self) -> tuple[Container, tuple | None]:
        """(server-side container, client-side check or None), planned once."""
        if self._prepared is None:
            plan: Plan = plan_search(self._nodes, self._base)
            container = self._base
            for query in plan.queries:
                container = container.search(query)
            self._prepared = (container, None if plan.exact else self._nodes)
        return self._prepared

    def _runs(self) -> Iterator[BaseClient]:
        """Run clients of the matches, oldest first."""
        container, check = self._prepare()
        for run in oldest_first(container).values().page_size(PAGE_SIZE):
            if check is None or matches(check, _documents(run)):
                yield run

    # -- the sequence -----------------------------------------------------
    def __iter__(self) -> Iterator[Header]:
        for run in self._runs():
            yield self._db.header_of(run)

    def __len__(self) -> int:
        container, check = self._prepare()
        if check is None:
            return len(container)
        return sum(1 for _ in self._runs())

    def __bool__(self) -> bool:
        container, check = self._prepare()
        if check is None:
            return len(container) > 0
        return next(self._runs(), None) is not None

    def __getitem__(self, key: Any) -> Any:
        container, check = self._prepare()
        if check is None:
            found = runs_for_key(container, key, where=SEARCH_RESULTS, subject="results")
        else:
            found = runs_in_list(list(self._runs()), key, where=SEARCH_RESULTS, subject="results")
        return _headers(self._db, found)

    def __contains__(self, header: Any) -> bool:
        uid = header.start["uid"] if hasattr(header, "start") else header
        try:
            self[uid]
        except (RunNotFound, AmbiguousKey):
            return False
        return True

    def __repr__(self) -> str:
        return f"<Results of {len(self._nodes)} condition(s) over {self._db!r}>"


def _documents(run: BaseClient) -> dict:
    metadata = run.metadata
    return {"start": metadata.get("start") or {}, "stop": metadata.get("stop") or {}}


def _headers(db: Broker, found: Any) -> Any:
    if isinstance(found, list):
        return [_headers(db, f) for f in found]
    return db.header_of(found)
