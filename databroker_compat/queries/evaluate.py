"""Client-side matching: MongoDB's semantics on ``{"start": ..., "stop": ...}``.

Used where the server's answer is a superset of what MongoDB would select (see
:mod:`~databroker_compat.queries.translate`): each returned run is checked here.
The rules are MongoDB's, not Python's: an array matches when it or any element does,
``true`` is not ``1``, ``{key: None}`` matches a missing key, strings order by their
UTF-8 bytes, and values of different types never compare.

>>> from databroker_compat.queries.parse import parse
>>> matches(parse({"detectors": "det1"}), {"start": {"detectors": ["det1", "det2"]}, "stop": {}})
True
>>> matches(parse({"flag": 1}), {"start": {"flag": True}, "stop": {}})
False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterator

from ..exceptions import QueryNotSupported
from .parse import WORD, Cond, Group, Node, Text, Where, is_number

__all__ = ["matches"]


def _resolve(value: Any, parts: list[str]) -> list:
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


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _elements(candidate: Any) -> list:
    """A value and, for an array, its elements (MongoDB matches either)."""
    if isinstance(candidate, (list, tuple)):
        return [candidate, *candidate]
    return [candidate]


def _eq_match(candidates: list, value: Any) -> bool:
    if value is None and not candidates:
        return True
    return any(_equal(x, value) for c in candidates for x in _elements(c))


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _compare(x: Any, op: str, value: Any) -> bool:
    if is_number(x) and is_number(value):
        return _ORDER[op](x, value)
    if isinstance(x, str) and isinstance(value, str):
        return _ORDER[op](x.encode("utf-8"), value.encode("utf-8"))
    if isinstance(x, bool) and isinstance(value, bool):
        return _ORDER[op](x, value)
    return False


def _cond_match(cond: Cond, doc: Mapping) -> bool:
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
        return any(isinstance(x, str) and bool(value.search(x)) for c in candidates for x in _elements(c))
    if op == "$all":
        if not value:
            return False
        return any(
            isinstance(c, (list, tuple)) and all(any(_equal(x, v) for x in c) for v in value) for c in candidates
        )
    if op == "$size":
        return any(isinstance(c, (list, tuple)) and len(c) == value for c in candidates)
    if op == "$not":
        return not all(_node_match(n, doc) for n in value)
    raise QueryNotSupported(f"The operator {op!r} is not supported.", operator=op)  # parse() prevents this


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _text_match(node: Text, start: Any) -> bool:
    words = set(node.words)
    return any(w.lower() in words for s in _strings(start) for w in WORD.findall(s))


def _node_match(node: Node, doc: Mapping) -> bool:
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


def matches(nodes: tuple[Node, ...], doc: Mapping) -> bool:
    """Whether a run matches, by MongoDB semantics, given ``{"start": ..., "stop": ...}``.

    Parameters
    ----------
    nodes : tuple
        What :func:`~databroker_compat.queries.parse.parse` gives (all must match).
    doc : mapping
        The run's start and stop documents (``{}`` for a run without a stop).

    >>> from databroker_compat.queries.parse import parse
    >>> matches(parse({"scan_id": {"$gt": 3}}), {"start": {"scan_id": 5}, "stop": {}})
    True
    """
    return all(_node_match(n, doc) for n in nodes)
