"""Verification of migrated runs covers array data, and a run that does not verify is a failed run.

Source: legacy runs recorded by a real RunEngine (``ophyd.sim.SynSignalWithRegistry``
frames saved as NPY_SEQ files, plus ``det``) through suitcase-mongo's ``mongo_normalized``
Serializer into mongomock, and hand-built variants stored the way a legacy database held
them. Target: a fresh child container of each served Tiled server, written by the real
migration job.

The files the target reads are the recorded ones (directory ``B``). Where a test needs
the source to differ from the target, verification reads the source through a root map
``B=A`` from a copy ``A`` that the test changed (or, for a tampered target, a pristine
copy while ``B`` is changed).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mongomock
import numpy
import pytest

from databroker_compat import Broker
from databroker_compat.migration import LegacySource, migrate, verify
from databroker_compat.migration.frames import RootMap
from databroker_compat.migration.job import run_job
from databroker_compat.migration.options import MigrationOptions
from databroker_compat.migration.state import JobState
from databroker_compat.migration.verify import verify_run

T0 = 1_500_000_000.0


@dataclass
class ImageRun:
    """A recorded image run: its uid, the directory of its files, the file of each event."""

    uid: str
    directory: Path
    files: dict[int, Path] = field(default_factory=dict)  # seq_num -> the file its datum names


def record_image_run(mds, assets, directory: Path, frame) -> ImageRun:
    """Record ``count([img, det], n)`` with a RunEngine into mds/assets; ``frame(i)`` saved as NPY_SEQ files.

    ``frame`` is called with 0, 1, 2, ... (the signal reads once when it is made, then
    once per trigger): every event has a frame of its own. The files tell which.
    """
    import itertools

    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import SynSignalWithRegistry, det
    from suitcase.mongo_normalized import Serializer

    n, make = frame
    directory.mkdir(parents=True, exist_ok=True)
    counter = itertools.count()
    img = SynSignalWithRegistry(func=lambda: make(next(counter)), name="img", save_path=str(directory))
    RE = RunEngine({}, call_returns_result=False)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(Serializer(mds, assets))
    RE.subscribe(lambda name, doc: docs.append((name, copy.deepcopy(doc))))
    RE(bp.count([img, det], n))
    uid = next(d for n, d in docs if n == "start")["uid"]
    run = ImageRun(uid, directory)
    datums = {d["datum_id"]: d for n, d in docs if n == "datum"}
    resource = next(d for n, d in docs if n == "resource")
    for n, doc in docs:
        if n == "event":
            index = datums[doc["data"]["img"]]["datum_kwargs"]["index"]
            run.files[doc["seq_num"]] = Path(resource["root"]) / f"{resource['resource_path']}_{index}.npy"
    return run


def copy_files(run: ImageRun, to: Path) -> Path:
    """A copy of the run's directory (same file names), the source side of a root map."""
    shutil.copytree(run.directory, to)
    return to


def root_map(run: ImageRun, copy_dir: Path) -> RootMap:
    return RootMap.parse([f"{run.directory}={copy_dir}"])


def _plain_run(data: list[dict], data_keys: dict) -> list[tuple[str, dict]]:
    """A small legacy run as documents (events in the v1 layout), for the hand-built variants."""
    uid, desc = str(uuid.uuid4()), str(uuid.uuid4())
    docs = [
        ("start", {"uid": uid, "time": T0, "scan_id": 3, "plan_name": "count"}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": T0 + 0.5, "name": "primary",
                        "data_keys": data_keys, "configuration": {}, "hints": {}, "object_keys": {}}),
    ]
    for i, values in enumerate(data, 1):
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc, "seq_num": i, "time": T0 + i,
                               "data": values, "timestamps": {k: T0 + i - 0.1 for k in values}, "filled": {}}))
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": T0 + len(data) + 1,
                          "exit_status": "success", "reason": "", "num_events": {"primary": len(data)}}))
    return docs


def store(mds, docs: list[tuple[str, dict]]) -> str:
    collections = {"start": "run_start", "descriptor": "event_descriptor", "event": "event", "stop": "run_stop"}
    for name, doc in docs:
        mds[collections[name]].insert_one(copy.deepcopy(doc))
    return docs[0][1]["uid"]


def _frames(n: int, shape=(6, 5), dtype="float64"):
    """``n`` events whose frames differ: ``(n, frame(i))`` for :func:`record_image_run`."""
    return n, lambda i: (numpy.arange(numpy.prod(shape)).reshape(shape) * 3 + 100 * i).astype(dtype)


@dataclass
class Legacy:
    mds: object
    assets: object
    source: LegacySource
    root: Path
    runs: dict[str, ImageRun]
    plain: dict[str, str]


@pytest.fixture(scope="module")
def legacy(data_dir) -> Legacy:
    client = mongomock.MongoClient()
    mds, assets = client["metadatastore"], client["assets"]
    root = data_dir / f"verify-{uuid.uuid4().hex[:8]}"
    runs = {
        "four": record_image_run(mds, assets, root / "four", _frames(4)),
        "ten": record_image_run(mds, assets, root / "ten", _frames(10)),
        "tamper": record_image_run(mds, assets, root / "tamper", _frames(5)),
        # the defects of issue 14, made the way an operator met them
        "uint16": record_image_run(mds, assets, root / "uint16", _frames(3, dtype="uint16")),
        "reshaped": record_image_run(mds, assets, root / "reshaped", _frames(3, shape=(8, 10))),
        "gap": record_image_run(mds, assets, root / "gap", _frames(4)),
    }
    # Declared [10, 8], the files hold 8x10 frames.
    desc = mds["event_descriptor"].find_one({"run_start": runs["reshaped"].uid})
    mds["event_descriptor"].update_one({"_id": desc["_id"]}, {"$set": {"data_keys.img.shape": [10, 8]}})
    # The datum of the second event was never written (the event still refers to it).
    desc = mds["event_descriptor"].find_one({"run_start": runs["gap"].uid})
    second = mds["event"].find_one({"descriptor": desc["uid"], "seq_num": 2})
    assets["datum"].delete_one({"datum_id": second["data"]["img"]})
    plain = {
        # y is missing from some rows (but not the first: the writer takes the columns from it)
        "missing_key": store(mds, _plain_run(
            [{"x": 1.0, "y": 10.0}, {"x": 2.0}, {"x": 3.0, "y": 30.0}, {"x": 4.0}],
            {"x": {"dtype": "number", "shape": [], "source": "PV:x"},
             "y": {"dtype": "number", "shape": [], "source": "PV:y"}})),
        # an inline array whose lengths differ: the writer pads the short one with NaN,
        # so this run can never verify
        "ragged": store(mds, _plain_run(
            [{"x": 1.0, "spec": list(range(20))}, {"x": 2.0, "spec": list(range(21))}],
            {"x": {"dtype": "number", "shape": [], "source": "PV:x"},
             "spec": {"dtype": "array", "shape": [20], "source": "PV:spec"}})),
    }
    return Legacy(mds, assets, LegacySource(mds, assets), root, runs, plain)


def _container(served, prefix: str):
    return served.client.create_container(f"{prefix}-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def migrated(served, legacy, tmp_path_factory):
    """The recorded image runs (not the hand-built ones), migrated by the job into a fresh container."""
    target = _container(served, "verify")
    uids = [legacy.runs[name].uid for name in ("four", "ten")]
    report = migrate(legacy.source, target, uids=uids, progress=False,
                     state_path=tmp_path_factory.mktemp("state") / "s.jsonl")
    assert [r.status for r in report.runs] == ["migrated", "migrated"], report.summary()
    assert report.verification.ok, report.verification.summary()
    return target


def _changed_copy(legacy: Legacy, name: str, tmp_path: Path, change) -> RootMap:
    """A copy of run ``name``'s files with ``change(files_by_seq)`` applied; the root map to read it."""
    run = legacy.runs[name]
    copy_dir = copy_files(run, tmp_path / f"{name}-copy")
    change({seq: copy_dir / path.name for seq, path in run.files.items()})
    return root_map(run, copy_dir)


# -- the source differs from what the target serves -------------------------------------


def test_the_migrated_image_runs_verify_clean(migrated, legacy, tmp_path):
    for name in ("four", "ten"):
        run = legacy.runs[name]
        result = verify_run(legacy.source, migrated, run.uid)
        assert result.ok, result.mismatches
        assert result.frames_checked["primary/img"] >= 2
        # Through a root map onto an exact copy of the files: the same answer.
        same = verify_run(legacy.source, migrated, run.uid, root_map=_changed_copy(legacy, name, tmp_path, lambda f: None))
        assert same.ok, same.mismatches


def test_a_wrong_event_to_frame_mapping_fails(migrated, legacy, tmp_path):
    def swap(files):
        first, second = files[1].read_bytes(), files[2].read_bytes()
        files[1].write_bytes(second)
        files[2].write_bytes(first)

    mapping = _changed_copy(legacy, "four", tmp_path, swap)
    result = verify_run(legacy.source, migrated, legacy.runs["four"].uid, root_map=mapping, verify_data="full")
    assert not result.ok
    text = "; ".join(result.mismatches)
    assert "'img': the frames of 2 of 4 compared events differ from the source files (events 1, 2)" in text
    assert "event 2's frame is served for event 1" in text and "event→frame mapping is wrong" in text
    assert "shape" not in text and "dtype" not in text


def test_a_dtype_mismatch_fails(migrated, legacy, tmp_path):
    def as_uint16(files):
        for path in files.values():
            numpy.save(path, numpy.load(path).astype("uint16"))

    mapping = _changed_copy(legacy, "four", tmp_path, as_uint16)
    result = verify_run(legacy.source, migrated, legacy.runs["four"].uid, root_map=mapping)
    assert not result.ok
    # The values are equal: only the dtype is reported.
    assert result.mismatches == ["stream 'primary': 'img': dtype uint16 in the source files, float64 in the target"]


def test_a_shape_mismatch_fails(migrated, legacy, tmp_path):
    def transposed(files):
        for path in files.values():
            numpy.save(path, numpy.ascontiguousarray(numpy.load(path).T))

    mapping = _changed_copy(legacy, "four", tmp_path, transposed)
    result = verify_run(legacy.source, migrated, legacy.runs["four"].uid, root_map=mapping)
    assert not result.ok
    text = "; ".join(result.mismatches)
    assert "'img': frame shape (5, 6) in the source files (events 1, " in text and "(6, 5) in the target" in text


def test_a_tampered_frame_in_the_target_fails(served, legacy, tmp_path):
    run = legacy.runs["tamper"]
    target = _container(served, "tamper")
    report = migrate(legacy.source, target, uids=[run.uid], progress=False, state_path=tmp_path / "s.jsonl")
    assert report.ok, report.summary()
    pristine = root_map(run, copy_files(run, tmp_path / "pristine"))
    victim = run.files[1]  # the first frame: the sample checks it too
    original = victim.read_bytes()
    try:
        frame = numpy.load(victim)
        frame[2, 3] += 1.0
        numpy.save(victim, frame)
        for level in ("sample", "full"):
            result = verify(legacy.source, target, uids=[run.uid], root_map=pristine, verify_data=level)
            assert not result.ok
            (bad,) = result.failed
            assert bad.mismatches == [
                "stream 'primary': 'img': the frames of 1 of "
                f"{bad.frames_checked['primary/img']} compared events differ from the source files (event 1)"
            ]
    finally:
        victim.write_bytes(original)
    assert verify(legacy.source, target, uids=[run.uid], root_map=pristine).ok


def _array_reads(urls: list[str]) -> list[tuple[int, int]]:
    """The row ranges of the ``array/full`` requests among ``urls``."""
    from urllib.parse import parse_qs, urlparse

    reads = []
    for url in urls:
        parsed = urlparse(url)
        if "/array/full/" in parsed.path:
            rows = parse_qs(parsed.query)["slice"][0].split(",")[0]
            start, stop = (int(v) for v in rows.split(":"))
            reads.append((start, stop))
    return reads


def test_full_and_sample_check_the_frames_they_promise(migrated, legacy, tmp_path, count_requests):
    run = legacy.runs["ten"]
    with count_requests(migrated) as full_requests:
        full = verify_run(legacy.source, migrated, run.uid, verify_data="full")
    assert full.ok and full.verify_data == "full"
    assert full.frames_checked == {"primary/img": 10}
    assert sum(stop - start for start, stop in _array_reads(full_requests.urls)) == 10
    assert full.requests == full_requests.count - 1  # all but the lookup of the run itself

    seen = set()
    for seed in range(8):
        with count_requests(migrated) as sample_requests:
            sample = verify_run(legacy.source, migrated, run.uid, rng=random.Random(seed))
        assert sample.ok
        checked = sample.checked_events["primary/img"]
        # One resource: its first and last frame, and one at random.
        assert checked[0] == 1 and checked[-1] == 10 and 2 <= len(checked) <= 3
        assert sample.frames_checked == {"primary/img": len(checked)}
        reads = _array_reads(sample_requests.urls)
        assert sorted(r for start, stop in reads for r in range(start, stop)) == [s - 1 for s in checked]
        assert sample.requests == sample_requests.count - 1
        seen.update(checked[1:-1])
    assert len(seen) > 1, "the random frame is not always the same"

    # A changed middle frame: full finds it; the sample only if it chose that frame.
    def change_fifth(files):
        frame = numpy.load(files[5])
        numpy.save(files[5], frame + 1)

    mapping = _changed_copy(legacy, "ten", tmp_path, change_fifth)
    assert not verify_run(legacy.source, migrated, run.uid, root_map=mapping, verify_data="full").ok
    for seed in range(8):
        sample = verify_run(legacy.source, migrated, run.uid, root_map=mapping, rng=random.Random(seed))
        assert sample.ok == (5 not in sample.checked_events["primary/img"]), sample.mismatches


def test_job_verifies_every_frame_with_full(served, legacy, tmp_path):
    run = legacy.runs["ten"]
    target = _container(served, "full")
    options = MigrationOptions(verify_data="full", progress=False)
    report = run_job(legacy.source, target, options, uids=[run.uid], state_path=tmp_path / "s.jsonl")
    assert report.ok, report.summary()
    (checked,) = report.verification.runs
    assert checked.frames_checked == {"primary/img": 10} and checked.verify_data == "full"


# -- the defects of issue 14: verification agrees with what Broker serves -----------------


def _served_as_in_files(target, run: ImageRun, datums_kept) -> bool:
    """Whether Broker serves, for every event, the frame of its own file (same values, shape, dtype)."""
    h = Broker(target)[run.uid]
    frames = list(h.table(fill=True)["img"])
    for seq, served in enumerate(frames, 1):
        if seq not in datums_kept:
            if served is not None and not numpy.isnan(numpy.asarray(served, dtype=float)).all():
                return False
            continue
        expected = numpy.load(run.files[seq])
        served = numpy.asarray(served)
        if served.shape != expected.shape or served.dtype != expected.dtype:
            return False
        if not numpy.array_equal(served, expected):
            return False
    return True


@pytest.mark.backends
@pytest.mark.parametrize("name", ["uint16", "reshaped", "gap"])
def test_verification_agrees_with_what_broker_serves(served, legacy, tmp_path, name):
    run = legacy.runs[name]
    kept = [s for s in run.files if not (name == "gap" and s == 2)]
    target = _container(served, name)
    report = migrate(legacy.source, target, uids=[run.uid], progress=False, state_path=tmp_path / "s.jsonl")
    as_in_files = _served_as_in_files(target, run, kept)
    checked = verify(legacy.source, target, uids=[run.uid], verify_data="full")
    assert checked.ok == as_in_files, (as_in_files, checked.summary())
    # The job's own verification said the same: a run that does not verify is a failed run.
    (outcome,) = report.runs
    assert (outcome.status == "failed") == (not as_in_files), (outcome.status, outcome.reason)
    if not as_in_files:
        assert "verification failed after the run was written again" in outcome.reason
        assert not report.ok


# -- rows that lack a key; the retry after a failed verification ---------------------------


def test_rows_that_lack_a_key_verify_clean(served, legacy, tmp_path):
    uid = legacy.plain["missing_key"]
    target = _container(served, "missing-key")
    state = tmp_path / "s.jsonl"
    report = migrate(legacy.source, target, uids=[uid], progress=False, state_path=state)
    assert [r.status for r in report.runs] == ["migrated"], report.summary()
    assert report.ok and report.verification.ok, report.summary()
    assert JobState(state).status(uid) == "done"
    assert verify(legacy.source, target, uids=[uid]).ok
    table = Broker(target)[uid].table()
    assert table["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table["y"].tolist()[::2] == [10.0, 30.0] and numpy.isnan(table["y"].tolist()[1::2]).all()


def test_a_run_that_does_not_verify_after_the_rewrite_fails(served, legacy, tmp_path):
    uid = legacy.plain["ragged"]
    target = _container(served, "ragged")
    state = tmp_path / "s.jsonl"
    report = migrate(legacy.source, target, uids=[uid], progress=False, state_path=state)
    (outcome,) = report.runs
    assert outcome.status == "failed" and outcome.attempts == 2
    assert outcome.reason.startswith("verification failed after the run was written again: ")
    assert "'spec': frame shape (20,) in the source events (event 1), (21,) in the target" in outcome.reason
    assert any("the run in the target did not verify" in w for w in outcome.warnings)
    assert not report.ok and report.skipped == [] and report.migrated == []
    assert "skipped as present: 0" in report.summary() and "failed: 1" in report.summary()
    assert not report.verification.ok and [v.uid for v in report.verification.failed] == [uid]
    # Not marked done: the next pass of the job takes it again, and fails it again.
    assert JobState(state).status(uid) == "failed"
    lines = [json.loads(line) for line in state.read_text().splitlines()]
    assert [line["status"] for line in lines if line["uid"] == uid][-1] == "failed"
    again = migrate(legacy.source, target, uids=[uid], progress=False, state_path=state)
    assert [r.status for r in again.runs] == ["failed"], again.summary()
    assert "verification failed after the run was written again" in again.runs[0].reason
    assert JobState(state).status(uid) == "failed"
    assert not verify(legacy.source, target, uids=[uid]).ok


def test_missing_frames_must_read_as_the_fill_value(migrated, legacy):
    run = legacy.runs["four"]
    result = verify_run(legacy.source, migrated, run.uid)
    assert result.ok
    # Told that event 3's frame could not be kept, verification expects the fill value there.
    from databroker_compat.migration.tally import SourceTally
    from databroker_compat.migration.verify import compare_run

    tally = SourceTally(verify_data="full")
    for _ in tally.tee(legacy.source.documents(run.uid)):
        pass
    # 'img' is datum-backed (its files stay external): an event listed as arriving without
    # its frame carries no value and must have no row; a row served there is a mismatch.
    told = compare_run(tally, migrated[run.uid], missing_frames={"primary": {"img": [3]}})
    assert told.mismatches == [
        "stream 'primary': 'img': event 3 arrived without their frames (they read as None), "
        "yet the target serves a frame there"
    ]


def test_a_run_begun_by_an_earlier_pass_is_skipped_only_if_it_verifies(served, legacy, tmp_path):
    from databroker_compat.migration.writer import make_writer

    good, bad = (legacy.runs[name].uid for name in ("four", "ten"))
    target = _container(served, "begun")
    # What an earlier pass left: both runs whole (same documents, same row counts), but
    # in one of them a value went wrong; the pass was killed before it recorded either.
    for uid in (good, bad):
        writer = make_writer(target)
        for name, doc in legacy.source.documents(uid):
            doc = copy.deepcopy(doc)
            if uid == bad and name == "event" and doc["seq_num"] == 4:
                doc["data"]["det"] = -1.0
            writer(name, doc)
    state = tmp_path / "s.jsonl"
    started = JobState(state)
    started.mark(good, "started")
    started.mark(bad, "started")
    started.close()
    report = migrate(legacy.source, target, uids=[good, bad], progress=False, state_path=state)
    outcomes = {r.uid: r for r in report.runs}
    assert outcomes[good].status == "skipped"
    assert outcomes[good].reason == "already present in the target with the same content (verified)"
    assert outcomes[bad].status == "rewritten", outcomes[bad]
    assert any("checksum of 'det' differs" in w for w in outcomes[bad].warnings)
    assert report.ok and len(report.verification.runs) == 2, report.summary()
    assert {JobState(state).status(u) for u in (good, bad)} == {"done"}
    assert -1.0 not in Broker(target)[bad].table()["det"].tolist()
