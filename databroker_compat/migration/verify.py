"""Compare migrated runs in Tiled with their legacy source.

Per run: the start and stop documents, the descriptor uids of each stream, the event
count of each stream, a checksum of every column of the events table (values and
timestamps), and the array
data (:mod:`.verify_arrays`: frames per event, shape, dtype, the event→frame mapping and
checksums of the sampled frames, or of every frame with ``verify_data="full"``).

A column's checksum is the sum (mod 2**64) of a hash of ``(key, seq_num, value)`` over
the events that carry a value, so it can be built while the documents stream past, in
any order, without holding a run in memory; the target side reads each stream's table
once. An event without a value of a key (the key absent from the event, ``None`` or NaN)
adds nothing, on either side: the table holds a null (or NaN) in that row, which is
what was written.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .. import _tiled
from .._redact import redact
from ..exceptions import MigrationError
from ..layout import column_of, timestamp_column
from ..run import Run
from .checksums import StreamChecksums
from .frames import RootMap
from .legacy import is_closing_stop
from .tally import ArrayTally, SourceTally
from .verify_arrays import check_array_key

if TYPE_CHECKING:
    from tiled.client.container import Container

    from .source import LegacySource

logger = logging.getLogger(__name__)

__all__ = [
    "MISSING_FRAMES_ATTRIBUTE",
    "MissingFrames",
    "RunVerification",
    "SourceTally",
    "StreamChecksums",
    "VerificationReport",
    "compare_run",
    "verify",
    "verify_run",
]

#: stream -> data key -> seq_nums of the events whose frame the writer could not keep.
MissingFrames = Mapping[str, Mapping[str, Iterable[int]]]
#: The attribute of a run's documents iterator that holds its :data:`MissingFrames`.
MISSING_FRAMES_ATTRIBUTE = "missing_frames"


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
    """The outcome for one run: ``ok`` and, if not, what differs.

    Attributes
    ----------
    uid : str
    ok : bool
    mismatches : list of str
        One line per difference, naming the stream and key.
    event_counts : dict
        Stream name -> events in the target.
    frames_checked : dict
        ``"stream/key"`` -> frames of array data compared with the source.
    checked_events : dict
        ``"stream/key"`` -> the seq_nums whose frames were compared (sample mode only;
        with ``verify_data="full"`` every event's frame is).
    requests : int
        HTTP requests the comparison sent to the target (retries not counted).
    verify_data : str
        ``"sample"`` or ``"full"``.
    missing_frames : dict
        Stream → key → seq_nums of the events that arrived without their frames (they
        read as the documented fill value); a run that lists any is *incomplete*.
    """

    uid: str
    ok: bool
    mismatches: list[str] = field(default_factory=list)
    event_counts: dict[str, int] = field(default_factory=dict)
    frames_checked: dict[str, int] = field(default_factory=dict)
    checked_events: dict[str, list[int]] = field(default_factory=dict)
    requests: int = 0
    verify_data: str = "sample"
    missing_frames: dict[str, dict[str, list[int]]] = field(default_factory=dict)


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

    @property
    def frames_checked(self) -> int:
        """Frames of array data compared, over all runs."""
        return sum(sum(r.frames_checked.values()) for r in self.runs)

    @property
    def requests(self) -> int:
        """Requests sent to the target by the comparisons, over all runs."""
        return sum(r.requests for r in self.runs)

    def to_dict(self) -> dict:
        return {
            "checked": len(self.runs),
            "ok": self.ok,
            "frames_checked": self.frames_checked,
            "requests": self.requests,
            "failed": [asdict(r) for r in self.failed],
        }

    def summary(self) -> str:
        lines = [
            f"verified {len(self.runs)} run(s): {len(self.runs) - len(self.failed)} ok, {len(self.failed)} mismatched"
            f" ({self.frames_checked} frames of array data compared; {self.requests} requests)"
        ]
        for r in self.failed:
            lines.append(f"  {r.uid}: " + "; ".join(r.mismatches))
        return "\n".join(lines)


def _compare_documents(tally: SourceTally, metadata: dict, source_stop: dict | None) -> list[str]:
    """Differences of the start and stop documents."""
    mismatches = []
    diff = _diff_keys(cast(dict, tally.start), metadata.get("start") or {})
    if diff:
        mismatches.append(f"start differs in {diff}")
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
    return mismatches


def _table_checks(source: StreamChecksums, table: Any, wanted: Iterable[str]) -> list[str]:
    """Differences between the source's column checksums and the target table's."""
    problems: list[str] = []
    target = StreamChecksums()
    columns = set(table.column_names)
    seq = table.column("seq_num").to_pylist() if "seq_num" in columns else list(range(1, table.num_rows + 1))

    def summed(key: str, column: str, add: Callable[[str, int, Any], None]) -> None:
        for s, v in zip(seq, table.column(column).to_pylist(), strict=True):
            add(key, s, v)

    for key in wanted:
        column = column_of(key)
        if column not in columns:
            problems.append(f"column {key!r} missing from the target table")
            continue
        summed(key, column, target.add)
        if target.sums.get(key, 0) != source.sums[key]:
            problems.append(f"checksum of {key!r} differs")
        if key not in source.stamps:
            continue
        stamps = timestamp_column(key)
        if stamps not in columns:
            problems.append(f"timestamp column {stamps!r} missing from the target table")
            continue
        summed(key, stamps, target.add_stamp)
        if target.stamps.get(key, 0) != source.stamps[key]:
            problems.append(f"checksum of the timestamps of {key!r} differs")
    return problems


@dataclass
class _Counts:
    requests: int = 0
    frames: dict[str, int] = field(default_factory=dict)
    checked: dict[str, list[int]] = field(default_factory=dict)


def _compare_stream(
    tally: SourceTally,
    run: Run,
    stream: str,
    item: dict,
    *,
    run_open: bool,
    root_map: RootMap | None,
    missing: Mapping[str, Iterable[int]],
    counts: _Counts,
) -> tuple[int, list[str]]:
    """Events in the target stream and the differences found in it."""
    source = tally.streams[stream]
    mismatches: list[str] = []
    md = item["attributes"].get("metadata") or {}
    uids = tally.descriptors[stream]
    target_uids = sorted(u for u in [md.get("uid")] + [u.get("uid") for u in md.get("_config_updates") or []] if u)
    if target_uids != sorted(uids):
        mismatches.append(f"descriptor uids {sorted(uids)} != {target_uids}")
    keys = tally.arrays.of_stream(stream)
    table = run.read_internal_table(stream)  # one request (a 404 when there is none)
    counts.requests += 1
    nodes = {}
    if keys or table is None:
        nodes = run.array_nodes(stream)  # one request (one per 300 nodes)
        counts.requests += 1
    events = table.num_rows if table is not None else max((n.shape[0] for n in nodes.values() if n.shape), default=0)
    if run_open:
        # A run left open on purpose: TiledWriter writes events only at the stop.
        if events:
            mismatches.append(f"run left open, yet {events} events in target")
        return events, mismatches
    if events != source.events:
        mismatches.append(f"{source.events} events in source, {events} in target")
    wanted = [k for k in source.sums if k not in nodes]
    if table is not None:
        mismatches += _table_checks(source, table, wanted)
    elif wanted:
        mismatches += [f"column {k!r} missing from the target table" for k in wanted]
    for key in keys:
        node = nodes.get(key.key)
        if node is None and not key.external and column_of(key.key) in (table.column_names if table else []):
            continue  # a small inline array: a column of the table, checked above
        check = check_array_key(key, node, root_map=root_map, missing=missing.get(key.key, ()))
        mismatches += check.mismatches
        counts.requests += check.requests
        name = f"{stream}/{key.key}"
        counts.frames[name] = len(check.checked)
        if not key.full:
            counts.checked[name] = sorted(check.checked)
    return events, mismatches


def compare_run(
    tally: SourceTally,
    run_client: Any,
    *,
    expected_stop: dict | None = None,
    root_map: RootMap | None = None,
    missing_frames: MissingFrames | None = None,
) -> RunVerification:
    """Compare what the source yielded (``tally``) with the run node ``run_client``.

    Parameters
    ----------
    tally : SourceTally
        Fed with the documents the writer received, as they went past.
    run_client : tiled client
        The run's node in the target.
    expected_stop : dict, optional
        The stop document the target should hold, if not the one in ``tally``.
    root_map : RootMap, optional
        Where the files of the legacy resources are now (the job's ``root_map``):
        datum-backed frames are read from there.
    missing_frames : mapping, optional
        stream -> data key -> seq_nums of events whose frame the writer could not keep
        (the documents' ``missing_frames``): they must read as the fill value.

    Examples
    --------
    >>> tally = SourceTally()
    >>> for _ in tally.tee(documents): pass                      # doctest: +SKIP
    >>> compare_run(tally, container[uid]).mismatches           # doctest: +SKIP
    []
    """
    if tally.start is None:
        raise MigrationError("compare_run() needs a run's documents; no start document went past the tally.")
    uid = tally.start["uid"]
    run = Run(run_client)
    source_stop = expected_stop if expected_stop is not None else tally.stop
    mismatches = _compare_documents(tally, dict(run_client.metadata), source_stop)
    streams = run.streams()
    result = RunVerification(
        uid,
        False,
        verify_data="full" if tally.arrays.full else "sample",
        missing_frames={s: {k: sorted(v) for k, v in keys.items()} for s, keys in (missing_frames or {}).items()},
    )
    counts = _Counts(requests=1)
    for stream in tally.descriptors:
        item = streams.get(stream)
        if item is None:
            mismatches.append(f"stream {stream!r} missing in target")
            continue
        events, problems = _compare_stream(
            tally, run, stream, item,
            run_open=source_stop is None,
            root_map=root_map,
            missing=(missing_frames or {}).get(stream, {}),
            counts=counts,
        )
        result.event_counts[stream] = events
        mismatches += [f"stream {stream!r}: {p}" for p in problems]
    extra = sorted(set(streams) - set(tally.descriptors))
    if extra:
        mismatches.append(f"streams {extra} in target but not in source")
    result.ok, result.mismatches = not mismatches, mismatches
    result.frames_checked, result.checked_events, result.requests = counts.frames, counts.checked, counts.requests
    return result


def verify_run(
    source: LegacySource,
    tiled_client: Any,
    uid: str,
    *,
    close_open_runs: bool = True,
    root_map: RootMap | None = None,
    verify_data: str = "sample",
    rng: random.Random | None = None,
) -> RunVerification:
    """Verify one run: read it from ``source`` and compare with ``tiled_client[uid]``.

    ``root_map``, ``verify_data`` and ``rng`` are as for :func:`compare_run` and
    :class:`SourceTally`; the events whose frames the writer could not keep are the
    documents' own ``missing_frames``, when they list them.

    Examples
    --------
    >>> verify_run(source, client, "9d5c...").ok   # doctest: +SKIP
    True
    """
    container: Container = _tiled.as_container(tiled_client)
    tally = SourceTally(verify_data=verify_data, rng=rng)
    documents = source.documents(uid, close_open_runs=close_open_runs)
    for _ in tally.tee(documents):
        pass
    if tally.start is None:
        return RunVerification(uid, False, ["no start document in the source"])
    try:
        run_client = container[uid]
    except KeyError:
        return RunVerification(uid, False, ["run missing in target"])
    missing = getattr(documents, MISSING_FRAMES_ATTRIBUTE, None)
    return compare_run(tally, run_client, root_map=root_map, missing_frames=missing)


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
    root_map: RootMap | None = None,
    verify_data: str = "sample",
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
    root_map : RootMap, optional
        As given to the migration: where the legacy files are read from.
    verify_data : {"sample", "full"}
        Compare the first, last and one random frame per resource (default), or every frame.

    Returns
    -------
    VerificationReport

    Examples
    --------
    >>> report = verify(LegacySource(mongo_db), client)   # doctest: +SKIP
    >>> report.ok                                          # doctest: +SKIP
    True
    """
    ArrayTally(verify_data)  # a bad level raises BadArgument now, not once per run
    if uids is None:
        uids = source.find_run_uids(since=since, until=until, query=query, timezone=timezone)
    report = VerificationReport()
    for uid in uids:
        try:
            result = verify_run(
                source, tiled_client, uid, close_open_runs=close_open_runs, root_map=root_map, verify_data=verify_data
            )
        except Exception as err:
            logger.warning("Verification of run %s failed: %s", uid, redact(err))
            result = RunVerification(uid, False, [f"verification raised {type(err).__name__}: {redact(err)}"])
        if not result.ok:
            logger.warning("Run %s does not match its source: %s", uid, "; ".join(result.mismatches))
        report.runs.append(result)
    return report
