"""Legacy frames read from the files, and the survey that keeps every frame with its event (no server).

Files are written here with numpy, tifffile and h5py the way the legacy detectors wrote
them; runs are hand-built in mongomock (tests/legacy_frames.py) and read through
``LegacyDocuments``, whose decisions (external or inline, what is missing, the rows told
to the writer) are checked without writing anything.
"""

from __future__ import annotations

import mongomock
import numpy
import pytest

import legacy_frames as lf
from databroker_compat.exceptions import MigrationError
from databroker_compat.migration import frames
from databroker_compat.migration.fixes import describe_seq_nums
from databroker_compat.migration.frames import RootMap, UnsupportedSpec
from databroker_compat.migration.source import LegacySource
from databroker_compat.migration.survey import FramesDisagree
from databroker_compat.migration.writer import writer_datum_shape


def test_npy_seq_through_the_root_map(tmp_path):
    numpy.save(tmp_path / "stem_3.npy", numpy.arange(6, dtype="uint16").reshape(2, 3))
    resource = {"spec": "NPY_SEQ", "root": "/GPFS/old", "resource_path": "stem", "resource_kwargs": {}}
    mapping = RootMap.parse([f"/GPFS/old={tmp_path}"])
    assert frames.datum_files(resource, {"index": 3}, mapping) == [f"{tmp_path}/stem_3.npy"]
    value = frames.read_datum(resource, {"index": 3}, mapping)
    assert value.dtype == numpy.dtype("uint16") and value.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(FileNotFoundError, match="stem_3.npy"):
        frames.read_datum(resource, {"index": 3})  # without the map: the old path


def test_ad_tiff_frames_per_point(tmp_path):
    import tifffile

    (tmp_path / "cam").mkdir()
    for n in range(4):
        tifffile.imwrite(tmp_path / "cam" / f"img_{n:06d}.tiff", numpy.full((3, 2), n, dtype="int32"))
    resource = {"spec": "AD_TIFF", "root": str(tmp_path), "resource_path": "cam",
                "resource_kwargs": {"template": "%s%s_%6.6d.tiff", "filename": "img", "frame_per_point": 2}}
    assert frames.datum_files(resource, {"point_number": 1})[-1].endswith("cam/img_000003.tiff")
    value = frames.read_datum(resource, {"point_number": 1})
    assert value.shape == (2, 3, 2) and value[:, 0, 0].tolist() == [2, 3] and value.dtype == numpy.dtype("int32")


def test_ad_hdf5_frames_per_point(tmp_path):
    import h5py

    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["/entry/data/data"] = numpy.arange(4 * 2 * 3, dtype="uint32").reshape(4, 2, 3)
    resource = {"spec": "AD_HDF5", "root": str(tmp_path), "resource_path": "scan.h5",
                "resource_kwargs": {"frame_per_point": 2}}
    value = frames.read_datum(resource, {"point_number": 1})
    assert value.shape == (2, 2, 3) and value[0, 0, 0] == 12 and value.dtype == numpy.dtype("uint32")


def test_what_the_module_does_not_read():
    with pytest.raises(UnsupportedSpec, match="supported: AD_HDF5, AD_TIFF, NPY_SEQ") as caught:
        frames.read_datum({"spec": "XSP3"}, {})
    assert caught.value.spec == "XSP3" and isinstance(caught.value, MigrationError)
    with pytest.raises(MigrationError, match="point_number or index"):
        frames.datum_point({"frame": 2})
    assert (frames.is_supported({"spec": "AD_TIFF"}), frames.is_supported({"spec": "TIFF"})) == (True, False)
    assert frames.frame_per_point({"resource_kwargs": {}}) == 1


@pytest.mark.parametrize(
    "declared, multiplier, expected",
    [([8, 10], None, (8, 10)), ([1], None, ()), ([8, 10], 1, (1, 8, 10)), ([1, 8, 10], 1, (1, 8, 10)),
     ([8, 10], 3, (3, 8, 10)), ([], 2, (2,))],
)
def test_writer_datum_shape(declared, multiplier, expected):
    assert writer_datum_shape(declared, multiplier) == expected


def test_describe_seq_nums():
    assert describe_seq_nums([5, 1, 2, 3]) == "1-3, 5"
    assert describe_seq_nums([]) == ""


# -- the survey, over hand-built runs ------------------------------------------------------


@pytest.fixture
def db():
    return mongomock.MongoClient()["survey"]


def _read(db, uid, **kwargs):
    documents = LegacySource(db, **kwargs).documents(uid)
    return documents, list(documents)


@pytest.mark.parametrize("layout", ["two_descriptors", "index_from_5", "sparse_seq_nums"])
def test_a_key_kept_external_tells_the_writer_each_datums_row(db, tmp_path, layout):
    quirk = lf.frames_layout(db, db, tmp_path, "NPY_SEQ", layout)
    documents = LegacySource(db).documents(quirk.uid)
    rows = {}
    for name, doc in documents:  # the writer's datum patch takes each row as the datum passes
        if name == "datum":
            rows[doc["datum_id"]] = documents.writer_settings.datum_rows.pop(doc["datum_id"])
    points = [5 + i for i in range(6)] if layout == "index_from_5" else list(range(6))
    firsts = [0, 0, 0, 3, 3, 3] if layout == "two_descriptors" else [0] * 6
    assert list(rows.values()) == [f + p for f, p in zip(firsts, points, strict=True)]
    assert documents.inline_keys == {} and documents.missing_frames == {}


@pytest.mark.parametrize("layout", ["two_resources", "interleaved"])
def test_a_key_the_writer_cannot_register_in_order_is_written_inline(db, tmp_path, layout):
    quirk = lf.frames_layout(db, db, tmp_path, "NPY_SEQ", layout)
    documents, docs = _read(db, quirk.uid)
    assert documents.inline_keys == {"primary": {"cam": 0}}
    assert not [n for n, _ in docs if n in ("resource", "datum")]
    descriptor = next(d for n, d in docs if n == "descriptor")["data_keys"]["cam"]
    assert "external" not in descriptor and (descriptor["shape"], descriptor["dtype_numpy"]) == ([4, 5], "<u2")
    values = [d["data"]["cam"] for n, d in docs if n == "event"]
    for value, expected in zip(values, quirk.frames, strict=True):
        numpy.testing.assert_array_equal(value, expected)
    assert documents.writer_settings.max_array_size is None  # 4 x 5 = 20 elements: an array node anyway
    assert documents.writer_settings.inline_frame_bytes == 40


def test_missing_frames_only_at_the_end_stay_external(db, tmp_path):
    quirk = lf.frames_layout(db, db, tmp_path, "NPY_SEQ", "index_from_5")
    last = db["event"].find_one({"seq_num": 6})
    db["datum"].delete_one({"datum_id": last["data"]["cam"]})
    documents, docs = _read(db, quirk.uid)
    assert documents.inline_keys == {} and documents.missing_frames == {"primary": {"cam": [6]}}
    events = [d for n, d in docs if n == "event"]
    assert "cam" not in events[-1]["data"] and all("cam" in e["data"] for e in events[:-1])
    (fix,) = [f for f in documents.fixes if f.kind == "missing_frames"]
    assert fix.seq_nums == (6,) and "those events have no frame (read as None)" in fix.message


def test_dry_run_reads_no_inline_frames_and_finds_the_same(db, tmp_path):
    quirk = lf.frames_layout(db, db, tmp_path, "NPY_SEQ", "interleaved")
    real, _ = _read(db, quirk.uid)
    dry = LegacySource(db).documents(quirk.uid, read_frames=False)
    values = [d["data"]["cam"] for n, d in dry if n == "event"]
    assert values == [None] * 6
    assert [f.to_dict() for f in dry.fixes] == [f.to_dict() for f in real.fixes]


def test_frames_that_disagree_are_refused_before_anything_is_yielded(tmp_path):
    db = mongomock.MongoClient()["disagree"]
    runs = lf.record_frame_runs(db, db, tmp_path)
    quirk = lf.frames_disagree(db, db, runs, tmp_path)
    documents = LegacySource(db).documents(quirk.uid)
    with pytest.raises(FramesDisagree, match="the frames differ between resources") as caught:
        next(documents)
    assert (caught.value.stream, caught.value.key) == ("primary", "cam")


def test_without_file_checks_a_gap_cuts_the_key_never_shifts_it(db, tmp_path):
    quirk = lf.frames_layout(db, db, tmp_path, "NPY_SEQ", "index_from_5")
    third = db["event"].find_one({"seq_num": 3})
    db["datum"].delete_one({"datum_id": third["data"]["cam"]})
    documents, docs = _read(db, quirk.uid, check_files=False)
    assert documents.inline_keys == {}
    assert documents.missing_frames == {"primary": {"cam": [3, 4, 5, 6]}}
    kept = [d["seq_num"] for n, d in docs if n == "event" and "cam" in d["data"]]
    assert kept == [1, 2]
    reasons = next(f for f in documents.fixes if f.kind == "missing_frames").to_dict()["reasons"]
    assert reasons["datum not found"] == [3] and reasons[next(r for r in reasons if r.startswith("left out"))] == [4, 5, 6]
