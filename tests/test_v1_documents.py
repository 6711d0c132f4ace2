"""v1 behaviours of documents and fields, against a real server in every mode (issue 15).

Items: nested documents stored in place (1); ``fields=`` pulling configuration, start and
stop values into events (8); ``prepare_hook`` on ``h.start``/``h.stop``/``h.descriptors``
(9); ``h.stream()`` (10); databroker's own ``ALL`` (11); device names in ``fields`` (12);
the key order the RunEngine emitted (14).

Besides the session's recorded runs, this module records one more run with a real
RunEngine: a scan whose baseline reads two ``ophyd.sim`` motors and ``nanop``, an ophyd
device of two ``SynAxis`` (data keys ``nanop_tx``, ``nanop_tx_setpoint``, ``nanop_ty``,
``nanop_ty_setpoint``). bluesky emits that baseline's descriptor with its data keys in
another order than its events' data (it declares the stream from a set of the devices),
which is what item 14 is about.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
from event_model import DocumentNames, schema_validators, unpack_event_page

from databroker_compat import ALL, Broker, UnknownField
from databroker_compat.model import Document
from helpers import jsonable, new_container

NANOP_KEYS = ["nanop_tx", "nanop_tx_setpoint", "nanop_ty", "nanop_ty_setpoint"]
ORDER_RUNS = ["count", "scan", "grid", "monitor", "config", "arrays", "images", "big", "count_again"]


# -- the extra run ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def device_docs():
    """Documents of a scan with a baseline of motor2, motor1 and the device ``nanop``."""
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    from bluesky import RunEngine
    from ophyd import Component, Device
    from ophyd.sim import SynAxis, det, motor

    class Stage(Device):
        tx = Component(SynAxis)
        ty = Component(SynAxis)

    # bluesky declares the baseline stream from a frozenset of its devices (so the
    # descriptor's data keys follow the set's order) and reads them in the order given
    # (so the events' data follow the list): make devices whose set order differs from
    # the list's, as it does at random on a beamline. Kept alive so ids are not reused.
    made = []
    for _ in range(200):
        baseline = [SynAxis(name="motor2"), SynAxis(name="motor1"), Stage(name="nanop")]
        made.append(baseline)
        if list(frozenset(baseline)) != baseline:
            break
    RE = RunEngine({}, call_returns_result=False)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, copy.deepcopy(doc))))
    RE.preprocessors.append(bpp.SupplementalData(baseline=baseline))
    RE(bp.scan([det], motor, -1, 1, 3), sample="device run")
    return docs


@pytest.fixture(scope="module")
def device_db(served, device_docs):
    """A Broker over a fresh container of the served catalog holding the extra run."""
    from bluesky_tiled_plugins import TiledWriter

    container = new_container(served.client, "v1-documents")
    writer = TiledWriter(container)
    for name, doc in device_docs:
        writer(name, copy.deepcopy(doc))
    return Broker(container, timezone="UTC")


def emitted_descriptor(docs, stream):
    return next(d for n, d in docs if n == "descriptor" and d["name"] == stream)


def emitted_events(docs, stream):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


def validate(docs) -> None:
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(jsonable(doc))


# -- 1. documents are the nested dicts ----------------------------------------------------
def test_nested_documents_are_the_stored_dicts(served, db):
    run = served.runs["scan"]
    h = db[run.uid]
    start = h.start
    assert start.sample is start.sample is start["sample"]
    start.sample["norm"] = 2.5
    assert start["sample"]["norm"] == 2.5 and h.start.sample.norm == 2.5
    descriptor = next(d for d in h.descriptors if d["name"] == "primary")
    assert descriptor.data_keys is descriptor["data_keys"]
    assert descriptor.data_keys.det is descriptor["data_keys"]["det"]

    event = next(iter(h.events()))
    assert event.data is event.data is event["data"]
    event.data["norm"] = 7.0
    assert event["data"]["norm"] == 7.0
    # What stays as it was: attribute access, dict(), pickling, copies, to_dict().
    assert event.data.det == run.events("primary")[0]["data"]["det"]
    assert dict(event)["data"] is event.data
    assert pickle.loads(pickle.dumps(event)) == event
    deep = copy.deepcopy(event)
    assert deep == event and deep.data is not event.data and isinstance(deep.data, Document)
    shallow = copy.copy(event)
    assert shallow.data is event.data
    plain = event.to_dict()
    assert type(plain) is dict and type(plain["data"]) is dict and plain == event


def test_plain_hook_documents_stay_plain(served, db):
    """Documents re-emitted with a hook that keeps them as they come are plain dicts."""
    h = db[served.runs["scan"].uid]
    db.prepare_hook = lambda name, doc: doc
    try:
        docs = list(h.documents())
    finally:
        del db.prepare_hook
    for _, doc in docs:
        assert type(doc) is dict
        assert all(type(v) is not Document for v in doc.values())


# -- 8. fields= pulls configuration, start and stop values into events --------------------
def test_fields_add_configuration_start_and_stop_values_to_events(served, db):
    run = served.runs["scan"]
    h = db[run.uid]
    fields = ["det", "det_sigma", "plan_name", "exit_status"]
    primary = emitted_descriptor(run.docs, "primary")
    sigma_time = primary["configuration"]["det"]["timestamps"]["det_sigma"]
    want = [
        (
            {"det": e["data"]["det"], "det_sigma": 1, "plan_name": "scan", "exit_status": "success"},
            {"det": e["timestamps"]["det"], "det_sigma": sigma_time, "plan_name": run.start["time"],
             "exit_status": run.stop["time"]},
        )
        for e in run.events("primary")
    ]
    events = list(db.get_events(h, fields=fields))
    assert [(e["data"], e["timestamps"]) for e in events] == want
    # The keys come in v1's order: the data keys, then configuration, start, stop.
    assert [list(e["data"]) for e in events] == [["det", "det_sigma", "plan_name", "exit_status"]] * 5
    assert [(e["data"], e["timestamps"]) for e in h.events(fields=fields)] == want

    # Every stream: the baseline holds none of the data keys, but its events get the
    # start and stop values, as in v1 (its descriptor comes too).
    docs = list(db.get_documents(h, fields=fields))
    validate(docs)
    baseline_uid = emitted_descriptor(run.docs, "baseline")["uid"]
    baseline = [d for n, d in docs if n == "event" and d["descriptor"] == baseline_uid]
    assert [e["data"] for e in baseline] == [{"plan_name": "scan", "exit_status": "success"}] * 2
    assert [n for n, _ in docs].count("descriptor") == 2
    for got in (list(h.documents(fields=fields)), list(db.restream(h, fields=fields))):
        assert [(n, jsonable(d)) for n, d in got] == [(n, jsonable(d)) for n, d in docs]
    processed = []
    db.process(h, lambda name, doc: processed.append((name, jsonable(doc))), fields=fields)
    assert processed == [(n, jsonable(d)) for n, d in docs]

    # Event pages carry the same values, one per row.
    pages = [d for n, d in db.get_documents(h, fields=fields, event_pages=True) if n == "event_page"]
    unpacked = [e for p in pages for e in unpack_event_page(p)]
    assert [(e["data"], e["timestamps"]) for e in unpacked if e["descriptor"] != baseline_uid] == want


def test_fields_take_each_descriptors_own_configuration(served, db):
    """A configuration change mid-run: each event gets its own descriptor's value."""
    run = served.runs["config"]
    h = db[run.uid]
    events = list(db.get_events(h, fields=["det_cfg", "det_cfg_sigma"]))
    assert [e["data"]["det_cfg_sigma"] for e in events] == [1, 1, 2, 2, 3, 3]
    assert [e["data"]["det_cfg"] for e in events] == [e["data"]["det_cfg"] for e in run.events()]
    by_uid = {d["uid"]: d for d in run.descriptors()}
    assert [e["timestamps"]["det_cfg_sigma"] for e in events] == [
        by_uid[e["descriptor"]]["configuration"]["det_cfg"]["timestamps"]["det_cfg_sigma"] for e in run.events()
    ]


def test_fields_of_header_values_only(served, db):
    """Only start/stop keys asked for: every event carries them, nothing else (v1)."""
    run = served.runs["count"]
    h = db[run.uid]
    events = list(h.events(fields=["sample", "operator"]))
    assert [e["data"] for e in events] == [{"sample": "Cu foil", "operator": "alice"}] * 3
    assert {t for e in events for t in e["timestamps"].values()} == {run.start["time"]}
    with pytest.raises(UnknownField):
        list(h.events(fields=["not_anywhere"]))


# -- 9. prepare_hook on the Header's documents ---------------------------------------------
def test_prepare_hook_applies_to_header_documents(served):
    run = served.runs["scan"]
    db = served.broker(timezone="UTC")
    h = db[run.uid]
    assert isinstance(h.start, Document) and h.start.plan_name == "scan"

    def mark(name, doc):
        return {**doc, "prepared_as": name}

    db.prepare_hook = mark
    assert h.db.prepare_hook is mark
    assert h.start["prepared_as"] == "start" and h.start["uid"] == run.uid
    assert h.stop["prepared_as"] == "stop" and h.stop["exit_status"] == "success"
    assert [d["prepared_as"] for d in h.descriptors] == ["descriptor"] * len(run.descriptors())
    assert h.start is h.start and h["start"] is h.start and h.get("descriptors") is h.descriptors
    assert all(doc["prepared_as"] == name for name, doc in h.documents())
    # The Header's own answers do not depend on what the hook makes of the documents.
    db.prepare_hook = lambda name, doc: (name, dict(doc))
    assert h.start == ("start", jsonable(run.start))
    assert h.uid == run.uid and run.uid[:8] in repr(h) and len(h.table()) == 5
    assert h.to_dict()["start"] == jsonable(run.start)
    assert set(h.config_data("det")) == {"primary"}
    del db.prepare_hook
    assert isinstance(h.start, Document) and h.start == jsonable(run.start)
    assert "prepared_as" not in h.stop


# -- 10. h.stream() -----------------------------------------------------------------------
def test_header_stream_is_the_deprecated_documents(served, db):
    h = db[served.runs["scan"].uid]
    with pytest.warns(DeprecationWarning, match=r"documents\(\)"):
        got = list(h.stream())
    assert [(n, jsonable(d)) for n, d in got] == [(n, jsonable(d)) for n, d in h.documents()]
    with pytest.warns(DeprecationWarning):
        baseline = list(h.stream("baseline", fields=["det1"]))
    assert [n for n, _ in baseline] == ["start", "descriptor", "event", "event", "stop"]


# -- 11. databroker's own ALL ---------------------------------------------------------------
def test_databroker_all_means_every_stream(served, db):
    databroker = pytest.importorskip("databroker")
    UPSTREAM = databroker.ALL
    assert UPSTREAM is not ALL
    run = served.runs["scan"]
    h = db[run.uid]
    assert h.fields(UPSTREAM) == h.fields(ALL) == h.fields("primary") | h.fields("baseline")
    assert h.devices(UPSTREAM) == h.devices(ALL)
    assert db.get_fields(h, UPSTREAM) == h.fields()
    table = h.table(stream_name=UPSTREAM, convert_times=False, localize_times=False)
    assert table.equals(h.table(stream_name=ALL, convert_times=False, localize_times=False))
    assert len(table) == len(run.events())
    events = list(h.events(stream_name=UPSTREAM))
    assert [(e["descriptor"], e["seq_num"]) for e in events] == [(e["descriptor"], e["seq_num"]) for e in run.events()]
    docs = list(db.get_documents(h, stream_name=UPSTREAM))
    assert [n for n, _ in docs] == [n for n, _ in db.get_documents(h, stream_name=ALL)]
    assert [n for n, _ in h.documents(stream_name=UPSTREAM)] == [n for n, _ in run.docs]


# -- 12. device names in fields ----------------------------------------------------------
def test_device_names_in_fields(served, device_db, device_docs):
    h = device_db[-1]
    assert h.devices("baseline") == {"motor1", "motor2", "nanop"}
    table = h.table("baseline", fields=["nanop"], convert_times=False, localize_times=False)
    assert set(table.columns) == {"time", *NANOP_KEYS}
    events = emitted_events(device_docs, "baseline")
    for key in NANOP_KEYS:
        assert list(table[key]) == [e["data"][key] for e in events]

    # Exact data keys first: "motor1" is a data key (and a device), so only that key;
    # then device names ("nanop"), then patterns ("motor2_.*").
    table = h.table("baseline", fields=["motor1", "nanop", "motor2_.*"])
    # (the pattern also picks motor2's configuration values, as v1 did)
    assert set(table.columns) == {
        "time", "motor1", "motor2_setpoint", *NANOP_KEYS, "motor2_velocity", "motor2_acceleration"
    }
    assert list(h.table(fields=["motor"]).columns) == ["time", "motor"]

    # The same rule for events and documents.
    got = list(h.events(stream_name="baseline", fields=["nanop"]))
    assert [e["data"] for e in got] == [{k: e["data"][k] for k in NANOP_KEYS} for e in events]
    docs = list(device_db.get_documents(h, fields=["nanop"]))
    assert [n for n, _ in docs] == ["start", "descriptor", "event", "event", "stop"]
    assert docs[1][1]["name"] == "baseline"
    assert [set(e["data"]) for e in device_db.get_events(h, stream_name=ALL, fields=["nanop", "det"])] == [
        set(NANOP_KEYS), {"det"}, {"det"}, {"det"}, set(NANOP_KEYS)
    ]
    with pytest.raises(UnknownField, match="nanopp"):
        h.table("baseline", fields=["nanopp"])


# -- 14. the key order the RunEngine emitted ------------------------------------------------
def test_device_run_orders_differ_as_emitted(device_docs):
    """The premise: bluesky's baseline descriptor lists its keys in another order than its events."""
    descriptor = emitted_descriptor(device_docs, "baseline")
    event = emitted_events(device_docs, "baseline")[0]
    assert set(descriptor["data_keys"]) == set(event["data"])
    assert list(descriptor["data_keys"]) != list(event["data"])


def test_restreamed_events_keep_the_emitted_key_order(served, device_db, device_docs):
    h = device_db[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = [d for n, d in device_db.restream(h) if n == "event"]
    want = [d for n, d in device_docs if n == "event"]
    assert [(list(e["data"]), list(e["timestamps"])) for e in got] == [
        (list(e["data"]), list(e["timestamps"])) for e in want
    ]
    for stream in ("primary", "baseline"):
        emitted = list(emitted_descriptor(device_docs, stream)["data_keys"])
        columns = list(h.table(stream).columns)[1:]
        if served.mode == "postgres":
            # JSONB lost the descriptor's order: the table follows the events' (docs/compat.md).
            assert columns == list(emitted_events(device_docs, stream)[0]["data"])
        else:
            assert columns == emitted


@pytest.mark.parametrize("name", ORDER_RUNS)
def test_recorded_runs_come_back_in_the_emitted_key_order(served, db, name):
    run = served.runs[name]
    got = [d for n, d in db.get_documents(db[run.uid]) if n == "event"]
    want = run.events()
    assert len(got) == len(want)
    external = {k for d in run.descriptors() for k, spec in d["data_keys"].items() if "external" in spec}
    stored_apart = external | {"matrix"}  # keys the writer keeps outside the events table
    for g, w in zip(got, want, strict=True):
        if served.mode == "postgres":
            # Keys stored outside the table have no recorded position once JSONB reordered
            # the descriptor; the keys of the table keep the events' order.
            assert [k for k in g["data"] if k not in stored_apart] == [k for k in w["data"] if k not in stored_apart]
            assert set(g["data"]) == set(w["data"])
        else:
            assert list(g["data"]) == list(w["data"])
            assert list(g["timestamps"]) == list(w["timestamps"])
        assert [k for k in g["timestamps"] if k not in stored_apart] == [
            k for k in w["timestamps"] if k not in stored_apart
        ]
