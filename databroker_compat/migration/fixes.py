"""Every fix the migration makes to a legacy run, recorded as it is made.

A :class:`Fix` is one change between what MongoDB holds and what is written: a value
converted, a key renamed, a resource repaired, a stop document made up, a shape or dtype
corrected from the files, frames that could not be migrated. A :class:`FixLog` keeps a
run's fixes in order, and their one-line messages in :attr:`FixLog.lines`, which become
the run's ``notes`` in Tiled (prefixed ``migration:``) and its ``warnings`` in the report;
the fixes themselves go to the JSON report, with their kind and, where they concern
events, the stream, key and ``seq_num`` values.

>>> log = FixLog()
>>> log.add(STOP, "no stop document; a stop with exit_status 'unknown' is written")
>>> log.lines
["no stop document; a stop with exit_status 'unknown' is written"]
>>> log.fixes[0].to_dict()["kind"]
'stop'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "CONFIGURATION",
    "DESCRIPTOR",
    "DTYPE",
    "EVENT",
    "FIX_KINDS",
    "INLINE",
    "KEY",
    "MISSING_FRAMES",
    "RESOURCE",
    "SHAPE",
    "START",
    "STOP",
    "VALUE",
    "Fix",
    "FixLog",
    "Notes",
    "describe_seq_nums",
    "note",
]

#: Metadata values converted to JSON (ObjectId, datetime, NaN/Infinity, bytes).
VALUE = "value"
#: A key renamed (dots, slashes, the reserved names ``time`` and ``seq_num``).
KEY = "key"
#: Start document fixes (``scan_id``).
START = "start"
#: A stop document made up, or its ``exit_status``/``time`` changed.
STOP = "stop"
#: Descriptor defaults: a stream name, data keys added, ``dtype``/``shape``/``source`` filled in.
DESCRIPTOR = "descriptor"
#: Defaults in a descriptor's ``configuration``.
CONFIGURATION = "configuration"
#: Event fixes: v0 events split, duplicates dropped, values converted, undeclared keys dropped, absent keys filled.
EVENT = "event"
#: A resource or datum repaired (filestore v0: no ``uid``/``root``, datums keyed ``event_id``).
RESOURCE = "resource"
#: An external key's declared shape corrected from its files.
SHAPE = "shape"
#: An external key's dtype taken from its files (``dtype_numpy``).
DTYPE = "dtype"
#: An external key written inline (as an array in the events) to keep every frame with its event.
INLINE = "inline"
#: Frames that could not be migrated (datum, resource or file missing); the events read as the fill value.
MISSING_FRAMES = "missing_frames"
#: Every kind, in the order the report lists them.
FIX_KINDS = (VALUE, KEY, START, STOP, DESCRIPTOR, CONFIGURATION, EVENT, RESOURCE, SHAPE, DTYPE, INLINE, MISSING_FRAMES)


@dataclass(frozen=True)
class Fix:
    """One fix: its kind (one of :data:`FIX_KINDS`), a one-line message, and where it applies.

    >>> Fix(MISSING_FRAMES, "primary/img: 1 of 3 frames missing", stream="primary", key="img",
    ...     seq_nums=(2,)).to_dict()["seq_nums"]
    [2]
    """

    kind: str
    message: str
    stream: str | None = None
    key: str | None = None
    seq_nums: tuple[int, ...] = ()
    details: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fix as JSON-ready data (what the report and ``RunOutcome.fixes`` hold)."""
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.key is not None:
            out["key"] = self.key
        if self.seq_nums:
            out["seq_nums"] = list(self.seq_nums)
        out.update(dict(self.details))
        return out


@dataclass
class FixLog:
    """The fixes of one run, in the order they were made; ``lines`` holds their messages.

    ``lines`` is the list a reader exposes as ``warnings``: it may be handed out before
    the fixes are complete, and it fills as they are made.
    """

    fixes: list[Fix] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(
        self,
        kind: str,
        message: str,
        *,
        stream: str | None = None,
        key: str | None = None,
        seq_nums: Iterable[int] = (),
        **details: Any,
    ) -> None:
        """Record one fix (``details``: more JSON-ready context for the report)."""
        if kind not in FIX_KINDS:
            raise ValueError(f"unknown fix kind {kind!r}; one of {FIX_KINDS}")
        self.fixes.append(Fix(kind, message, stream, key, tuple(int(s) for s in seq_nums), tuple(details.items())))
        self.lines.append(message)

    def to_list(self) -> list[dict[str, Any]]:
        """Every fix as JSON-ready data."""
        return [f.to_dict() for f in self.fixes]

    def __len__(self) -> int:
        return len(self.fixes)


#: Where the normalisation functions record a fix: a :class:`FixLog`, or a plain list of lines.
Notes = Union[FixLog, list]


def note(notes: Notes, kind: str, message: str, **context: Any) -> None:
    """Record a fix in ``notes``: a :class:`FixLog` (with its kind) or a list (the line only).

    >>> lines = []
    >>> note(lines, STOP, "no stop document")
    >>> lines
    ['no stop document']
    """
    if isinstance(notes, FixLog):
        notes.add(kind, message, **context)
    else:
        notes.append(message)


def describe_seq_nums(seq_nums: list[int]) -> str:
    """``seq_num`` values as short ranges.

    >>> describe_seq_nums([2, 3, 4, 7, 9, 10])
    '2-4, 7, 9-10'
    """
    parts: list[str] = []
    values = sorted(seq_nums)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ", ".join(parts)
