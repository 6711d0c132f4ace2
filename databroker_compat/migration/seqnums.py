"""The ``seq_num`` values seen in a stream, in one bit each: how duplicate events are told apart.

The reader (:mod:`.assemble`) and the survey of external keys (:mod:`.survey`) drop the
same duplicates with it: the first event of a ``seq_num`` by time is kept.
"""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["SeqNums"]


class SeqNums:
    """The ``seq_num`` values seen in a stream, in one bit each (a run of a million events
    costs 125 kB, not the ~60 MB of a set of ints); odd values (negative, huge, not an
    int) go to a set.

    >>> seen = SeqNums()
    >>> seen.add(3); 3 in seen, 4 in seen, "x" in seen
    (True, False, False)
    """

    _LIMIT = 1 << 32

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[Any] = set()

    @classmethod
    def _bit(cls, value: Any) -> int | None:
        """The bit of ``value`` (3, 3.0, numpy.int64(3) share one), or None for the set."""
        if isinstance(value, float):
            if not value.is_integer():
                return None
            value = int(value)
        try:
            number = operator.index(value)
        except TypeError:
            return None
        return number if 0 <= number < cls._LIMIT else None

    def __contains__(self, value: Any) -> bool:
        bit = self._bit(value)
        if bit is not None:
            byte = bit >> 3
            return byte < len(self._bits) and bool(self._bits[byte] & (1 << (bit & 7)))
        return value in self._other

    def add(self, value: Any) -> None:
        """Remember ``value``."""
        bit = self._bit(value)
        if bit is not None:
            byte = bit >> 3
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            self._bits[byte] |= 1 << (bit & 7)
        else:
            self._other.add(value)
