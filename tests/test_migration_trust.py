"""A migration that cannot lose image data silently: frames stay with their events, shapes and
dtypes come from the files, a root map, every fix recorded, honest exit codes, a dry run that reads.

The legacy runs are real RunEngine image runs (tests/legacy_frames.py) stored by
suitcase-mongo in mongomock and served over a socket; ``databroker-migrate`` runs through
typer's CliRunner into each served Tiled server; every run is read back frame by frame
through ``Broker`` (``get_images`` and ``get_events(fill=True)``) and compared with the files.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import mongomock
import numpy
import pytest
from typer.testing import CliRunner

import legacy_frames as lf
from databroker_compat import Broker
from databroker_compat.migration.cli import app
from mongo_wire import MongoWireServer

runner = CliRunner()


@dataclass
class Archive:
    wire: MongoWireServer
    quirks: dict[str, lf.FrameQuirk]
    runs: dict
    mds: object

    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.wire.port}/mds?directConnection=true&serverSelectionTimeoutMS=5000"


@pytest.fixture(scope="module")
def archive(data_dir):
    client = mongomock.MongoClient()
    mds = client["mds"]
    image_dir = data_dir / f"trust-{uuid.uuid4().hex[:8]}"
    runs = lf.record_frame_runs(mds, mds, image_dir)
    quirks = {
        "datum_gap": lf.frames_datum_gap(mds, mds, runs),
        "declared_shape": lf.frames_declared_shape(mds, mds, runs),
        "dead_root": lf.frames_dead_root(mds, mds, runs, image_dir),
        "files_deleted": lf.frames_files_deleted(mds, mds, runs, image_dir),
        "missing_keys": lf.frames_missing_keys(mds, mds, runs),
        "disagree": lf.frames_disagree(mds, mds, runs, image_dir),
    }
    wire = MongoWireServer(client)
    yield Archive(wire, quirks, runs, mds)
    wire.close()


@dataclass
class Target:
    uri: str
    key: str
    node: object

    def broker(self) -> Broker:
        return Broker(self.node, timezone="UTC")


def _target(served) -> Target:
    base, _, key = served.uri.partition("?api_key=")
    name = f"trust-{uuid.uuid4().hex}"
    node = served.client.create_container(name)
    return Target(f"{base}/metadata/{name}", key, node)


def _migrate(archive: Archive, target: Target, tmp_path: Path, *args: str, uids=None, command: str = "run"):
    """Run ``databroker-migrate``; (exit code, output, JSON report or None)."""
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    selection = ["--query", json.dumps({"uid": {"$in": list(uids)}})] if uids else []
    extra = ["--state", str(tmp_path / "state.jsonl"), "--no-progress"] if command == "run" else []
    result = runner.invoke(
        app,
        [command, "--metadatastore-uri", archive.uri(), "--tiled-uri", target.uri, "--report", str(report),
         *extra, *selection, *args],
        env={"TILED_API_KEY": target.key},
    )
    saved = json.loads(report.read_text()) if report.exists() else None
    return result.exit_code, result.output, saved


def _entry(report: dict, uid: str) -> dict:
    return next(r for r in report["runs"] if r["uid"] == uid)


def _check_frames(target: Target, quirk: lf.FrameQuirk) -> None:
    """Every event reads its own frame (or the fill value), in the files' shape and dtype."""
    db = target.broker()
    h = db[quirk.uid]
    images = db.get_images(h, quirk.key)
    events = list(db.get_events(h, fill=True))
    assert len(images) == len(events) == len(quirk.frames)
    assert [e["seq_num"] for e in events] == sorted(e["seq_num"] for e in events)
    for seq, (expected, event) in enumerate(zip(quirk.frames, events, strict=True), 1):
        frame = numpy.asarray(images[seq - 1])  # seq: the event's position in the stream
        assert (frame.dtype, frame.shape) == (expected.dtype, expected.shape), seq
        numpy.testing.assert_array_equal(frame, expected, err_msg=f"get_images, seq_num {seq}")
        # Events re-emit an array node's rows as lists when the key is stored inline: compare values.
        value = numpy.asarray(event["data"][quirk.key])
        assert value.shape == expected.shape, seq
        numpy.testing.assert_array_equal(value, expected, err_msg=f"get_events(fill=True), seq_num {seq}")
    for key, values in quirk.scalar.items():
        numpy.testing.assert_array_equal(h.table()[key].to_numpy(), numpy.asarray(values))


def _notes(target: Target, uid: str) -> str:
    return "\n".join(target.node[uid].metadata.get("notes") or [])


def _check_entry(report: dict, quirk: lf.FrameQuirk, target: Target) -> dict:
    entry = _entry(report, quirk.uid)
    assert entry["outcome"] == quirk.outcome, entry
    missing = {"primary": {quirk.key: quirk.missing}} if quirk.missing else {}
    assert entry["missing_frames"] == missing
    notes = _notes(target, quirk.uid)
    for text in quirk.notes_contain:
        assert text in notes, (text, notes)
        assert any(text in f["message"] for f in entry["fixes"]), (text, entry["fixes"])
    return entry


# -- each defect, migrated and read back -----------------------------------------------


def test_datum_missing_in_the_middle(archive, served, tmp_path):
    quirk, target = archive.quirks["datum_gap"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, uids=[quirk.uid])
    assert code == 1, output
    entry = _check_entry(report, quirk, target)
    assert "arrived without 1 of 5 frames: datum not found (seq_num 3)" in entry["reason"]
    assert f"INCOMPLETE {quirk.uid}" in output
    _check_frames(target, quirk)
    # Accepted as incomplete: the run this job recorded as failed is written again, exit 0.
    code, output, report = _migrate(archive, target, tmp_path, "--allow-missing-files", uids=[quirk.uid])
    assert code == 0, output
    assert _entry(report, quirk.uid)["status"] == "rewritten"
    _check_entry(report, quirk, target)
    _check_frames(target, quirk)
    state = [json.loads(line) for line in (tmp_path / "state.jsonl").read_text().splitlines()]
    assert [s["status"] for s in state if s["uid"] == quirk.uid][-1] == "done"


def test_declared_shape_and_dtype_from_the_files(archive, served, tmp_path):
    quirk, target = archive.quirks["declared_shape"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, uids=[quirk.uid])
    assert code == 0, output
    entry = _check_entry(report, quirk, target)
    assert {f["kind"] for f in entry["fixes"]} >= {"shape", "dtype"}
    key = target.broker()[quirk.uid].descriptors[0]["data_keys"]["cam"]
    assert (key["shape"], key["dtype_numpy"]) == ([8, 10], "<u2")
    _check_frames(target, quirk)


def test_dead_root_needs_the_root_map(archive, served, tmp_path):
    quirk, target = archive.quirks["dead_root"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, uids=[quirk.uid])
    assert code == 1, output
    entry = _entry(report, quirk.uid)
    assert entry["outcome"] == "incomplete"
    assert "arrived without 5 of 5 frames: files missing under '/GPFS/xf99id/" in entry["reason"]
    code, output, report = _migrate(archive, target, tmp_path, *[f"--root-map={m}" for m in quirk.root_map],
                                    uids=[quirk.uid])
    assert code == 0, output
    _check_entry(report, quirk, target)
    _check_frames(target, quirk)
    new_prefix = quirk.root_map[0].partition("=")[2]
    node = target.node[quirk.uid]["primary"].base[quirk.key]
    uris = [a.data_uri for source in node.data_sources() for a in source.assets]
    assert uris and all(u.startswith(f"file://localhost{new_prefix}/") for u in uris), uris


def test_files_deleted(archive, served, tmp_path):
    quirk, target = archive.quirks["files_deleted"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, uids=[quirk.uid])
    assert code == 1, output
    entry = _check_entry(report, quirk, target)
    assert entry["reason"].startswith("primary/cam arrived without 2 of 5 frames: files missing under ")
    assert report["outcomes"]["incomplete"] == 1 and report["exit_code"] == 1
    _check_frames(target, quirk)
    code, output, report = _migrate(archive, target, tmp_path, "--allow-missing-files", uids=[quirk.uid])
    assert code == 0, output
    assert "INCOMPLETE (allowed: --allow-missing-files)" in output


def test_events_missing_a_declared_key(archive, served, tmp_path):
    quirk, target = archive.quirks["missing_keys"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, "--allow-missing-files", uids=[quirk.uid])
    assert code == 0, output
    _check_entry(report, quirk, target)
    assert report["verification"]["ok"] is True, report["verification"]
    _check_frames(target, quirk)


def test_frames_that_disagree_fail_the_run(archive, served, tmp_path):
    quirk, target = archive.quirks["disagree"], _target(served)
    code, output, report = _migrate(archive, target, tmp_path, "--allow-missing-files", uids=[quirk.uid])
    assert code == 1, output
    entry = _entry(report, quirk.uid)
    assert (entry["status"], entry["outcome"]) == ("failed", "failed")
    assert entry["reason"].startswith("FramesDisagree: Stream 'primary', key 'cam': the frames differ")
    assert quirk.uid not in target.node
    state = [json.loads(line) for line in (tmp_path / "state.jsonl").read_text().splitlines()]
    assert "done" not in [s["status"] for s in state if s["uid"] == quirk.uid]


# -- the whole archive: the dry run predicts the real run; the counts add up ---------------


def _predictions(report: dict) -> dict:
    return {r["uid"]: (r["outcome"], r["fixes"], r["missing_frames"]) for r in report["runs"]}


def test_dry_run_predicts_the_real_run(archive, served, tmp_path):
    target = _target(served)
    mapping = [f"--root-map={m}" for q in archive.quirks.values() for m in q.root_map]
    dry_code, dry_output, dry = _migrate(archive, target, tmp_path, "--dry-run", *mapping)
    assert list(target.node) == [] and not (tmp_path / "state.jsonl").exists()
    code, output, real = _migrate(archive, target, tmp_path, *mapping)
    assert code == dry_code == 1, output
    selected = archive.mds["run_start"].count_documents({})
    assert len(dry["runs"]) == len(real["runs"]) == selected
    assert _predictions(dry) == _predictions(real)
    expected = {q.uid: q.outcome for q in archive.quirks.values()}
    assert {uid: p[0] for uid, p in _predictions(real).items() if uid in expected} == expected
    for report, text in ((real, output), (dry, dry_output)):
        assert sum(report["outcomes"].values()) == selected
        counts = report["outcomes"]
        line = next(x for x in text.splitlines() if "run(s):" in x and "incomplete" in x)
        assert line.strip().startswith(f"{selected} run(s):")
        assert f"incomplete: {counts['incomplete']}" in line and f"failed: {counts['failed']}" in line


def test_verify_follows_the_same_rules(archive, served, tmp_path):
    quirk, target = archive.quirks["files_deleted"], _target(served)
    _migrate(archive, target, tmp_path, "--allow-missing-files", uids=[quirk.uid])
    code, output, _ = _migrate(archive, target, tmp_path, "--uid", quirk.uid, command="verify")
    assert code == 1, output
    assert f"INCOMPLETE {quirk.uid}" in output
    code, output, _ = _migrate(archive, target, tmp_path, "--uid", quirk.uid, "--allow-missing-files", command="verify")
    assert code == 0, output


def test_from_config_honours_the_root_map(archive, served, tmp_path):
    quirk, target = archive.quirks["dead_root"], _target(served)
    old, _, new = quirk.root_map[0].partition("=")
    config = tmp_path / "chx.yml"
    config.write_text(
        "metadatastore:\n  module: databroker.headersource.mongo\n  class: MDS\n"
        f"  config:\n    uri: {archive.uri()}\n"
        "assets:\n  module: databroker.assets.mongo\n  class: Registry\n"
        f"  config:\n    uri: {archive.uri()}\n"
        f"root_map:\n  {old}: {new}\n"
    )
    report = tmp_path / "from-config.json"
    result = runner.invoke(
        app,
        ["run", "--from-config", str(config), "--tiled-uri", target.uri, "--report", str(report), "--no-progress",
         "--state", str(tmp_path / "fc.jsonl"), "--query", json.dumps({"uid": quirk.uid})],
        env={"TILED_API_KEY": target.key},
    )
    assert result.exit_code == 0, result.output
    assert _entry(json.loads(report.read_text()), quirk.uid)["missing_frames"] == {}
    _check_frames(target, quirk)


def test_usage_errors_exit_2(archive, tmp_path):
    target = Target("http://127.0.0.1:1/api/v1", "", None)
    code, output, _ = _migrate(archive, target, tmp_path, "--root-map", "relative/path=/new")
    assert code == 2 and "absolute" in output
    job = tmp_path / "job.yaml"
    job.write_text(f"source:\n  metadatastore: {archive.uri()}\nroot_map: /just/a/path\n")
    result = runner.invoke(app, ["run", "--config", str(job), "--tiled-uri", target.uri])
    assert result.exit_code == 2 and "root_map" in result.output
    job.write_text(f"source:\n  metadatastore: {archive.uri()}\n")
    result = runner.invoke(app, ["run", "--config", str(job), "--verify-data", "most", "--tiled-uri", target.uri])
    assert result.exit_code == 2 and "verify_data" in result.output


# -- datums the writer's defaults would register under the wrong files -----------------------

LAYOUTS = ["two_resources", "interleaved", "two_descriptors", "index_from_5", "sparse_seq_nums"]


@pytest.mark.backends
@pytest.mark.parametrize("spec", ["NPY_SEQ", "AD_TIFF"])
def test_every_frame_under_its_own_event(served, data_dir, spec):
    """A key kept external is registered datum by datum (the writer's ``indices``); one it cannot be, inline."""
    import mongomock

    from databroker_compat.migration.source import LegacySource
    from databroker_compat.migration.writer import write_run

    db = mongomock.MongoClient()["layouts"]
    image_dir = data_dir / f"layouts-{uuid.uuid4().hex[:8]}"
    image_dir.mkdir()
    target = _target(served)
    for layout in LAYOUTS:
        quirk = lf.frames_layout(db, db, image_dir, spec, layout)
        documents = LegacySource(db).documents(quirk.uid)
        written = write_run(target.node, documents)
        inline = layout in ("two_resources", "interleaved")
        assert bool(documents.inline_keys) is inline, layout
        assert written.missing_frames == {}
        assert any(text in n for text in quirk.notes_contain for n in written.notes), (layout, written.notes)
        _check_frames(target, quirk)
