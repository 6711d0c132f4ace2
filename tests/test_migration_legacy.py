"""Legacy MongoDB runs, and every known quirk of the legacy layouts, migrated and read back.

Real runs come from a RunEngine through suitcase-mongo's ``mongo_normalized`` Serializer
into mongomock; each quirk is a hand-built variant (tests/legacy_data.py). Every test
migrates with ``write_run(container, LegacySource.documents(uid))`` into this module's
own child container of the served catalog and reads the run back through ``Broker``.
"""

from __future__ import annotations

import json
import math
import uuid
import warnings
from dataclasses import dataclass

import numpy
import pytest

import legacy_data as ld
from databroker_compat import Broker, MigrationError
from databroker_compat.migration.source import LegacySource
from databroker_compat.migration.target import delete_run, run_state
from databroker_compat.migration.writer import make_writer, write_run

MIGRATED_WITHOUT_STOP = "migrated without a stop document"


@dataclass
class Legacy:
    source: LegacySource
    v0_source: LegacySource
    recorded: dict
    quirks: dict
    mds: object
    assets: object


@pytest.fixture(scope="module")
def legacy(data_dir) -> Legacy:
    import mongomock

    client = mongomock.MongoClient()
    mds, assets = client["metadatastore"], client["assets"]
    image_dir = data_dir / f"legacy-{uuid.uuid4().hex[:8]}"
    recorded = ld.record_legacy(mds, assets, image_dir)
    q = {
        "no_stop": ld.quirk_no_stop(mds, assets, recorded),
        "no_stop_open": ld.quirk_no_stop(mds, assets, recorded),
        "bare_descriptor": ld.quirk_bare_descriptor(mds, assets, recorded),
        "key_mismatch": ld.quirk_key_mismatch(mds, assets, recorded),
        "metadata_values": ld.quirk_metadata_values(mds, assets, recorded),
        "no_run_start": ld.quirk_resource_without_run_start(mds, assets, recorded),
        "uuid_datums": ld.quirk_resource_without_run_start(mds, assets, recorded, uuid_datums=True),
        "missing_datum": ld.quirk_missing_assets(mds, assets, recorded, "datum"),
        "missing_resource": ld.quirk_missing_assets(mds, assets, recorded, "resource"),
        "missing_files": ld.quirk_missing_assets(mds, assets, recorded, "files"),
        "bad_data_keys": ld.quirk_bad_data_keys(mds, assets, recorded),
        "reserved_names": ld.quirk_reserved_names(mds, assets, recorded),
        "exit_aborted": ld.quirk_exit_status(mds, assets, recorded, "Aborted"),
        "exit_weird": ld.quirk_exit_status(mds, assets, recorded, "paused"),
        "duplicate_events": ld.quirk_duplicate_events(mds, assets, recorded),
        "odd_values": ld.quirk_odd_values(mds, assets, recorded),
        "unmapped_spec": ld.quirk_unmapped_spec(mds, assets, recorded, "LEGACY_NPY"),
        "mapped_spec": ld.quirk_unmapped_spec(mds, assets, recorded, "LEGACY_NPY2"),
        "ad_tiff": ld.quirk_ad_tiff(mds, assets, recorded, image_dir),
        "duplicate_documents": ld.quirk_duplicate_documents(mds, assets, recorded),
        "already_there": ld.quirk_bare_descriptor(mds, assets, recorded),
    }
    q["shared_resource_1"], q["shared_resource_2"] = ld.quirk_duplicate_resource(mds, assets, recorded)
    # The oldest generation in its own databases, so the layout detection is seen too.
    v0_mds, v0_assets = client["mds_v0"], client["filestore_v0"]
    q["metadatastore_v0"] = ld.quirk_metadatastore_v0(v0_mds, v0_assets, recorded)
    q["filestore_v0"] = ld.quirk_filestore_v0(v0_mds, v0_assets, recorded)
    return Legacy(LegacySource(mds, assets), LegacySource(v0_mds, v0_assets), recorded, q, mds, assets)


@pytest.fixture(scope="module")
def target(served):
    """This module's own container in the served catalog (never the shared root)."""
    return served.client.create_container("legacy-" + uuid.uuid4().hex)


def _json(doc):
    return json.loads(json.dumps(doc, default=list))


def _migrate(target, source: LegacySource, uid: str, **kwargs):
    docs = source.documents(uid, **kwargs)
    written = write_run(target, docs, spec_to_mimetype=kwargs.get("spec_to_mimetype"))
    return written, Broker(target, timezone="UTC")[uid]


def _same_values(got, expected) -> bool:
    if expected is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if isinstance(expected, (numpy.ndarray, list)):
        return numpy.array_equal(numpy.asarray(got, dtype=float), numpy.asarray(expected, dtype=float))
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(got, float) and math.isnan(got)
    return got == expected


def _check_table(h, tables: dict, *, fill: bool = False):
    for stream, columns in tables.items():
        frame = h.table(stream, fill=fill)
        assert list(frame.index) == list(range(1, len(frame) + 1))
        for key, values in columns.items():
            if values is None:
                continue
            assert key in frame.columns, (key, list(frame.columns))
            got = list(frame[key])
            assert len(got) == len(values), (key, got, values)
            for g, e in zip(got, values, strict=True):
                assert _same_values(g, e), (key, got, values)


def _check_quirk(h, quirk: ld.Quirk, *, fill: bool = False):
    assert h.start.to_dict() == _json({k: v for k, v in quirk.start.items() if k != "_id"})
    if quirk.stop is not None:
        stop = {k: v for k, v in quirk.stop.items() if k != "_id"}
        assert {k: h.stop[k] for k in stop} == _json(stop)
    _check_table(h, quirk.tables, fill=fill)


# -- runs recorded by a real RunEngine into the v1 layout ------------------------------


@pytest.mark.backends
@pytest.mark.parametrize("name", ["count", "scan", "images"])
def test_recorded_runs_migrate_with_their_values(legacy, target, name):
    run = legacy.recorded[name]
    docs = list(legacy.source.documents(run.uid))
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop"
    assert all("_id" not in doc for _, doc in docs)
    # resources and datums come before the first event that needs them
    if name == "images":
        assert names.index("resource") < names.index("datum") < names.index("event")

    written, h = _migrate(target, legacy.source, run.uid)
    assert written.events_written == len(run.events())
    assert h.start.to_dict() == _json(run.start)
    assert h.stop.to_dict() == _json(run.stop)
    assert sorted(h.stream_names) == sorted({d["name"] for d in run.descriptors()})
    for stream in h.stream_names:
        events = run.events(stream)
        frame = h.table(stream, fill=True)
        assert list(frame.index) == [e["seq_num"] for e in events]
        for key in events[0]["data"]:
            if key == "img":
                for got, _ev in zip(frame[key], events, strict=True):
                    numpy.testing.assert_array_equal(got, numpy.arange(12, dtype="float64").reshape(3, 4))
                continue
            assert list(frame[key]) == [e["data"][key] for e in events]
    assert run_state(target, run.uid, legacy.source.expected(run.uid)) == "complete"


def test_find_and_count_runs_oldest_first_in_pages(legacy):
    source = LegacySource(legacy.mds, legacy.assets, page_size=3)
    uids = list(source.find_run_uids(page_size=2))
    times = [legacy.mds["run_start"].find_one({"uid": u})["time"] for u in uids]
    assert times == sorted(times)
    assert len(uids) == len(set(uids)) == len(legacy.mds["run_start"].distinct("uid"))
    assert source.count_runs() == len(uids)
    recorded = [r.uid for r in legacy.recorded.values()]  # count, scan, images
    only_recorded = {"uid": {"$in": recorded}}  # clones of these share their times
    since = legacy.recorded["scan"].start["time"]
    assert list(source.find_run_uids(since=since, query=only_recorded)) == recorded[1:]
    assert list(source.find_run_uids(until=since, query=only_recorded)) == recorded[:1]
    assert source.count_runs(since=since, query=only_recorded) == 2
    assert source.count_runs(query={"plan_name": "scan"}) == 1
    with pytest.raises(ValueError, match="ISO 8601"):
        list(source.find_run_uids(since="last tuesday"))


def test_layout_detection(legacy):
    assert legacy.source.layout == "mongo_normalized"
    assert legacy.v0_source.layout == "metadatastore_v0+filestore_v0"
    import mongomock

    with pytest.raises(MigrationError, match="run_start"):
        LegacySource(mongomock.MongoClient()["empty"])
    with pytest.raises(ValueError, match="names no database"):
        LegacySource.from_uris("mongodb://127.0.0.1:1/")  # pymongo connects lazily: no server needed


# -- quirks ----------------------------------------------------------------------------------


def test_run_without_stop_is_closed(legacy, target):
    quirk = legacy.quirks["no_stop"]
    written, h = _migrate(target, legacy.source, quirk.uid)
    assert h.stop["exit_status"] == "unknown"
    assert MIGRATED_WITHOUT_STOP in h.stop["reason"]
    _check_quirk(h, quirk)
    assert any("no stop document" in n for n in written.notes)
    assert any("no stop document" in n for n in h.v2.metadata["notes"])
    # the synthesised stop is the same every time: verification and re-runs agree
    assert legacy.source.expected(quirk.uid).stop == h.stop.to_dict()
    assert run_state(target, quirk.uid, legacy.source.expected(quirk.uid)) == "complete"


def test_run_without_stop_left_open_has_no_events(legacy, target):
    quirk = legacy.quirks["no_stop_open"]
    written, h = _migrate(target, legacy.source, quirk.uid, close_open_runs=False)
    assert written.events_written == 3
    assert h.stop.to_dict() == {}
    assert len(h.table()) == 0  # TiledWriter writes events only at the stop document
    expected = legacy.source.expected(quirk.uid, close_open_runs=False)
    assert expected.stop is None
    assert run_state(target, quirk.uid, expected) == "complete"


@pytest.mark.backends
@pytest.mark.parametrize(
    "name",
    [
        "bare_descriptor",
        "key_mismatch",
        "metadata_values",
        "bad_data_keys",
        "reserved_names",
        "exit_aborted",
        "exit_weird",
        "duplicate_events",
        "odd_values",
        "duplicate_documents",
    ],
)
def test_quirk_migrates_with_expected_values(legacy, target, name):
    quirk = legacy.quirks[name]
    written, h = _migrate(target, legacy.source, quirk.uid)
    _check_quirk(h, quirk)
    for text in quirk.warnings_contain:
        assert any(text in n for n in written.notes), (text, written.notes)
    assert run_state(target, quirk.uid, legacy.source.expected(quirk.uid)) == "complete"


def test_exit_status_outside_the_schema(legacy, target):
    uid = legacy.quirks["exit_aborted"].uid
    h = Broker(target)[uid] if uid in target else _migrate(target, legacy.source, uid)[1]
    assert h.stop["exit_status"] == "abort" and "'Aborted'" in h.stop["reason"]
    expected = legacy.source.expected(legacy.quirks["exit_weird"].uid)
    assert expected.stop["exit_status"] == "unknown" and "'paused'" in expected.stop["reason"]


def test_descriptor_defaults_and_inferred_keys(legacy, target):
    h = Broker(target)
    for name in ("bare_descriptor", "key_mismatch", "bad_data_keys"):
        if legacy.quirks[name].uid not in target:
            _migrate(target, legacy.source, legacy.quirks[name].uid)
    bare = h[legacy.quirks["bare_descriptor"].uid]
    assert bare.stream_names == ["primary"]
    assert bare.descriptors[0]["configuration"] == {}
    keys = h[legacy.quirks["key_mismatch"].uid].descriptors[0]["data_keys"]
    assert keys["extra"]["dtype"] == "integer" and keys["extra"]["source"] == "unknown"
    assert "ghost" in keys
    bad = h[legacy.quirks["bad_data_keys"].uid].descriptors[0]["data_keys"]
    fixed = (bad["a"]["dtype"], bad["b"]["shape"], bad["c"]["source"], bad["d"]["dtype"])
    assert fixed == ("number", [], "unknown", "number")
    assert (bad["e"]["dtype"], bad["e"]["shape"]) == ("array", [2])


def test_event_key_first_seen_after_the_first_page_is_dropped_and_reported(legacy):
    quirk = ld.quirk_key_mismatch(legacy.mds, legacy.assets, legacy.recorded)
    desc = legacy.mds["event_descriptor"].find_one({"run_start": quirk.uid})
    legacy.mds["event"].update_one({"descriptor": desc["uid"], "seq_num": 3}, {"$set": {"data.late": 1.0}})
    docs = LegacySource(legacy.mds, legacy.assets, page_size=2).documents(quirk.uid)
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["extra"] for e in events] == [10, 20, 30]
    assert all("late" not in e["data"] for e in events)
    assert any("'late'" in w and "dropped" in w for w in docs.warnings)


def test_metadatastore_v0_run(legacy, target):
    quirk = legacy.quirks["metadatastore_v0"]
    docs = list(legacy.v0_source.documents(quirk.uid))
    event = next(d for n, d in docs if n == "event")
    assert set(event["timestamps"]) == {"sclr", "th"} and event["data"]["sclr"] == 1.5
    _, h = _migrate(target, legacy.v0_source, quirk.uid)
    _check_quirk(h, quirk)
    assert h.start["scan_id"] == 42


@pytest.mark.parametrize(
    "name", ["filestore_v0", "no_run_start", "uuid_datums", "shared_resource_1", "shared_resource_2"]
)
def test_external_data_quirks(legacy, target, name):
    source = legacy.v0_source if name == "filestore_v0" else legacy.source
    quirk = legacy.quirks[name]
    if name == "uuid_datums":
        descriptors = [d["uid"] for d in legacy.mds["event_descriptor"].find({"run_start": quirk.uid})]
        datum_ids = [e["data"]["img"] for e in legacy.mds["event"].find({"descriptor": {"$in": descriptors}})]
        resources = [legacy.assets["datum"].find_one({"datum_id": i})["resource"] for i in datum_ids]
        assert len(datum_ids) == 3 and not any(i.startswith(r) for i, r in zip(datum_ids, resources, strict=True))
    _, h = _migrate(target, source, quirk.uid)
    _check_quirk(h, quirk, fill=True)


@pytest.mark.parametrize("name", ["missing_datum", "missing_resource", "missing_files"])
def test_missing_assets_are_left_out_and_reported(legacy, target, name):
    quirk = legacy.quirks[name]
    written, h = _migrate(target, legacy.source, quirk.uid)
    _check_quirk(h, quirk, fill=quirk.tables["primary"]["img"] is not None)
    for text in quirk.warnings_contain:
        assert any(text in n for n in written.notes), written.notes
        assert any(text in n for n in h.v2.metadata["notes"])


def test_spec_without_mime_type(legacy, target):
    unmapped = legacy.quirks["unmapped_spec"]
    written, h = _migrate(target, legacy.source, unmapped.uid)
    _check_quirk(h, unmapped)
    assert any("no MIME type" in n for n in written.notes)
    mapped = legacy.quirks["mapped_spec"]
    mimetype = {"LEGACY_NPY2": "multipart/related;type=application/x-npy"}
    written, h = _migrate(target, legacy.source, mapped.uid, spec_to_mimetype=mimetype)
    frame = h.table(fill=True)
    for got in frame["img"]:
        numpy.testing.assert_array_equal(got, numpy.arange(12, dtype="float64").reshape(3, 4))


def test_ad_tiff_resource_path_gets_its_slash(legacy, target):
    quirk = legacy.quirks["ad_tiff"]
    resource = next(d for n, d in legacy.source.documents(quirk.uid) if n == "resource")
    assert not resource["resource_path"].endswith("/")  # the writer patch adds it
    _, h = _migrate(target, legacy.source, quirk.uid)
    _check_quirk(h, quirk, fill=True)


@pytest.mark.backends
def test_run_already_in_target(legacy, target):
    quirk = legacy.quirks["already_there"]
    _migrate(target, legacy.source, quirk.uid)
    expected = legacy.source.expected(quirk.uid)
    assert run_state(target, quirk.uid, expected) == "complete"
    with pytest.raises(MigrationError, match="already exists"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # event-model's RunRouter also warns about the 409
        write_run(target, legacy.source.documents(quirk.uid))
    delete_run(target, quirk.uid)
    assert run_state(target, quirk.uid, expected) == "absent"
    _, h = _migrate(target, legacy.source, quirk.uid)
    _check_quirk(h, quirk)


@pytest.mark.backends
def test_half_written_run_is_partial_then_rewritten(legacy, target):
    run = legacy.recorded["count"]
    quirk_uid = ld.quirk_no_stop(legacy.mds, legacy.assets, legacy.recorded).uid
    expected = legacy.source.expected(quirk_uid)
    writer = make_writer(target)
    for name, doc in legacy.source.documents(quirk_uid):
        if name == "stop":
            break  # a job killed before the stop document
        writer(name, doc)
    assert run_state(target, quirk_uid, expected) == "partial"
    delete_run(target, quirk_uid)
    write_run(target, legacy.source.documents(quirk_uid))
    assert run_state(target, quirk_uid, expected) == "complete"
    assert len(Broker(target)[quirk_uid].table()) == len(run.events())


def test_source_is_not_modified(legacy):
    def snapshot():
        return {
            (db.name, name): sorted(json.dumps(d, default=str, sort_keys=True) for d in db[name].find())
            for db in (legacy.mds, legacy.assets)
            for name in db.list_collection_names()
        }

    before = snapshot()
    for uid in legacy.source.find_run_uids():
        list(legacy.source.documents(uid))
        legacy.source.expected(uid)
    assert snapshot() == before
