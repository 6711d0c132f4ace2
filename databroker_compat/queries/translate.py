"""Server-side translation: Tiled queries for parsed nodes, exact where the backend agrees with MongoDB.

Tiled's SQL catalogs do not evaluate every condition as MongoDB does: SQLite and
PostgreSQL differ from MongoDB (and from each other) on arrays, missing keys, mixed
types and string order, and some operators have no server-side form at all. So each
condition is translated into server-side queries that select either exactly the runs
MongoDB would select, or a *superset* of them. When any part is a superset, the
:class:`Plan` is not ``exact`` and the returned runs are checked on the client with
:func:`~databroker_compat.queries.evaluate.matches`; a log record says so.

The support matrix (operator x backend x server/client) is in ``docs/searching.md``.

>>> from databroker_compat.queries.parse import parse
>>> plan = Plan()
>>> Translator(SQLITE, probe=lambda key: False).node(parse({"scan_id": 3})[0], plan)
>>> plan.queries, plan.exact
([Eq(key='start.scan_id', value=3)], True)
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from tiled.queries import Comparison, Contains, FullText, In, Key, KeyPresent, Like, NotIn

from .parse import Cond, Group, Node, Text, Where, is_number

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = [
    "POSTGRESQL",
    "SCHEMA_TYPES",
    "SQLITE",
    "UNKNOWN",
    "Plan",
    "Translator",
    "backend_of",
    "plan_search",
    "server_path",
]

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
UNKNOWN = "unknown"

#: Types the event-model schemas give to start/stop keys: these never hold arrays
#: in a valid document, so no probe for arrays is needed before trusting the server.
SCHEMA_TYPES: dict[str, type] = {
    "start.uid": str,
    "start.time": float,
    "start.scan_id": int,
    "start.group": str,
    "start.owner": str,
    "start.project": str,
    "start.data_session": str,
    "stop.uid": str,
    "stop.time": float,
    "stop.run_start": str,
    "stop.exit_status": str,
    "stop.reason": str,
}

_COMPARISONS = {"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}
_SERVER_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_TEXT = re.compile(r"^[\x20-\x7e]*$")
_ESCAPED = re.compile(r'["\\]')  # characters JSON text escapes


def backend_of(container: Container) -> str:
    """Which SQL dialect the catalog behind ``container`` uses (probed once per server).

    SQLite's ``LIKE`` ignores ASCII case and PostgreSQL's does not: one search for a
    known uid in upper case tells them apart. Cached per server address.
    Returns :data:`SQLITE`, :data:`POSTGRESQL` or :data:`UNKNOWN` (an empty catalog,
    or a server without ``LIKE``: every condition is then checked on the client).

    >>> backend_of(db.v2)        # doctest: +SKIP
    'sqlite'
    """
    api = str(container.context.api_uri)
    if api in _BACKENDS:
        return _BACKENDS[api]
    backend = UNKNOWN
    try:
        first = container.values().first()
    except Exception:  # an empty catalog: decide later
        return UNKNOWN
    uid = first.metadata["start"]["uid"]
    if uid.upper() != uid:
        try:
            found = len(container.search(Like("start.uid", uid.upper())))
        except Exception as err:  # a server without LIKE: search on the client
            logger.info("The server at %s does not run LIKE queries (%r)", api, err)
        else:
            backend = SQLITE if found else POSTGRESQL
    _BACKENDS[api] = backend
    logger.debug("The catalog at %s runs %s queries", api, backend)
    return backend


_BACKENDS: dict[str, str] = {}


@dataclass
class Plan:
    """Server-side queries for a search, and whether the client must check results.

    >>> plan = Plan(); plan.add([], False, "$where"); plan.exact, plan.reasons
    (False, ['$where'])
    """

    queries: list = field(default_factory=list)
    exact: bool = True
    reasons: list[str] = field(default_factory=list)

    def add(self, queries: list, exact: bool, reason: str = "") -> None:
        """Add server-side queries; ``exact=False`` (with why) when they select a superset."""
        self.queries.extend(queries)
        if not exact:
            self.exact = False
            if reason:
                self.reasons.append(reason)


def server_path(path: str) -> bool:
    """Whether every dotted segment of ``path`` is a plain identifier (a key the server can query).

    >>> server_path("start.sample.name"), server_path("start.a-b")
    (True, False)
    """
    return all(_SERVER_SEGMENT.match(s) for s in path.split("."))


def _top(path: str) -> str:
    return ".".join(path.split(".")[:2])


_SAFE_INTEGER = 2**53  # Tiled clamps stored integers here; SQLite overflows beyond 2**63


def _server_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value) and abs(value) <= _SAFE_INTEGER


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or _server_number(value)


def _plain_text(value: str) -> bool:
    """Printable ASCII that JSON writes as is (so LIKE on the JSON text can find it)."""
    return bool(_PLAIN_TEXT.match(value)) and not _ESCAPED.search(value)


def _json_like(value: Any) -> bool:
    return isinstance(value, str) and value[:1] in ("{", "[")


def _sqlite_exact_value(path: str, value: Any) -> bool:
    """SQLite reads JSON true/false as 1/0 and JSON text of objects as strings."""
    if isinstance(value, bool):
        return False
    if is_number(value):
        return SCHEMA_TYPES.get(path) in (int, float) or value not in (0, 1)
    return not _json_like(value)


class Translator:
    """Translates nodes into a :class:`Plan` for one backend.

    ``probe(key)`` answers whether any run may hold an array under a top-level key
    (``start.detectors``); :func:`plan_search` asks the server, with one count request
    per key, cached for the search.

    >>> from databroker_compat.queries.parse import parse
    >>> plan = Plan()
    >>> Translator(POSTGRESQL, probe=lambda key: True).node(parse({"detectors": "det"})[0], plan)
    >>> plan.queries, plan.exact
    ([KeyPresent(key='start.detectors', exists=True)], False)
    """

    def __init__(self, backend: str, probe: Callable[[str], bool]) -> None:
        self.backend = backend
        self._probe = probe
        self._arrays: dict[str, str | None] = {}

    def first_array(self, path: str) -> str | None:
        """``None`` if no run holds an array at or above ``path``; else where to look.

        One probe per top-level key: does its JSON text hold a ``[`` anywhere? A string
        with a ``[`` in it also answers yes, which only costs a client-side check.
        The top-level key is returned as the place to search for the value.
        """
        if path in SCHEMA_TYPES:
            return None
        top = _top(path)
        if top not in self._arrays:
            self._arrays[top] = top if self._probe(top) else None
        return self._arrays[top]

    def node(self, node: Node, plan: Plan) -> None:
        """Add the server-side form of ``node`` to ``plan`` (nothing, inexact, when it has none)."""
        if isinstance(node, Cond):
            self.cond(node, plan)
        elif isinstance(node, Group) and node.kind == "$and":
            for n in node.nodes:
                self.node(n, plan)
        elif isinstance(node, Group) and node.kind == "$or":
            merged = _or_as_in(node)
            if merged is not None:
                self.cond(merged, plan)
            else:
                plan.add([], False, "$or across keys or operators")
        elif isinstance(node, Group):
            plan.add([], False, f"{node.kind}")
        elif isinstance(node, Text):
            if self.backend == SQLITE and all(w.isascii() for w in node.words):
                # FTS5 indexes the JSON text of all metadata (a superset of the start
                # strings), where a word after a newline, tab or carriage return reads
                # "nword", "tword", "rword" (JSON escapes them as \n, \t, \r).
                variants = [p + w for w in node.words for p in ("", "n", "t", "r")]
                plan.add([FullText(" OR ".join(variants))], False, "text search")
            else:
                plan.add([], False, "text search")
        elif isinstance(node, Where):
            plan.add([], False, "$where")

    def cond(self, cond: Cond, plan: Plan) -> None:
        """Add the server-side form of one field condition to ``plan``."""
        path, op, value = cond.path, cond.op, cond.value
        what = f"{op} on {path}"
        if self.backend == UNKNOWN or not server_path(path):
            plan.add([], False, what)
            return
        present = [KeyPresent(_top(path))]  # every positive condition needs the key
        sqlite = self.backend == SQLITE
        if op == "$exists":
            if len(path.split(".")) == 2 or self.first_array(path) is None:
                plan.add([KeyPresent(path, exists=value)], True)
            elif value:
                plan.add(present, False, what)
            else:
                plan.add([], False, what)
        elif op == "$eq":
            if value is None:
                plan.add([], False, what)
            elif not _scalar(value):
                plan.add(present, False, what)
            elif (arrays := self.first_array(path)) is None:
                exact = _sqlite_exact_value(path, value) if sqlite else True
                plan.add([Key(path) == value], exact, what)
            elif sqlite and isinstance(value, str) and _plain_text(value):
                # LIKE '%value%' on the JSON text: scalars equal to it and arrays holding it.
                plan.add([Contains(arrays, value)], False, what)
            else:
                plan.add(present, False, what)
        elif op == "$ne":
            if not sqlite and _scalar(value) and self.first_array(path) is None:
                plan.add([NotIn(path, [value])], True)  # NOT(metadata @> ...): keeps missing keys
            else:
                plan.add([], False, what)
        elif op in _COMPARISONS:
            if _server_number(value) or (sqlite and isinstance(value, str)):
                if self.first_array(path) is None:
                    typed = SCHEMA_TYPES.get(path)
                    exact = (typed in (int, float)) if is_number(value) else typed is str
                    plan.add([Comparison(_COMPARISONS[op], path, value)], exact, what)
                    return
            plan.add(present, False, what)
        elif op == "$in":
            if any(v is None for v in value):
                plan.add([], False, what)
            elif not value:
                plan.add([In(path, [])], True)
            elif not all(_scalar(v) for v in value) or self.first_array(path) is not None:
                plan.add(present, False, what)
            elif not sqlite:
                plan.add([In(path, value)], True)
            elif all(isinstance(v, str) for v in value) or all(is_number(v) for v in value):
                exact = all(_sqlite_exact_value(path, v) for v in value)
                plan.add([In(path, value)], exact, what)
            else:
                plan.add(present, False, what)
        elif op == "$nin":
            if not sqlite and value and all(_scalar(v) for v in value) and self.first_array(path) is None:
                plan.add([NotIn(path, value)], True)
            elif not value:
                plan.add([], True)
            else:
                plan.add([], False, what)
        elif op in ("$regex", "$size") or (op == "$all" and value):
            plan.add(present, False, what)
        else:  # $not, empty $all
            plan.add([], False, what)


def _or_as_in(node: Group) -> Cond | None:
    """``$or`` of equalities (or ``$in``) on one key, as one ``$in``."""
    path: str | None = None
    values: list = []
    for part in node.nodes:
        conds = part.nodes if isinstance(part, Group) and part.kind == "$and" else (part,)
        if len(conds) != 1 or not isinstance(conds[0], Cond) or conds[0].op not in ("$eq", "$in"):
            return None
        cond = conds[0]
        if path not in (None, cond.path):
            return None
        path = cond.path
        values.extend(cond.value if cond.op == "$in" else [cond.value])
    return Cond(path, "$in", values) if path is not None else None


def plan_search(nodes: tuple[Node, ...], container: Container, backend: str | None = None) -> Plan:
    """Server-side queries for ``nodes`` on ``container``, and whether they are exact.

    Probes (one count request per top-level key the schema does not type) find keys
    that hold arrays in some run; the server's answer is trusted only where MongoDB
    and SQL agree.

    >>> plan = plan_search(parse({"scan_id": 3}), db.v2)     # doctest: +SKIP
    >>> plan.queries, plan.exact                               # doctest: +SKIP
    ([Eq(key='start.scan_id', value=3)], True)
    """
    if backend is None:
        backend = backend_of(container)

    def probe(key: str) -> bool:
        return len(container.search(Like(key, "%[%"))) > 0

    translator = Translator(backend, probe)
    plan = Plan()
    for node in nodes:
        translator.node(node, plan)
    if not plan.exact:
        logger.info(
            "Filtering search results on the client (%s backend cannot run exactly: %s)",
            backend,
            "; ".join(plan.reasons),
        )
    return plan
