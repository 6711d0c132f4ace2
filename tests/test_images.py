"""Images and array data: get_images, fill=True, h.data, xarray/xarray_dask, missing files.

Runs used:
- ``images`` (shared catalog): ophyd.sim ``SynSignalWithRegistry``, NPY_SEQ Resource/Datum,
  3 frames ``arange(100).reshape(10, 10)``;
- ``arrays`` (shared catalog): internal ``matrix`` (5x4) kept by the writer as an array node;
- written here, per server, into a child container of our own: an HDF5 area-detector-style
  run (h5py file, StreamResource/StreamDatum, several frames per event, chunks of 2 events),
  a TIFF sequence (AD_TIFF Resource/Datum, one file per event, written with tifffile), and a
  second TIFF run whose second file is removed after writing.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy
import pytest

from databroker_compat import Broker, ExternalDataUnavailable, UnknownField
from databroker_compat.images import Images, read_frames

H5_EVENTS, H5_FRAMES, H5_SHAPE = 6, 3, (8, 6)
TIFF_EVENTS, TIFF_SHAPE = 4, (7, 5)


def h5_frames() -> numpy.ndarray:
    """What the HDF5 detector wrote: ``(events, frames per event, y, x)``, uint16."""
    base = numpy.arange(H5_SHAPE[0] * H5_SHAPE[1], dtype="uint16").reshape(H5_SHAPE)
    return numpy.stack(
        [numpy.stack([base + 100 * i + 10 * j for j in range(H5_FRAMES)]) for i in range(H5_EVENTS)]
    ).astype("uint16")


def tiff_frames() -> numpy.ndarray:
    base = numpy.arange(TIFF_SHAPE[0] * TIFF_SHAPE[1], dtype="float32").reshape(TIFF_SHAPE)
    return numpy.stack([base * (i + 1) for i in range(TIFF_EVENTS)])


@dataclass
class Written:
    """Documents of one run written here, and the files behind it."""

    docs: list = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def uid(self) -> str:
        return self.docs[0][1]["uid"]

    def events(self) -> list[dict]:
        return [d for n, d in self.docs if n == "event"]


def hdf5_run(directory: Path) -> Written:
    """An area-detector-style run: one HDF5 file, StreamResource/StreamDatum, 3 frames per event."""
    import h5py
    from event_model import StreamRange, compose_run

    frames = h5_frames()
    path = directory / "cam_000.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames, chunks=(2, H5_FRAMES, *H5_SHAPE))
    run = Written(files=[path])
    bundle = compose_run(metadata={"plan_name": "hdf5_count", "sample": "h5 sample", "detectors": ["cam"]})
    run.docs.append(("start", bundle.start_doc))
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "cam_image": {
                "dtype": "array",
                "shape": [H5_FRAMES, *H5_SHAPE],
                "source": "sim:cam:HDF1",
                "external": "STREAM:",
                "dtype_numpy": "<u2",
                "object_name": "cam",
            },
            "cam_total": {"dtype": "number", "shape": [], "source": "sim:cam:total", "object_name": "cam"},
        },
        object_keys={"cam": ["cam_image", "cam_total"]},
    )
    run.docs.append(("descriptor", desc.descriptor_doc))
    sres = bundle.compose_stream_resource(
        mimetype="application/x-hdf5",
        uri=f"file://localhost{path}",
        data_key="cam_image",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [2]},
    )
    run.docs.append(("stream_resource", sres.stream_resource_doc))
    # Two events per stream_datum, as a detector flushing its file every two points.
    for first in range(0, H5_EVENTS, 2):
        run.docs.append(
            (
                "stream_datum",
                sres.compose_stream_datum(
                    indices=StreamRange(start=first, stop=first + 2), descriptor=desc.descriptor_doc
                ),
            )
        )
        for i in (first, first + 1):
            total = float(frames[i].sum())
            event = desc.compose_event(
                data={"cam_total": total}, timestamps={"cam_total": 1.0e9 + i}, seq_num=i + 1
            )
            run.docs.append(("event", event))
    run.docs.append(("stop", bundle.compose_stop()))
    return run


def tiff_run(directory: Path, name: str) -> Written:
    """A TIFF sequence: AD_TIFF Resource (trailing ``/`` on the path), one Datum per event."""
    import tifffile
    from event_model import compose_run

    frames = tiff_frames()
    folder = directory / name
    folder.mkdir()
    run = Written()
    for i, frame in enumerate(frames):
        path = folder / f"{name}_{i:06d}.tiff"
        tifffile.imwrite(path, frame)
        run.files.append(path)
    bundle = compose_run(metadata={"plan_name": "tiff_count", "sample": name})
    run.docs.append(("start", bundle.start_doc))
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "tcam_image": {
                "dtype": "array",
                "shape": list(TIFF_SHAPE),
                "source": "sim:tcam:TIFF1",
                "external": "FILESTORE:",
                "dtype_numpy": "<f4",
                "object_name": "tcam",
            },
            "tcam_stats": {"dtype": "number", "shape": [], "source": "sim:tcam:stats", "object_name": "tcam"},
        },
        object_keys={"tcam": ["tcam_image", "tcam_stats"]},
    )
    run.docs.append(("descriptor", desc.descriptor_doc))
    res = bundle.compose_resource(
        spec="AD_TIFF",
        root=str(directory),
        resource_path=f"{name}/",
        resource_kwargs={"template": "%s%s_%6.6d.tiff", "filename": name},
    )
    run.docs.append(("resource", res.resource_doc))
    for i in range(TIFF_EVENTS):
        datum = res.compose_datum(datum_kwargs={"point_number": i})
        run.docs.append(("datum", datum))
        run.docs.append(
            (
                "event",
                desc.compose_event(
                    data={"tcam_image": datum["datum_id"], "tcam_stats": float(i) * 2},
                    timestamps={"tcam_image": 2.0e9 + i, "tcam_stats": 2.0e9 + i},
                    seq_num=i + 1,
                    filled={"tcam_image": False},
                ),
            )
        )
    run.docs.append(("stop", bundle.compose_stop()))
    return run


@dataclass
class ImageCatalog:
    db: Broker
    runs: dict[str, Written]


@pytest.fixture(scope="module")
def image_catalog(served, data_dir) -> ImageCatalog:
    """Our own child container per server, holding the HDF5 and TIFF runs."""
    import copy

    from bluesky_tiled_plugins import TiledWriter

    tag = uuid.uuid4().hex
    directory = data_dir / f"images-{served.mode}-{tag[:8]}"
    directory.mkdir()
    runs = {
        "hdf5": hdf5_run(directory),
        "tiff": tiff_run(directory, "tiff"),
        "tiff_missing": tiff_run(directory, "tiff_missing"),
    }
    container = served.client.create_container("images-" + tag)
    writer = TiledWriter(container)
    for run in runs.values():
        for name, doc in run.docs:
            writer(name, copy.deepcopy(doc))
    runs["tiff_missing"].files[1].unlink()
    return ImageCatalog(Broker(container, timezone="UTC"), runs)


def _header(catalog: ImageCatalog, name: str):
    return catalog.db[catalog.runs[name].uid]


# -- get_images --------------------------------------------------------------------
@pytest.mark.backends
def test_get_images_npy_sequence_from_ophyd_sim(db, served):
    h = db[served.runs["images"].uid]
    imgs = db.get_images(h, "img")
    expected = numpy.arange(100, dtype="float64").reshape(10, 10)
    assert len(imgs) == 3
    assert imgs.frame_shape == (10, 10)
    assert imgs.dtype == numpy.dtype("float64")
    for k in range(3):
        numpy.testing.assert_array_equal(imgs[k], expected)
    numpy.testing.assert_array_equal(imgs[-1], expected)
    numpy.testing.assert_array_equal(numpy.asarray(imgs[1:3]), numpy.stack([expected] * 2))
    assert [f.sum() for f in imgs] == [expected.sum()] * 3


def test_get_images_hdf5_multiple_frames_per_event(image_catalog):
    h = _header(image_catalog, "hdf5")
    imgs = image_catalog.db.get_images(h, "cam_image")
    expected = h5_frames()
    assert len(imgs) == H5_EVENTS
    assert imgs.frame_shape == (H5_FRAMES, *H5_SHAPE)
    assert imgs.dtype == numpy.dtype("uint16")
    numpy.testing.assert_array_equal(imgs[4], expected[4])
    numpy.testing.assert_array_equal(imgs[-2], expected[-2])
    numpy.testing.assert_array_equal(imgs.get_frame(1), expected[1])
    assert imgs[0].flags.writeable  # v1 scripts subtract darks in place
    # Slices stay lazy and read what they cover, across chunk boundaries.
    part = imgs[1:5]
    assert isinstance(part, Images) and len(part) == 4
    numpy.testing.assert_array_equal(numpy.asarray(part), expected[1:5])
    numpy.testing.assert_array_equal(numpy.asarray(imgs[::2]), expected[::2])
    numpy.testing.assert_array_equal(numpy.asarray(imgs[[5, 0, 5]]), expected[[5, 0, 5]])
    numpy.testing.assert_array_equal(numpy.stack(list(imgs)), expected)


def test_get_images_reads_only_requested_frames(image_catalog, count_requests):
    h = _header(image_catalog, "hdf5")
    imgs = image_catalog.db.get_images(h, "cam_image")
    client = image_catalog.db.v2
    sizes = []

    def on_response(response):
        response.read()
        sizes.append(len(response.content))

    http = client.context.http_client
    http.event_hooks["response"].append(on_response)
    try:
        with count_requests(client) as counter:
            frame = imgs[3]
            part = numpy.asarray(imgs[2:4])  # one whole chunk: one request
    finally:
        http.event_hooks["response"].remove(on_response)
    frame_bytes = H5_FRAMES * H5_SHAPE[0] * H5_SHAPE[1] * 2
    assert counter.count == 2
    assert sizes == [frame_bytes, 2 * frame_bytes]
    numpy.testing.assert_array_equal(frame, h5_frames()[3])
    numpy.testing.assert_array_equal(part, h5_frames()[2:4])


def test_get_images_tiff_sequence(image_catalog):
    h = _header(image_catalog, "tiff")
    imgs = image_catalog.db.get_images([h], "tcam_image")
    expected = tiff_frames()
    assert len(imgs) == TIFF_EVENTS and imgs.frame_shape == TIFF_SHAPE
    assert imgs.dtype == numpy.dtype("float32")
    numpy.testing.assert_array_equal(numpy.asarray(imgs), expected)
    numpy.testing.assert_array_equal(imgs[2], expected[2])


def test_get_images_several_runs_concatenate(image_catalog):
    db = image_catalog.db
    imgs = db.get_images([_header(image_catalog, "tiff"), _header(image_catalog, "tiff")], "tcam_image")
    assert len(imgs) == 2 * TIFF_EVENTS
    numpy.testing.assert_array_equal(imgs[TIFF_EVENTS + 1], tiff_frames()[1])
    numpy.testing.assert_array_equal(numpy.asarray(imgs[2:6]), numpy.concatenate([tiff_frames()] * 2)[2:6])


def test_get_images_internal_array_node(db, served):
    h = db[served.runs["arrays"].uid]
    imgs = db.get_images(h, "matrix")
    assert len(imgs) == 4 and imgs.frame_shape == (5, 4)
    numpy.testing.assert_array_equal(imgs[2], numpy.arange(20, dtype="float64").reshape(5, 4))


def test_get_images_bad_input(image_catalog, db, served):
    h = _header(image_catalog, "hdf5")
    imgs = image_catalog.db.get_images(h, "cam_image")
    with pytest.raises(IndexError, match="6 frames"):
        imgs[6]
    with pytest.raises(TypeError, match="Index frames"):
        imgs["a"]
    with pytest.raises(UnknownField, match="no field 'nope'"):
        image_catalog.db.get_images(h, "nope")
    with pytest.raises(UnknownField, match="events table"):
        image_catalog.db.get_images(h, "cam_total")
    with pytest.raises(UnknownField, match="no stream 'baseline'"):
        image_catalog.db.get_images(h, "cam_image", stream_name="baseline")
    with pytest.raises(ValueError, match="at least one Header"):
        image_catalog.db.get_images([], "cam_image")


# -- fill=True, h.data, xarray ---------------------------------------------------------
def test_table_fill_reads_frames(image_catalog):
    h = _header(image_catalog, "hdf5")
    written = image_catalog.runs["hdf5"]
    table = h.table(fill=True)
    assert list(table.index) == list(range(1, H5_EVENTS + 1))
    for i, (frame, total) in enumerate(zip(table["cam_image"], table["cam_total"], strict=True)):
        numpy.testing.assert_array_equal(frame, h5_frames()[i])
        assert total == written.events()[i]["data"]["cam_total"]
    unfilled = h.table(fill=False)
    assert all(isinstance(v, str) for v in unfilled["cam_image"])

    t = _header(image_catalog, "tiff").table(fields=["tcam_image"], fill=True)
    numpy.testing.assert_array_equal(numpy.stack(list(t["tcam_image"])), tiff_frames())


@pytest.mark.backends
def test_table_fill_npy_run(db, served):
    h = db[served.runs["images"].uid]
    table = h.table(fill=True)
    expected = numpy.arange(100, dtype="float64").reshape(10, 10)
    det = [e["data"]["det"] for e in served.runs["images"].events("primary")]
    assert list(table["det"]) == det
    for frame in table["img"]:
        numpy.testing.assert_array_equal(frame, expected)


def test_data_yields_frames_lazily(image_catalog, count_requests):
    h = _header(image_catalog, "hdf5")
    _ = h.descriptors  # streams and descriptors fetched before counting
    from databroker_compat.images import array_nodes

    array_nodes(h, "primary")
    gen = h.data("cam_image")
    with count_requests(image_catalog.db.v2) as counter:
        first = next(gen)
    # The events table (for seq_nums) and one chunk of two events; not the whole stack.
    assert counter.count == 2
    numpy.testing.assert_array_equal(first, h5_frames()[0])
    rest = list(gen)
    numpy.testing.assert_array_equal(numpy.stack([first, *rest]), h5_frames())
    assert list(h.data("cam_total")) == [e["data"]["cam_total"] for e in image_catalog.runs["hdf5"].events()]


def test_xarray_dask_is_lazy_and_matches(image_catalog, count_requests):
    import dask.array

    h = _header(image_catalog, "hdf5")
    ds = h.xarray_dask()
    image = ds["cam_image"]
    assert isinstance(image.data, dask.array.Array)
    assert image.shape == (H5_EVENTS, H5_FRAMES, *H5_SHAPE)
    assert image.data.chunks[0] == (2, 2, 2)
    with count_requests(image_catalog.db.v2) as counter:
        one = image[5].values
    assert counter.count == 1
    numpy.testing.assert_array_equal(one, h5_frames()[5])
    numpy.testing.assert_array_equal(image.values, h5_frames())
    numpy.testing.assert_array_equal(
        ds["cam_total"].values, [e["data"]["cam_total"] for e in image_catalog.runs["hdf5"].events()]
    )
    eager = h.xarray()
    assert isinstance(eager["cam_image"].data, numpy.ndarray)
    numpy.testing.assert_array_equal(eager["cam_image"].values, h5_frames())
    numpy.testing.assert_array_equal(eager["seq_num"].values, numpy.arange(1, H5_EVENTS + 1))


def test_xarray_npy_and_internal_arrays(db, served):
    h = db[served.runs["images"].uid]
    ds = h.xarray_dask()
    numpy.testing.assert_array_equal(
        ds["img"].values, numpy.stack([numpy.arange(100, dtype="float64").reshape(10, 10)] * 3)
    )
    arrays = db[served.runs["arrays"].uid].xarray_dask()
    numpy.testing.assert_array_equal(
        arrays["matrix"].values, numpy.stack([numpy.arange(20, dtype="float64").reshape(5, 4)] * 4)
    )
    numpy.testing.assert_array_equal(arrays["spectrum"].values, numpy.tile([1.0, 2.0, 3.0], (4, 1)))


def test_read_frames_for_other_paths(image_catalog):
    h = _header(image_catalog, "hdf5")
    numpy.testing.assert_array_equal(read_frames(h, "primary", "cam_image", 1, 4), h5_frames()[1:4])
    numpy.testing.assert_array_equal(read_frames(h, "primary", "cam_image"), h5_frames())
    assert read_frames(h, "primary", "cam_image", 4, 4).shape == (0, H5_FRAMES, *H5_SHAPE)


# -- missing files -----------------------------------------------------------------
def test_missing_file_names_the_file_and_rest_is_readable(image_catalog):
    run = image_catalog.runs["tiff_missing"]
    h = _header(image_catalog, "tiff_missing")
    imgs = image_catalog.db.get_images(h, "tcam_image")
    numpy.testing.assert_array_equal(imgs[0], tiff_frames()[0])
    with pytest.raises(ExternalDataUnavailable, match=str(run.files[1].name)) as err:
        imgs[1]
    assert isinstance(err.value, OSError)
    assert str(run.files[0].name) not in str(err.value)
    with pytest.raises(ExternalDataUnavailable, match="readable storage"):
        h.table(fill=True)
    with pytest.raises(ExternalDataUnavailable, match=str(run.files[1].name)):
        list(h.data("tcam_image"))
    # Scalars, metadata and datum ids are still there.
    table = h.table()
    assert list(table["tcam_stats"]) == [e["data"]["tcam_stats"] for e in run.events()]
    assert h.start["sample"] == "tiff_missing"
    assert h.stop["exit_status"] == "success"
    assert len(imgs) == TIFF_EVENTS
    numpy.testing.assert_array_equal(imgs[3], tiff_frames()[3])


# -- handlers ----------------------------------------------------------------------
def test_handler_registry_is_accepted_and_warns_once(image_catalog, caplog):
    from databroker_compat import handlers

    db = image_catalog.db
    h = _header(image_catalog, "tiff")
    handlers._warned.discard("register_handler")
    handlers._warned.discard("get_images(handler_registry=...)")

    class Handler:
        def __init__(self, *args, **kwargs):
            pass

    with caplog.at_level(logging.WARNING, logger="databroker_compat.handlers"):
        with pytest.warns(UserWarning, match="server opens the detector files"):
            db.reg.register_handler("AD_TIFF", Handler)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            db.reg.register_handler("AD_TIFF", Handler)  # same handler again: no second warning
        with pytest.warns(UserWarning, match="get_images"):
            imgs = db.get_images(h, "tcam_image", handler_registry={"AD_TIFF": Handler})
    assert db.reg.handler_reg == {"AD_TIFF": Handler}
    assert sum("handlers are not used" in r.getMessage() for r in caplog.records) == 2
    numpy.testing.assert_array_equal(imgs[0], tiff_frames()[0])
    with pytest.raises(KeyError, match="overwrite=True"):
        db.reg.register_handler("AD_TIFF", object)
    db.reg.register_handler("AD_TIFF", object, overwrite=True)
    assert db.reg.handler_reg["AD_TIFF"] is object


# -- request planning (no server: the plan is a pure function of the node's chunks) ------
def test_row_groups_cover_rows_and_respect_chunks_and_budget():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from databroker_compat import arrays
    from databroker_compat.arrays import ArrayNode, row_groups

    @settings(max_examples=200, deadline=None)
    @given(
        chunks=st.lists(st.integers(1, 6), min_size=1, max_size=12),
        picks=st.lists(st.booleans(), min_size=72, max_size=72),
        budget=st.integers(1, 9),
    )
    def check(chunks, picks, budget):
        n = sum(chunks)
        node = ArrayNode(None, "k", ("r", "primary", "k"), (n, 2), "<u1", tuple(chunks))
        rows = [r for r in range(n) if picks[r]]
        saved = arrays.REQUEST_BYTES
        arrays.REQUEST_BYTES = budget * node.frame_bytes
        try:
            groups = row_groups(node, rows)
        finally:
            arrays.REQUEST_BYTES = saved
        covered = [r for _, start, stop in groups for r in range(start, stop)]
        assert covered == rows
        bounds = set(numpy.cumsum([0, *chunks]).tolist())
        for position, start, stop in groups:
            assert rows[position] == start and stop - start <= budget
            inner = [b for b in bounds if start < b < stop]
            # Crossing a chunk boundary only to read the next chunk whole.
            for b in inner:
                following = min(x for x in bounds if x > b)
                assert following <= stop

    check()
