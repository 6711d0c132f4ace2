"""h.table() / db.get_table() values against the RunEngine's events."""

from __future__ import annotations

import re

import numpy
import pandas as pd
import pytest

from databroker_compat import ALL, UnknownField
from recorded import BIG_RUN_EVENTS

# What a table keeps (types, NaN, big integers) depends on the storage backend: every mode.
pytestmark = pytest.mark.backends


def events_frame(run, stream="primary"):
    events = run.events(stream)
    return (
        [e["seq_num"] for e in events],
        [e["time"] for e in events],
        {k: [e["data"][k] for e in events] for k in (events[0]["data"] if events else {})},
    )


@pytest.mark.parametrize(("name", "stream"), [("count", "primary"), ("scan", "primary"), ("scan", "baseline"), ("grid", "primary"), ("monitor", "primary"), ("monitor", "temperature_monitor"), ("config", "primary"), ("count_again", "primary")])
def test_values_index_and_columns(served, db, name, stream):
    run = served.runs[name]
    seq_nums, times, data = events_frame(run, stream)
    df = db[run.uid].table(stream, convert_times=False, localize_times=False)
    assert df.index.name == "seq_num"
    assert list(df.index) == seq_nums
    descriptor_order = ["time", *run.descriptors(stream)[0]["data_keys"]]
    if served.mode == "postgres":
        # JSONB loses the descriptor's key order; the stored table keeps the order of
        # the events' data, which is what comes back (see docs/compat.md).
        event_order = ["time", *run.events(stream)[0]["data"]]
        assert list(df.columns) in (descriptor_order, event_order)
    else:
        assert list(df.columns) == descriptor_order
    assert list(df["time"]) == times
    for key, values in data.items():
        assert list(df[key]) == values, key


def test_times_converted_and_localised_as_v1(served, db):
    run = served.runs["scan"]
    _, times, _ = events_frame(run)
    utc = pd.Series(pd.to_datetime(times, unit="s"))
    df = db[run.uid].table(timezone="US/Eastern")
    expected = utc.dt.tz_localize("UTC").dt.tz_convert("US/Eastern").dt.tz_localize(None)
    assert list(df["time"]) == list(expected)
    assert df["time"].dt.tz is None
    # The broker's timezone is the default (the fixture's broker says UTC).
    assert list(db[run.uid].table()["time"]) == list(utc)
    naive_utc = db[run.uid].table(localize_times=False)
    assert list(naive_utc["time"]) == list(utc)


def test_fields_exact_regex_and_header_values(served, db):
    run = served.runs["scan"]
    h = db[run.uid]
    assert list(h.table(fields=["det"]).columns) == ["time", "det"]
    by_regex = h.table(fields=["motor.*"])
    # As v1: a pattern also picks matching configuration and start-document keys.
    assert list(by_regex.columns) == ["time", "motor", "motor_setpoint", "motor_velocity", "motor_acceleration", "motors"]
    assert list(by_regex["motors"]) == [["motor"]] * 5
    # Configuration, start and stop values requested by name become constant columns, as in v1.
    df = h.table(fields=["det", "det_sigma", "plan_name", "exit_status"])
    assert list(df["det_sigma"]) == [1] * 5
    assert list(df["plan_name"]) == ["scan"] * 5
    assert list(df["exit_status"]) == ["success"] * 5


def test_unknown_field_is_a_value_error_naming_it(served, db):
    h = db[served.runs["scan"].uid]
    with pytest.raises(UnknownField, match=re.escape("['no_such_field']")):
        h.table(fields=["det", "no_such_field"])
    with pytest.raises(ValueError):
        db.get_table([h], fields=["no_such_field"])


def test_missing_stream_gives_empty_frame(served, db):
    df = db[served.runs["count"].uid].table("no_such_stream")
    assert isinstance(df, pd.DataFrame) and df.empty and list(df.columns) == []


@pytest.mark.parametrize("name", ["declared", "nostop"])
def test_run_without_stored_events_has_columns_but_no_rows(served, db, name):
    run = served.runs[name]
    df = db[run.uid].table()
    assert len(df) == 0
    assert list(df.columns) == ["time", *run.descriptors("primary")[0]["data_keys"]]
    assert df.index.name == "seq_num"


def test_array_columns_are_arrays_not_strings(served, db):
    run = served.runs["arrays"]
    df = db[run.uid].table()
    assert len(df) == 4
    for value in df["spectrum"]:
        assert isinstance(value, numpy.ndarray)
        numpy.testing.assert_array_equal(value, [1.0, 2.0, 3.0])
    for value in df["matrix"]:  # stored by the writer as its own array node
        assert isinstance(value, numpy.ndarray) and value.shape == (5, 4)
        numpy.testing.assert_array_equal(value, numpy.arange(20.0).reshape(5, 4))
    assert list(df["det"]) == [e["data"]["det"] for e in run.events()]


def test_external_fields_unfilled_and_filled(served, db):
    run = served.runs["images"]
    h = db[run.uid]
    df = h.table()
    ids = list(df["img"])
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f-]{36}/\d+", i) for i in ids)
    assert [int(i.rsplit("/", 1)[1]) for i in ids] == [0, 1, 2]
    assert df["img"].iloc[0] == h.table()["img"].iloc[0]  # deterministic
    filled = h.table(fill=True)
    for frame in filled["img"]:
        numpy.testing.assert_array_equal(frame, numpy.arange(100.0).reshape(10, 10))
    assert list(filled["det"]) == [e["data"]["det"] for e in run.events()]


def test_big_run(served, db):
    run = served.runs["big"]
    df = db[run.uid].table(convert_times=False, localize_times=False)
    assert len(df) == BIG_RUN_EVENTS
    assert list(df.index) == list(range(1, BIG_RUN_EVENTS + 1))
    events = run.events()
    numpy.testing.assert_array_equal(df["det"].to_numpy(), [e["data"]["det"] for e in events])
    numpy.testing.assert_array_equal(df["time"].to_numpy(), [e["time"] for e in events])


def test_several_headers_are_concatenated_in_order(served, db):
    a, b = served.runs["count"], served.runs["count_again"]
    df = db.get_table([db[a.uid], db[b.uid]], fields=["det1"], convert_times=False, localize_times=False)
    assert list(df.index) == [1, 2, 3, 1, 2]
    assert list(df["det1"]) == [e["data"]["det1"] for e in a.events() + b.events()]
    single = db.get_table(db[a.uid])
    assert len(single) == 3


def test_all_streams(served, db):
    run = served.runs["scan"]
    df = db[run.uid].table(stream_name=ALL, convert_times=False, localize_times=False)
    assert len(df) == len(run.events("primary")) + len(run.events("baseline"))
    assert {"det", "det1"} <= set(df.columns)


def test_data_yields_values_per_event(served, db):
    run = served.runs["scan"]
    h = db[run.uid]
    assert list(h.data("det")) == [e["data"]["det"] for e in run.events("primary")]
    assert list(h.data("det1", stream_name="baseline")) == [e["data"]["det1"] for e in run.events("baseline")]
    with pytest.raises(ValueError):
        list(h.data("not_a_field"))


def test_xarray_dataset(served, db):
    run = served.runs["scan"]
    ds = db[run.uid].xarray()
    events = run.events("primary")
    numpy.testing.assert_array_equal(ds["det"].values, [e["data"]["det"] for e in events])
    numpy.testing.assert_array_equal(ds["time"].values, [e["time"] for e in events])
    assert ds["det"].dims == ("time",)


def test_table_on_fresh_header_costs_at_most_three_requests(served, db, count_requests):
    h = db[served.runs["big"].uid]
    with count_requests(served.client) as counter:
        df = h.table()
    assert len(df) == BIG_RUN_EVENTS
    assert counter.count <= 3, counter.urls
