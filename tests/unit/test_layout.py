"""layout.py: the writer's names and rules, without a server."""

from __future__ import annotations

import pickle

import pytest

import databroker_compat
from databroker_compat import broker, header, layout
from databroker_compat.layout import (
    ALL,
    INTERNAL_TABLE,
    RUN_SPEC,
    STREAM_SPEC,
    column_of,
    datum_id_for,
    emitted_key_order,
    event_uid_for,
    frame_index,
    is_all,
    is_external,
    is_stream,
    resource_uid_for,
    spec_names,
    timestamp_column,
)


def test_all_is_one_sentinel_everywhere():
    assert databroker_compat.ALL is header.ALL is broker.ALL is layout.ALL is ALL
    assert repr(ALL) == "ALL"
    assert pickle.loads(pickle.dumps(ALL)) is ALL
    assert type(ALL)() is ALL


@pytest.mark.parametrize(
    ("key", "column", "stamps"),
    [("det", "det", "ts_det"), ("time", "time_", "ts_time_"), ("seq_num", "seq_num_", "ts_seq_num_")],
)
def test_columns_of_data_keys(key, column, stamps):
    assert column_of(key) == column
    assert timestamp_column(key) == stamps


def test_external_is_any_external_entry():
    assert is_external({"external": "FILESTORE:"})
    assert is_external({"external": ""})
    assert is_external({"external": None})
    assert not is_external({"dtype": "number", "shape": []})


def _item(specs, family="container", metadata=None):
    return {"attributes": {"specs": specs, "structure_family": family, "metadata": metadata or {}}}


def test_stream_detection():
    assert spec_names(_item([{"name": RUN_SPEC, "version": "3.0"}, "composite"])) == {RUN_SPEC, "composite"}
    assert is_stream(_item([{"name": STREAM_SPEC}], family="composite"))
    assert is_stream(_item([], metadata={"data_keys": {}}))
    assert is_stream(_item([], family="composite", metadata={"data_keys": {"x": {}}}))
    assert not is_stream(_item([], metadata={"start": {}}))
    assert not is_stream(_item([], family="table", metadata={"data_keys": {}}))
    assert not is_stream(_item(None))
    assert INTERNAL_TABLE == "internal"


def test_derived_ids_are_stable_and_distinct():
    assert resource_uid_for("r", "primary", "img") == resource_uid_for("r", "primary", "img")
    assert len({resource_uid_for("r", s, k) for s in ("primary", "baseline") for k in ("a", "b")}) == 4
    assert datum_id_for("r", "primary", "img", 3) == f"{resource_uid_for('r', 'primary', 'img')}/3"
    uids = {event_uid_for("d", n) for n in range(1, 50)}
    assert len(uids) == 49 and event_uid_for("d", 1) != event_uid_for("e", 1)
    assert frame_index(1) == 0 and frame_index("7") == 6


def test_is_all_recognises_databrokers_own_sentinel_without_importing_it():
    assert is_all(ALL)
    for name in ("databroker.utils", "databroker._core", "databroker.core", "databroker"):
        assert is_all(type("ALL", (), {"__module__": name})), name
    assert not is_all(type("ALL", (), {"__module__": "databroker_compat_fake"}))
    assert not is_all(type("All", (), {"__module__": "databroker.utils"}))
    assert not is_all(type("ALL", (), {"__module__": "databroker.utils"})())  # an instance, not the class
    for value in ("ALL", "primary", None, 0):
        assert not is_all(value)


def test_is_all_with_the_installed_databroker():
    databroker = pytest.importorskip("databroker")
    assert is_all(databroker.ALL)


def test_emitted_key_order_follows_the_table_columns():
    columns = ["seq_num", "time", "motor1", "motor1_setpoint", "motor2", "ts_motor1", "ts_motor1_setpoint", "ts_motor2"]
    keys = ["motor2", "img", "motor1", "motor1_setpoint"]
    assert emitted_key_order(keys, columns) == ["motor1", "img", "motor1_setpoint", "motor2"]
    assert emitted_key_order(keys, columns, column=timestamp_column) == ["motor1", "img", "motor1_setpoint", "motor2"]
    assert emitted_key_order(["time", "det"], ["seq_num", "time", "det", "time_"]) == ["det", "time"]
    assert emitted_key_order(["a", "b"], []) == ["a", "b"]
