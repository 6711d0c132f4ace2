"""The migration job: migrate, skip what is present, rewrite half-written runs, verify, report.

Source: real RunEngine documents stored in mongomock in the v1 ``mongo_normalized``
layout. Target: a fresh child container of each served Tiled server (in-process,
SQLite/DuckDB and PostgreSQL-backed).
"""

from __future__ import annotations

import copy
import json
import uuid

import mongomock
import numpy
import pytest

from databroker_compat import Broker
from databroker_compat._redact import redact
from databroker_compat.exceptions import BadArgument
from databroker_compat.migration import LegacySource, migrate, verify
from databroker_compat.migration.state import JobState
from databroker_compat.migration.writer import make_writer
from migration_source import insert_recorded, record_source_runs


@pytest.fixture(scope="module")
def source_runs(data_dir):
    return record_source_runs(data_dir)


@pytest.fixture(scope="module")
def mongo_db(source_runs):
    db = mongomock.MongoClient()["metadatastore"]
    insert_recorded(db, source_runs)
    return db


@pytest.fixture
def source(mongo_db):
    return LegacySource(mongo_db, name="metadatastore")


def _container(served, prefix: str):
    return served.client.create_container(f"{prefix}-{uuid.uuid4().hex}")


def _snapshot(db) -> dict:
    return {name: list(db[name].find({}, sort=[("_id", 1)])) for name in db.list_collection_names()}


def _plain(doc) -> dict:
    """A document as JSON keeps it (tuples become lists)."""
    return json.loads(json.dumps(dict(doc)))


def _data(run, stream, key):
    return [e["data"][key] for e in run.events(stream)]


@pytest.mark.backends
def test_migrate_reads_back_through_broker(served, source_runs, mongo_db, source, tmp_path):
    before = _snapshot(mongo_db)
    target = _container(served, "migrated")
    report = migrate(source, target, progress=False, state_path=tmp_path / "state.jsonl", report_path=tmp_path / "r.json")

    assert sorted(r.uid for r in report.migrated) == sorted(r.uid for r in source_runs.values())
    assert report.failed == [] and report.ok, report.summary()
    assert report.verification is not None and len(report.verification.runs) == len(source_runs)
    assert report.events == sum(len(run.events()) for run in source_runs.values())
    assert _snapshot(mongo_db) == before, "the migration must not modify the source"

    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["counts"] == {"migrated": len(source_runs)} and saved["ok"] is True

    db = Broker(target, timezone="UTC")
    count = source_runs["count"]
    h = db[count.uid]
    assert _plain(h.start) == _plain(count.start)
    assert _plain(h.stop) == _plain(count.stop)
    table = h.table()
    assert list(table.index) == [1, 2, 3, 4]
    assert table["det1"].tolist() == _data(count, "primary", "det1")
    assert table["det2"].tolist() == _data(count, "primary", "det2")

    scan = source_runs["scan"]
    h = db[scan.uid]
    assert sorted(h.stream_names) == ["baseline", "primary"]
    assert h.table()["motor"].tolist() == _data(scan, "primary", "motor")
    assert h.table("baseline")["motor1"].tolist() == _data(scan, "baseline", "motor1")
    assert h.start["sample"] == {"name": "Si", "thickness_mm": 0.5}

    config = source_runs["config"]
    h = db[config.uid]
    assert sorted(d["uid"] for d in h.descriptors) == sorted(d["uid"] for d in config.descriptors())
    assert h.table()["det_cfg"].tolist() == _data(config, "primary", "det_cfg")

    images = source_runs["images"]
    h = db[images.uid]
    frames = list(h.data("img"))
    assert len(frames) == 3
    numpy.testing.assert_array_equal(frames[0], numpy.arange(36, dtype="float64").reshape(6, 6))
    assert h.table()["det"].tolist() == _data(images, "primary", "det")

    # The run that never got a stop is closed with exit_status "unknown", its events kept.
    nostop = source_runs["nostop"]
    h = db[nostop.uid]
    assert h.stop["exit_status"] == "unknown"
    assert h.stop["num_events"] == {"primary": 2}
    assert h.table()["det"].tolist() == _data(nostop, "primary", "det")
    nostop_outcome = next(r for r in report.runs if r.uid == nostop.uid)
    assert any("stop" in w for w in nostop_outcome.warnings)


def test_rerun_moves_nothing_twice(simple_served, source_runs, source, tmp_path):
    target = _container(simple_served, "rerun")
    state = tmp_path / "state.jsonl"
    first = migrate(source, target, progress=False, state_path=state)
    assert len(first.migrated) == len(source_runs)

    again = migrate(source, target, progress=False, state_path=state)
    assert again.migrated == [] and again.failed == []
    assert {r.reason for r in again.skipped} == {"recorded as done in the job's state file"}

    # Without the state file the target itself says every run is complete.
    fresh = migrate(source, target, progress=False, state_path=tmp_path / "other.jsonl")
    assert fresh.migrated == [] and fresh.failed == []
    assert len(fresh.skipped) == len(source_runs)
    assert {r.reason for r in fresh.skipped} == {"already present in the target with the same content"}
    assert sorted(target) == sorted(r.uid for r in source_runs.values())


@pytest.mark.backends
def test_half_written_run_is_rewritten(served, source_runs, source, tmp_path):
    target = _container(served, "partial")
    scan = source_runs["scan"]
    # What a writer killed mid-run leaves: start, descriptors, some events, no stop.
    writer = make_writer(target, batch_size=2)
    for name, doc in source.documents(scan.uid):
        if name == "stop":
            break
        writer(name, copy.deepcopy(doc))
    assert target[scan.uid].metadata.get("stop") is None

    report = migrate(source, target, uids=[scan.uid], progress=False, state_path=tmp_path / "s.jsonl")
    assert [r.status for r in report.runs] == ["rewritten"]
    assert report.verification.ok, report.verification.summary()
    h = Broker(target, timezone="UTC")[scan.uid]
    assert _plain(h.stop) == _plain(scan.stop)
    assert h.table()["det"].tolist() == _data(scan, "primary", "det")
    assert len(h.table("baseline")) == len(scan.events("baseline"))


def test_conflicting_run_is_reported_not_overwritten(simple_served, source_runs, source, tmp_path):
    target = _container(simple_served, "conflict")
    count = source_runs["count"]
    writer = make_writer(target)
    for name, doc in source.documents(count.uid):
        doc = copy.deepcopy(doc)
        if name == "start":
            doc["sample"] = "someone else's sample"
        writer(name, doc)

    report = migrate(source, target, uids=[count.uid], progress=False, state_path=tmp_path / "s.jsonl")
    assert [r.status for r in report.runs] == ["failed"]
    assert "different content" in report.runs[0].reason
    assert target[count.uid].metadata["start"]["sample"] == "someone else's sample"
    assert not report.ok and "FAILED" in report.summary()

    # The dry run decides as a real pass does, overwrite included, and touches nothing.
    dry = migrate(source, target, uids=[count.uid], progress=False, dry_run=True)
    assert [r.status for r in dry.runs] == ["failed"] and "different content" in dry.runs[0].reason
    dry_forced = migrate(source, target, uids=[count.uid], progress=False, dry_run=True, overwrite=True)
    assert [r.status for r in dry_forced.runs] == ["would-rewrite"]
    assert target[count.uid].metadata["start"]["sample"] == "someone else's sample"

    forced = migrate(source, target, uids=[count.uid], progress=False, overwrite=True, state_path=tmp_path / "s2.jsonl")
    assert [r.status for r in forced.runs] == ["rewritten"]
    assert target[count.uid].metadata["start"]["sample"] == "Cu foil"


def test_open_run_left_open_on_request(simple_served, source_runs, source, tmp_path):
    target = _container(simple_served, "open")
    nostop = source_runs["nostop"]
    report = migrate(source, target, uids=[nostop.uid], close_open_runs=False, progress=False, state_path=tmp_path / "s.jsonl")
    assert [r.status for r in report.runs] == ["migrated"]
    assert report.verification.ok, report.verification.summary()
    assert any("left open" in w for w in report.runs[0].warnings)
    run = target[nostop.uid]
    assert run.metadata.get("stop") is None
    assert _plain(run.metadata["start"]) == _plain(nostop.start)
    # Again, with a fresh state: the open run counts as complete, nothing is rewritten.
    again = migrate(source, target, uids=[nostop.uid], close_open_runs=False, progress=False, state_path=tmp_path / "t.jsonl")
    assert [r.status for r in again.runs] == ["skipped"]


def test_dry_run_writes_nothing(simple_served, source_runs, source, tmp_path):
    target = _container(simple_served, "dry")
    report = migrate(source, target, dry_run=True, progress=False, state_path=tmp_path / "s.jsonl")
    assert sorted(r.uid for r in report.runs) == sorted(r.uid for r in source_runs.values())
    assert {r.status for r in report.runs} == {"would-migrate"}
    assert list(target) == []
    assert not (tmp_path / "s.jsonl").exists()
    assert "(dry run)" in report.summary()


def test_dry_run_reads_the_state_file(simple_served, source_runs, source, tmp_path):
    target = _container(simple_served, "dry-state")
    count, scan = source_runs["count"], source_runs["scan"]
    state = tmp_path / "s.jsonl"
    migrate(source, target, uids=[count.uid, scan.uid], progress=False, state_path=state)
    # As an interrupted pass leaves it: scan recorded as started, count as done.
    with open(state, "a") as fh:
        fh.write(json.dumps({"uid": scan.uid, "status": "started"}) + "\n")
    before = state.read_text()
    dry = migrate(source, target, uids=[count.uid, scan.uid], progress=False, dry_run=True, state_path=state)
    statuses = {r.uid: (r.status, r.reason) for r in dry.runs}
    assert statuses[count.uid] == ("skipped", "recorded as done in the job's state file")
    # Present and complete: the real pass would skip it too, whatever the state file says.
    assert statuses[scan.uid] == ("skipped", "already present in the target with the same content")
    assert state.read_text() == before


def test_since_is_read_in_the_given_time_zone(simple_served, source_runs, source, tmp_path):
    """``since`` strings without a zone are read in ``timezone``, as ``db(since=...)`` reads them."""
    import datetime
    from zoneinfo import ZoneInfo

    from databroker_compat import _time

    times = sorted(run.start["time"] for run in source_runs.values())
    middle = (times[0] + times[1]) / 2
    naive = datetime.datetime.fromtimestamp(middle, ZoneInfo("America/New_York")).replace(tzinfo=None).isoformat()
    assert _time.to_timestamp(naive, "America/New_York") == pytest.approx(middle, abs=1e-5)
    target = _container(simple_served, "zone")
    in_new_york = migrate(source, target, since=naive, timezone="America/New_York", dry_run=True, progress=False)
    assert len(in_new_york.runs) == len(times) - 1
    # The same wall-clock time read in UTC is hours earlier: every run is after it.
    in_utc = migrate(source, target, since=naive, timezone="UTC", dry_run=True, progress=False)
    assert len(in_utc.runs) == len(times)


def test_verify_finds_a_changed_value(simple_served, source_runs, mongo_db, tmp_path):
    # A private copy of the source, changed after the migration (the job never writes to it).
    db = mongomock.MongoClient()["copy"]
    insert_recorded(db, source_runs, names=["count", "scan"])
    source = LegacySource(db)
    target = _container(simple_served, "verify")
    migrate(source, target, progress=False, verify=False, state_path=tmp_path / "s.jsonl")
    assert verify(source, target).ok

    count = source_runs["count"]
    desc = count.descriptors("primary")[0]["uid"]
    db["event"].update_one({"descriptor": desc, "seq_num": 2}, {"$set": {"data.det1": 123.0}})
    db["run_start"].update_one({"uid": count.uid}, {"$set": {"operator": "mallory"}})
    result = verify(source, target)
    assert not result.ok
    (bad,) = result.failed
    assert bad.uid == count.uid
    text = "; ".join(bad.mismatches)
    assert "checksum of 'det1' differs" in text
    assert "start differs in ['operator']" in text
    assert "det2" not in text


def test_bad_options_raise_clear_errors(simple_served, source):
    # Bad arguments are BadArgument, a ValueError (not MigrationError, a RuntimeError), with context.
    with pytest.raises(BadArgument, match="batch_size") as caught:
        migrate(source, simple_served.client, batch_size=0, progress=False)
    assert isinstance(caught.value, ValueError) and (caught.value.option, caught.value.value) == ("batch_size", 0)
    with pytest.raises(BadArgument, match="workers") as caught:
        migrate(source, simple_served.client, workers=0, progress=False)
    assert (caught.value.option, caught.value.value) == ("workers", 0)


def test_state_file_survives_a_torn_line(tmp_path):
    path = tmp_path / "state.jsonl"
    state = JobState(path)
    state.mark("a", "started")
    state.mark("a", "done", events=3)
    state.mark("b", "started")
    state.close()
    with open(path, "a") as fh:
        fh.write('{"uid": "c", "sta')  # killed mid-write
    again = JobState(path)
    assert again.status("a") == "done"
    assert again.status("b") == "started"
    assert again.status("c") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mongodb://user:pa55@host:27017/mds", "mongodb://user:***@host:27017/mds"),
        ("mongodb+srv://u:p%40ss@cluster.example/db?authSource=admin", "mongodb+srv://u:***@cluster.example/db?authSource=admin"),
        ("mongodb://host:27017/mds", "mongodb://host:27017/mds"),
        ("failed: http://t:8000/api/v1?api_key=secret123&x=1", "failed: http://t:8000/api/v1?api_key=***&x=1"),
        ("two mongodb://a:b@h1/x and mongodb://c:d@h2/y", "two mongodb://a:***@h1/x and mongodb://c:***@h2/y"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_migration_package_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, databroker_compat.migration as m; "
        "assert callable(m.migrate) and callable(m.verify); "
        "print(sorted(x for x in ('pymongo', 'pandas', 'xarray', 'dask', 'bluesky_tiled_plugins', 'tqdm') "
        "if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_migrate_with_a_root_map(simple_served, source_runs, tmp_path):
    """Resources under a dead root: the dry run finds the files missing; with the root map the run is whole."""
    db = mongomock.MongoClient()["moved"]
    insert_recorded(db, source_runs, names=["images"])
    images = source_runs["images"]
    real = db["resource"].find_one()["root"]
    db["resource"].update_many({}, {"$set": {"root": "/GPFS/xf99id/old"}})
    target = _container(simple_served, "rootmap")
    source = LegacySource(db)

    dry = migrate(source, target, progress=False, dry_run=True)
    (planned,) = dry.runs
    assert planned.missing_frames == {"primary": {"img": [1, 2, 3]}}
    assert "files missing under '/GPFS/xf99id/old'" in planned.reason
    assert dry.incomplete == [planned] and dry.exit_code() == 1
    assert migrate(source, target, progress=False, dry_run=True, allow_missing_files=True).exit_code() == 0

    report = migrate(source, target, progress=False, root_map=[f"/GPFS/xf99id/old={real}"], state_path=tmp_path / "s.jsonl")
    assert report.ok, report.summary()
    (outcome,) = report.runs
    assert (outcome.status, outcome.missing_frames) == ("migrated", {})
    frames = list(Broker(target, timezone="UTC")[images.uid].data("img"))
    assert len(frames) == 3
    for frame in frames:
        numpy.testing.assert_array_equal(frame, numpy.arange(36, dtype="float64").reshape(6, 6))
