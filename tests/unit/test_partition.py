"""Partition planning and paging of the selection: pure, no server."""

from __future__ import annotations

import pytest

from databroker_compat.exceptions import BadArgument
from databroker_compat.migration.partition import GROUP_RUNS, LARGE_RUN_EVENTS, pages, plan_partitions


def test_large_and_unknown_runs_go_alone_in_order():
    sizes = [("a", 10), ("b", 10), ("c", 50_000), ("d", None), ("e", 3), ("f", 4), ("g", 5)]
    parts = list(plan_partitions(sizes, large_run_events=20_000, max_runs=2))
    assert [p.uids for p in parts] == [["a", "b"], ["c"], ["d"], ["e", "f"], ["g"]]
    assert [p.events for p in parts] == [20, 50_000, 0, 7, 5]
    assert [p.index for p in parts] == list(range(5))


def test_groups_close_at_either_limit():
    by_events = list(plan_partitions([(str(i), 400) for i in range(10)], group_events=1_000, max_runs=50))
    assert [len(p.uids) for p in by_events] == [3, 3, 3, 1]
    by_runs = list(plan_partitions([(str(i), 1) for i in range(60)]))
    assert [len(p.uids) for p in by_runs] == [GROUP_RUNS, GROUP_RUNS, 60 - 2 * GROUP_RUNS]
    exactly_large = list(plan_partitions([("x", LARGE_RUN_EVENTS - 1), ("y", LARGE_RUN_EVENTS)]))
    assert [p.uids for p in exactly_large] == [["x"], ["y"]]
    assert [u for p in by_runs for u in p.uids] == [str(i) for i in range(60)]


def test_no_runs_no_partitions():
    assert list(plan_partitions([])) == []


@pytest.mark.parametrize("limit", ["max_runs", "group_events", "large_run_events"])
def test_bad_limits_are_bad_arguments(limit):
    with pytest.raises(BadArgument, match=limit) as caught:
        list(plan_partitions([("a", 1)], **{limit: 0}))
    assert isinstance(caught.value, ValueError)
    assert (caught.value.option, caught.value.value) == (limit, 0)


def test_pages_are_lazy_and_keep_order():
    consumed = []

    def source():
        for i in range(5):
            consumed.append(i)
            yield f"u{i}"

    paging = pages(source(), 2)
    assert next(paging) == ["u0", "u1"] and consumed == [0, 1]
    assert list(paging) == [["u2", "u3"], ["u4"]]
    assert list(pages([], 3)) == []
