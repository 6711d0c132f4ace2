"""``db[key]``: the keys databroker v1 accepted, parsed and checked in one place.

Both ways of answering a key use this parser — on the server (:mod:`~databroker_compat.lookup`,
for ``db[...]`` and exact search results) and on the client (search results checked
on the client, :mod:`~databroker_compat.results`) — so the two accept the same keys
and refuse the others with the same messages.

========================  =====================================================
``db[-1]``, ``db[-N]``    :class:`Recent`: the N-th newest run by ``start.time``
``db[42]``                :class:`ScanId`: the most recent run with ``scan_id == 42``
``db["a1b2c3..."]``       :class:`Uid`: a full uid or a prefix of >= 5 characters
``db[-3:]``, slices       :class:`NewestSlice`: negative bounds, over time order
``db[[k1, k2]]``          :class:`Several`: a list, tuple or set of the above
========================  =====================================================

As in v1, a slice must say where it starts or stops: ``db[:]`` (or ``db[::2]``) would
read every run of the catalog and is refused with a ``ValueError``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Union

from .exceptions import BadArgument, BadKey, RunNotFound

__all__ = [
    "MIN_PREFIX",
    "UID_LENGTH",
    "NewestSlice",
    "Recent",
    "RunKey",
    "ScanId",
    "Several",
    "Uid",
    "parse_key",
]

#: The length of a full uid (``str(uuid.uuid4())``).
UID_LENGTH = 36
#: The shortest uid prefix a lookup takes.
MIN_PREFIX = 5


@dataclass(frozen=True)
class Recent:
    """``db[index]`` with a negative index: -1 is the newest run."""

    index: int


@dataclass(frozen=True)
class ScanId:
    """``db[n]`` with ``n >= 0``: the most recent run whose start has this ``scan_id``."""

    scan_id: int


@dataclass(frozen=True)
class Uid:
    """``db["..."]``: a full uid, or a prefix of at least :data:`MIN_PREFIX` characters."""

    text: str

    @property
    def is_full(self) -> bool:
        """Whether the text is as long as a full uid (looked up by equality)."""
        return len(self.text) >= UID_LENGTH


@dataclass(frozen=True)
class NewestSlice:
    """``db[a:b:c]`` with negative (or no) bounds, over the runs oldest first.

    >>> NewestSlice(-3, None, 1).newest_needed, NewestSlice(None, -2, 1).newest_needed
    (3, None)
    >>> NewestSlice(-1, -4, -1).newest_needed
    3
    """

    start: int | None
    stop: int | None
    step: int

    @property
    def newest_needed(self) -> int | None:
        """How many of the newest runs the slice can reach (``None``: it may reach the oldest)."""
        if self.step > 0:
            return None if self.start is None else -self.start
        return None if self.stop is None else -self.stop - 1

    def of(self, ascending: list) -> list:
        """The slice of runs given oldest first (Python's slice rules)."""
        return ascending[self.start : self.stop : self.step]


@dataclass(frozen=True)
class Several:
    """``db[[k1, k2, ...]]``: each item is a key of its own, parsed when it is looked up.

    A set (``db[{uid1, uid2}]``) is taken as v1 took it, in its iteration order.
    """

    items: tuple


#: A parsed ``db[...]`` key.
RunKey = Union[Recent, ScanId, Uid, NewestSlice, Several]


def parse_key(key: Any, *, subject: str = "db") -> RunKey:
    """Parse and check a ``db[key]`` key; ``subject`` names what is indexed in messages.

    Raises ``BadKey`` (a ``TypeError``) for a key of a type no lookup takes,
    ``RunNotFound`` (a ``KeyError``) for a uid prefix too short to look up, and
    ``BadArgument`` (a ``ValueError``) for slices with non-negative bounds, with
    neither bound (``db[:]``: the whole catalog), or with a zero step. Each error
    carries the key as ``err.key``.

    >>> parse_key(-1), parse_key(42), parse_key("a1b2c3d4")
    (Recent(index=-1), ScanId(scan_id=42), Uid(text='a1b2c3d4'))
    >>> parse_key(slice(-5, None))
    NewestSlice(start=-5, stop=None, step=1)
    >>> parse_key({"a1b2c3d4"})
    Several(items=('a1b2c3d4',))
    >>> parse_key(slice(2, 5), subject="results")
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.BadArgument: results[2:5] is not supported: slices count back from the \
newest run and must use negative indices (results[-5:] for the newest five). Positive integers are \
scan_ids; to select by scan_id use db(scan_id={'$gte': a, '$lt': b}).
    """
    if isinstance(key, bool):
        raise BadKey(f"{subject}[True/False] is not a run lookup; use an int, a uid, or a slice.", key=key)
    if isinstance(key, numbers.Integral):
        index = int(key)
        return Recent(index) if index < 0 else ScanId(index)
    if isinstance(key, str):
        if len(key) < MIN_PREFIX:
            raise RunNotFound(
                f"{key!r} is too short to look up: give a full uid or a uid prefix of at least "
                f"{MIN_PREFIX} characters.",
                key=key,
            )
        return Uid(key)
    if isinstance(key, slice):
        return _parse_slice(key, subject)
    if isinstance(key, (list, tuple, set, frozenset)):
        return Several(tuple(key))
    raise BadKey(
        f"Cannot look up a run with a {type(key).__name__} ({key!r}); use a negative index, "
        "a scan_id, a uid or uid prefix, a slice, or a list of these.",
        key=key,
    )


# What ``x[:]`` would read, and what to write instead, by what is indexed.
_WHOLE = {"db": ("every run of the catalog", "search: db(since='2024-01-01')")}


def _parse_slice(key: slice, subject: str) -> NewestSlice:
    start, stop, step = key.start, key.stop, key.step
    for bound in (start, stop, step):
        if bound is not None and not isinstance(bound, numbers.Integral):
            raise BadKey(f"Slice bounds must be integers, not {bound!r}.", key=key)
    if (start is not None and start >= 0) or (stop is not None and stop >= 0):
        raise BadArgument(
            f"{subject}[{start}:{stop}] is not supported: slices count back from the newest run and "
            f"must use negative indices ({subject}[-5:] for the newest five). Positive integers are "
            "scan_ids; to select by scan_id use db(scan_id={'$gte': a, '$lt': b}).",
            key=key,
        )
    if start is None and stop is None:
        whole, instead = _WHOLE.get(subject, (f"every one of these {subject}", f"iterate them: list({subject})"))
        shown = ":" if step is None else f"::{step}"
        raise BadArgument(
            f"{subject}[{shown}] (a slice with neither bound) would read {whole}; databroker v1 refused it "
            f"too. Count back from the newest run ({subject}[-100:]), or {instead}.",
            key=key,
        )
    if step == 0:
        raise BadArgument("slice step cannot be zero", key=key)
    return NewestSlice(
        None if start is None else int(start), None if stop is None else int(stop), 1 if step is None else int(step)
    )
