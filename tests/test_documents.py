"""Re-emitted document streams compared, field by field, with what the RunEngine emitted.

Every run of the fixture catalog goes through ``h.documents()`` and comes back as a
valid event-model stream in emission order; the differences that Tiled forces (event
uids, resource uids and datum ids, timestamps of external keys) are checked to be the
documented, deterministic ones.
"""

from __future__ import annotations

import uuid
import warnings

import numpy
import pytest
from event_model import unpack_datum_page, unpack_event_page

from databroker_compat import ALL, Broker, UnknownField
from databroker_compat.layout import datum_id_for, resource_uid_for
from roundtrip import assert_round_trip, plain, validate

ROUND_TRIP_RUNS = [
    "count",
    "scan",
    "grid",
    "monitor",
    "config",
    "empty",
    "declared",
    "arrays",
    "images",
    "nostop",
    "big",
    "count_again",
]


# -- helpers ------------------------------------------------------------------------
def collect(db, header, **kwargs):
    """Documents of one run as plain dicts; warnings recorded, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs = [(name, dict(doc)) for name, doc in db.get_documents(header, **kwargs)]
    return docs, caught


def broker(served):
    return served.broker(timezone="UTC")


# -- round trip of every run kind -----------------------------------------------------
@pytest.mark.backends
@pytest.mark.parametrize("run_name", ROUND_TRIP_RUNS)
def test_round_trip(served, run_name):
    if run_name not in served.runs:
        pytest.skip(f"run {run_name!r} is not in this fixture catalog")
    run = served.runs[run_name]
    db = broker(served)
    header = db[run.uid]
    docs, caught = collect(db, header)
    assert_round_trip(docs, run)
    if run.written_without_stop:
        assert any("no stop document" in str(w.message) for w in caught)
    else:
        assert not [w for w in caught if "no stop document" in str(w.message)]


def test_nostop_gives_start_and_descriptors(served):
    run = served.runs["nostop"]
    db = broker(served)
    with pytest.warns(RuntimeWarning, match="no stop document"):
        docs = list(db[run.uid].documents())
    assert [n for n, _ in docs] == ["start", "descriptor"]
    assert docs[1][1]["uid"] == run.descriptors()[0]["uid"]


def test_external_resource_and_datums(served):
    """The images run: resource and datums rebuilt from the array node, in emission order."""
    run = served.runs["images"]
    db = broker(served)
    docs, _ = collect(db, db[run.uid])
    want_resource = run.first("resource")
    (resource,) = [d for n, d in docs if n == "resource"]
    for field in ("spec", "root", "resource_path", "resource_kwargs", "path_semantics", "run_start"):
        assert resource[field] == want_resource[field], field
    assert resource["uid"] == resource_uid_for(run.uid, "primary", "img")
    datums = [d for n, d in docs if n == "datum"]
    assert [d["datum_kwargs"] for d in datums] == [d["datum_kwargs"] for d in run.all("datum")]
    assert {d["resource"] for d in datums} == {resource["uid"]}


def test_fill_puts_frames_in_events(served):
    run = served.runs["images"]
    db = broker(served)
    events = list(db[run.uid].events(fill=True))
    frame = numpy.arange(100, dtype="float64").reshape(10, 10)
    assert len(events) == len(run.events()) == 3
    for event in events:
        assert isinstance(event["data"]["img"], numpy.ndarray)
        numpy.testing.assert_array_equal(event["data"]["img"], frame)
        assert event["filled"] == {"img": datum_id_for(run.uid, "primary", "img", event["seq_num"] - 1)}
        assert event["data"]["det"] == pytest.approx(0.6065306597126334)


def test_fields_filter(served):
    run = served.runs["scan"]
    db = broker(served)
    header = db[run.uid]
    docs = list(db.get_documents(header, fields=["det"]))
    names = [n for n, _ in docs]
    # The baseline stream (det1, motor1) holds no "det": its descriptor and events go.
    assert names == ["start", "descriptor", *["event"] * 5, "stop"]
    want = run.events("primary")
    events = [d for n, d in docs if n == "event"]
    assert [e["data"] for e in events] == [{"det": w["data"]["det"]} for w in want]
    assert [set(e["timestamps"]) for e in events] == [{"det"}] * 5
    # Regular expressions, as v1: they also pick the configuration and start-document
    # keys they match (v1 put those values in each event; see test_v1_documents.py).
    matched = {k for e in db.get_events(header, fields=["mot.*"]) for k in e["data"]}
    assert matched == {"motor", "motor_setpoint", "motor_velocity", "motor_acceleration", "motors"}
    with pytest.raises(UnknownField, match="nonexistent"):
        db.get_documents(header, fields=["nonexistent"])
    with pytest.raises(ValueError):
        list(db.get_events(header, fields=["nonexistent"]))


def test_get_events_streams(served):
    run = served.runs["monitor"]
    db = broker(served)
    header = db[run.uid]
    primary = list(db.get_events(header))
    assert [e["seq_num"] for e in primary] == [e["seq_num"] for e in run.events("primary")]
    every = list(header.events(stream_name=ALL))
    assert [(e["descriptor"], e["seq_num"]) for e in every] == [
        (e["descriptor"], e["seq_num"]) for e in run.events()
    ]
    monitor = list(header.events(stream_name="temperature_monitor"))
    assert [e["data"]["temperature"] for e in monitor] == [20.0, 21.0, 22.0]
    docs = list(header.documents(stream_name="temperature_monitor"))
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "event", "event", "stop"]
    assert list(header.events(stream_name="no_such_stream")) == []


def test_configuration_updates_assign_events(simple_served):
    run = simple_served.runs["config"]
    db = broker(simple_served)
    events = list(db[run.uid].events())
    assert [e["descriptor"] for e in events] == [e["descriptor"] for e in run.events()]
    assert len({e["descriptor"] for e in events}) == 3


def test_event_pages(simple_served):
    run = simple_served.runs["scan"]
    db = broker(simple_served)
    docs = list(db.get_documents(db[run.uid], event_pages=True))
    validate(docs)
    pages = [d for n, d in docs if n == "event_page"]
    assert "event" not in [n for n, _ in docs]
    events = [e for p in pages for e in unpack_event_page(p)]
    assert [(e["descriptor"], e["seq_num"]) for e in events] == [
        (e["descriptor"], e["seq_num"]) for e in run.events()
    ]
    # Images: datum pages come before the event pages that reference them.
    run = simple_served.runs["images"]
    docs = list(db.get_documents(db[run.uid], event_pages=True))
    validate(docs)
    names = [n for n, _ in docs]
    assert names == ["start", "descriptor", "resource", "datum_page", "event_page", "stop"]
    (datum_page,) = [d for n, d in docs if n == "datum_page"]
    (event_page,) = [d for n, d in docs if n == "event_page"]
    assert [d["datum_id"] for d in unpack_datum_page(datum_page)] == event_page["data"]["img"]


def test_big_run_in_pages(simple_served):
    run = simple_served.runs["big"]
    db = broker(simple_served)
    docs = list(db.get_documents(db[run.uid], event_pages=True))
    pages = [d for n, d in docs if n == "event_page"]
    assert [len(p["seq_num"]) for p in pages] == [1000] * 5
    assert [s for p in pages for s in p["seq_num"]] == list(range(1, 5001))


def test_streaming_is_lazy(simple_served, count_requests):
    """Taking the first documents does not read every stream's table."""
    run = simple_served.runs["scan"]
    db = broker(simple_served)
    header = db[run.uid]
    header.descriptors  # noqa: B018 (fetch the stream list first)
    with count_requests(simple_served.client) as counter:
        stream = header.documents()
        assert next(stream)[0] == "start"
        assert counter.count == 0


def test_prepare_hook_and_process(simple_served):
    run = simple_served.runs["count"]
    db = broker(simple_served)
    header = db[run.uid]
    start = next(iter(header.documents()))[1]
    assert start.plan_name == "count"  # attribute access, as v1's default hook gave
    db.prepare_hook = lambda name, doc: (name, dict(doc))
    assert next(iter(header.documents()))[1] == ("start", plain(run.start))
    del db.prepare_hook
    seen = []
    db.process(header, lambda name, doc: seen.append(name))
    assert seen == [n for n, _ in run.docs]
    assert [n for n, _ in db.restream([header, header])] == seen * 2
    assert [n for n, _ in db.stream(header)] == seen
    with pytest.raises(TypeError, match="callable"):
        db.process(header, "not callable")
    with pytest.raises(TypeError, match="stream_name"):
        list(header.documents(stream_name=3))


# -- writing: insert and export -----------------------------------------------------------
@pytest.fixture
def child_broker(served):
    def make(prefix: str) -> Broker:
        container = served.client.create_container(f"{prefix}-{uuid.uuid4().hex}")
        return Broker(container, timezone="UTC")

    return make


def test_insert_round_trip(served, child_broker):
    """RunEngine -> db.insert -> h.documents() gives back the same documents."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det, motor

    db = child_broker("insert")
    RE = RunEngine({}, call_returns_result=False)
    recorded = []
    RE.subscribe(lambda name, doc: recorded.append((name, doc)))
    RE.subscribe(db.insert)
    RE(bp.scan([det], motor, -1, 1, 4), sample="inserted")
    start = recorded[0][1]
    docs, _ = collect(db, db[-1])
    assert db[-1].uid == start["uid"]
    validate(docs)
    assert [n for n, _ in docs] == [n for n, _ in recorded]
    assert docs[0][1] == plain(start)
    assert docs[-1][1] == plain(recorded[-1][1])
    want_events = [d for n, d in recorded if n == "event"]
    got_events = [d for n, d in docs if n == "event"]
    assert [(e["seq_num"], e["time"], plain(e["data"]), e["timestamps"]) for e in got_events] == [
        (e["seq_num"], e["time"], plain(e["data"]), e["timestamps"]) for e in want_events
    ]


def test_export(served, child_broker):
    source = broker(served)
    target = child_broker("export")
    names = ["scan", "config", "images"]
    uids = [served.runs[n].uid for n in names]
    assert source.export(source[uids], target) == uids
    for name in names:
        run = served.runs[name]
        want = [(n, plain(d)) for n, d in collect(source, source[run.uid])[0]]
        got = [(n, plain(d)) for n, d in collect(target, target[run.uid])[0]]
        assert got == want, name
    frames = list(target[served.runs["images"].uid].events(fill=True))
    numpy.testing.assert_array_equal(frames[0]["data"]["img"], numpy.arange(100.0).reshape(10, 10))
    with pytest.raises(ValueError, match="detector files"):
        source.export(source[uids[0]], target, new_root="/elsewhere")


def test_external_rule_matches_the_writer():
    """The writer routes any data key with an ``external`` entry to files, even ``""``."""
    from databroker_compat.layout import is_external

    assert is_external({"external": "FILESTORE:"}) and is_external({"external": ""})
    assert not is_external({"dtype": "number", "shape": []})
