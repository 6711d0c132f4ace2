"""keys.py and the client-side lookup: one ``db[key]`` parser, the same rules both ways."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databroker_compat import AmbiguousKey, BadKey, NotEnoughRuns, RunNotFound
from databroker_compat.exceptions import BadArgument
from databroker_compat.keys import MIN_PREFIX, NewestSlice, Recent, ScanId, Several, Uid, parse_key
from databroker_compat.lookup import runs_in_list


class FakeRun:
    """What the client-side lookup reads of a run client: its metadata."""

    def __init__(self, uid, scan_id):
        self.metadata = {"start": {"uid": uid, "scan_id": scan_id}}

    def __repr__(self):
        return f"<run {self.metadata['start']['uid'][:6]}>"


# Oldest first, as search results hand them over.
RUNS = [
    FakeRun("aaaaa111-0000-4000-8000-000000000001", 1),
    FakeRun("aaaaa222-0000-4000-8000-000000000002", 2),
    FakeRun("bbbbb333-0000-4000-8000-000000000003", 2),
    FakeRun("ccccc444-0000-4000-8000-000000000004", 3),
]


def test_kinds_of_keys():
    assert parse_key(-1) == Recent(-1)
    assert parse_key(numpy.int64(-3)) == Recent(-3)
    assert parse_key(0) == ScanId(0) and parse_key(numpy.uint8(42)) == ScanId(42)
    assert parse_key("abcdef") == Uid("abcdef") and not Uid("abcdef").is_full
    assert Uid(RUNS[0].metadata["start"]["uid"]).is_full
    assert parse_key(slice(-3, None)) == NewestSlice(-3, None, 1)
    assert parse_key(slice(None, -2, numpy.int64(-1))) == NewestSlice(None, -2, -1)
    assert parse_key([1, "abcde"]) == Several((1, "abcde")) and parse_key((-1,)) == Several((-1,))


def test_sets_are_taken_like_lists_as_in_v1():
    # v1 looked up each member of a set (issue 15, item 6); before, a set was a BadKey.
    assert parse_key({"abcdef"}) == Several(("abcdef",))
    assert parse_key(frozenset({-1})) == Several((-1,))
    assert sorted(parse_key({1, 2}).items) == [1, 2]


@pytest.mark.parametrize("key", [1.5, None, {"a": 1}, True, False, b"abcdef"])
def test_bad_key_types(key):
    with pytest.raises(BadKey) as err:
        parse_key(key)
    assert isinstance(err.value, TypeError) and err.value.key is key


def test_too_short_prefix_is_not_found():
    with pytest.raises(RunNotFound, match="too short") as err:
        parse_key("a" * (MIN_PREFIX - 1))
    assert err.value.key == "aaaa" and isinstance(err.value, KeyError)


@pytest.mark.parametrize("key", [slice(2, 5), slice(0, None), slice(None, 3), slice(-5, 0)])
def test_non_negative_slice_bounds_are_refused(key):
    with pytest.raises(BadArgument, match="negative indices") as err:
        parse_key(key)
    assert isinstance(err.value, ValueError) and err.value.key == key


@pytest.mark.parametrize("key", [slice(-2.5, None), slice(None, "x"), slice(-3, None, 0.5)])
def test_slice_bounds_must_be_integers(key):
    with pytest.raises(BadKey, match="integers"):
        parse_key(key)


@pytest.mark.parametrize("key", [slice(None, None), slice(None, None, 2), slice(None, None, -1)], ids=str)
@pytest.mark.parametrize("subject", ["db", "results"])
def test_slices_with_neither_bound_are_refused_as_in_v1(key, subject):
    # v1 refused to read the whole catalog this way (issue 15, item 5).
    with pytest.raises(BadArgument, match="neither bound") as err:
        parse_key(key, subject=subject)
    assert isinstance(err.value, ValueError) and err.value.key == key
    assert f"{subject}[-100:]" in str(err.value)


def test_open_start_slices_with_a_stop_keep_their_meaning():
    assert parse_key(slice(None, -5)) == NewestSlice(None, -5, 1)
    assert parse_key(slice(None, -2, -1)) == NewestSlice(None, -2, -1)


def test_zero_step_is_refused():
    with pytest.raises(ValueError, match="step cannot be zero"):
        parse_key(slice(-3, None, 0))


def test_messages_differ_only_in_what_is_indexed():
    messages = {}
    for subject in ("db", "results"):
        for key in (True, slice(1, 2), 1.5):
            with pytest.raises((BadKey, BadArgument)) as err:
                parse_key(key, subject=subject)
            messages[subject, repr(key)] = str(err.value)
    for key in (True, slice(1, 2), 1.5):
        assert messages["db", repr(key)].replace("db[", "results[") == messages["results", repr(key)]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 12),
    start=st.one_of(st.none(), st.integers(-15, -1)),
    stop=st.one_of(st.none(), st.integers(-15, -1)),
    step=st.one_of(st.none(), st.integers(-4, 4).filter(bool)),
)
def test_slices_are_python_slices_and_reach_only_the_newest_needed(n, start, stop, step):
    if start is None and stop is None:
        return  # refused (the whole catalog): test_slices_with_neither_bound_are_refused_as_in_v1
    ascending = list(range(n))
    key = parse_key(slice(start, stop, step))
    assert isinstance(key, NewestSlice)
    assert key.of(ascending) == ascending[start:stop:step]
    # The server path reads only the newest ``newest_needed`` runs: same answer.
    needed = key.newest_needed
    if needed is not None:
        newest = ascending[-needed:] if needed > 0 else []
        assert key.of(newest) == (ascending[start:stop:step] if needed > 0 else [])


def test_client_side_lookup():
    assert runs_in_list(RUNS, -1) is RUNS[-1]
    assert runs_in_list(RUNS, 2) is RUNS[2]  # the most recent with that scan_id
    assert runs_in_list(RUNS, "bbbbb") is RUNS[2]
    assert runs_in_list(RUNS, RUNS[0].metadata["start"]["uid"]) is RUNS[0]
    assert runs_in_list(RUNS, slice(-2, None)) == RUNS[-2:]
    assert runs_in_list(RUNS, [-1, "aaaaa1", (3,)]) == [RUNS[3], RUNS[0], [RUNS[3]]]


def test_client_side_lookup_errors():
    with pytest.raises(RunNotFound, match="-5: 4 runs in these search results") as err:
        runs_in_list(RUNS, -5)
    assert err.value.key == -5
    # Both the KeyError of a missing run and the IndexError v1 raised (issue 15, item 4).
    assert isinstance(err.value, NotEnoughRuns) and isinstance(err.value, IndexError)
    assert err.value.count == 4
    assert runs_in_list(RUNS, -4) is RUNS[0]
    with pytest.raises(RunNotFound, match="No run with scan_id 9 in these search results"):
        runs_in_list(RUNS, 9)
    with pytest.raises(RunNotFound, match="starts with 'zzzzz'"):
        runs_in_list(RUNS, "zzzzz")
    with pytest.raises(AmbiguousKey, match="matches 2 runs") as ambiguous:
        runs_in_list(RUNS, "aaaaa")
    assert ambiguous.value.candidates == [RUNS[0].metadata["start"]["uid"], RUNS[1].metadata["start"]["uid"]]
    with pytest.raises(BadKey, match=r"results\[True/False\]"):
        runs_in_list(RUNS, True)
    with pytest.raises(ValueError, match=r"results\[0:2\] is not supported"):
        runs_in_list(RUNS, slice(0, 2))
