"""Compare migrated runs in Tiled with their legacy source.

Per run: the start and stop documents, the descriptor uids of each stream, the event
count of each stream, and a checksum of every scalar column. The checksum is the sum
(mod 2**64) of a hash of ``(key, seq_num, value)`` over the events, so it can be built
while the documents stream past, in any order, without holding a run in memory; the
target side reads each stream's table once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .. import _tiled
from .._redact import redact
from ..exceptions import MigrationError
from ..layout import INTERNAL_TABLE, column_of, is_stream
from .legacy import is_closing_stop

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = ["RunVerification", "StreamChecksums", "VerificationReport", "verify", "verify_run"]

_MASK = (1 << 64) - 1


def _token(value: Any) -> bytes:
    """A canonical byte form of a scalar, equal for equal values across int/float/numpy."""
    if value is None:
        return b"n"
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return b"b" + value
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
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


def _is_scalar(spec: dict) -> bool:
    return not spec.get("external") and not (spec.get("shape") or [])


@dataclass
class StreamChecksums:
    """Running event count and per-key checksums of one stream."""

    events: int = 0
    sums: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, seq_num: int, value: Any) -> None:
        self.sums[key] = (self.sums.get(key, 0) + _digest(key, seq_num, value)) & _MASK


class SourceTally:
    """Feed it ``(name, doc)`` pairs; it keeps start, stop, descriptor uids and checksums.

    >>> tally = SourceTally()
    >>> tally("start", {"uid": "u", "time": 0.0})
    >>> tally.start["uid"]
    'u'
    """

    def __init__(self) -> None:
        self.start: dict | None = None
        self.stop: dict | None = None
        self.descriptors: dict[str, list[str]] = {}
        self.streams: dict[str, StreamChecksums] = {}
        self._stream_of: dict[str, str] = {}
        self._scalar: dict[str, list[str]] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.start = doc
        elif name == "stop":
            self.stop = doc
        elif name == "descriptor":
            stream = doc.get("name", "primary")
            self.descriptors.setdefault(stream, []).append(doc["uid"])
            self.streams.setdefault(stream, StreamChecksums())
            self._stream_of[doc["uid"]] = stream
            self._scalar[doc["uid"]] = [k for k, spec in doc.get("data_keys", {}).items() if _is_scalar(spec)]
        elif name == "event":
            self._event(doc)
        elif name == "event_page":
            from event_model import unpack_event_page

            for event in unpack_event_page(cast(Any, doc)):
                self._event(event)

    def _event(self, doc: dict) -> None:
        desc = doc["descriptor"]
        stream = self.streams[self._stream_of[desc]]
        stream.events += 1
        data = doc.get("data", {})
        for key in self._scalar[desc]:
            if key in data:
                stream.add(key, doc["seq_num"], data[key])

    def tee(self, documents: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        """Yield ``documents`` unchanged, tallying each on the way."""
        for name, doc in documents:
            self(name, doc)
            yield name, doc


def canonical(value: Any) -> Any:
    """A JSON-like form for comparing documents as Tiled stores them (tuples as lists, NaN as a string)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return canonical(value.tolist())
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return float(value)  # the server clamps integers beyond 2**53
    return value


def _diff_keys(a: dict, b: dict) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [k for k in keys if canonical(a.get(k)) != canonical(b.get(k))]


@dataclass
class RunVerification:
    """The outcome for one run: ``ok`` and, if not, what differs."""

    uid: str
    ok: bool
    mismatches: list[str] = field(default_factory=list)
    event_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class VerificationReport:
    """All runs checked; ``failed`` lists the runs with a mismatch."""

    runs: list[RunVerification] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    @property
    def failed(self) -> list[RunVerification]:
        return [r for r in self.runs if not r.ok]

    def to_dict(self) -> dict:
        return {
            "checked": len(self.runs),
            "ok": self.ok,
            "failed": [asdict(r) for r in self.failed],
        }

    def summary(self) -> str:
        lines = [f"verified {len(self.runs)} run(s): {len(self.runs) - len(self.failed)} ok, {len(self.failed)} mismatched"]
        for r in self.failed:
            lines.append(f"  {r.uid}: " + "; ".join(r.mismatches))
        return "\n".join(lines)


def _target_streams(run_client: Any) -> dict[str, dict]:
    """Stream name -> item of the run's stream nodes (the layout's rule of what a stream is)."""
    return {item["id"]: item for item in _tiled.iter_children(run_client.context, run_client.item) if is_stream(item)}


def _target_stream_tally(context: Any, item: dict, wanted: Iterable[str]) -> tuple[StreamChecksums, list[str]]:
    """Event count and checksums of the keys ``wanted`` in one target stream."""
    problems: list[str] = []
    tally = StreamChecksums()
    path = _tiled.node_path(item)
    table = _tiled.read_table(context, [*path, INTERNAL_TABLE])
    if table is None:
        # No event table: only external keys, or no events at all.
        for child in _tiled.iter_children(context, item, metadata=False):
            shape = (child["attributes"].get("structure") or {}).get("shape")
            if shape:
                tally.events = max(tally.events, int(shape[0]))
        return tally, problems
    tally.events = table.num_rows
    columns = set(table.column_names)
    seq = table.column("seq_num").to_pylist() if "seq_num" in columns else list(range(1, table.num_rows + 1))
    for key in wanted:
        column = column_of(key)
        if column not in columns:
            problems.append(f"column {key!r} missing from the target table")
            continue
        for s, v in zip(seq, table.column(column).to_pylist(), strict=True):
            tally.add(key, s, v)
    return tally, problems


def compare_run(tally: SourceTally, run_client: Any, *, expected_stop: dict | None = None) -> RunVerification:
    """Compare what the source yielded (``tally``) with the run node ``run_client``."""
    if tally.start is None:
        raise MigrationError("compare_run() needs a run's documents; no start document went past the tally.")
    uid = tally.start["uid"]
    mismatches: list[str] = []
    metadata = dict(run_client.metadata)
    diff = _diff_keys(tally.start, metadata.get("start") or {})
    if diff:
        mismatches.append(f"start differs in {diff}")
    source_stop = expected_stop if expected_stop is not None else tally.stop
    target_stop = metadata.get("stop")
    if source_stop is None:
        if target_stop is not None:
            mismatches.append("target has a stop document, the source has none")
    elif target_stop is None:
        mismatches.append("stop document missing in target")
    else:
        diff = _diff_keys(source_stop, target_stop)
        if is_closing_stop(source_stop):
            # A stop made up for a run that had none: its uid and time are not the source's.
            diff = [k for k in diff if k not in ("uid", "time")]
        if diff:
            mismatches.append(f"stop differs in {diff}")
    streams = _target_streams(run_client)
    counts = {}
    for stream, uids in tally.descriptors.items():
        source = tally.streams[stream]
        item = streams.get(stream)
        if item is None:
            mismatches.append(f"stream {stream!r} missing in target")
            continue
        md = item["attributes"].get("metadata") or {}
        target_uids = [md.get("uid")] + [u.get("uid") for u in md.get("_config_updates") or []]
        if sorted(u for u in target_uids if u) != sorted(uids):
            mismatches.append(f"stream {stream!r}: descriptor uids {sorted(uids)} != {sorted(u for u in target_uids if u)}")
        target, problems = _target_stream_tally(run_client.context, item, source.sums)
        counts[stream] = target.events
        if source_stop is None:
            # A run left open on purpose: TiledWriter writes events only at the stop.
            if target.events:
                mismatches.append(f"stream {stream!r}: run left open, yet {target.events} events in target")
            continue
        mismatches += [f"stream {stream!r}: {p}" for p in problems]
        if target.events != source.events:
            mismatches.append(f"stream {stream!r}: {source.events} events in source, {target.events} in target")
        for key, value in source.sums.items():
            if key in target.sums and target.sums[key] != value:
                mismatches.append(f"stream {stream!r}: checksum of {key!r} differs")
    extra = sorted(set(streams) - set(tally.descriptors))
    if extra:
        mismatches.append(f"streams {extra} in target but not in source")
    return RunVerification(uid, not mismatches, mismatches, counts)


def verify_run(source: LegacySource, tiled_client: Any, uid: str, *, close_open_runs: bool = True) -> RunVerification:
    """Verify one run: read it from ``source`` and compare with ``tiled_client[uid]``.

    Examples
    --------
    >>> verify_run(source, client, "9d5c...").ok   # doctest: +SKIP
    True
    """
    container: Container = _tiled.as_container(tiled_client)
    tally = SourceTally()
    for _ in tally.tee(source.documents(uid, close_open_runs=close_open_runs)):
        pass
    if tally.start is None:
        return RunVerification(uid, False, ["no start document in the source"])
    try:
        run_client = container[uid]
    except KeyError:
        return RunVerification(uid, False, ["run missing in target"])
    return compare_run(tally, run_client)


def verify(
    source: LegacySource,
    tiled_client: Any,
    *,
    uids: Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
    query: dict | None = None,
    close_open_runs: bool = True,
    timezone: str | None = None,
) -> VerificationReport:
    """Compare every selected source run with the target and report mismatches.

    Parameters
    ----------
    source : LegacySource
        The legacy MongoDB source.
    tiled_client : tiled container client
        The node the runs were migrated into.
    uids : iterable of str, optional
        Only these runs; otherwise the runs ``since``/``until``/``query`` select
        (times read as :func:`~databroker_compat.migration.migrate` reads them, naive
        ones in ``timezone``, this machine's zone by default).
    close_open_runs : bool
        As given to the migration (decides what stop document the source implies).

    Returns
    -------
    VerificationReport

    Examples
    --------
    >>> report = verify(LegacySource(mongo_db), client)   # doctest: +SKIP
    >>> report.ok                                          # doctest: +SKIP
    True
    """
    if uids is None:
        uids = source.find_run_uids(since=since, until=until, query=query, timezone=timezone)
    report = VerificationReport()
    for uid in uids:
        try:
            result = verify_run(source, tiled_client, uid, close_open_runs=close_open_runs)
        except Exception as err:
            logger.warning("Verification of run %s failed: %s", uid, redact(err))
            result = RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])
        if not result.ok:
            logger.warning("Run %s does not match its source: %s", uid, "; ".join(result.mismatches))
        report.runs.append(result)
    return report
