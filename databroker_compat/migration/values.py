"""Values read from MongoDB, made JSON-ready for the writer.

Legacy records hold ObjectIds, BSON datetimes without a zone, NaN and ±Infinity, tuples,
numpy scalars and keys with dots. :func:`plain` turns a metadata value into what Tiled
keeps (JSON); :func:`event_value` does the same for event data but keeps NaN and
±Infinity, which the event table stores.

>>> plain({"a": float("nan"), "b": (1, 2)})
{'a': None, 'b': [1, 2]}
"""

from __future__ import annotations

import datetime
import math
from typing import Any

__all__ = ["conversion_note", "event_value", "is_objectid", "plain", "safe_key"]

#: What :func:`plain` counts in ``seen``: the conversions that change a value's type or meaning.
_LABELS = {
    "objectid": "ObjectId(s) stored as hex strings",
    "datetime": "BSON datetime(s) stored as ISO 8601 strings (UTC)",
    "nonfinite": "NaN/Infinity value(s) stored as null",
    "bytes": "bytes value(s) decoded as UTF-8",
    "other": "value(s) of other types stored as their string form",
}


def plain(value: Any, seen: dict[str, int] | None = None) -> Any:
    """A JSON-ready copy of a value read from MongoDB.

    ObjectIds become their hex string, BSON datetimes (naive, UTC) become ISO 8601
    strings with ``+00:00``, tuples become lists, NaN and +/-Infinity become ``None``
    (JSON, and so Tiled metadata, cannot hold them), numpy scalars become Python
    numbers. Keys of dicts are made strings. With ``seen``, the conversions that change
    a value's type or meaning are counted there (see :func:`conversion_note`).

    >>> import datetime
    >>> seen = {}
    >>> plain({"when": datetime.datetime(2016, 5, 1, 12, 0)}, seen), seen
    ({'when': '2016-05-01T12:00:00+00:00'}, {'datetime': 1})
    """
    if isinstance(value, dict):
        return {str(k): plain(v, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, seen) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    kind = None
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        kind, result = "nonfinite", None
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        kind, result = "datetime", value.isoformat()
    elif isinstance(value, datetime.date):
        kind, result = "datetime", value.isoformat()
    elif hasattr(value, "binary") and type(value).__name__ == "ObjectId":
        kind, result = "objectid", str(value)
    elif hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist(), seen)
    elif isinstance(value, bytes):
        kind, result = "bytes", value.decode("utf-8", "replace")
    else:
        kind, result = "other", str(value)
    if seen is not None:
        seen[kind] = seen.get(kind, 0) + 1
    return result


def conversion_note(where: str, seen: dict[str, int]) -> str | None:
    """One line saying what :func:`plain` converted in ``where`` (None when nothing was).

    >>> conversion_note("start", {"objectid": 2, "nonfinite": 1})
    'start: 2 ObjectId(s) stored as hex strings, 1 NaN/Infinity value(s) stored as null'
    """
    parts = [f"{seen[kind]} {label}" for kind, label in _LABELS.items() if seen.get(kind)]
    return f"{where}: {', '.join(parts)}" if parts else None


def event_value(value: Any, seen: dict[str, int] | None = None) -> Any:
    """An event value as the writer takes it: like :func:`plain`, but NaN/inf are kept.

    >>> event_value([float("inf"), (1, 2)])
    [inf, [1, 2]]
    """
    if isinstance(value, (float, int, str, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [event_value(v, seen) for v in value]
    if isinstance(value, dict):
        return {str(k): event_value(v, seen) for k, v in value.items()}
    return plain(value, seen)


def is_objectid(value: Any) -> bool:
    """True for a BSON ObjectId (without importing bson).

    >>> is_objectid("5f0c2c8e3c1a4f7e9a552b7d")
    False
    """
    return type(value).__name__ == "ObjectId"


def safe_key(key: str) -> str:
    """A document key the event-model schema accepts (no ``.`` or ``/``).

    >>> safe_key("sample.name/x")
    'sample_name_x'
    """
    return key.replace(".", "_").replace("/", "_")
