"""Split a migration into partitions: large runs alone, small runs grouped.

A partition is the unit a worker executes: one large run (its events alone keep a
worker busy), or a group of small runs whose per-run costs (a handful of requests
each) are paid back to back without a scheduler round trip in between. Sizes come
from :meth:`LegacySource.event_estimates` (the stop documents' ``num_events``, else a
grouped count); a run of unknown size is put alone, as if it were large.

>>> parts = list(plan_partitions([("a", 5), ("b", 7), ("c", 200_000), ("d", 1)], max_runs=2))
>>> [(p.uids, p.events) for p in parts]
[(['a', 'b'], 12), (['c'], 200000), (['d'], 1)]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..exceptions import BadArgument

__all__ = ["GROUP_EVENTS", "GROUP_RUNS", "LARGE_RUN_EVENTS", "Partition", "pages", "plan_partitions"]

#: A run with at least this many events is a partition of its own.
LARGE_RUN_EVENTS = 20_000
#: Small runs are grouped until a group holds this many events ...
GROUP_EVENTS = 20_000
#: ... or this many runs.
GROUP_RUNS = 25


@dataclass
class Partition:
    """Runs one worker migrates in one task, oldest first."""

    index: int
    uids: list[str] = field(default_factory=list)
    events: int = 0


def plan_partitions(
    sizes: Iterable[tuple[str, int | None]],
    *,
    large_run_events: int = LARGE_RUN_EVENTS,
    group_events: int = GROUP_EVENTS,
    max_runs: int = GROUP_RUNS,
) -> Iterator[Partition]:
    """Partitions of ``(uid, estimated events)`` pairs, keeping the source's order.

    Parameters
    ----------
    sizes : iterable of (str, int or None)
        Runs in the order they should be migrated; ``None`` for an unknown size.
    large_run_events : int
        Runs at least this large (and runs of unknown size) go alone.
    group_events, max_runs : int
        A group of small runs closes when it reaches either.

    Yields
    ------
    Partition

    Raises
    ------
    BadArgument
        A limit below 1 (a ``ValueError``; ``err.option`` names it).
    """
    limits = {"large_run_events": large_run_events, "group_events": group_events, "max_runs": max_runs}
    for option, value in limits.items():
        if value < 1:
            raise BadArgument(f"partition limits must be positive: {option}={value!r}", option=option, value=value)
    index = 0
    group = Partition(index)
    for uid, events in sizes:
        if events is None or events >= large_run_events:
            if group.uids:
                yield group
                index += 1
            yield Partition(index, [uid], int(events or 0))
            index += 1
            group = Partition(index)
            continue
        group.uids.append(uid)
        group.events += int(events)
        if len(group.uids) >= max_runs or group.events >= group_events:
            yield group
            index += 1
            group = Partition(index)
    if group.uids:
        yield group


def pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily.

    >>> list(pages("abcde", 2))
    [['a', 'b'], ['c', 'd'], ['e']]
    """
    page: list[str] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page
