"""Compare one migrated run, or a batch of them, in Tiled with what its source yielded.

Per run: the start and stop documents, the descriptor uids of each stream, the event
count of each stream, a checksum of every column of the events table (values and
timestamps), and the array data (:mod:`.verify_arrays`). See :mod:`.verify` for the
checksums and the entry points that read the source.

:func:`compare_run` asks the run node itself for its metadata and its streams (two
requests). :func:`compare_runs` compares a batch of runs written into one container and
asks for those facts in a few searches for the whole batch (:mod:`.batch`); the checks
are the same, made by the same code. What stays per stream, in both: one read of the
events table (its checksums need the values, and Tiled has no multi-node table read), and
for array keys a listing of the stream's array nodes and the sampled frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .. import _tiled
from .._redact import redact
from ..arrays import fetch_array_nodes
from ..exceptions import MigrationError
from ..layout import INTERNAL_TABLE, column_of, timestamp_column
from ..run import Run
from .batch import Searches, Shares, run_nodes
from .checksums import StreamChecksums
from .frames import RootMap
from .legacy import is_closing_stop
from .tally import SourceTally
from .verify_arrays import check_array_key

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = [
    "MISSING_FRAMES_ATTRIBUTE",
    "MissingFrames",
    "RunCheck",
    "RunVerification",
    "canonical",
    "compare_run",
    "compare_runs",
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
        HTTP requests the comparison sent to the target (retries not counted); compared in
        a batch (:func:`compare_runs`), its own requests and its share of the batch's searches.
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
    context: Any,
    stream: str,
    item: dict,
    *,
    run_open: bool,
    root_map: RootMap | None,
    missing: Mapping[str, Iterable[int]],
    counts: _Counts,
) -> tuple[int, list[str]]:
    """Events in the target stream (its node's ``item``) and the differences found in it."""
    source = tally.streams[stream]
    mismatches: list[str] = []
    md = item["attributes"].get("metadata") or {}
    uids = tally.descriptors[stream]
    target_uids = sorted(u for u in [md.get("uid")] + [u.get("uid") for u in md.get("_config_updates") or []] if u)
    if target_uids != sorted(uids):
        mismatches.append(f"descriptor uids {sorted(uids)} != {target_uids}")
    keys = tally.arrays.of_stream(stream)
    # One request per stream (a 404 when there is none): the checksums need the values.
    table = _tiled.read_table(context, [*_tiled.node_path(item), INTERNAL_TABLE])
    counts.requests += 1
    nodes = {}
    if keys or table is None:
        nodes = fetch_array_nodes(context, item)  # one request (one per 300 nodes)
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


@dataclass
class RunCheck:
    """One run to compare in a batch: what its source yielded and what the target should hold.

    Attributes
    ----------
    tally : SourceTally
        Fed with the documents the writer received.
    expected_stop : dict, optional
        The stop document the target should hold, if not the one in ``tally``.
    missing_frames : mapping, optional
        As for :func:`compare_run`.

    >>> tally = SourceTally()
    >>> tally("start", {"uid": "abc", "time": 0.0})
    >>> RunCheck(tally).uid
    'abc'
    """

    tally: SourceTally
    expected_stop: dict | None = None
    missing_frames: MissingFrames | None = None

    @property
    def uid(self) -> str:
        """The run's uid (its start document's)."""
        if self.tally.start is None:
            raise MigrationError("A run to compare needs its documents; no start document went past the tally.")
        return self.tally.start["uid"]


def _compare(
    check: RunCheck, context: Any, metadata: dict, streams: Mapping[str, dict], root_map: RootMap | None, requests: int
) -> RunVerification:
    """Every check of one run, given its metadata and its stream items (``requests`` sent for them)."""
    tally, missing_frames = check.tally, check.missing_frames or {}
    source_stop = check.expected_stop if check.expected_stop is not None else tally.stop
    mismatches = _compare_documents(tally, metadata, source_stop)
    result = RunVerification(
        check.uid,
        False,
        verify_data="full" if tally.arrays.full else "sample",
        missing_frames={s: {k: sorted(v) for k, v in keys.items()} for s, keys in missing_frames.items()},
    )
    counts = _Counts(requests=requests)
    for stream in tally.descriptors:
        item = streams.get(stream)
        if item is None:
            mismatches.append(f"stream {stream!r} missing in target")
            continue
        events, problems = _compare_stream(
            tally, context, stream, item,
            run_open=source_stop is None,
            root_map=root_map,
            missing=missing_frames.get(stream, {}),
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
    check = RunCheck(tally, expected_stop, missing_frames)
    if tally.start is None:
        raise MigrationError("compare_run() needs a run's documents; no start document went past the tally.")
    streams = Run(run_client).streams()  # one request: the run's children
    return _compare(check, run_client.context, dict(run_client.metadata), streams, root_map, 1)


def _one_by_one(container: Container, check: RunCheck, root_map: RootMap | None) -> RunVerification:
    """:func:`compare_run` for a run the batch could not tell (one request more: its metadata)."""
    try:
        run_client = container[check.uid]
    except KeyError:
        return RunVerification(check.uid, False, ["run missing in target"], requests=1)
    result = compare_run(
        check.tally, run_client, expected_stop=check.expected_stop, root_map=root_map,
        missing_frames=check.missing_frames,
    )
    result.requests += 1
    return result


def compare_runs(
    container: Container, checks: Sequence[RunCheck], *, root_map: RootMap | None = None
) -> dict[str, RunVerification | Exception]:
    """Compare a batch of runs written into ``container``, with the checks of :func:`compare_run`.

    The runs' metadata comes from one search and their stream nodes from one deep search
    (:func:`.batch.run_nodes`), not from two requests per run. A run the batch cannot
    tell whole (not found by its start uid, children that are not the streams found, a
    server without deep search) is compared by :func:`compare_run` on its own node, so
    every difference the per-run path reports is reported here too. Each stream's table
    is still read once (Tiled has no multi-node table read), and array keys cost what they
    cost in :func:`compare_run`.

    Each result's ``requests`` is its own requests plus a share of the batch's searches
    (the shares sum to the searches sent). An error while comparing one run (a transient
    server error, say) is that run's result, so the caller can retry it; an error of the
    searches themselves is raised.

    Examples
    --------
    >>> results = compare_runs(container, [RunCheck(tally) for tally in tallies])   # doctest: +SKIP
    >>> all(r.ok for r in results.values())                                         # doctest: +SKIP
    True
    """
    searches = Searches()
    descriptors = {c.uid: [u for uids in c.tally.descriptors.values() for u in uids] for c in checks}
    nodes = run_nodes(container, [c.uid for c in checks], descriptors, searches)
    shares = Shares(searches.requests, len(checks))
    results: dict[str, RunVerification | Exception] = {}
    for check in checks:
        share = shares.next()
        node = nodes.get(check.uid)
        try:
            if node is None or node.streams is None:
                result = _one_by_one(container, check, root_map)
            else:
                result = _compare(check, container.context, node.metadata, node.streams, root_map, 0)
        except Exception as err:
            logger.info("Comparing run %s raised %s: %s", check.uid, type(err).__name__, redact(err))
            results[check.uid] = err
            continue
        result.requests += share
        results[check.uid] = result
    return results
