"""db[...] lookups against the fixture catalog, in every server mode."""

from __future__ import annotations

import numpy
import pytest

from databroker_compat import AmbiguousKey, BadKey, Broker, RunNotFound
from helpers import new_container, synthetic_run, write_docs

# Key order, prefix matching and sorting differ between backends: every mode.
pytestmark = pytest.mark.backends

ORDER = ["count", "scan", "grid", "monitor", "config", "empty", "declared", "arrays", "images", "nostop", "big", "count_again"]


def uids(served, names):
    return [served.runs[n].uid for n in names]


def test_fixture_order_matches_recording(served):
    assert list(served.runs) == ORDER


def test_negative_index_counts_back_from_newest(served, db):
    expected = uids(served, ORDER)
    assert [db[-i].uid for i in range(1, len(ORDER) + 1)] == expected[::-1]


def test_index_beyond_catalog(db):
    with pytest.raises(RunNotFound, match="fewer than 100 runs"):
        db[-100]
    with pytest.raises(KeyError):  # v1 callers catch KeyError
        db[-100]
    with pytest.raises(IndexError, match=f"{len(ORDER)} runs in this catalog"):  # ... or v1's IndexError
        db[-100]


@pytest.mark.parametrize(
    "key",
    [slice(-3, None), slice(None, -5), slice(-10, None), slice(-1, -4, -1), slice(-100, None), slice(-6, -2), slice(-5, None, 2)],
    ids=str,
)
def test_slices_follow_python_semantics_over_time_order(served, db, key):
    expected = uids(served, ORDER)[key]
    assert [h.uid for h in db[key]] == expected


def test_non_negative_slices_are_refused_as_in_v1(db):
    with pytest.raises(ValueError, match="negative indices"):
        db[2:5]


def test_positive_int_is_the_newest_run_with_that_scan_id(served, db):
    count, again = served.runs["count"], served.runs["count_again"]
    assert count.start["scan_id"] == again.start["scan_id"]
    assert db[count.start["scan_id"]].uid == again.uid
    scan = served.runs["scan"]
    assert db[scan.start["scan_id"]].uid == scan.uid
    assert db[numpy.int64(scan.start["scan_id"])].uid == scan.uid


def test_unknown_scan_id(db):
    with pytest.raises(RunNotFound, match="No run with scan_id 987654"):
        db[987654]


def test_full_uid_and_prefix(served, db):
    scan = served.runs["scan"]
    assert db[scan.uid].uid == scan.uid
    assert db[scan.uid[:8]].uid == scan.uid
    assert db[scan.uid[:5]].uid == scan.uid


def test_unknown_uid_and_prefix(db):
    with pytest.raises(RunNotFound, match="No run with uid"):
        db["00000000-0000-0000-0000-000000000000"]
    with pytest.raises(RunNotFound, match="starts with 'zzzzzz'"):
        db["zzzzzz"]
    with pytest.raises(RunNotFound, match="too short"):
        db["abc"]


def test_lists_and_tuples(served, db):
    scan, grid = served.runs["scan"], served.runs["grid"]
    found = db[[scan.uid, -1, grid.start["scan_id"]]]
    assert [h.uid for h in found] == [scan.uid, served.runs["count_again"].uid, grid.uid]
    assert [h.uid for h in db[(scan.uid[:8],)]] == [scan.uid]
    assert {h.uid for h in db[{scan.uid, grid.start["scan_id"]}]} == {scan.uid, grid.uid}  # sets, as v1


def test_whole_catalog_slices_are_refused_as_in_v1(db):
    with pytest.raises(ValueError, match="neither bound"):
        db[:]


@pytest.mark.parametrize("key", [1.5, None, {"a": 1}, True])
def test_bad_key_types(db, key):
    with pytest.raises(BadKey):
        db[key]


def test_non_run_nodes_are_ignored(served, db):
    # The root holds the 'bluesky' catalog node; no lookup may return it.
    assert "bluesky" in served.client
    assert len(db[-100:]) == len(ORDER)


def test_catalog_of_bluesky_runs_node(served):
    special = served.special()
    db = Broker(special)
    assert db[-1].uid == served.runs["scan"].uid
    assert db[-2].uid == served.runs["count"].uid
    assert db[served.runs["count"].start["scan_id"]].uid == served.runs["count"].uid
    assert db[served.runs["scan"].uid[:7]].uid == served.runs["scan"].uid


@pytest.fixture(scope="module")
def crafted(served):
    """Runs with chosen uids and start times, written out of time order."""
    node = new_container(served.client, "lookup")
    runs = {
        "new": synthetic_run("abcde111-0000-4000-8000-000000000001", 2_000_000_000.0, 7),
        "old": synthetic_run("abcde222-0000-4000-8000-000000000002", 1_000_000_000.0, 7),
        "mid": synthetic_run("f_ab3333-0000-4000-8000-000000000003", 1_500_000_000.0, 8),
        "lookalike": synthetic_run("fxab3333-0000-4000-8000-000000000004", 1_200_000_000.0, 9),
    }
    for name in ("new", "old", "mid", "lookalike"):  # the oldest run arrives after the newest (a migration)
        write_docs(node, runs[name])
    node.create_container(NOT_A_RUN, metadata={"start": {"uid": NOT_A_RUN}})
    return Broker(node)


NOT_A_RUN = "99999999-0000-4000-8000-00000000abcd"


def test_full_uid_is_one_request_and_never_a_non_run_node(crafted, count_requests):
    with count_requests(crafted.v2) as counter:
        h = crafted["abcde111-0000-4000-8000-000000000001"]
    assert h.start["scan_id"] == 7 and counter.count == 1
    with pytest.raises(RunNotFound, match="No run with uid"):
        crafted[NOT_A_RUN]


def test_newest_by_start_time_not_insertion_order(crafted):
    assert crafted[-1].uid.startswith("abcde111")
    assert [h.uid[:8] for h in crafted[-3:]] == ["fxab3333", "f_ab3333", "abcde111"]
    assert crafted[7].uid.startswith("abcde111")


def test_ambiguous_prefix_names_candidates(crafted):
    with pytest.raises(AmbiguousKey, match="abcde111.*abcde222|abcde222.*abcde111"):
        crafted["abcde"]
    with pytest.raises(ValueError):
        crafted["abcde"]
    assert crafted["abcde2"].uid.startswith("abcde222")


def test_prefix_with_like_wildcards_is_literal(crafted):
    # '_' is a LIKE wildcard on the server ('f_ab3' would also match 'fxab3...'):
    # the lookup must treat it literally and not call the prefix ambiguous.
    assert crafted["f_ab3"].uid.startswith("f_ab3333")
    assert crafted["fxab3"].uid.startswith("fxab3333")
    with pytest.raises(RunNotFound):
        crafted["f%ab3"]
