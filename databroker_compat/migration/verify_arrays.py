"""The target side of verifying array data: frames per event, shape, dtype, mapping, checksums.

:func:`check_array_key` compares one array key of the source (an
:class:`~.tally.ArrayKey`, collected from the documents) with the array node Tiled serves
for it:

- **frames per event**: the node has one row per event up to the highest seq_num that
  carries a value (the row of event ``n`` is :func:`~databroker_compat.layout.frame_index`
  ``(n)``), and events without a value in the source are not served another event's frame;
- **shape and dtype** of the compared frames: the files' own (read through the job's root
  map) for external keys; for inline values the shape, and the dtype when the descriptor
  declared ``dtype_numpy``;
- **the event→frame mapping and content**: the checksum of the frame served for each
  chosen event equals the checksum of that event's source frame; a frame found under
  another event is named as such;
- events whose frame the writer could not keep (``missing``) read as the fill value.

Frames are read through :mod:`databroker_compat.arrays`, in chunk-aligned requests
(:func:`~databroker_compat.arrays.row_groups`), one block at a time: a frame costs its
own size in memory, and the number of requests is bounded by the frames compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..arrays import ArrayNode, row_groups
from ..layout import frame_index
from .checksums import FrameFacts, fill_value, frame_digest, frame_facts, is_fill
from .frames import RootMap, read_datum
from .tally import ArrayKey, DatumRef, Pick

__all__ = ["KeyCheck", "check_array_key"]

_SHOWN = 5  # seq_nums named in one message


@dataclass
class KeyCheck:
    """The outcome of :func:`check_array_key`: mismatches, events compared, requests sent."""

    mismatches: list[str] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)
    requests: int = 0


def _events(values: Iterable[int]) -> str:
    """``event 3`` or ``events 1, 2, 5 and 7 more``."""
    values = sorted(values)
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return f"{'event' if len(values) == 1 else 'events'} {shown}{more}"


def check_array_key(
    key: ArrayKey,
    node: ArrayNode | None,
    *,
    root_map: RootMap | None = None,
    missing: Iterable[int] = (),
) -> KeyCheck:
    """Compare one array key of the source (``key``) with its array node in the target.

    Parameters
    ----------
    key : ArrayKey
        What the documents said (:class:`~.tally.SourceTally`'s ``arrays``).
    node : ArrayNode or None
        The key's array node in the target stream (None: there is none).
    root_map : RootMap, optional
        Where datum-backed frames are read from (the job's root map).
    missing : iterable of int
        Seq_nums whose frame the writer could not keep: they must read as the fill value.

    Returns
    -------
    KeyCheck

    >>> check_array_key(tally.arrays.keys[("primary", "img")], run.array_nodes("primary")["img"]).mismatches  # doctest: +SKIP
    []
    """
    result = KeyCheck()
    missing = sorted({int(s) for s in missing})
    absent: list[int] = []
    if key.external:
        # A datum-backed key keeps its files; the events that lost their frames (only
        # at the end of the stream) carry no value and have no row: they read as None.
        absent, missing = missing, []
    if node is None:
        if key.carried or key.streamed_rows or missing:
            result.mismatches.append(f"{key.key!r}: no array node in the target")
        return result
    rows = node.shape[0] if node.shape else 0
    if key.streamed_rows:
        if rows != key.streamed_rows:
            result.mismatches.append(f"{key.key!r}: {rows} frames in the target, {key.streamed_rows} announced")
        return result
    expected = max([frame_index(key.last_seq) + 1 if key.carried else 0, *(frame_index(s) + 1 for s in missing)])
    if rows != expected:
        result.mismatches.append(
            f"{key.key!r}: {rows} frames in the target for {key.carried} events with a value in the source "
            f"(the highest, seq_num {key.last_seq}, needs {expected})"
        )
    served_absent = [s for s in absent if 0 <= frame_index(s) < rows]
    if served_absent:
        result.mismatches.append(
            f"{key.key!r}: {_events(served_absent)} arrived without their frames (they read as None), "
            "yet the target serves a frame there"
        )
    listed = set(missing) | set(absent)
    framed = [s for s in key.without if s not in listed and 0 <= frame_index(s) < rows]
    if framed:
        result.mismatches.append(
            f"{key.key!r}: the source has no value for {_events(framed)}, yet the target serves a frame "
            "there (frames shifted onto other events?)"
        )
    if key.unresolved:
        result.mismatches.append(f"{key.key!r}: the datums {key.unresolved[:_SHOWN]} of events never went past")
    picks = [p for p in key.picks() if 0 <= frame_index(p.seq) < rows]
    fill_rows = _fill_rows(missing, rows, key)
    served, not_fill = _read_target(node, sorted({frame_index(p.seq) for p in picks} | fill_rows), fill_rows, result)
    if not_fill:
        result.mismatches.append(
            f"{key.key!r}: a frame that could not be kept reads as the fill value {fill_value(node.dtype)!r}; "
            f"not so for {_events(r + 1 for r in not_fill)}"
        )
    _compare(key, node, picks, served, root_map, result)
    return result


def _fill_rows(missing: list[int], rows: int, key: ArrayKey) -> set[int]:
    """The rows of ``missing`` events to read: all of them, or first, last and one at random."""
    present = [frame_index(s) for s in missing if 0 <= frame_index(s) < rows]
    if key.full or len(present) <= 3:
        return set(present)
    return {present[0], present[-1], key.rng.choice(present)}


def _read_target(
    node: ArrayNode, wanted: list[int], fill_rows: set[int], result: KeyCheck
) -> tuple[dict[int, FrameFacts], list[int]]:
    """Facts of rows ``wanted`` of ``node`` (one request per row group), and the fill rows that are not fill."""
    served: dict[int, FrameFacts] = {}
    not_fill: list[int] = []
    tail = ",:" * len(node.frame_shape)
    for _, start, stop in row_groups(node, wanted):
        result.requests += 1
        try:
            block = node.read(f"{start}:{stop}{tail}", (stop - start, *node.frame_shape), (start, stop))
        except Exception as err:
            result.mismatches.append(f"{node.key!r}: the target could not serve frames {start}:{stop}: {err}")
            continue
        for i, frame in enumerate(block):
            served[start + i] = FrameFacts(frame_digest(frame), tuple(frame.shape), frame.dtype.str)
            if start + i in fill_rows and not is_fill(frame):
                not_fill.append(start + i)
        del block
    return served, not_fill


def _source_facts(pick: Pick, root_map: RootMap | None) -> FrameFacts:
    """The facts of a chosen event's source frame (read from the files for a datum)."""
    ref = pick.resolved().ref
    if isinstance(ref, FrameFacts):
        return ref
    assert isinstance(ref, DatumRef)
    if ref.resource is None:
        raise LookupError("its resource document never went past")
    return frame_facts(read_datum(ref.resource, ref.datum_kwargs, root_map))


def _compare(
    key: ArrayKey,
    node: ArrayNode,
    picks: list[Pick],
    served: dict[int, FrameFacts],
    root_map: RootMap | None,
    result: KeyCheck,
) -> None:
    """Compare the chosen events' source frames with the frames served for them."""
    import numpy

    where = "the source files" if key.external else "the source events"
    source: dict[int, FrameFacts] = {}
    unreadable: list[str] = []
    for pick in picks:
        try:
            source[pick.seq] = _source_facts(pick, root_map)
        except Exception as err:
            unreadable.append(f"{pick.seq} ({type(err).__name__}: {err})")
    if unreadable:
        result.mismatches.append(f"{key.key!r}: the source frames of events {unreadable[:_SHOWN]} could not be read")
    wrong_shape = [s for s, f in source.items() if f.shape != node.frame_shape]
    if wrong_shape:
        shape = source[wrong_shape[0]].shape
        result.mismatches.append(
            f"{key.key!r}: frame shape {shape} in {where} ({_events(wrong_shape)}), "
            f"{node.frame_shape} in the target"
        )
    declared = numpy.dtype(key.declared_dtype) if key.declared_dtype and not key.external else None
    wanted = {s: numpy.dtype(f.dtype) if key.external and f.dtype else declared for s, f in source.items()}
    wrong_dtype = [s for s, d in wanted.items() if d is not None and d != node.dtype]
    if wrong_dtype:
        result.mismatches.append(f"{key.key!r}: dtype {wanted[wrong_dtype[0]]} in {where}, {node.dtype} in the target")
    by_digest = {f.digest: s for s, f in source.items()}
    differ, moved = [], []
    for seq, facts in source.items():
        got = served.get(frame_index(seq))
        if got is None:
            continue
        result.checked.append(seq)
        if got.digest != facts.digest:
            differ.append(seq)
            if by_digest.get(got.digest) not in (None, seq):
                moved.append(f"event {by_digest[got.digest]}'s frame is served for event {seq}")
    if differ:
        text = f"{key.key!r}: the frames of {len(differ)} of {len(result.checked)} compared events differ from {where}"
        text += f" ({_events(differ)})"
        if moved:
            text += "; " + ", ".join(moved[:_SHOWN]) + ": the event→frame mapping is wrong"
        result.mismatches.append(text)
