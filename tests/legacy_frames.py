"""Legacy image runs whose frames can be lost, shifted or reinterpreted by a careless migration.

``record_frame_runs`` records two real image runs with a RunEngine and ophyd.sim
detectors whose frame changes at every event (so that a frame served for the wrong event
shows), stored through suitcase-mongo into mongomock: ``u16`` (uint16 8×10 frames, the
descriptor declaring no dtype, as ophyd.sim and older detectors did) and ``f32``
(float32 6×7). Each ``frames_*`` function stores one defective variant (fresh uids, files
copied where the variant needs its own) and returns a :class:`FrameQuirk`: what Broker
must serve for each event, read from the files when the variant is made.
"""

from __future__ import annotations

import copy
import itertools
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from legacy_data import _doc, _insert, clone_docs, store_v1
from recorded import _Collector

EVENTS = 5


@dataclass
class FrameQuirk:
    """One stored image run: its uid, the key, what each event must read, what the report must say."""

    uid: str
    key: str
    frames: list  # per event (seq_num 1..n): the frame from the files, or the fill frame
    missing: list[int] = field(default_factory=list)  # seq_nums without their frame
    outcome: str = "with_fixes"
    root_map: list[str] = field(default_factory=list)  # --root-map entries the run needs
    notes_contain: list[str] = field(default_factory=list)
    scalar: dict[str, list] = field(default_factory=dict)  # internal key -> values per event


def record_frame_runs(mds, assets, image_dir: Path) -> dict:
    """Record the ``u16`` and ``f32`` image runs (5 events each) into ``mds``/``assets``."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import SynSignalWithRegistry, det
    from suitcase.mongo_normalized import Serializer

    image_dir.mkdir(parents=True, exist_ok=True)
    u16_count, f32_count = itertools.count(), itertools.count()

    def u16():
        return (numpy.arange(80, dtype="uint16").reshape(8, 10) + 100 * next(u16_count)).astype("uint16")

    def f32():
        return numpy.linspace(0, 1, 42, dtype="float32").reshape(6, 7) + numpy.float32(next(f32_count))

    RE = RunEngine({}, call_returns_result=False)
    collect = _Collector()
    RE.subscribe(collect)
    RE.subscribe(Serializer(mds, assets))
    collect.begin("u16")
    RE(bp.count([SynSignalWithRegistry(func=u16, name="cam", save_path=str(image_dir)), det], EVENTS))
    collect.begin("f32")
    RE(bp.count([SynSignalWithRegistry(func=f32, name="pix", save_path=str(image_dir)), det], EVENTS))
    return collect.runs


def _files(docs, directory: str | None = None) -> list[Path]:
    """The NPY file of each event's datum, in seq_num order (in ``directory`` if given)."""
    resource = _doc(docs, "resource")
    root = directory or resource["root"]
    datums = sorted((d for n, d in docs if n == "datum"), key=lambda d: d["datum_kwargs"]["index"])
    return [Path(root) / f"{resource['resource_path']}_{d['datum_kwargs']['index']}.npy" for d in datums]


def _relocated(docs, image_dir: Path, label: str) -> tuple[Path, list[Path]]:
    """Copy the run's files into a directory of their own; (directory, files)."""
    directory = image_dir / f"{label}-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    copied = []
    for path in _files(docs):
        copied.append(Path(shutil.copy(path, directory / path.name)))
    return directory, copied


def _store(mds, assets, docs) -> str:
    store_v1(mds, assets, docs)
    return _doc(docs, "start")["uid"]


def frames_datum_gap(mds, assets, runs) -> FrameQuirk:
    """The datum of the 3rd of 5 events was never written (the event still refers to it)."""
    docs = clone_docs(runs["f32"])
    frames = [numpy.load(p) for p in _files(docs)]
    gone = sorted((d for n, d in docs if n == "datum"), key=lambda d: d["datum_kwargs"]["index"])[2]
    uid = _store(mds, assets, [(n, d) for n, d in docs if d is not gone])
    frames[2] = numpy.full((6, 7), numpy.nan, dtype="float32")
    return FrameQuirk(uid, "pix", frames, [3], "incomplete", notes_contain=["arrived without 1 of 5 frames",
                                                                             "datum not found", "written inline"])


def frames_declared_shape(mds, assets, runs) -> FrameQuirk:
    """The descriptor declares the frames [10, 8]; the files hold 8×10 (uint16, no dtype declared)."""
    docs = clone_docs(runs["u16"])
    frames = [numpy.load(p) for p in _files(docs)]
    _doc(docs, "descriptor")["data_keys"]["cam"]["shape"] = [10, 8]
    uid = _store(mds, assets, docs)
    return FrameQuirk(uid, "cam", frames, notes_contain=["declared shape [10, 8]", "'<u2'"])


def frames_dead_root(mds, assets, runs, image_dir: Path) -> FrameQuirk:
    """The resource names a file system that is gone (/GPFS/...); the files were moved under ``image_dir``."""
    docs = clone_docs(runs["u16"])
    directory, files = _relocated(docs, image_dir, "moved")
    frames = [numpy.load(p) for p in files]
    old_root = f"/GPFS/xf99id/{directory.name}"
    _doc(docs, "resource")["root"] = old_root
    uid = _store(mds, assets, docs)
    mapping = [f"/GPFS/xf99id={directory.parent}"]
    return FrameQuirk(uid, "cam", frames, root_map=mapping, notes_contain=["'<u2'"])


def frames_files_deleted(mds, assets, runs, image_dir: Path) -> FrameQuirk:
    """Two of five files (events 2 and 4) were deleted from the detector storage."""
    docs = clone_docs(runs["u16"])
    directory, files = _relocated(docs, image_dir, "partial")
    _doc(docs, "resource")["root"] = str(directory)
    frames = [numpy.load(p) for p in files]
    for i in (1, 3):
        files[i].unlink()
        frames[i] = numpy.zeros((8, 10), dtype="uint16")  # the documented fill of integer frames
    uid = _store(mds, assets, docs)
    return FrameQuirk(uid, "cam", frames, [2, 4], "incomplete",
                      notes_contain=["arrived without 2 of 5 frames", f"files missing under '{directory}'"])


def frames_missing_keys(mds, assets, runs) -> FrameQuirk:
    """Events lacking declared keys: ``det`` in the 1st and 4th event, the image in the 2nd."""
    docs = clone_docs(runs["f32"])
    frames = [numpy.load(p) for p in _files(docs)]
    events = [d for n, d in docs if n == "event"]
    det = [e["data"]["det"] for e in events]
    for i in (0, 3):
        del events[i]["data"]["det"], events[i]["timestamps"]["det"]
        det[i] = float("nan")
    del events[1]["data"]["pix"], events[1]["timestamps"]["pix"]
    events[1]["filled"].pop("pix", None)
    frames[1] = numpy.full((6, 7), numpy.nan, dtype="float32")
    uid = _store(mds, assets, docs)
    return FrameQuirk(uid, "pix", frames, [2], "incomplete", scalar={"det": det},
                      notes_contain=["declared key 'det' absent from the event", "the event holds no datum"])


def frames_disagree(mds, assets, runs, image_dir: Path) -> FrameQuirk:
    """The last three events' frames sit in a second resource whose files hold 4×5 frames, not 8×10."""
    docs = clone_docs(runs["u16"])
    resource = _doc(docs, "resource")
    other = dict(copy.deepcopy(resource), uid=str(uuid.uuid4()), resource_path=f"other-{uuid.uuid4().hex[:8]}")
    for i in range(EVENTS):
        numpy.save(Path(other["root"]) / f"{other['resource_path']}_{i}.npy", numpy.full((4, 5), i, dtype="uint16"))
    datums = sorted((d for n, d in docs if n == "datum"), key=lambda d: d["datum_kwargs"]["index"])
    for datum in datums[2:]:
        datum["resource"] = other["uid"]
    uid = _store(mds, assets, docs)
    _insert(assets, "resource", other)
    return FrameQuirk(uid, "cam", [], outcome="failed", notes_contain=["FramesDisagree"])


def frames_layout(mds, assets, image_dir: Path, spec: str, layout: str, n: int = 6) -> FrameQuirk:
    """A hand-built image run whose datums the writer's defaults would register under the wrong files.

    ``layout``: ``"two_resources"`` (the detector started new files mid-run),
    ``"interleaved"`` (two resources, alternating), ``"two_descriptors"`` (one resource,
    the stream's configuration changed mid-run), ``"index_from_5"`` (the resource's
    points start at 5), ``"sparse_seq_nums"`` (seq_num 10, 12, 14, ...). Frames are
    uint16 4×5, a different value per event.
    """
    import tifffile

    from legacy_data import T0, _new_uid

    uid, descs = _new_uid(), [_new_uid(), _new_uid()]
    _insert(mds, "run_start", {"uid": uid, "time": T0, "scan_id": 1, "plan_name": "count"})
    key = {"cam": {"dtype": "array", "shape": [4, 5], "source": "SIM:cam", "external": "FILESTORE:"}}
    for j in range(2 if layout == "two_descriptors" else 1):
        _insert(mds, "event_descriptor", {"uid": descs[j], "run_start": uid, "time": T0 + 0.1 + j * (n / 2 + 0.5),
                                          "name": "primary", "data_keys": copy.deepcopy(key), "configuration": {}})
    resources = []
    for _ in range(2 if layout in ("two_resources", "interleaved") else 1):
        stem = f"{layout}-{uuid.uuid4().hex[:8]}"
        kwargs = {} if spec == "NPY_SEQ" else {"template": "%s%s_%6.6d.tiff", "filename": "cam", "frame_per_point": 1}
        if spec == "AD_TIFF":
            (image_dir / stem).mkdir(parents=True)
        resources.append(_insert(assets, "resource", {"uid": _new_uid(), "spec": spec, "root": str(image_dir),
                                                      "resource_path": stem, "resource_kwargs": kwargs, "run_start": uid}))
    frames, used = [], [0] * len(resources)
    for i in range(n):
        r = i % 2 if layout == "interleaved" else (1 if layout == "two_resources" and i >= n // 2 else 0)
        point = used[r] + (5 if layout == "index_from_5" else 0)
        used[r] += 1
        frame = numpy.full((4, 5), 10 * i + 1, dtype="uint16")
        frames.append(frame.reshape(1, 4, 5) if spec == "AD_TIFF" else frame)  # v1's TIFF handler: (frames, y, x)
        stem = resources[r]["resource_path"]
        if spec == "NPY_SEQ":
            numpy.save(image_dir / f"{stem}_{point}.npy", frame)
        else:
            tifffile.imwrite(image_dir / stem / f"cam_{point:06d}.tiff", frame)
        datum = _insert(assets, "datum", {"datum_id": _new_uid(), "resource": resources[r]["uid"],
                                          "datum_kwargs": {"index" if spec == "NPY_SEQ" else "point_number": point}})
        desc = descs[1] if layout == "two_descriptors" and i >= n // 2 else descs[0]
        seq = 10 + 2 * i if layout == "sparse_seq_nums" else i + 1
        _insert(mds, "event", {"uid": _new_uid(), "descriptor": desc, "seq_num": seq, "time": T0 + 1 + i,
                               "data": {"cam": datum["datum_id"]}, "timestamps": {"cam": T0 + 1 + i},
                               "filled": {"cam": False}})
    _insert(mds, "run_stop", {"uid": _new_uid(), "run_start": uid, "time": T0 + n + 2, "exit_status": "success",
                              "num_events": {"primary": n}})
    inline = layout in ("two_resources", "interleaved")
    return FrameQuirk(uid, "cam", frames, outcome="with_fixes",
                      notes_contain=["written inline"] if inline else ["'<u2'"])
