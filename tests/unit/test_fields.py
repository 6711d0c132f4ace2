"""fields.py: v1's ``fields=`` rule (exact names or whole-name regular expressions)."""

from __future__ import annotations

import pytest

from databroker_compat import UnknownField
from databroker_compat.fields import FieldPatterns, check_fields_exist, header_values, known_fields


class FakeRun:
    """The part of a run the field checks read (no server)."""

    def __init__(self, uid, start, stop, descriptors):
        self.uid, self.start, self.stop, self.descriptors = uid, start, stop, descriptors


RUN = FakeRun(
    "0123456789abcdef",
    {"uid": "0123456789abcdef", "plan_name": "scan", "sample": "Si"},
    {"exit_status": "success"},
    [
        {
            "data_keys": {"det": {}, "motor": {}, "motor_setpoint": {}},
            "configuration": {"det": {"data": {"det_gain": 2}}, "motor": {}},
        },
        {"data_keys": {"temperature": {}}},
    ],
)


def test_exact_names_and_whole_name_patterns():
    p = FieldPatterns(["det", "motor.*"])
    assert p.select(["det", "det2", "motor", "motor_setpoint", "xmotor"]) == ["det", "motor", "motor_setpoint"]
    # fullmatch: a pattern never matches part of a name
    assert not FieldPatterns(["mot"]).matches("motor")


def test_an_invalid_pattern_is_a_literal_name():
    p = FieldPatterns(["a[b", "(x"])
    assert p.matches("a[b") and p.matches("(x")
    assert not p.matches("ab")
    assert p.unmatched({"a[b"}) == ["(x"]


def test_selection_keeps_the_order_of_the_names():
    assert FieldPatterns(["b", "a"]).select(["a", "b", "c"]) == ["a", "b"]


def test_known_fields_are_data_configuration_start_and_stop_keys():
    assert known_fields(RUN) == {
        "det", "motor", "motor_setpoint", "temperature", "det_gain",
        "uid", "plan_name", "sample", "exit_status",
    }


def test_check_fields_exist_accepts_names_and_patterns():
    check_fields_exist(None, [RUN])
    check_fields_exist([], [RUN])
    check_fields_exist(["det", "motor_.*", "det_gain", "sample", "exit_status"], [RUN])


def test_unknown_fields_raise_with_context():
    with pytest.raises(UnknownField) as err:
        check_fields_exist(["det", "nope", "zz.*"], [RUN])
    assert isinstance(err.value, ValueError)
    assert err.value.missing == ["nope", "zz.*"]
    assert "det" in err.value.known
    message = str(err.value)
    assert "['nope', 'zz.*']" in message and "['01234567']" in message


def test_a_field_any_run_holds_is_known():
    other = FakeRun("fedcba9876543210", {"uid": "f"}, {}, [{"data_keys": {"only_here": {}}}])
    check_fields_exist(["only_here", "det"], [RUN, other])
    with pytest.raises(UnknownField, match=r"\['01234567', 'fedcba98'\]"):
        check_fields_exist(["neither"], [RUN, other])


DEVICES = {"nanop": ["nanop_tx", "nanop_ty"], "motor": ["motor", "motor_setpoint"], "det": ["det"]}
KEYS = ["det", "motor", "motor_setpoint", "nanop_tx", "nanop_ty"]


def test_device_names_select_the_devices_data_keys():
    assert FieldPatterns(["nanop"]).select(KEYS, DEVICES) == ["nanop_tx", "nanop_ty"]
    # without object_keys a device name selects nothing
    assert FieldPatterns(["nanop"]).select(KEYS) == []
    # the names' own order, whatever the order of the entries
    assert FieldPatterns(["nanop", "det"]).select(KEYS, DEVICES) == ["det", "nanop_tx", "nanop_ty"]


def test_exact_data_keys_come_before_device_names_then_patterns():
    # "motor" is a data key and a device: the data key only.
    assert FieldPatterns(["motor"]).select(KEYS, DEVICES) == ["motor"]
    assert FieldPatterns(["motor.*", "nanop"]).select(KEYS, DEVICES) == ["motor", "motor_setpoint", "nanop_tx", "nanop_ty"]
    # a device's keys absent from the names are not invented
    assert FieldPatterns(["nanop"]).select(["nanop_tx"], DEVICES) == ["nanop_tx"]


def test_device_names_are_known_fields():
    run = FakeRun("0123456789abcdef", {"uid": "u"}, {}, [{"data_keys": {"nanop_tx": {}}, "object_keys": {"nanop": ["nanop_tx"]}}])
    assert "nanop" in known_fields(run)
    check_fields_exist(["nanop"], [run])
    with pytest.raises(UnknownField, match="devices"):
        check_fields_exist(["nanopp"], [run])


def test_header_values_as_v1_put_them_in_events():
    descriptor = {
        "time": 3.0,
        "configuration": {
            "det": {"data": {"det_gain": 2, "det_mode": "fast"}, "timestamps": {"det_gain": 4.0}},
            "motor": {"data": {"motor_velocity": 1.5}, "timestamps": {"motor_velocity": 4.5}},
        },
    }
    start = {"time": 1.0, "uid": "u", "plan_name": "scan", "det_gain": 99}
    stop = {"time": 9.0, "exit_status": "success", "plan_name": "other"}
    data, stamps = header_values(FieldPatterns(["det_.*", "plan_name", "exit_status", "motor"]), descriptor, start, stop, ["motor"])
    # configuration first, then start, then stop; the first source holding a key wins
    assert data == {"det_gain": 2, "det_mode": "fast", "plan_name": "scan", "exit_status": "success"}
    assert list(data) == ["det_gain", "det_mode", "plan_name", "exit_status"]
    # the configuration's timestamps (the descriptor's time where it has none), start and stop times
    assert stamps == {"det_gain": 4.0, "det_mode": 3.0, "plan_name": 1.0, "exit_status": 9.0}
    assert header_values(FieldPatterns(["det"]), descriptor, start, stop, ["det"]) == ({}, {})
    assert header_values(FieldPatterns(["exit_status"]), {}, start, {}) == ({}, {})
