"""``since``/``until``: v1's bounds on a run's start time, read by the package's one time parser.

The strings, numbers and datetimes these take are read by
:func:`databroker_compat._time.to_timestamp` and its zone rule, the same reading the
migration's ``--since``/``--until`` get: a time that names its zone is that instant, a
time without one is read in the broker's ``timezone`` (this machine's zone when the
broker has none), numbers are POSIX timestamps.

A value that is not a time raises :class:`~databroker_compat.exceptions.QueryNotSupported`
(a ``ValueError``, as every other query ``db(...)`` cannot run), with the parser's
:class:`~databroker_compat.exceptions.BadTime` as its ``__cause__`` and the value as
``err.value``.

>>> time_range(since="2024-01", until=1706745600, timezone="UTC")
{'start.time': {'$gte': 1704067200.0, '$lt': 1706745600.0}}
"""

from __future__ import annotations

from typing import Any

from .._time import TIME_FORMATS, to_timestamp
from ..exceptions import BadTime, QueryNotSupported

__all__ = ["TIME_FORMATS", "normalize_time", "time_range"]


def normalize_time(value: Any, timezone: str | None = None, *, name: str = "since/until") -> float:
    """A v1 ``since``/``until`` value as a POSIX timestamp (:func:`~databroker_compat._time.to_timestamp`).

    Parameters
    ----------
    value : str, datetime, date, int or float
        Strings take the formats v1 accepted (``"2024"``, ``"2024-02"``,
        ``"2024-02-03"``, ``"2024-02-03 10"``, ``"2024-02-03 10:30"``,
        ``"2024-02-03 10:30:05"``, with optional fractional seconds) and ISO 8601
        (``"2024-02-03T10:30:05+01:00"``).
    timezone : str, optional
        The zone of times that do not name one (the broker's); this machine's when ``None``.
    name : str
        What the value is called in an error message.

    Raises
    ------
    QueryNotSupported
        Not a time (``err.value``; ``err.__cause__`` is the :class:`BadTime`).

    >>> normalize_time("2024-01-01", "UTC")
    1704067200.0
    """
    try:
        return to_timestamp(value, timezone, name=name)
    except BadTime as err:
        raise QueryNotSupported(str(err), value=value, timezone=timezone) from err


def time_range(since: Any = None, until: Any = None, timezone: str | None = None) -> dict:
    """The query on ``start.time`` that v1's ``since``/``until`` meant: ``since <= time < until``.

    >>> time_range(since=10, until=20)
    {'start.time': {'$gte': 10.0, '$lt': 20.0}}
    """
    cond = {}
    if since is not None:
        cond["$gte"] = normalize_time(since, timezone, name="since")
    if until is not None:
        cond["$lt"] = normalize_time(until, timezone, name="until")
    return {"start.time": cond} if cond else {}
