"""v1 fidelity of the Broker API (issue 15), against the recorded RunEngine runs, in every server mode.

Items: 2 ``fill_event``/``fill_events``, 3 ``get_resource_uids``, 4 ``db[-N]`` past the
oldest run, 5 ``db[:]``, 6 sets as keys, 7 v1's special search keywords, 13 ``db.v2``.
"""

from __future__ import annotations

import inspect
import warnings

import numpy
import pytest

from databroker_compat import (
    Broker,
    ConflictingArguments,
    NotEnoughRuns,
    QueryNotSupported,
    RunNotFound,
    UnknownDatum,
)
from databroker_compat.layout import datum_id_for, resource_uid_for
from databroker_compat.model import Document

ORDER = ["count", "scan", "grid", "monitor", "config", "empty", "declared", "arrays", "images", "nostop", "big", "count_again"]
FRAME = numpy.arange(100, dtype="float64").reshape(10, 10)  # every frame of the "images" run


def uids(served, names):
    return [served.runs[n].uid for n in names]


def by_time(served, predicate):
    runs = sorted(served.runs.values(), key=lambda r: r.start["time"])
    return [r.uid for r in runs if predicate(r)]


def quietly(iterable):
    """Documents of a run without a stop warn (RuntimeWarning); that is tested elsewhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list(iterable)


# -- 2. fill_event / fill_events -----------------------------------------------------------
@pytest.fixture
def images(served, db):
    run = served.runs["images"]
    return run, db[run.uid]


def test_fill_events_fills_copies_through_the_prepare_hook(images, db):
    run, h = images
    events = list(db.get_events(h, fill=False))
    datum_ids = [datum_id_for(run.uid, "primary", "img", e["seq_num"] - 1) for e in events]
    assert [e["data"]["img"] for e in events] == datum_ids
    filling = db.fill_events(events, h.descriptors)
    assert inspect.isgenerator(filling)  # v1's fill_events is a generator
    filled = list(filling)
    assert len(filled) == len(run.events()) == 3
    for event, copy, datum_id in zip(events, filled, datum_ids, strict=True):
        assert copy is not event and isinstance(copy, Document)  # a copy, through prepare_hook
        numpy.testing.assert_array_equal(copy["data"]["img"], FRAME)
        assert copy["filled"] == {"img": datum_id}
        assert copy["data"]["det"] == event["data"]["det"]
        assert event["data"]["img"] == datum_id and event["filled"] == {"img": False}  # untouched


def test_fill_events_in_place_and_by_field(images, db):
    run, h = images
    events = list(db.get_events(h))
    assert list(db.fill_events(events, h.descriptors, fields=False)) == events  # v1: nothing to fill
    untouched = list(db.fill_events(events, h.descriptors, fields=["det"]))  # det is not external
    assert all(isinstance(e["data"]["img"], str) for e in untouched)
    filled = list(db.fill_events(events, h.descriptors, fields=["img"], inplace=True))
    assert all(a is b for a, b in zip(filled, events, strict=True))
    for event in events:
        numpy.testing.assert_array_equal(event["data"]["img"], FRAME)
        assert event["filled"]["img"] == datum_id_for(run.uid, "primary", "img", event["seq_num"] - 1)
    # Filled keys are not filled again (v1 fills only keys marked unfilled).
    again = list(db.fill_events(events, h.descriptors, inplace=True))
    assert all(isinstance(e["data"]["img"], numpy.ndarray) for e in again)


def test_databroker_v1_fill_test_flow(images, db):
    # databroker's own v1 test (test_external_access_with_handler), before 1.x dropped it.
    run, h = images
    ev, ev2, _ = db.get_events(h, fields=["img"])
    assert ev is not ev2 and ev["filled"] is not ev2["filled"]
    assert not ev["filled"]["img"]
    datum = ev["data"]["img"]
    (ev_ret,) = db.fill_events([ev], h.descriptors, inplace=True)
    assert ev_ret is ev and ev["filled"]["img"] == datum
    assert ev["data"]["img"].shape == (10, 10)
    ev2_filled = db.fill_event(ev2, inplace=False)
    assert ev2_filled["filled"]["img"] == datum_id_for(run.uid, "primary", "img", 1)
    assert not ev2["filled"]["img"] and isinstance(ev2["data"]["img"], str)


def test_fill_event_alone_finds_its_run_on_the_server(served, images):
    run, h = images
    event = dict(next(iter(h.db.get_events(h))))
    # A broker that never handed this run out: the descriptor uid leads to it.
    fresh = served.broker()
    same = fresh.fill_event(event)
    assert same is event  # inplace=True by default, as v1
    numpy.testing.assert_array_equal(event["data"]["img"], FRAME)
    assert event["filled"]["img"] == datum_id_for(run.uid, "primary", "img", 0)
    # inplace=False: a filled copy, the event left as it was.
    raw = dict(next(iter(h.db.get_events(h))))
    copy = fresh.fill_event(raw, inplace=False)
    assert copy is not raw and isinstance(raw["data"]["img"], str)
    numpy.testing.assert_array_equal(copy["data"]["img"], FRAME)


def test_fill_event_traces_datum_ids_of_runs_handed_out(served, images):
    run, h = images
    event = dict(next(iter(h.db.get_events(h))))
    event["descriptor"] = "not-a-descriptor-uid"  # only the datum id says where the frame is
    fresh = served.broker()
    with pytest.raises(UnknownDatum, match=r"descriptors") as err:
        fresh.fill_event(dict(event, data=dict(event["data"])))
    assert isinstance(err.value, KeyError)
    fresh[run.uid]  # now handed out: its resource uids are known
    fresh.fill_event(event)
    numpy.testing.assert_array_equal(event["data"]["img"], FRAME)


def test_fill_events_refuses_datum_ids_of_another_run(served, images, db):
    _, h = images
    event = dict(next(iter(db.get_events(h))))
    other = db[served.runs["count"].uid]
    event["data"] = {**event["data"], "img": datum_id_for(other.uid, "primary", "img", 0)}
    with pytest.raises(UnknownDatum, match="not a datum id of stream 'primary'") as err:
        list(db.fill_events([event], h.descriptors))
    assert err.value.key == "img" and isinstance(err.value, KeyError)


# -- 3. get_resource_uids -------------------------------------------------------------------
@pytest.mark.parametrize("name", ORDER)
def test_get_resource_uids_are_those_documents_emit(served, db, name):
    h = db[served.runs[name].uid]
    emitted = {doc["uid"] for n, doc in quietly(h.documents()) if n == "resource"}
    assert db.get_resource_uids(h) == emitted
    if name == "images":
        assert emitted == {resource_uid_for(h.uid, "primary", "img")}


# -- 4. db[-N] past the oldest run ---------------------------------------------------------
@pytest.mark.backends
def test_index_past_the_oldest_run_is_a_key_and_an_index_error(served, db):
    with pytest.raises(NotEnoughRuns, match=f"{len(ORDER)} runs in this catalog") as err:
        db[-len(ORDER) - 1]
    assert isinstance(err.value, KeyError) and isinstance(err.value, IndexError)
    assert isinstance(err.value, RunNotFound)
    assert (err.value.key, err.value.count) == (-len(ORDER) - 1, len(ORDER))
    assert db[-len(ORDER)].uid == served.runs["count"].uid
    with pytest.raises(IndexError):
        db[-1000]


@pytest.mark.backends
@pytest.mark.parametrize("query", [{"plan_name": "count"}, {"sample": {"$regex": "foil$"}}], ids=["server", "client"])
def test_results_index_past_the_oldest_match(served, db, query):
    res = db(**query)
    n = len(res)
    assert n >= 2
    with pytest.raises(NotEnoughRuns) as err:
        res[-n - 1]
    assert isinstance(err.value, IndexError) and err.value.count == n


# -- 5. slices -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [slice(None), slice(None, None, 2), slice(None, None, -1)], ids=str)
def test_slices_of_the_whole_catalog_are_refused(db, key):
    with pytest.raises(ValueError, match="neither bound"):
        db[key]
    with pytest.raises(ValueError, match="neither bound"):
        db(plan_name="count")[key]


@pytest.mark.backends
def test_v1_slices_keep_their_meaning(served, db):
    order = uids(served, ORDER)
    assert [h.uid for h in db[-5:]] == order[-5:]
    assert [h.uid for h in db[-5:-1]] == order[-5:-1]
    assert [h.uid for h in db[:-5]] == order[:-5]


# -- 6. keys given as sets -------------------------------------------------------------------
@pytest.mark.backends
def test_sets_work_like_lists(served, db):
    scan, grid = served.runs["scan"], served.runs["grid"]
    found = db[{scan.uid, grid.uid}]
    assert isinstance(found, list) and {h.uid for h in found} == {scan.uid, grid.uid}
    assert [h.uid for h in db[frozenset({scan.uid[:8]})]] == [scan.uid]
    assert [h.uid for h in db[{scan.start["scan_id"]}]] == [scan.uid]
    with pytest.raises(RunNotFound):
        db[{scan.uid, "zzzzzzzz"}]


def test_tuples_work_as_before(served, db):
    scan, grid = served.runs["scan"], served.runs["grid"]
    assert [h.uid for h in db[scan.start["scan_id"], grid.start["scan_id"]]] == [scan.uid, grid.uid]
    assert [h.uid for h in db(plan_name={"$exists": True})[{scan.uid}]] == [scan.uid]


# -- 7. v1's special search keywords -------------------------------------------------------
@pytest.mark.backends
def test_start_time_and_stop_time_are_since_and_until(served, db):
    times = sorted(r.start["time"] for r in served.runs.values())
    since, until = times[2], times[7]
    expected = [h.uid for h in db(since=since, until=until)]
    assert len(expected) == 5
    with pytest.warns(DeprecationWarning) as caught:
        assert [h.uid for h in db(start_time=since, stop_time=until)] == expected
    assert ["start_time" in str(w.message) for w in caught] == [True, False]
    assert all(w.filename == __file__ for w in caught)  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match="stop_time"):
        assert [h.uid for h in db(stop_time=until)] == [h.uid for h in db(until=until)]
    with pytest.raises(ConflictingArguments, match="not both") as err:
        db(since=since, start_time=since)
    assert isinstance(err.value, TypeError)  # as v1


def test_start_time_in_filters_and_aliases(served):
    db = served.broker()
    times = sorted(r.start["time"] for r in served.runs.values())
    with pytest.warns(DeprecationWarning):
        db.add_filter(start_time=times[-2])
    assert db.filters == {"since": times[-2]}
    assert [h.uid for h in db()] == by_time(served, lambda r: r.start["time"] >= times[-2])
    with pytest.warns(DeprecationWarning):
        db.alias("late", stop_time=times[-1])
    assert db.aliases["late"] == {"until": times[-1]}
    assert len(db.late) == 1


def declares(key):
    return lambda run: any(key in d["data_keys"] for d in run.descriptors())


@pytest.mark.backends
@pytest.mark.parametrize("key", ["img", "det", "det1", "spectrum", "temperature"])
def test_data_key_finds_runs_whose_descriptors_declare_it(served, db, key):
    expected = by_time(served, declares(key))
    assert expected
    res = db(data_key=key)
    assert [h.uid for h in res] == expected
    assert len(res) == len(expected) and bool(res)
    assert res[-1].uid == expected[-1]


@pytest.mark.backends
def test_data_key_combines_with_conditions_filters_and_lookups(served, db):
    count = by_time(served, lambda r: declares("det1")(r) and r.start["plan_name"] == "count")
    assert len(count) == 2
    assert [h.uid for h in db(data_key="det1", plan_name="count")] == count
    assert [h.uid for h in db(plan_name="count")(data_key="det1")] == count
    assert list(db(data_key="no_such_key")) == [] and len(db(data_key="no_such_key")) == 0
    assert [h.uid for h in db(data_key=None, plan_name="count")] == [h.uid for h in db(plan_name="count")]
    filtered = served.broker()
    filtered.add_filter(data_key="det1")
    assert filtered[-1].uid == served.runs["count_again"].uid
    assert [h.uid for h in filtered()] == by_time(served, declares("det1"))


def test_data_key_matching_many_runs_is_asked_in_chunks(served, db, monkeypatch):
    import databroker_compat.queries.keywords as keywords

    expected = by_time(served, declares("det"))
    assert len(expected) > 2
    monkeypatch.setattr(keywords, "UIDS_PER_QUERY", 2)  # several In queries, merged by time
    res = db(data_key="det")
    assert [h.uid for h in res] == expected
    assert len(res) == len(expected)
    assert [h.uid for h in res[-2:]] == expected[-2:]


def test_data_key_never_becomes_a_start_condition(db):
    with pytest.raises(QueryNotSupported, match="one data key") as err:
        db(data_key=["det", "img"])
    assert isinstance(err.value, NotImplementedError) and isinstance(err.value, ValueError)
    with pytest.raises(QueryNotSupported, match="cannot be searched on the server"):
        db(data_key="det-1")


# -- 13. db.v2 -------------------------------------------------------------------------------
def test_v2_is_a_catalog_of_bluesky_runs_pointing_back(served, db, count_requests):
    from bluesky_tiled_plugins import CatalogOfBlueskyRuns

    with count_requests(served.client) as counter:
        v2 = db.v2
    assert counter.count == 0
    assert isinstance(v2, CatalogOfBlueskyRuns)
    assert v2.v1 is db and db.v2 is v2
    assert v2.is_sql  # a plain Tiled catalog is SQL: partial uids are LIKE queries
    assert Broker(served.special()).v2.is_sql



def test_v2_leaves_every_other_client_as_it_was(served, db):
    """db.v2 reads runs with the plugin's v2 client; no other client of the process changes."""
    from tiled.client import from_uri

    uid = served.runs["scan"].uid
    before = type(from_uri(served.uri)[uid])
    given = type(served.client[uid])
    assert type(db.v2[uid]).__name__.startswith("BlueskyRunV2")
    # Clients made afterwards, and the one the broker was given, read runs as before
    # (the migration and the v1 read path rely on it).
    assert type(from_uri(served.uri)[uid]) is before
    assert type(served.client[uid]) is given
    assert not before.__name__.startswith("BlueskyRunV2")

@pytest.mark.backends
def test_v2_searches_with_the_plugin_queries_select_the_right_runs(served, db):
    from bluesky_tiled_plugins.queries import PartialUID, ScanID, ScanIDRange, TimeRange
    from tiled.queries import Key

    scan = served.runs["scan"]
    found = db.v2.search(ScanID(scan.start["scan_id"]))
    assert list(found) == [scan.uid] and found.v1 is db
    assert sorted(db.v2.search(Key("plan_name") == "count")) == sorted(
        by_time(served, lambda r: r.start["plan_name"] == "count")
    )
    times = sorted(r.start["time"] for r in served.runs.values())
    window = db.v2.search(TimeRange(since=times[2], until=times[7], timezone="UTC"))
    assert sorted(window) == sorted(by_time(served, lambda r: times[2] <= r.start["time"] < times[7]))
    assert list(db.v2.search(PartialUID(scan.uid[:8]))) == [scan.uid]
    low, high = scan.start["scan_id"], served.runs["monitor"].start["scan_id"]
    assert sorted(db.v2.search(ScanIDRange(low, high))) == sorted(
        by_time(served, lambda r: low <= r.start["scan_id"] < high)
    )
    assert db.v2[scan.start["scan_id"]].metadata["start"]["uid"] == scan.uid
    assert db.v2[scan.uid[:8]].metadata["start"]["uid"] == scan.uid
    assert sorted(db.v2.search({"plan_name": "count"})) == sorted(
        by_time(served, lambda r: r.start["plan_name"] == "count")
    )
    with pytest.raises(QueryNotSupported, match="since"):
        db.v2.search({"since": times[2]})


def test_v2_runs_read_v2_style(served, db):
    run = served.runs["images"]
    frames = db.v2[run.uid]["primary"]["data"]["img"][:]
    assert frames.shape == (3, 10, 10)
    numpy.testing.assert_array_equal(frames[1], FRAME)
    # Code that mixes the two APIs
    h = db.v2.v1[run.uid]
    assert h.uid == run.uid and db.v2[run.uid].metadata["start"]["uid"] == h.uid
    assert Broker(db.v2)[-1].uid == served.runs["count_again"].uid
