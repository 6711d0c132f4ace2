"""Parsing a v1/MongoDB query dict into nodes: conditions, groups, text search, ``$where``.

Keys name the start document (``"plan_name"`` is ``start.plan_name``), except the
stop-document keys :data:`STOP_KEYS` and keys prefixed ``start.``/``stop.``. Values are
values (equality) or operator dicts (``{"$gt": 3}``). Every query the package cannot
run raises :class:`~databroker_compat.exceptions.QueryNotSupported` here, before any
request.

>>> parse({"exit_status": "success", "scan_id": {"$gt": 3}})
(Cond(path='stop.exit_status', op='$eq', value='success'), Cond(path='start.scan_id', op='$gt', value=3))
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Union

from ..exceptions import QueryNotSupported

__all__ = [
    "FIELD_OPERATORS",
    "STOP_KEYS",
    "WORD",
    "Cond",
    "Group",
    "Node",
    "Text",
    "Where",
    "is_number",
    "parse",
]

#: Bare keys name the start document, as in v1; these stop-document keys have no
#: meaning in a start document, so a bare use of them names the stop document.
STOP_KEYS = ("exit_status", "num_events")

#: The operators a field condition takes.
FIELD_OPERATORS = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
    "$exists", "$regex", "$options", "$not", "$all", "$size",
)  # fmt: skip

#: A word of a text search (and of the strings it searches): letters and digits.
WORD = re.compile(r"[^\W_]+")

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


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
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Text:
    """v1 text search: any of ``words`` appears in a string of the start document."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class Where:
    """``$where`` with a Python callable taking the start document."""

    func: Callable[[dict], Any]


#: One node of a parsed query.
Node = Union[Cond, Group, Text, Where]


def is_number(x: object) -> bool:
    """A real number that is not a bool (MongoDB keeps ``true`` and ``1`` apart).

    >>> is_number(1.5), is_number(True)
    (True, False)
    """
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _resolve_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise QueryNotSupported(f"Query keys must be non-empty strings, not {key!r}.", key=key)
    if key.startswith("$"):
        raise QueryNotSupported(
            f"The operator {key!r} is not supported here. Supported top-level operators: "
            "$and, $or, $nor, $where (with a Python callable).",
            key=key,
        )
    head = key.split(".", 1)[0]
    if head in ("start", "stop") and "." in key:
        return key
    if head in STOP_KEYS:
        return "stop." + key
    return "start." + key


def parse(query: Mapping, text_search: str | None = None) -> tuple[Node, ...]:
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

    Raises
    ------
    QueryNotSupported
        An operator or a value that cannot be run (a ``ValueError``).

    >>> parse({"scan_id": {"$in": [1, 2]}})
    (Cond(path='start.scan_id', op='$in', value=[1, 2]),)
    """
    if not isinstance(query, Mapping):
        raise QueryNotSupported(f"A query is a dict of conditions, not {type(query).__name__}.")
    nodes: list[Node] = []
    for key, value in query.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, (list, tuple)) or not value:
                raise QueryNotSupported(f"{key} takes a non-empty list of query dicts, not {value!r}.", key=key)
            parts = tuple(Group("$and", parse(part)) for part in value)
            if key == "$and":
                nodes.extend(parts)
            else:
                nodes.append(Group(key, parts))
        elif key == "$where":
            if not callable(value):
                raise QueryNotSupported(
                    "$where with JavaScript cannot run on Tiled or in Python; pass a Python "
                    "callable that takes the start document and returns True or False.",
                    key=key,
                )
            nodes.append(Where(value))
        elif key == "$text":
            search = value.get("$search") if isinstance(value, Mapping) else None
            if not isinstance(search, str):
                raise QueryNotSupported("$text takes {'$search': 'words'}.", key=key)
            nodes.append(_text(search))
        else:
            nodes.extend(_field(_resolve_key(key), value))
    if text_search is not None:
        nodes.append(_text(text_search))
    return tuple(nodes)


def _text(text: object) -> Text:
    if not isinstance(text, str):
        raise QueryNotSupported(f"Text search takes a string, not {type(text).__name__}.")
    words = tuple(dict.fromkeys(w.lower() for w in WORD.findall(text)))
    if not words:
        raise QueryNotSupported(f"The text search {text!r} has no words to look for.", text=text)
    return Text(words)


def _is_operator_dict(value: object) -> bool:
    if not isinstance(value, Mapping) or not value:
        return False
    dollars = [isinstance(k, str) and k.startswith("$") for k in value]
    if any(dollars) and not all(dollars):
        raise QueryNotSupported(
            f"Cannot mix operators and plain keys in one value: {dict(value)!r}. Use dotted keys "
            "for nested fields ({'sample.name': 'Si'})."
        )
    return all(dollars)


def _field(path: str, value: Any) -> list[Cond]:
    if not _is_operator_dict(value):
        return [Cond(path, "$eq", _plain(value))]
    out = []
    ops = dict(value)
    options = ops.pop("$options", None)
    for op, arg in ops.items():
        if op not in FIELD_OPERATORS:
            raise QueryNotSupported(
                f"The operator {op!r} (on {path!r}) is not supported by databroker-compat; "
                f"supported operators: {', '.join(FIELD_OPERATORS)}.",
                operator=op,
                path=path,
            )
        if op in ("$in", "$nin", "$all"):
            if not isinstance(arg, (list, tuple, set, frozenset)):
                raise QueryNotSupported(f"{op} on {path!r} takes a list, not {arg!r}.", operator=op, path=path)
            arg = [_plain(a) for a in arg]
        elif op == "$regex":
            arg = _regex(path, arg, options)
        elif op == "$not":
            if isinstance(arg, re.Pattern):
                arg = (Cond(path, "$regex", arg),)
            elif _is_operator_dict(arg):
                arg = tuple(_field(path, arg))
            else:
                raise QueryNotSupported(
                    f"$not on {path!r} takes an operator dict or a regex, not {arg!r}.", operator=op, path=path
                )
        elif op == "$exists":
            arg = bool(arg)
        elif op == "$size":
            if isinstance(arg, bool) or not isinstance(arg, numbers.Integral):
                raise QueryNotSupported(f"$size on {path!r} takes an integer, not {arg!r}.", operator=op, path=path)
            arg = int(arg)
        else:
            arg = _plain(arg)
        out.append(Cond(path, op, arg))
    if options is not None and "$regex" not in ops:
        raise QueryNotSupported(f"$options on {path!r} needs a $regex.", operator="$options", path=path)
    return out


def _regex(path: str, pattern: object, options: Any) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise QueryNotSupported(f"$regex on {path!r} takes a string, not {pattern!r}.", path=path)
    flags = 0
    for letter in options or "":
        if letter not in _REGEX_FLAGS:
            raise QueryNotSupported(f"Unknown $options letter {letter!r} on {path!r}; use i, m, s or x.", path=path)
        flags |= _REGEX_FLAGS[letter]
    try:
        return re.compile(pattern, flags)
    except re.error as err:
        raise QueryNotSupported(f"Bad regular expression {pattern!r} on {path!r}: {err}.", path=path) from None


def _plain(value: Any) -> Any:
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
            "Use since=/until= for the start time, or a POSIX timestamp.",
            value=value,
        )
    return value
