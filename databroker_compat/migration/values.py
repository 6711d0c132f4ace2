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

__all__ = ["event_value", "is_objectid", "plain", "safe_key"]


def plain(value: Any) -> Any:
    """A JSON-ready copy of a value read from MongoDB.

    ObjectIds become their hex string, BSON datetimes (naive, UTC) become ISO 8601
    strings with ``+00:00``, tuples become lists, NaN and +/-Infinity become ``None``
    (JSON, and so Tiled metadata, cannot hold them), numpy scalars become Python
    numbers. Keys of dicts are made strings.

    >>> import datetime
    >>> plain({"when": datetime.datetime(2016, 5, 1, 12, 0)})
    {'when': '2016-05-01T12:00:00+00:00'}
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if hasattr(value, "binary") and type(value).__name__ == "ObjectId":
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def event_value(value: Any) -> Any:
    """An event value as the writer takes it: like :func:`plain`, but NaN/inf are kept.

    >>> event_value([float("inf"), (1, 2)])
    [inf, [1, 2]]
    """
    if isinstance(value, (float, int, str, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [event_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): event_value(v) for k, v in value.items()}
    return plain(value)


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
