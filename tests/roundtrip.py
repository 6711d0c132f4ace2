"""The documents() round-trip comparison: re-emitted documents against what the RunEngine emitted.

Used by tests/test_documents.py (``h.documents()`` of each recorded run) and
tests/test_live.py (what ``db.subscribe`` delivers while the run is written): the same
order, the same start, stop and descriptors, and the same events but for the ids Tiled
cannot keep (event uids, datum ids), which must be the documented derived ones.
"""

from __future__ import annotations

import numpy
from event_model import DocumentNames, schema_validators

from databroker_compat.layout import datum_id_for, event_uid_for

DESCRIPTOR_FIELDS = ("uid", "time", "name", "run_start", "data_keys", "configuration", "object_keys", "hints")


def plain(value):
    """numpy scalars/arrays and tuples as the JSON-like values Tiled gives back."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, numpy.generic):
        return value.item()
    return value


def validate(docs) -> None:
    for name, doc in docs:
        schema_validators[DocumentNames[name]].validate(plain(doc))


def emitted(run):
    """What the RunEngine emitted and Tiled holds.

    A run whose stop never reached the writer has no events on the server: the writer
    sends them at the stop document (or every ``batch_size`` events).
    """
    if run.written_without_stop:
        return [(n, d) for n, d in run.docs if n in ("start", "descriptor")]
    return list(run.docs)


def order_key(name, doc, datum_ids):
    """A label of each document that does not depend on ids Tiled cannot keep."""
    if name == "event":
        return name, doc["descriptor"], doc["seq_num"]
    if name == "datum":
        return name, datum_ids[doc["datum_id"]]
    if name == "resource":
        return (name,)
    return name, doc.get("uid")


def datum_positions(docs):
    """datum id -> (data key, seq_num) of the event that references it."""
    positions = {}
    for name, doc in docs:
        if name == "event":
            for key, value in doc["data"].items():
                if isinstance(value, str) and "/" in value:
                    positions[value] = (key, doc["seq_num"])
    return positions


def assert_round_trip(docs, run) -> None:
    """``docs`` (plain ``(name, doc)`` pairs) are the documents of ``run`` (a RecordedRun)."""
    validate(docs)
    expected = emitted(run)

    # Order: the same sequence of documents, labelled without the ids Tiled drops.
    got_positions, want_positions = datum_positions(docs), datum_positions(expected)
    assert [order_key(n, d, got_positions) for n, d in docs] == [order_key(n, d, want_positions) for n, d in expected]

    # start and stop: identical.
    assert docs[0] == ("start", plain(run.start))
    if run.written_without_stop:
        assert docs[-1][0] != "stop"
    else:
        assert docs[-1] == ("stop", plain(run.stop))

    # Descriptors: identical in every field the RunEngine set.
    got_descriptors = [d for n, d in docs if n == "descriptor"]
    want_descriptors = run.descriptors()
    assert len(got_descriptors) == len(want_descriptors)
    for got, want in zip(got_descriptors, want_descriptors, strict=True):
        for field in DESCRIPTOR_FIELDS:
            assert plain(got[field]) == plain(want[field]), field
        assert plain(got) == plain(want)

    # Events: seq_num, time, descriptor, data, timestamps identical; uid derived.
    external = {key for d in want_descriptors for key, spec in d["data_keys"].items() if spec.get("external")}
    got_events = [d for n, d in docs if n == "event"]
    want_events = [] if run.written_without_stop else run.events()
    assert len(got_events) == len(want_events)
    for got, want in zip(got_events, want_events, strict=True):
        assert got["seq_num"] == want["seq_num"]
        assert got["time"] == want["time"]
        assert got["descriptor"] == want["descriptor"]
        assert got["uid"] == event_uid_for(want["descriptor"], want["seq_num"])
        assert set(got["data"]) == set(want["data"])
        for key, value in want["data"].items():
            if key in external:
                # The datum id Tiled cannot keep, derived from run, stream and frame.
                stream = next(d["name"] for d in want_descriptors if d["uid"] == want["descriptor"])
                assert got["data"][key] == datum_id_for(run.uid, stream, key, want["seq_num"] - 1)
                assert got["timestamps"][key] == got["time"]
            else:
                assert numpy.array_equal(numpy.asarray(got["data"][key]), numpy.asarray(value)), key
                assert got["timestamps"][key] == want["timestamps"][key], key
        assert got["filled"] == want["filled"]
