"""What a run should look like in Tiled once migrated, computed with counting queries.

:func:`expect_run` predicts, without reading the events, the start and stop documents
the migration writes, the descriptor uids of each stream and the rows of each
stream's table. The target side (:mod:`.target`) compares a run in Tiled with it to
tell a complete run from a half-written one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import legacy
from .records import LegacyRecords

__all__ = ["RunExpectation", "expect_run"]


@dataclass
class RunExpectation:
    """What a run should look like in Tiled once migrated.

    Attributes
    ----------
    uid : str
        The start uid.
    start : dict
        The start document as it is written (normalised).
    stop : dict or None
        The stop document as it is written (normalised or synthesised), ``None`` when the
        run has no stop and open runs are left open.
    descriptors : dict
        Stream name -> descriptor uids, in time order.
    event_counts : dict
        Stream name -> number of events written (duplicates of a ``seq_num`` removed).
    warnings : list of str
        What is known without reading the events: missing stop, duplicate events,
        defaulted stream names. The full list comes from the documents themselves
        (:class:`~databroker_compat.migration.assemble.LegacyDocuments`).
    """

    uid: str
    start: dict
    stop: dict | None
    descriptors: dict[str, list[str]]
    event_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def expect_run(records: LegacyRecords, uid: str, *, close_open_runs: bool = True) -> RunExpectation:
    """What the migration writes for run ``uid`` of ``records``.

    Duplicates of a ``seq_num`` are counted only when the stored count exceeds what the
    stop document declared (or it declared nothing): the distinct count is the costlier
    query.

    >>> expect_run(source, uid).event_counts   # doctest: +SKIP
    {'primary': 5, 'baseline': 2}
    """
    warnings: list[str] = []
    start_raw = records.start_record(uid)
    start = legacy.normalise_start(start_raw, warnings)
    descriptors = records.descriptor_records(uid, start_raw["_id"])
    streams: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    stop_raw = records.stop_record(uid, start_raw["_id"])
    declared = (stop_raw or {}).get("num_events") or {}
    stored: dict[str, int] = {}
    wheres: list[tuple[str, str, dict[str, Any], int]] = []
    for desc in descriptors:
        name = desc.get("name") or "primary"
        streams.setdefault(name, []).append(desc["uid"])
        where = records.event_filter(desc)
        n_stored = records.count_events(where)
        stored[name] = stored.get(name, 0) + n_stored
        wheres.append((name, desc["uid"], where, n_stored))
    last_time = None
    for name, desc_uid, where, n_stored in wheres:
        n = n_stored if declared.get(name) == stored[name] else records.distinct_seq_nums(where)
        if n_stored != n:
            warnings.append(f"descriptor {desc_uid}: {n_stored - n} duplicate events (repeated seq_num) dropped")
        counts[name] = counts.get(name, 0) + n
        if stop_raw is None:  # the time of a synthesised stop
            t = records.last_event_time(where)
            if t is not None and (last_time is None or t > last_time):
                last_time = t
    stop = legacy.final_stop(
        uid,
        stop_raw,
        close_open_runs=close_open_runs,
        last_event_time=last_time,
        start_time=start["time"],
        num_events=counts,
        warnings=warnings,
    )
    return RunExpectation(uid, start, stop, streams, counts, warnings)
