"""Legacy MongoDB test data: real RunEngine runs stored by suitcase-mongo, plus quirk variants.

``record_legacy`` runs bluesky plans (count, scan with a baseline, images through
``ophyd.sim.SynSignalWithRegistry``) with a RunEngine whose documents go, through
``suitcase.mongo_normalized.Serializer`` (the databroker v1 writer), into a mongomock
database, and keeps the emitted documents for comparison.

Each ``quirk_*`` function stores one hand-built legacy variant, derived from a recorded
run where that makes sense, the way an older writer (or a patched database) left it,
and returns a :class:`Quirk` with what the migration must make of it.
"""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from recorded import RecordedRun, _Collector


@dataclass
class Quirk:
    """One stored variant: its start uid and the values expected after migration."""

    uid: str
    start: dict
    stop: dict | None
    tables: dict[str, dict[str, list]] = field(default_factory=dict)  # stream -> column -> values
    warnings_contain: list[str] = field(default_factory=list)


def record_legacy(mds, assets, image_dir: Path) -> dict[str, RecordedRun]:
    """Record count, scan (+ baseline) and image runs into ``mds``/``assets`` (v1 layout)."""
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    import numpy
    from bluesky import RunEngine
    from ophyd.sim import SynSignalWithRegistry, det, det1, det2, motor, motor1
    from suitcase.mongo_normalized import Serializer

    image_dir.mkdir(parents=True, exist_ok=True)
    RE = RunEngine({}, call_returns_result=False)
    collect = _Collector()
    serializer = Serializer(mds, assets)
    RE.subscribe(collect)
    RE.subscribe(serializer)
    img = SynSignalWithRegistry(
        func=lambda: numpy.arange(12, dtype="float64").reshape(3, 4),
        name="img",
        save_path=str(image_dir),
    )

    collect.begin("count")
    RE(bp.count([det1, det2], 3), sample="Cu foil", operator="alice")
    collect.begin("scan")
    RE.preprocessors.append(bpp.SupplementalData(baseline=[det1, motor1]))
    RE(bp.scan([det], motor, -1, 1, 5), sample={"name": "Si", "thickness_mm": 0.5})
    RE.preprocessors.clear()
    collect.begin("images")
    RE(bp.count([img, det], 3), sample="image sample")
    return collect.runs


# -- helpers -----------------------------------------------------------------------


def _insert(db, collection: str, doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    db[collection].insert_one(doc)
    return doc


def _new_uid() -> str:
    return str(uuid.uuid4())


def _dk(dtype="number", shape=None, source="SIM:x"):
    return {"dtype": dtype, "shape": shape or [], "source": source}


def clone_docs(run: RecordedRun, *, uuid_datums: bool = False) -> list[tuple[str, dict]]:
    """The run's documents with fresh uids everywhere (start, descriptors, events, assets, stop)."""
    from event_model import sanitize_doc, unpack_datum_page, unpack_event_page

    new: dict[str, str] = {}

    def fresh(old: str) -> str:
        return new.setdefault(old, _new_uid())

    out = []
    for name, doc in run.docs:
        doc = sanitize_doc(copy.deepcopy(doc))
        if name == "event_page":
            out.extend(("event", d) for d in unpack_event_page(doc))
            continue
        if name == "datum_page":
            out.extend(("datum", d) for d in unpack_datum_page(doc))
            continue
        out.append((name, doc))
    result = []
    for name, doc in out:
        if "uid" in doc:
            doc["uid"] = fresh(doc["uid"])
        for link in ("run_start", "descriptor"):
            if link in doc:
                doc[link] = fresh(doc[link])
        if name == "datum":
            doc["resource"] = fresh(doc["resource"])
            if uuid_datums:
                new[doc["datum_id"]] = _new_uid()
            else:
                new[doc["datum_id"]] = f"{doc['resource']}/{doc['datum_kwargs'].get('index', 0)}"
            doc["datum_id"] = new[doc["datum_id"]]
        result.append((name, doc))
    for name, doc in result:
        if name == "event":
            doc["data"] = {k: new.get(v, v) if isinstance(v, str) else v for k, v in doc["data"].items()}
    return result


def store_v1(mds, assets, docs: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """Insert documents as the mongo_normalized layout held them; returns them by name."""
    target = {"start": (mds, "run_start"), "stop": (mds, "run_stop"), "descriptor": (mds, "event_descriptor"),
              "event": (mds, "event"), "resource": (assets, "resource"), "datum": (assets, "datum")}
    by_name: dict[str, list[dict]] = {}
    for name, doc in docs:
        db, collection = target[name]
        by_name.setdefault(name, []).append(_insert(db, collection, doc))
    return by_name


def table_of(docs: list[tuple[str, dict]], stream: str = "primary", keys=None) -> dict[str, list]:
    """Column -> values of the events of one stream (internal keys only, unless ``keys``)."""
    descs = {d["uid"]: d for n, d in docs if n == "descriptor" and d.get("name", "primary") == stream}
    events = [d for n, d in docs if n == "event" and d["descriptor"] in descs]
    events.sort(key=lambda e: e["seq_num"])
    if keys is None:
        keys = sorted({k for d in descs.values() for k, v in d["data_keys"].items() if "external" not in v})
    return {k: [e["data"].get(k) for e in events] for k in keys}


# -- quirk variants -------------------------------------------------------------------
# Each stores one run and returns what Broker must show after migration.

T0 = 1_500_000_000.0  # 2017-07-14, a plausible age for legacy runs


def _run_docs(events_data: list[dict], *, data_keys: dict, t0: float = T0) -> list[tuple[str, dict]]:
    """A small well-formed run, as documents, to be spoilt by a quirk."""
    uid = _new_uid()
    desc_uid = _new_uid()
    docs = [
        ("start", {"uid": uid, "time": t0, "scan_id": 7, "plan_name": "count", "sample": "legacy"}),
        ("descriptor", {"uid": desc_uid, "run_start": uid, "time": t0 + 0.5, "name": "primary",
                        "data_keys": data_keys, "configuration": {}, "hints": {}, "object_keys": {}}),
    ]
    for i, data in enumerate(events_data, 1):
        docs.append(("event", {"uid": _new_uid(), "descriptor": desc_uid, "seq_num": i, "time": t0 + i,
                               "data": data, "timestamps": {k: t0 + i - 0.1 for k in data}, "filled": {}}))
    n = len(events_data)
    docs.append(("stop", {"uid": _new_uid(), "run_start": uid, "time": t0 + n + 1,
                          "exit_status": "success", "reason": "", "num_events": {"primary": n}}))
    return docs


def _doc(docs, name):
    return next(d for n, d in docs if n == name)


def quirk_no_stop(mds, assets, recorded) -> Quirk:
    docs = [(n, d) for n, d in clone_docs(recorded["count"]) if n != "stop"]
    store_v1(mds, assets, docs)
    start = _doc(docs, "start")
    last = max(d["time"] for n, d in docs if n == "event")
    stop = {"run_start": start["uid"], "time": last, "exit_status": "unknown", "num_events": {"primary": 3}}
    return Quirk(start["uid"], start, stop, {"primary": table_of(docs)}, ["no stop document"])


def quirk_bare_descriptor(mds, assets, recorded) -> Quirk:
    docs = _run_docs([{"x": 1.0}, {"x": 2.0}], data_keys={"x": _dk()})
    desc = _doc(docs, "descriptor")
    for key in ("name", "object_keys", "configuration", "hints"):
        desc.pop(key)
    store_v1(mds, assets, docs)
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"x": [1.0, 2.0]}}, ["no name"])


def quirk_key_mismatch(mds, assets, recorded) -> Quirk:
    """Events carry ``extra`` (not in the descriptor); the descriptor's ``ghost`` is in no event."""
    docs = _run_docs([{"x": 1.0, "extra": 10}, {"x": 2.0, "extra": 20}, {"x": 3.0, "extra": 30}],
                     data_keys={"x": _dk(), "ghost": _dk()})
    store_v1(mds, assets, docs)
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"x": [1.0, 2.0, 3.0], "extra": [10, 20, 30]}}, ["'extra' found in events"])


def quirk_metadatastore_v0(mds, assets, recorded) -> Quirk:
    """ObjectId links, ``data={key: [value, timestamp]}`` without ``timestamps``, string scan_id."""
    uid = _new_uid()
    start = _insert(mds, "run_start", {"uid": uid, "time": T0, "scan_id": "42", "beamline_id": "CSX",
                                       "owner": "xf23id"})
    data_keys = {"sclr": _dk(source="PV:sclr"), "th": _dk(source="PV:th")}  # and no name
    desc = {"uid": _new_uid(), "run_start_id": start["_id"], "time": T0 + 0.5, "data_keys": data_keys}
    desc = _insert(mds, "event_descriptor", desc)
    values = [(1.5, 0.1), (2.5, 0.2), (3.5, 0.3)]
    for i, (s, th) in enumerate(values, 1):
        _insert(mds, "event", {"uid": _new_uid(), "descriptor_id": desc["_id"], "seq_num": i, "time": T0 + i,
                               "data": {"sclr": [s, T0 + i - 0.2], "th": [th, T0 + i - 0.3]}})
    stop = _insert(mds, "run_stop", {"uid": _new_uid(), "run_start_id": start["_id"], "time": T0 + 9,
                                     "exit_status": "success"})
    exp_start = {"uid": uid, "time": T0, "scan_id": 42, "beamline_id": "CSX", "owner": "xf23id"}
    exp_stop = {"uid": stop["uid"], "time": T0 + 9, "exit_status": "success", "run_start": uid}
    return Quirk(uid, exp_start, exp_stop, {"primary": {"sclr": [1.5, 2.5, 3.5], "th": [0.1, 0.2, 0.3]}},
                 ["string scan_id", "v0 events"])


def quirk_metadata_values(mds, assets, recorded) -> Quirk:
    import datetime

    from bson import ObjectId

    oid = ObjectId()
    docs = _run_docs([{"x": 1.0}], data_keys={"x": _dk()})
    start = _doc(docs, "start")
    start.update({"sample_id": oid, "prepared": datetime.datetime(2016, 3, 4, 5, 6, 7),
                  "temperature": float("nan"), "limits": [float("-inf"), 1.0, float("inf")],
                  "nested": {"ref": oid, "n": 3}, "scan_id": "not-a-number", "counter": 2**60})
    store_v1(mds, assets, docs)
    expected = {k: v for k, v in start.items() if k != "scan_id"}
    expected.update({"sample_id": str(oid), "prepared": "2016-03-04T05:06:07+00:00", "temperature": None,
                     "limits": [None, 1.0, None], "nested": {"ref": str(oid), "n": 3},
                     "legacy_scan_id": "not-a-number", "counter": 2**53 - 1})  # clamped as the writer does
    return Quirk(start["uid"], expected, _doc(docs, "stop"), {"primary": {"x": [1.0]}}, ["legacy_scan_id"])


def _image_quirk(mds, assets, recorded, *, uuid_datums=False) -> tuple[Quirk, list]:
    """A clone of the image run with its events stored; the caller stores resource and datums."""
    docs = clone_docs(recorded["images"], uuid_datums=uuid_datums)
    store_v1(mds, assets, [(n, d) for n, d in docs if n not in ("resource", "datum")])
    start = _doc(docs, "start")
    quirk = Quirk(start["uid"], start, _doc(docs, "stop"), {"primary": table_of(docs)})
    return quirk, docs


def _image_frames(n: int) -> list:
    import numpy

    return [numpy.arange(12, dtype="float64").reshape(3, 4)] * n


def quirk_filestore_v0(mds, assets, recorded) -> Quirk:
    """Resource without uid/root (root joined into the path), datums keyed ``event_id`` -> ObjectId."""
    quirk, docs = _image_quirk(mds, assets, recorded)
    resource = _doc(docs, "resource")
    joined = resource["root"].rstrip("/") + "/" + resource["resource_path"]
    v0_resource = {"spec": resource["spec"], "resource_kwargs": resource["resource_kwargs"], "resource_path": joined}
    stored = _insert(assets, "resource", v0_resource)
    for name, datum in docs:
        if name == "datum":
            _insert(assets, "datum", {"event_id": datum["datum_id"], "resource": stored["_id"],
                                      "datum_kwargs": datum["datum_kwargs"]})
    quirk.tables["primary"]["img"] = _image_frames(3)
    return quirk


def quirk_resource_without_run_start(mds, assets, recorded, *, uuid_datums=False) -> Quirk:
    quirk, docs = _image_quirk(mds, assets, recorded, uuid_datums=uuid_datums)
    for name, doc in docs:
        if name == "resource":
            doc = {k: v for k, v in doc.items() if k != "run_start"}
            _insert(assets, "resource", doc)
        elif name == "datum":
            _insert(assets, "datum", doc)
    quirk.tables["primary"]["img"] = _image_frames(3)
    return quirk


def quirk_duplicate_resource(mds, assets, recorded) -> tuple[Quirk, Quirk]:
    """Two runs whose resources share one uid (old databases inserted resources twice)."""
    first, docs1 = _image_quirk(mds, assets, recorded)
    second, docs2 = _image_quirk(mds, assets, recorded)
    shared = _doc(docs1, "resource")["uid"]
    for docs, quirk in ((docs1, first), (docs2, second)):
        for name, doc in docs:
            if name == "resource":
                _insert(assets, "resource", dict(doc, uid=shared))
            elif name == "datum":  # datum ids stay unique; their resource is the shared uid
                _insert(assets, "datum", dict(doc, resource=shared))
        quirk.tables["primary"]["img"] = _image_frames(3)
    return first, second


def quirk_missing_assets(mds, assets, recorded, what: str) -> Quirk:
    """``what``: "datum" (one datum gone), "resource" (resource gone) or "files" (files gone)."""
    quirk, docs = _image_quirk(mds, assets, recorded)
    resource = _doc(docs, "resource")
    if what == "files":
        resource = dict(resource, root="/nonexistent/legacy-detector", resource_path="gone")
    if what != "resource":
        _insert(assets, "resource", resource)
    datums = [d for n, d in docs if n == "datum"]
    for i, datum in enumerate(datums):
        if what == "datum" and i == len(datums) - 1:
            continue
        _insert(assets, "datum", datum)
    frames = _image_frames(3)
    # the event whose datum is missing has no image; a missing resource or files: no images at all
    quirk.tables["primary"]["img"] = frames[:2] + [None] if what == "datum" else None
    warnings = {"datum": ["not found"], "resource": ["not found"], "files": ["files missing"]}
    quirk.warnings_contain = warnings[what]
    return quirk


def quirk_bad_data_keys(mds, assets, recorded) -> Quirk:
    """Missing dtype/shape/source, an invalid dtype, a scalar shape on array values."""
    data_keys = {
        "a": {"source": "PV:a", "shape": []},  # no dtype
        "b": {"dtype": "number", "source": "PV:b"},  # no shape
        "c": {"dtype": "number", "shape": []},  # no source
        "d": {"dtype": "float64", "shape": [], "source": "PV:d"},  # not a JSON type
        "e": {"dtype": "number", "shape": [], "source": "PV:e"},  # holds arrays
    }
    docs = _run_docs([{"a": 1.0, "b": 2.0, "c": 3, "d": 4.5, "e": [1.0, 2.0]},
                      {"a": 1.5, "b": 2.5, "c": 4, "d": 5.5, "e": [3.0, 4.0]}], data_keys=data_keys)
    store_v1(mds, assets, docs)
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"a": [1.0, 1.5], "b": [2.0, 2.5], "c": [3.0, 4.0], "d": [4.5, 5.5],
                              "e": [[1.0, 2.0], [3.0, 4.0]]}}, ["dtype"])


def quirk_reserved_names(mds, assets, recorded) -> Quirk:
    docs = _run_docs([{"time": 10.0, "seq_num": 5, "x": 1.0}, {"time": 11.0, "seq_num": 6, "x": 2.0}],
                     data_keys={"time": _dk(), "seq_num": _dk("integer"), "x": _dk()})
    store_v1(mds, assets, docs)
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"time_": [10.0, 11.0], "seq_num_": [5, 6], "x": [1.0, 2.0]}})


def quirk_exit_status(mds, assets, recorded, status: str) -> Quirk:
    docs = _run_docs([{"x": 1.0}], data_keys={"x": _dk()})
    stop = _doc(docs, "stop")
    stop["exit_status"] = status
    store_v1(mds, assets, docs)
    mapped = {"aborted": "abort", "succeeded": "success", "failed": "fail"}.get(status.lower(), "unknown")
    expected = dict(stop, exit_status=mapped, reason=f"legacy exit_status {status!r}")
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), expected, {"primary": {"x": [1.0]}},
                 ["exit_status"])


def quirk_duplicate_events(mds, assets, recorded) -> Quirk:
    """seq_num 2 stored twice (same event re-inserted), seq_num 3 twice with different uids."""
    docs = _run_docs([{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], data_keys={"x": _dk()})
    events = [d for n, d in docs if n == "event"]
    store_v1(mds, assets, docs)
    _insert(mds, "event", events[1])
    _insert(mds, "event", dict(events[2], uid=_new_uid(), time=events[2]["time"] + 0.5, data={"x": 99.0}))
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"x": [1.0, 2.0, 3.0]}}, ["duplicate seq_num"])


def quirk_odd_values(mds, assets, recorded) -> Quirk:
    """NaN and +/-inf in a numeric column; numbers stored as strings; a string that is no number."""
    docs = _run_docs([{"x": float("nan"), "y": "3.5"}, {"x": float("inf"), "y": "n/a"},
                      {"x": float("-inf"), "y": 4.0}], data_keys={"x": _dk(), "y": _dk()})
    store_v1(mds, assets, docs)
    nan = float("nan")
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"x": [nan, math.inf, -math.inf], "y": [3.5, nan, 4.0]}}, ["converted"])


def quirk_unmapped_spec(mds, assets, recorded, spec: str) -> Quirk:
    quirk, docs = _image_quirk(mds, assets, recorded)
    for name, doc in docs:
        if name == "resource":
            _insert(assets, "resource", dict(doc, spec=spec))
        elif name == "datum":
            _insert(assets, "datum", doc)
    quirk.warnings_contain = ["no MIME type"]
    return quirk


def quirk_ad_tiff(mds, assets, recorded, image_dir: Path) -> Quirk:
    """areaDetector TIFF files: a directory ``resource_path`` without the trailing ``/``."""
    import numpy
    import tifffile

    directory = image_dir / f"tiff-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    frames = [numpy.full((4, 5), i, dtype="float64") for i in range(3)]
    for i, frame in enumerate(frames):  # one file per frame, frame_per_point=1
        tifffile.imwrite(directory / f"cam_{i:06d}.tiff", frame)
    docs = _run_docs([{"cam": None, "x": float(i)} for i in range(3)],
                     data_keys={"cam": {"dtype": "array", "shape": [4, 5], "source": "PV:cam",
                                        "external": "FILESTORE:"}, "x": _dk()})
    res_uid = _new_uid()
    resource = {"uid": res_uid, "spec": "AD_TIFF", "root": str(image_dir), "resource_path": directory.name,
                "resource_kwargs": {"template": "%s%s_%6.6d.tiff", "filename": "cam", "frame_per_point": 1},
                "path_semantics": "posix", "run_start": _doc(docs, "start")["uid"]}
    _insert(assets, "resource", resource)
    for i, (_name, doc) in enumerate((n, d) for n, d in docs if n == "event"):
        datum_id = f"{res_uid}/{i}"
        datum = {"datum_id": datum_id, "resource": res_uid, "datum_kwargs": {"point_number": i}}
        _insert(assets, "datum", datum)
        doc["data"]["cam"] = datum_id
    store_v1(mds, assets, docs)
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 # as v1's AD_TIFF handler did, each event's value holds frame_per_point frames
                 {"primary": {"x": [0.0, 1.0, 2.0], "cam": [f.reshape(1, 4, 5) for f in frames]}})


def quirk_duplicate_documents(mds, assets, recorded) -> Quirk:
    """The start and the descriptor stored twice (a re-sent document inserted again)."""
    docs = _run_docs([{"x": 1.0}, {"x": 2.0}], data_keys={"x": _dk()})
    store_v1(mds, assets, docs)
    _insert(mds, "run_start", _doc(docs, "start"))
    _insert(mds, "event_descriptor", _doc(docs, "descriptor"))
    return Quirk(_doc(docs, "start")["uid"], _doc(docs, "start"), _doc(docs, "stop"),
                 {"primary": {"x": [1.0, 2.0]}})
