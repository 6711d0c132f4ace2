"""The pieces of batched decision and verification that need no server."""

from __future__ import annotations

import pytest

from databroker_compat.migration.batch import RunNode, Shares, find_streams


@pytest.mark.parametrize(("total", "runs"), [(0, 3), (2, 25), (3, 3), (7, 2), (5, 1)])
def test_shares_sum_to_the_total_and_differ_by_at_most_one(total, runs):
    shares = Shares(total, runs)
    given = [shares.next() for _ in range(runs)]
    assert sum(given) == total
    assert max(given) - min(given) <= 1


def test_a_run_node_without_a_count_is_not_known_whole():
    assert RunNode("abc", {"attributes": {"metadata": {}}}).children is None


class _NoDeepSearch:
    """A container item as a server without deep search describes it (no request is sent)."""

    context = None
    item = {"id": "runs", "attributes": {"ancestors": []}, "links": {"search": "http://x/search/runs"}}


def test_without_deep_search_every_run_is_asked_on_its_own():
    runs = {"a": {"attributes": {"structure": {"count": 1}}}, "b": {"attributes": {"structure": {"count": 0}}}}
    assert find_streams(_NoDeepSearch(), runs, {"a": ["d1"], "b": []}) == {"a": None, "b": None}  # type: ignore[arg-type]
