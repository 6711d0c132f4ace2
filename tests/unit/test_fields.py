"""fields.py: v1's ``fields=`` rule (exact names or whole-name regular expressions)."""

from __future__ import annotations

import pytest

from databroker_compat import UnknownField
from databroker_compat.fields import FieldPatterns, check_fields_exist, known_fields


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
