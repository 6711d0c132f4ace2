"""One reading of time values, for searches (``db(since=...)``) and the migration (``--since``).

The zone rule, the same everywhere: numbers are POSIX timestamps; a string or a
``datetime`` that names its time zone (``"2024-02-03T10:30:05+01:00"``, an aware
``datetime``) means that instant; a string, ``date`` or naive ``datetime`` without
one is read in the time zone given — the broker's ``timezone`` for searches, the
migration's ``--timezone`` for its selection — and in this machine's local time zone
when none is given, as databroker v1 read ``since``/``until``. A naive time that the
zone skips or repeats (a daylight-saving change) is read with the offset in force
before the change (Python's ``fold=0``): in New York ``"2019-03-10 02:30"`` is 07:30 UTC
and ``"2019-11-03 01:30"`` is 05:30 UTC.

Strings take the formats v1 accepted (``"2024"``, ``"2024-02"``, ``"2024-02-03"``,
``"2024-02-03 10"``, ``"2024-02-03 10:30"``, ``"2024-02-03 10:30:05"``, with optional
fractional seconds) and ISO 8601.
"""

from __future__ import annotations

import numbers
from datetime import date, datetime, tzinfo
from typing import Any

from .exceptions import BadTime

__all__ = ["TIME_FORMATS", "local_zone", "to_timestamp", "zone"]

#: The string formats v1 read for ``since``/``until``, tried in this order before ISO 8601.
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H",
    "%Y-%m-%d",
    "%Y-%m",
    "%Y",
)


def local_zone() -> tzinfo:
    """This machine's time zone (``tzlocal``), the default of the zone rule."""
    import tzlocal

    return tzlocal.get_localzone()


def zone(timezone: str | None) -> tzinfo:
    """The ``tzinfo`` of an IANA zone name; this machine's zone for ``None``.

    >>> zone("UTC").key
    'UTC'
    """
    if timezone is None:
        return local_zone()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTime(
            f"Unknown time zone {timezone!r}: give an IANA name such as 'UTC' or 'America/New_York'.",
            value=timezone,
        ) from None


def _parse_string(text: str, original: Any, name: str) -> datetime:
    text = text.strip()
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(
            f"Cannot read {name}={original!r} as a time. Use one of the formats "
            f"{', '.join(repr(f) for f in TIME_FORMATS)}, ISO 8601 "
            "('2024-02-03T10:30:05+01:00'), a datetime, or a POSIX timestamp.",
            value=original,
        ) from None


def to_timestamp(value: Any, timezone: str | None = None, *, name: str = "time") -> float:
    """A time value as a POSIX timestamp, by the zone rule of this module.

    Parameters
    ----------
    value : str, datetime, date, int or float
        The time.
    timezone : str, optional
        IANA zone name in which to read times that do not name their own zone;
        this machine's local zone when ``None``.
    name : str
        What the value is called in an error message (``"since"``, ``"--until"``).

    Returns
    -------
    float

    Raises
    ------
    BadTime
        The value is not a time (a ``ValueError``).

    Examples
    --------
    >>> to_timestamp("2024-01-01", "UTC")
    1704067200.0
    >>> to_timestamp("2024-01", "UTC") == to_timestamp("2024-01-01 00:00", "UTC")
    True
    >>> to_timestamp("2024-01-01T01:00:00+01:00", "America/New_York")
    1704067200.0
    """
    if isinstance(value, bool):
        raise BadTime(f"{name} takes a date string, a datetime or a timestamp, not {value!r}.", value=value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        value = _parse_string(value, value, name)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=zone(timezone))
        return value.timestamp()
    raise BadTime(f"{name} takes a date string, a datetime or a timestamp, not {type(value).__name__}.", value=value)
