"""Header: documents and metadata compared with what the RunEngine emitted."""

from __future__ import annotations

import pytest

from databroker_compat import ALL, Header
from helpers import jsonable

WITH_STREAMS = ["count", "scan", "grid", "monitor", "config", "declared", "arrays", "images", "big"]


@pytest.mark.parametrize("name", ["count", "scan", "grid", "monitor", "config", "empty", "arrays", "images", "big"])
def test_start_and_stop_are_the_emitted_documents(served, db, name):
    run = served.runs[name]
    h = db[run.uid]
    assert h.start == jsonable(run.start)
    assert h.stop == jsonable(run.stop)
    assert h.uid == run.uid
    assert h["start"] is h.start and h.get("stop") is h.stop


def test_run_without_stop_has_empty_stop(served, db):
    h = db[served.runs["nostop"].uid]
    assert h.stop == {}
    assert h.start == jsonable(served.runs["nostop"].start)


def test_attribute_access(served, db):
    h = db[served.runs["scan"].uid]
    assert h.start.plan_name == "scan"
    assert h.start.sample.name == "Si"
    assert h.start.sample["thickness_mm"] == 0.5
    assert h.stop.exit_status == "success"
    with pytest.raises(AttributeError, match="no key 'nope'"):
        _ = h.start.nope


@pytest.mark.parametrize("name", WITH_STREAMS)
def test_descriptors_are_the_emitted_descriptors(served, db, name):
    run = served.runs[name]
    h = db[run.uid]
    expected = jsonable(run.descriptors())
    got = jsonable(h.descriptors)
    assert [d["uid"] for d in got] == [d["uid"] for d in sorted(expected, key=lambda d: d["time"])]
    by_uid = {d["uid"]: d for d in expected}
    for d in got:
        want = by_uid[d["uid"]]
        for key in ("uid", "time", "name", "run_start", "data_keys", "configuration", "hints", "object_keys"):
            assert d[key] == want[key], (name, key)


def test_configuration_updates_become_descriptors(served, db):
    run = served.runs["config"]
    h = db[run.uid]
    assert len(run.descriptors("primary")) == 3
    assert [d["uid"] for d in h.descriptors] == [d["uid"] for d in run.descriptors("primary")]
    assert [c["det_cfg_sigma"] for c in h.config_data("det_cfg")["primary"]] == [1, 2, 3]


def test_stream_names_fields_devices(served, db):
    h = db[served.runs["scan"].uid]
    assert h.stream_names == list(dict.fromkeys(d["name"] for d in served.runs["scan"].descriptors()))
    assert set(h.stream_names) == {"primary", "baseline"}
    assert h.fields("primary") == {"det", "motor", "motor_setpoint"}
    assert h.fields("baseline") == {"det1", "motor1", "motor1_setpoint"}
    assert h.fields() == h.fields(ALL) == h.fields("primary") | h.fields("baseline")
    assert h.devices("primary") == {"det", "motor"}
    assert h.devices() == {"det", "motor", "det1", "motor1"}
    assert db.stream_names_given_header(h) == h.stream_names
    assert db.get_fields(h, "baseline") == h.fields("baseline")


def test_monitor_stream(served, db):
    h = db[served.runs["monitor"].uid]
    assert set(h.stream_names) == {"primary", "temperature_monitor"}


def test_run_without_streams(served, db):
    h = db[served.runs["empty"].uid]
    assert h.descriptors == [] and h.stream_names == [] and h.fields() == set()


def test_config_data_values(served, db):
    h = db[served.runs["scan"].uid]
    expected = {
        d["name"]: [jsonable(d["configuration"]["det"]["data"])]
        for d in served.runs["scan"].descriptors()
        if "det" in d["configuration"]
    }
    assert h.config_data("det") == expected
    assert h.config_data("no_such_device") == {}


def test_mapping_protocol_equality_and_display(served, db):
    h = db[served.runs["count"].uid]
    assert list(h) == h.keys() == ["start", "descriptors", "stop"]
    assert dict(h.items())["stop"] == h.stop
    assert "start" in h and "nothing" not in h
    with pytest.raises(KeyError):
        h["nothing"]
    same = db[served.runs["count"].uid[:10]]
    assert same == h and hash(same) == hash(h) and same is not h
    assert h != db[served.runs["scan"].uid]
    text = repr(h)
    assert h.uid[:8] in text and "plan_name='count'" in text and f"scan_id={h.start.scan_id}" in text
    html = h._repr_html_()
    assert "<table>" in html and h.uid in html
    assert isinstance(h, Header) and h.db is db
    assert h.v2.metadata["start"]["uid"] == h.uid
    assert h.to_dict()["start"] == h.start


def test_descriptors_are_fetched_once(served, db, count_requests):
    h = db[served.runs["scan"].uid]
    with count_requests(served.client) as counter:
        _ = h.descriptors
        _ = h.stream_names
        h.fields()
        h.config_data("det")
    assert counter.count == 1
