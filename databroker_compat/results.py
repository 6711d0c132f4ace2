"""``Results``: the lazy answer to ``db(...)``, as databroker v1 returned it."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any, Iterator

from .exceptions import AmbiguousKey, BadKey, RunNotFound
from .lookup import MIN_PREFIX, oldest_first, runs_for_key
from .queries import Plan, matches, parse, plan_search, time_range

logger = logging.getLogger(__name__)

__all__ = ["Results"]

# Runs per request when iterating: Tiled's largest page (its default is 100). Fewer,
# larger pages cost less, as every page re-runs the query on the server.
PAGE_SIZE = 300


def build_nodes(db, text_search: str | None, query: Mapping) -> tuple:
    """Parse ``db(...)`` arguments (``since``/``until`` read in ``db.timezone``)."""
    query = dict(query)
    since, until = query.pop("since", None), query.pop("until", None)
    nodes = parse(query, text_search)
    if since is not None or until is not None:
        nodes += parse(time_range(since, until, getattr(db, "timezone", None)))
    return nodes


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

    def __init__(self, db, nodes: tuple, *, base=None):
        self._db = db
        self._nodes = tuple(nodes)
        self._base = db._root if base is None else base
        self._prepared: tuple | None = None

    # -- searching --------------------------------------------------------
    def __call__(self, text_search: str | None = None, **query) -> "Results":
        """Search within these results (all conditions of both must hold).

        >>> db(plan_name="scan")(sample="Si")    # doctest: +SKIP
        """
        return Results(self._db, self._nodes + build_nodes(self._db, text_search, query), base=self._base)

    def _prepare(self):
        """(server-side container, client-side check or None), planned once."""
        if self._prepared is None:
            plan: Plan = plan_search(self._nodes, self._base)
            container = self._base
            for query in plan.queries:
                container = container.search(query)
            self._prepared = (container, None if plan.exact else self._nodes)
        return self._prepared

    def _runs(self) -> Iterator:
        """Run clients of the matches, oldest first."""
        container, check = self._prepare()
        for run in oldest_first(container).values().page_size(PAGE_SIZE):
            if check is None or matches(check, _documents(run)):
                yield run

    # -- the sequence -----------------------------------------------------
    def __iter__(self) -> Iterator:
        for run in self._runs():
            yield self._db._header(run)

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

    def __getitem__(self, key: Any):
        container, check = self._prepare()
        if check is None:
            found = runs_for_key(container, key)
        else:
            found = _from_list(list(self._runs()), key)
        return _headers(self._db, found)

    def __contains__(self, header) -> bool:
        uid = header.start["uid"] if hasattr(header, "start") else header
        try:
            self[uid]
        except (RunNotFound, AmbiguousKey):
            return False
        return True

    def __repr__(self) -> str:
        return f"<Results of {len(self._nodes)} condition(s) over {self._db!r}>"


def _documents(run) -> dict:
    metadata = run.metadata
    return {"start": metadata.get("start") or {}, "stop": metadata.get("stop") or {}}


def _headers(db, found):
    if isinstance(found, list):
        return [_headers(db, f) for f in found]
    return db._header(found)


def _from_list(runs: list, key: Any):
    """``db[key]`` semantics over runs already checked on the client (oldest first)."""
    if isinstance(key, bool):
        raise BadKey("results[True/False] is not a lookup; use an int, a uid, or a slice.")
    if isinstance(key, numbers.Integral):
        key = int(key)
        if key < 0:
            try:
                return runs[key]
            except IndexError:
                raise RunNotFound(
                    f"No run at index {key}: these search results hold {len(runs)} runs."
                ) from None
        for run in reversed(runs):
            if run.metadata["start"].get("scan_id") == key:
                return run
        raise RunNotFound(f"No run with scan_id {key} in these search results.")
    if isinstance(key, str):
        if len(key) < MIN_PREFIX:
            raise RunNotFound(
                f"{key!r} is too short to look up: give a full uid or a uid prefix of at least "
                f"{MIN_PREFIX} characters."
            )
        found = [run for run in runs if run.metadata["start"]["uid"].startswith(key)]
        exact = [run for run in found if run.metadata["start"]["uid"] == key]
        if exact:
            return exact[0]
        if not found:
            raise RunNotFound(f"No run whose uid starts with {key!r} in these search results.")
        if len(found) > 1:
            raise AmbiguousKey(f"The uid prefix {key!r} matches {len(found)} runs; give more characters.")
        return found[0]
    if isinstance(key, slice):
        for bound in (key.start, key.stop, key.step):
            if bound is not None and not isinstance(bound, numbers.Integral):
                raise BadKey(f"Slice bounds must be integers, not {bound!r}.")
        if (key.start is not None and key.start >= 0) or (key.stop is not None and key.stop >= 0):
            raise ValueError(
                f"results[{key.start}:{key.stop}] is not supported: slices count back from the newest "
                "run and must use negative indices (results[-5:] for the newest five)."
            )
        return runs[key]
    if isinstance(key, (list, tuple)):
        return [_from_list(runs, k) for k in key]
    raise BadKey(
        f"Cannot look up a run with a {type(key).__name__} ({key!r}); use a negative index, "
        "a scan_id, a uid or uid prefix, a slice, or a list of these."
    )
