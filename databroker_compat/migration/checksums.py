"""Checksums of values and frames, equal for equal values whatever their type, and fill values.

Verification compares the source (documents and files) with what Tiled serves by
checksums that are built while the documents stream past, so neither side holds a run in
memory. Two kinds:

- a column's checksum (:class:`StreamChecksums`, one for the values of each key and one
  for their timestamps): the sum (mod 2**64) of a hash of ``(key, seq_num, value)`` over
  the events that carry a value; order does not matter, and an event without a value
  (absent, ``None`` or NaN: :func:`is_absent`) adds nothing;
- a frame's checksum (:func:`frame_digest`): a hash of its shape and its values in a
  canonical form: integral values hash equal whatever their integer or float dtype, NaN is
  one value, ``-0.0`` is ``0.0``. The dtype is compared on its own
  (:class:`FrameFacts`), so that frames returned as float64 where the files hold uint16
  are reported as a dtype change, not as changed content.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy

__all__ = [
    "FILL_VALUES",
    "FrameFacts",
    "StreamChecksums",
    "fill_value",
    "frame_digest",
    "frame_facts",
    "is_absent",
    "is_fill",
]

_MASK = (1 << 64) - 1

#: What an event whose frame could not be kept reads as, by dtype kind (the writer's
#: documented fill values): NaN for floating point, 0 for integers, False for booleans.
FILL_VALUES: dict[str, Any] = {"f": math.nan, "c": math.nan, "i": 0, "u": 0, "b": False}


def is_absent(value: Any) -> bool:
    """No value: ``None`` or a float NaN (a table holds a null or NaN in such a row).

    >>> is_absent(None), is_absent(float("nan")), is_absent(0.0)
    (True, True, False)
    """
    return value is None or (isinstance(value, float) and math.isnan(value))


def fill_value(dtype: Any) -> Any:
    """The fill value of an event without its frame, for frames of ``dtype`` (None: none).

    >>> fill_value("<u2"), fill_value("float64")
    (0, nan)
    """
    import numpy

    return FILL_VALUES.get(numpy.dtype(dtype).kind)


def is_fill(frame: numpy.ndarray) -> bool:
    """Whether every value of ``frame`` is the fill value of its dtype.

    >>> import numpy
    >>> is_fill(numpy.full((2, 2), numpy.nan)), is_fill(numpy.zeros(3, "u2")), is_fill(numpy.ones(3))
    (True, True, False)
    """
    import numpy

    fill = fill_value(frame.dtype)
    if fill is None:
        return False
    if isinstance(fill, float) and math.isnan(fill):
        return bool(numpy.isnan(frame).all())
    return bool((frame == fill).all())


def _canonical(arr: numpy.ndarray) -> bytes:
    """The values of ``arr`` as bytes that are equal for equal values across numeric dtypes."""
    import numpy

    kind = arr.dtype.kind
    if kind in "biu":
        if kind == "u" and arr.dtype.itemsize == 8 and arr.size and int(arr.max()) > 2**63 - 1:
            return b"u" + arr.astype("<u8").tobytes()
        return b"i" + arr.astype("<i8").tobytes()
    if kind == "f":
        values = arr.astype("<f8")
        with numpy.errstate(invalid="ignore"):
            integral = bool(numpy.isfinite(values).all() and (values == numpy.trunc(values)).all())
        if integral and (not values.size or float(numpy.abs(values).max()) < 2**63):
            return b"i" + values.astype("<i8").tobytes()
        values = numpy.where(numpy.isnan(values), numpy.nan, values + 0.0)  # one NaN, no -0.0
        return b"f" + values.tobytes()
    if kind == "c":
        values = arr.astype("<c16")
        return b"c" + numpy.where(numpy.isnan(values), complex(math.nan, math.nan), values + 0.0).tobytes()
    return b"j" + json.dumps(arr.tolist(), default=str).encode()


def frame_digest(value: Any) -> int:
    """A 64-bit checksum of one frame's shape and values (see this module's notes).

    >>> import numpy
    >>> frame_digest(numpy.arange(4, dtype="u2").reshape(2, 2)) == frame_digest([[0.0, 1.0], [2.0, 3.0]])
    True
    >>> frame_digest(numpy.arange(4).reshape(2, 2)) == frame_digest(numpy.arange(4))
    False
    """
    import numpy

    arr = numpy.asarray(value)
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(tuple(arr.shape)).encode())
    h.update(_canonical(arr))
    return int.from_bytes(h.digest(), "little")


@dataclass(frozen=True)
class FrameFacts:
    """What one frame is compared by: checksum, shape and dtype (``""``: the value has none)."""

    digest: int
    shape: tuple[int, ...]
    dtype: str = ""


def frame_facts(value: Any, *, has_dtype: bool = True) -> FrameFacts:
    """The :class:`FrameFacts` of one frame; ``has_dtype=False`` for JSON values (lists).

    >>> facts = frame_facts([[1, 2], [3, 4]], has_dtype=False)
    >>> facts.shape, facts.dtype
    ((2, 2), '')
    """
    import numpy

    arr = numpy.asarray(value)
    return FrameFacts(frame_digest(arr), tuple(arr.shape), arr.dtype.str if has_dtype else "")


def _token(value: Any) -> bytes:
    """A canonical byte form of a value, equal for equal values across int/float/numpy."""
    if value is None:
        return b"n"
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) > 0:
        return b"a" + frame_digest(value).to_bytes(8, "little")
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return b"b" + value
    if hasattr(value, "item") and not isinstance(value, dict):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, (bool, int, float)):
        number = float(value)
        if math.isnan(number):
            return b"fnan"
        return b"f" + struct.pack("<d", number + 0.0)  # + 0.0 folds -0.0 into 0.0
    return b"j" + json.dumps(value, sort_keys=True, default=str).encode()


def _digest(key: str, seq_num: int, value: Any) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(key.encode())
    h.update(b"\0")
    h.update(str(int(seq_num)).encode())
    h.update(b"\0")
    h.update(_token(value))
    return int.from_bytes(h.digest(), "little")


@dataclass
class StreamChecksums:
    """Running event count and per-key checksums of one stream (values absent add nothing).

    >>> a, b = StreamChecksums(), StreamChecksums()
    >>> a.add("x", 1, 1.0); a.add("x", 2, None); b.add("x", 1, 1)
    >>> a.sums == b.sums
    True
    """

    events: int = 0
    sums: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, seq_num: int, value: Any) -> None:
        """Add event ``seq_num``'s ``value`` of ``key`` (nothing if it has none)."""
        if not is_absent(value):
            self.sums[key] = (self.sums.get(key, 0) + _digest(key, seq_num, value)) & _MASK

    def add_stamp(self, key: str, seq_num: int, value: Any) -> None:
        """Add event ``seq_num``'s timestamp ``value`` of ``key`` (nothing if it has none)."""
        if not is_absent(value):
            self.stamps[key] = (self.stamps.get(key, 0) + _digest(key, seq_num, value)) & _MASK
