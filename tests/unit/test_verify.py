"""Verification without a server: checksums, fill values, and what the source tally keeps."""

from __future__ import annotations

import math
import random

import numpy
import pytest

from databroker_compat.exceptions import BadArgument, MigrationError
from databroker_compat.migration.checksums import (
    StreamChecksums,
    fill_value,
    frame_digest,
    frame_facts,
    is_absent,
    is_fill,
)
from databroker_compat.migration.tally import DatumRef, SourceTally
from databroker_compat.migration.verify import RunVerification, VerificationReport
from databroker_compat.migration.worker import VerificationFailed, is_transient


def test_frame_digest_is_the_values_and_the_shape():
    frame = numpy.arange(12, dtype="uint16").reshape(3, 4)
    assert frame_digest(frame) == frame_digest(frame.astype("float64")) == frame_digest(frame.tolist())
    assert frame_digest(frame) != frame_digest(frame.reshape(4, 3))  # the same bytes, reshaped
    changed = frame.copy()
    changed[1, 2] += 1
    assert frame_digest(frame) != frame_digest(changed)
    halves = numpy.arange(4) / 2
    assert frame_digest(halves) == frame_digest(halves.astype("float32")) != frame_digest(numpy.arange(4))
    nan = numpy.array([numpy.nan, -0.0])
    assert frame_digest(nan) == frame_digest(numpy.array([-numpy.nan, 0.0]))
    assert frame_digest(["a", "b"]) != frame_digest(["a", "c"])


def test_frame_facts_keep_the_dtype_apart_from_the_values():
    a, b = frame_facts(numpy.zeros((2, 2), "uint16")), frame_facts(numpy.zeros((2, 2)))
    assert a.digest == b.digest and a.shape == b.shape == (2, 2)
    assert (a.dtype, b.dtype) == ("<u2", "<f8")
    assert frame_facts([[1, 2]], has_dtype=False).dtype == ""


def test_fill_values():
    assert math.isnan(fill_value("float32")) and fill_value("<u2") == 0 and fill_value("int64") == 0
    assert fill_value("bool") is False and fill_value("<U3") is None
    assert is_fill(numpy.full((2, 3), numpy.nan)) and is_fill(numpy.zeros(4, "i4"))
    assert not is_fill(numpy.array([numpy.nan, 1.0])) and not is_fill(numpy.array(["x"]))


def test_values_absent_add_nothing_to_a_column_checksum():
    assert is_absent(None) and is_absent(math.nan) and not is_absent(0) and not is_absent("")
    source, target = StreamChecksums(), StreamChecksums()
    # The source's events: y absent from the second; the target's table: null (or NaN) there.
    source.add("y", 1, 10.0)
    source.add("y", 3, 30)
    for seq, value in ((1, 10.0), (2, None), (3, 30.0)):
        target.add("y", seq, value)
    assert source.sums == target.sums
    target.add("y", 4, 40.0)
    assert source.sums != target.sums
    # Values on a different event do not cancel out.
    moved = StreamChecksums()
    moved.add("y", 2, 10.0)
    moved.add("y", 3, 30.0)
    assert moved.sums != source.sums
    # Arrays in a column: equal values, whatever the container.
    a, b = StreamChecksums(), StreamChecksums()
    a.add("e", 1, [1, 2])
    b.add("e", 1, numpy.array([1.0, 2.0]))
    assert a.sums == b.sums


def _image_documents(n_events: int, n_resources: int = 1, *, without=()):
    """Documents of one stream with an external key ``img`` over ``n_resources`` resources."""
    yield "start", {"uid": "run", "time": 0.0}
    yield "descriptor", {
        "uid": "d", "name": "primary", "run_start": "run", "time": 0.0,
        "data_keys": {"img": {"dtype": "array", "shape": [2, 2], "source": "s", "external": "FILESTORE:"},
                      "det": {"dtype": "number", "shape": [], "source": "s"},
                      "line": {"dtype": "array", "shape": [3], "source": "s", "dtype_numpy": "<i4"}},
    }
    per = -(-n_events // n_resources)
    for seq in range(1, n_events + 1):
        resource = f"r{(seq - 1) // per}"
        if (seq - 1) % per == 0:
            yield "resource", {"uid": resource, "spec": "NPY_SEQ", "root": "/data", "resource_path": resource,
                               "resource_kwargs": {}}
        data = {"det": float(seq), "line": [seq, seq, seq]}
        if seq not in without:
            yield "datum", {"datum_id": f"{resource}/{seq}", "resource": resource, "datum_kwargs": {"index": seq}}
            data["img"] = f"{resource}/{seq}"
        yield "event", {"uid": f"e{seq}", "descriptor": "d", "seq_num": seq, "time": float(seq),
                        "data": data, "timestamps": {k: float(seq) for k in data}}
    yield "stop", {"uid": "stop", "run_start": "run", "time": 99.0, "exit_status": "success"}


def _tally(docs, **kwargs) -> SourceTally:
    tally = SourceTally(**kwargs)
    for _ in tally.tee(docs):
        pass
    return tally


def test_the_sample_is_first_last_and_one_at_random_per_resource():
    tally = _tally(_image_documents(30, n_resources=3), rng=random.Random(7))
    img = tally.arrays.keys[("primary", "img")]
    assert img.external and img.carried == 30 and img.last_seq == 30 and img.without == []
    picks = img.picks()
    seqs = [p.seq for p in picks]
    for first, last in ((1, 10), (11, 20), (21, 30)):
        in_resource = [s for s in seqs if first <= s <= last]
        assert in_resource[0] == first and in_resource[-1] == last and 2 <= len(in_resource) <= 3
    assert all(isinstance(p.ref, DatumRef) for p in picks)
    assert picks[0].ref.resource["uid"] == "r0" and picks[0].ref.datum_kwargs == {"index": 1}
    # Inline arrays: one group per key, their facts taken as they go by.
    line = tally.arrays.keys[("primary", "line")]
    assert not line.external and line.declared_dtype == "<i4"
    assert [p.seq for p in line.picks()][::len(line.picks()) - 1] == [1, 30]
    assert ("primary", "det") not in tally.arrays.keys  # scalars: the table's checksums
    assert tally.streams["primary"].events == 30 and set(tally.streams["primary"].sums) == {"det", "line"}


def test_the_random_frame_is_uniform():
    counts = dict.fromkeys(range(2, 10), 0)
    for seed in range(800):
        tally = _tally(_image_documents(10), rng=random.Random(seed))
        middle = [p.seq for p in tally.arrays.keys[("primary", "img")].picks()][1:-1]
        for seq in middle:
            counts[seq] += 1
    assert all(50 < n < 130 for n in counts.values()), counts


def test_full_keeps_every_event_and_events_without_a_value_are_listed():
    tally = _tally(_image_documents(12, without={4, 5}), verify_data="full")
    img = tally.arrays.keys[("primary", "img")]
    assert [p.seq for p in img.picks()] == [s for s in range(1, 13) if s not in (4, 5)]
    assert img.without == [4, 5] and img.carried == 10 and img.unresolved == []


def test_an_event_whose_datum_never_came_is_unresolved():
    docs = [(n, d) for n, d in _image_documents(3) if not (n == "datum" and d["datum_id"] == "r0/2")]
    img = _tally(docs).arrays.keys[("primary", "img")]
    assert img.unresolved == ["r0/2"] and img.carried == 3


def test_a_bad_verify_data_level_is_refused():
    with pytest.raises(BadArgument, match="verify_data must be one of sample, full") as caught:
        SourceTally(verify_data="some")
    assert caught.value.option == "verify_data" and isinstance(caught.value, ValueError)


def test_a_failed_verification_is_not_retried_as_transient():
    verification = RunVerification("u", False, ["stream 'primary': checksum of 'det' differs"])
    failed = VerificationFailed(verification, events=3, warnings=["w"])
    assert isinstance(failed, MigrationError) and failed.uid == "u" and failed.events == 3
    assert "checksum of 'det' differs" in str(failed)
    assert not is_transient(failed)


def test_the_report_counts_frames_and_requests():
    report = VerificationReport([
        RunVerification("a", True, frames_checked={"primary/img": 3}, requests=6),
        RunVerification("b", False, ["x"], frames_checked={"primary/img": 2, "primary/cam": 1}, requests=5),
    ])
    assert report.frames_checked == 6 and report.requests == 11
    assert report.to_dict()["frames_checked"] == 6 and [r["uid"] for r in report.to_dict()["failed"]] == ["b"]
    assert report.summary().splitlines()[0] == (
        "verified 2 run(s): 1 ok, 1 mismatched (6 frames of array data compared; 11 requests)"
    )
