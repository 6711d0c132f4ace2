"""The writer's fast event check gives the schema validator's verdict whenever it is sure."""

from __future__ import annotations

import math

import numpy
import pytest
from event_model import DocumentNames, schema_validators
from hypothesis import given, settings
from hypothesis import strategies as st

from databroker_compat.migration.writer import plainly_valid_event

KEYS = ["data", "filled", "time", "timestamps", "descriptor", "seq_num", "uid"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from([numpy.float64(1.5), numpy.int64(3), numpy.bool_(True), 2.0, -0.0]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars, max_size=3))


def schema_ok(doc) -> bool:
    return not list(schema_validators[DocumentNames.event].iter_errors(doc))


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(
    changed=st.dictionaries(st.sampled_from(KEYS + ["_id", "extra"]), values, max_size=4),
    dropped=st.sets(st.sampled_from(KEYS), max_size=2),
)
def test_never_accepts_what_the_schema_refuses(changed, dropped):
    """Valid events with some values replaced, keys added or dropped: never a wrong yes."""
    doc = {"uid": "u1", "descriptor": "d1", "seq_num": 1, "time": 1.5e9, "data": {"x": 1.0}, "timestamps": {"x": 1.5e9}, "filled": {}}
    doc.update(changed)
    for key in dropped:
        doc.pop(key, None)
    if plainly_valid_event(doc):
        assert schema_ok(doc), doc
    elif schema_ok(doc):
        # Left to the schema validator: only for values a plain check does not recognise.
        assert any(type(v).__module__ == "numpy" for v in doc.values()), doc


def _event(**changes):
    doc = {"uid": "u1", "descriptor": "d1", "seq_num": 1, "time": 1.5e9, "data": {"x": 1.0}, "timestamps": {"x": 1.5e9}}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not KeyError}


@settings(max_examples=1000, deadline=None)
@given(
    seq=st.one_of(st.integers(0, 2**40), st.integers(0, 2**20).map(float)),
    time=st.one_of(st.floats(allow_nan=True), st.integers(0, 2**33)),
    filled=st.one_of(st.just(KeyError), st.dictionaries(st.text(max_size=3), st.one_of(st.booleans(), st.text(max_size=4)), max_size=3)),
    data=st.dictionaries(st.text(max_size=4), values, max_size=4),
)
def test_accepts_the_plain_events_the_reader_produces(seq, time, filled, data):
    doc = _event(seq_num=seq, time=time, filled=filled, data=data, timestamps={k: 1.0 for k in data})
    assert schema_ok(doc)
    assert plainly_valid_event(doc)


def test_unsure_cases_are_left_to_the_schema():
    # Each of these is refused by the fast check: the writer then asks the schema validator.
    assert not plainly_valid_event(_event(seq_num=True))          # the schema refuses a boolean
    assert not schema_ok(_event(seq_num=True))
    assert not plainly_valid_event(_event(seq_num=1.5)) and not schema_ok(_event(seq_num=1.5))
    assert not plainly_valid_event(_event(uid=KeyError)) and not schema_ok(_event(uid=KeyError))
    assert not plainly_valid_event(_event(filled={"x": None})) and not schema_ok(_event(filled={"x": None}))
    assert not plainly_valid_event(_event(seq_num=numpy.int64(2)))   # numpy scalar: unsure
    assert not plainly_valid_event(_event(_id="abc")) and not schema_ok(_event(_id="abc"))
    assert plainly_valid_event(_event(time=math.nan))
