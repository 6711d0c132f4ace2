"""databroker v1 / MongoDB-style queries, translated to ``tiled.queries``.

A v1 search is a dict of MongoDB conditions on the start document
(``{"plan_name": "scan", "scan_id": {"$in": [1, 5]}}``). Tiled keeps the start and
stop documents of a run in its metadata, so each condition becomes a query on
``start.<key>`` (or ``stop.<key>``) executed by the server.

Tiled's SQL catalogs do not evaluate every condition as MongoDB does: SQLite and
PostgreSQL differ from MongoDB (and from each other) on arrays, missing keys, mixed
types and string order, and some operators have no server-side form at all. So each
condition is translated into server-side queries that select either exactly the runs
MongoDB would select, or a *superset* of them. When any part is a superset, the
returned runs are checked on the client with :func:`matches`, an evaluator of MongoDB
semantics written for this package, and a log record says so. A query that neither
side can run raises :class:`~databroker_compat.exceptions.QueryNotSupported`.

The support matrix (operator x backend x server/client) is in ``docs/searching.md``.

>>> from databroker_compat.queries import parse, matches
>>> nodes = parse({"plan_name": "scan", "num_points": {"$gt": 3}})
>>> matches(nodes, {"start": {"plan_name": "scan", "num_points": 5}, "stop": {}})
True
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Iterable

from .exceptions import QueryNotSupported

logger = logging.getLogger(__name__)

__all__ = [
    "SQLITE",
    "POSTGRESQL",
    "UNKNOWN",
    "Plan",
    "backend_of",
    "matches",
    "normalize_time",
    "parse",
    "plan_search",
    "time_range",
]

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
UNKNOWN = "unknown"

# Bare keys name the start document, as in v1; these stop-document keys have no
# meaning in a start document, so a bare use of them names the stop document.
STOP_KEYS = ("exit_status", "num_events")

# Types the event-model schemas give to start/stop keys: these never hold arrays
# in a valid document, so no probe for arrays is needed before trusting the server.
SCHEMA_TYPES = {
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

FIELD_OPERATORS = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
    "$exists", "$regex", "$options", "$not", "$all", "$size",
)
_COMPARISONS = {"$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le"}
_SERVER_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORD = re.compile(r"[^\W_]+")
_PLAIN_TEXT = re.compile(r"^[\x20-\x7e]*$")
_ESCAPED = re.compile(r'["\\]')  # characters JSON text escapes

# Date formats databroker v1 accepted for since/until (most specific first).
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H",
    "%Y-%m-%d",
    "%Y-%m",
    "%Y",
)


# -- the parsed query ------------------------------------------------------------
@dataclass(frozen=True)
class Cond:
    """One condition on one field: ``path`` is ``start.<key>`` or ``stop.<key>``."""

    path: str
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    """``$and`` / ``$or`` / ``$nor`` of other nodes."""

    kind: str
    nodes: tuple


@dataclass(frozen=True)
class Text:
    """v1 text search: any of ``words`` appears in a string of the start document."""

    words: tuple


@dataclass(frozen=True)
class Where:
    """``$where`` with a Python callable taking the start document."""

    func: Callable


def _resolve_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise QueryNotSupported(f"Query keys must be non-empty strings, not {key!r}.")
    if key.startswith("$"):
        raise QueryNotSupported(
            f"The operator {key!r} is not supported here. Supported top-level operators: "
            "$and, $or, $nor, $where (with a Python callable)."
        )
    head = key.split(".", 1)[0]
    if head in ("start", "stop") and "." in key:
        return key
    if head in STOP_KEYS:
        return "stop." + key
    return "start." + key


def parse(query: Mapping, text_search: str | None = None) -> tuple:
    """Parse a v1/MongoDB query dict into a tuple of nodes (all must match).

    Parameters
    ----------
    query : mapping
        Keys are start-document keys (dotted for nested ones; ``start.`` / ``stop.``
        prefixes choose the document), values are values or operator dicts.
    text_search : str, optional
        Words to find in the start document (any of them, whole words, any case).

    Returns
    -------
    tuple of nodes

    >>> parse({"scan_id": {"$in": [1, 2]}})
    (Cond(path='start.scan_id', op='$in', value=[1, 2]),)
    """
    if not isinstance(query, Mapping):
        raise QueryNotSupported(f"A query is a dict of conditions, not {type(query).__name__}.")
    nodes: list = []
    for key, value in query.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise QueryNotSupported(f"{key} takes a non-empty list of query dicts, not {value!r}.")
            parts = tuple(Group("$and", parse(part)) for part in value)
            if key == "$and":
                nodes.extend(parts)
            else:
                nodes.append(Group(key, parts))
        elif key == "$where":
            if not callable(value):
                raise QueryNotSupported(
                    "$where with JavaScript cannot run on Tiled or in Python; pass a Python "
                    "callable that takes the start document and returns True or False."
                )
            nodes.append(Where(value))
        elif key == "$text":
            search = value.get("$search") if isinstance(value, Mapping) else None
            if not isinstance(search, str):
                raise QueryNotSupported("$text takes {'$search': 'words'}.")
            nodes.append(_text(search))
        else:
            nodes.extend(_field(_resolve_key(key), value))
    if text_search is not None:
        nodes.append(_text(text_search))
    return tuple(nodes)


def _text(text: str) -> Text:
    if not isinstance(text, str):
        raise QueryNotSupported(f"Text search takes a string, not {type(text).__name__}.")
    words = tuple(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if not words:
        raise QueryNotSupported(f"The text search {text!r} has no words to look for.")
    return Text(words)


def _is_operator_dict(value) -> bool:
    if not isinstance(value, Mapping) or not value:
        return False
    dollars = [k.startswith("$") for k in value]
    if any(dollars) and not all(dollars):
        raise QueryNotSupported(
            f"Cannot mix operators and plain keys in one value: {dict(value)!r}. Use dotted keys "
            "for nested fields ({'sample.name': 'Si'})."
        )
    return all(dollars)


def _field(path: str, value) -> list:
    if not _is_operator_dict(value):
        return [Cond(path, "$eq", _plain(value))]
    out = []
    ops = dict(value)
    options = ops.pop("$options", None)
    for op, arg in ops.items():
        if op not in FIELD_OPERATORS:
            raise QueryNotSupported(
                f"The operator {op!r} (on {path!r}) is not supported by databroker-compat; "
                f"supported operators: {', '.join(FIELD_OPERATORS)}."
            )
        if op in ("$in", "$nin", "$all"):
            if not isinstance(arg, (list, tuple, set, frozenset)):
                raise QueryNotSupported(f"{op} on {path!r} takes a list, not {arg!r}.")
            arg = [_plain(a) for a in arg]
        elif op == "$regex":
            arg = _regex(path, arg, options)
        elif op == "$not":
            if isinstance(arg, re.Pattern):
                arg = (Cond(path, "$regex", arg),)
            elif _is_operator_dict(arg):
                arg = tuple(_field(path, arg))
            else:
                raise QueryNotSupported(f"$not on {path!r} takes an operator dict or a regex, not {arg!r}.")
        elif op == "$exists":
            arg = bool(arg)
        elif op == "$size":
            if isinstance(arg, bool) or not isinstance(arg, numbers.Integral):
                raise QueryNotSupported(f"$size on {path!r} takes an integer, not {arg!r}.")
            arg = int(arg)
        else:
            arg = _plain(arg)
        out.append(Cond(path, op, arg))
    if options is not None and "$regex" not in ops:
        raise QueryNotSupported(f"$options on {path!r} needs a $regex.")
    return out


_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _regex(path: str, pattern, options) -> re.Pattern:
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise QueryNotSupported(f"$regex on {path!r} takes a string, not {pattern!r}.")
    flags = 0
    for letter in options or "":
        if letter not in _REGEX_FLAGS:
            raise QueryNotSupported(f"Unknown $options letter {letter!r} on {path!r}; use i, m, s or x.")
        flags |= _REGEX_FLAGS[letter]
    try:
        return re.compile(pattern, flags)
    except re.error as err:
        raise QueryNotSupported(f"Bad regular expression {pattern!r} on {path!r}: {err}.") from None


def _plain(value):
    """Numpy scalars and tuples as the JSON values Tiled stores."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (datetime, date)):
        raise QueryNotSupported(
            f"Cannot compare a field with {value!r}: Tiled stores times as numbers. "
            "Use since=/until= for the start time, or a POSIX timestamp."
        )
    return value


# -- since / until ---------------------------------------------------------------
def _zone(timezone: str | None):
    from zoneinfo import ZoneInfo

    if timezone is None:
        import tzlocal

        return tzlocal.get_localzone()
    return ZoneInfo(timezone)


def normalize_time(value, timezone: str | None = None) -> float:
    """A v1 ``since``/``until`` value as a POSIX timestamp.

    Numbers are timestamps; datetimes and strings without a time zone are read in
    ``timezone`` (the broker's; this machine's when ``None``), as v1 did. Strings take
    the formats v1 accepted (``"2024"``, ``"2024-02"``, ``"2024-02-03"``,
    ``"2024-02-03 10"``, ``"2024-02-03 10:30"``, ``"2024-02-03 10:30:05"``, with
    optional fractional seconds) and ISO 8601 (``"2024-02-03T10:30:05+01:00"``).

    >>> normalize_time("2024-01-01", "UTC")
    1704067200.0
    """
    if isinstance(value, bool):
        raise QueryNotSupported(f"since/until take a date string, a datetime or a timestamp, not {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        parsed = None
        for fmt in TIME_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise QueryNotSupported(
                    f"Cannot read the time {value!r}. Use one of the formats "
                    f"{', '.join(repr(f) for f in TIME_FORMATS)}, ISO 8601, a datetime, or a "
                    "POSIX timestamp."
                ) from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=_zone(timezone))
        return value.timestamp()
    raise QueryNotSupported(
        f"since/until take a date string, a datetime or a timestamp, not {type(value).__name__}."
    )


def time_range(since=None, until=None, timezone: str | None = None) -> dict:
    """The query on ``start.time`` that v1's ``since``/``until`` meant.

    >>> time_range(since=10, until=20)
    {'start.time': {'$gte': 10.0, '$lt': 20.0}}
    """
    cond = {}
    if since is not None:
        cond["$gte"] = normalize_time(since, timezone)
    if until is not None:
        cond["$lt"] = normalize_time(until, timezone)
    return {"start.time": cond} if cond else {}


# -- client-side evaluation ------------------------------------------------------
def _resolve(value, parts: list[str]) -> list:
    """Candidate values at a dotted path, descending into arrays of documents."""
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        return _resolve(value[head], rest) if head in value else []
    if isinstance(value, (list, tuple)):
        out = []
        if head.isdigit() and int(head) < len(value):
            out.extend(_resolve(value[int(head)], rest))
        for element in value:
            if isinstance(element, Mapping):
                out.extend(_resolve(element, parts))
        return out
    return []


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _elements(candidate) -> list:
    """A value and, for an array, its elements (MongoDB matches either)."""
    if isinstance(candidate, (list, tuple)):
        return [candidate, *candidate]
    return [candidate]


def _eq_match(candidates: list, value) -> bool:
    if value is None and not candidates:
        return True
    return any(_equal(x, value) for c in candidates for x in _elements(c))


_ORDER = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _compare(x, op: str, value) -> bool:
    if _is_number(x) and _is_number(value):
        return _ORDER[op](x, value)
    if isinstance(x, str) and isinstance(value, str):
        return _ORDER[op](x.encode("utf-8"), value.encode("utf-8"))
    if isinstance(x, bool) and isinstance(value, bool):
        return _ORDER[op](x, value)
    return False


def _cond_match(cond: Cond, doc) -> bool:
    candidates = _resolve(doc, cond.path.split("."))
    op, value = cond.op, cond.value
    if op == "$eq":
        return _eq_match(candidates, value)
    if op == "$ne":
        return not _eq_match(candidates, value)
    if op in _ORDER:
        return any(_compare(x, op, value) for c in candidates for x in _elements(c))
    if op == "$in":
        return any(_eq_match(candidates, v) for v in value)
    if op == "$nin":
        return not any(_eq_match(candidates, v) for v in value)
    if op == "$exists":
        return bool(candidates) == value
    if op == "$regex":
        return any(isinstance(x, str) and value.search(x) for c in candidates for x in _elements(c))
    if op == "$all":
        return any(
            isinstance(c, (list, tuple)) and all(any(_equal(x, v) for x in c) for v in value)
            for c in candidates
        ) if value else False
    if op == "$size":
        return any(isinstance(c, (list, tuple)) and len(c) == value for c in candidates)
    if op == "$not":
        return not all(_node_match(n, doc) for n in value)
    raise QueryNotSupported(f"The operator {op!r} is not supported.")  # parse() prevents this


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _text_match(node: Text, start) -> bool:
    words = set(node.words)
    return any(w.lower() in words for s in _strings(start) for w in _WORD.findall(s))


def _node_match(node, doc) -> bool:
    if isinstance(node, Cond):
        return _cond_match(node, doc)
    if isinstance(node, Group):
        results = (_node_match(n, doc) for n in node.nodes)
        if node.kind == "$and":
            return all(results)
        if node.kind == "$or":
            return any(results)
        return not any(results)  # $nor
    if isinstance(node, Text):
        return _text_match(node, doc.get("start") or {})
    if isinstance(node, Where):
        return bool(node.func(doc.get("start") or {}))
    raise TypeError(f"Not a query node: {node!r}")


def matches(nodes: tuple, doc: Mapping) -> bool:
    """Whether a run matches, by MongoDB semantics, given ``{"start": ..., "stop": ...}``.

    >>> matches(parse({"detectors": "det1"}), {"start": {"detectors": ["det1", "det2"]}, "stop": {}})
    True
    """
    return all(_node_match(n, doc) for n in nodes)


# -- server-side translation ------------------------------------------------------
def backend_of(container) -> str:
    """Which SQL dialect the catalog behind ``container`` uses (probed once per server).

    SQLite's ``LIKE`` ignores ASCII case and PostgreSQL's does not: one search for a
    known uid in upper case tells them apart. Cached per server address.
    """
    api = str(container.context.api_uri)
    if api in _BACKENDS:
        return _BACKENDS[api]
    from tiled.queries import Like

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
    """Server-side queries for a search, and whether the client must check results."""

    queries: list = field(default_factory=list)
    exact: bool = True
    reasons: list = field(default_factory=list)

    def add(self, queries: list, exact: bool, reason: str = "") -> None:
        self.queries.extend(queries)
        if not exact:
            self.exact = False
            if reason:
                self.reasons.append(reason)


def _server_path(path: str) -> bool:
    return all(_SERVER_SEGMENT.match(s) for s in path.split("."))


def _top(path: str) -> str:
    return ".".join(path.split(".")[:2])


_SAFE_INTEGER = 2**53  # Tiled clamps stored integers here; SQLite overflows beyond 2**63


def _server_number(value) -> bool:
    return _is_number(value) and math.isfinite(value) and abs(value) <= _SAFE_INTEGER


def _scalar(value) -> bool:
    return isinstance(value, (str, bool)) or _server_number(value)


def _plain_text(value: str) -> bool:
    """Printable ASCII that JSON writes as is (so LIKE on the JSON text can find it)."""
    return bool(_PLAIN_TEXT.match(value)) and not _ESCAPED.search(value)


def _json_like(value) -> bool:
    return isinstance(value, str) and value[:1] in ("{", "[")


def _sqlite_exact_value(path: str, value) -> bool:
    """SQLite reads JSON true/false as 1/0 and JSON text of objects as strings."""
    if isinstance(value, bool):
        return False
    if _is_number(value):
        return SCHEMA_TYPES.get(path) in (int, float) or value not in (0, 1)
    return not _json_like(value)


class _Translator:
    def __init__(self, backend: str, probe: Callable[[str], bool]):
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

    def node(self, node, plan: Plan) -> None:
        from tiled.queries import FullText

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
        from tiled.queries import Comparison, Contains, In, Key, KeyPresent, NotIn

        path, op, value = cond.path, cond.op, cond.value
        what = f"{op} on {path}"
        if self.backend == UNKNOWN or not _server_path(path):
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
                    exact = (typed in (int, float)) if _is_number(value) else typed is str
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
            elif all(isinstance(v, str) for v in value) or all(_is_number(v) for v in value):
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
    path, values = None, []
    for part in node.nodes:
        conds = part.nodes if isinstance(part, Group) and part.kind == "$and" else (part,)
        if len(conds) != 1 or not isinstance(conds[0], Cond) or conds[0].op not in ("$eq", "$in"):
            return None
        cond = conds[0]
        if path not in (None, cond.path):
            return None
        path = cond.path
        values.extend(cond.value if cond.op == "$in" else [cond.value])
    return Cond(path, "$in", values)


def plan_search(nodes: tuple, container, backend: str | None = None) -> Plan:
    """Server-side queries for ``nodes`` on ``container``, and whether they are exact.

    Probes (one count request per top-level key the schema does not type) find keys
    that hold arrays in some run; the server's answer is trusted only where MongoDB
    and SQL agree.

    >>> plan = plan_search(parse({"scan_id": 3}), db._root)   # doctest: +SKIP
    >>> plan.queries, plan.exact                               # doctest: +SKIP
    ([Eq(key='start.scan_id', value=3)], True)
    """
    from tiled.queries import Like

    if backend is None:
        backend = backend_of(container)

    def probe(key: str) -> bool:
        return len(container.search(Like(key, "%[%"))) > 0

    translator = _Translator(backend, probe)
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
