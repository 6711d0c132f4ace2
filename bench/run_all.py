"""The side-by-side table: databroker-compat, hand-written Tiled calls and databroker 2.x.

One command writes a fixed synthetic catalog into one Tiled server started by this
script, runs every v1 operation three ways on the same runs in the same process, and
prints one table (time, ratios, HTTP requests, peak memory) plus the notes that say
which side could not do what, with the error it raised.

Usage::

    python bench/run_all.py                  # full sizes (about 20 minutes on 2 busy cores)
    python bench/run_all.py --quick          # smoke run (a few minutes)
    python bench/run_all.py --docs docs/performance.md   # also rewrite the table there

The catalog (sizes are parameters):

- ``--small-runs`` (2,000) small runs, one every ten minutes from 2024-01-01 UTC, with the
  metadata of ``bench_search.py`` (plan names, owners, detectors, samples, scan_id = 1..N,
  some aborted); the newest ``--with-events`` (150) have a primary stream of
  ``--small-events`` (5) scalar events, the others are start and stop only;
- one run of ``--long-events`` (100,000) scalar events;
- one run of ``--frames`` (1,000) ``--frame-size`` square uint16 frames in an HDF5 file,
  referenced through stream_resource/stream_datum documents; the file's directory is
  given to the server as readable storage;
- a MongoDB archive (``mongomock``, the v1 ``mongo_normalized`` layout) of
  ``--mongo-runs`` runs of ``--mongo-events`` events, for the migration row.

The server is ``tiled serve config`` in a subprocess (SQLite catalog, DuckDB tables),
with the ``application/json-seq`` exporter of bluesky-tiled-plugins registered for
``BlueskyRun`` (databroker 2.x and ``BlueskyRun.documents()`` need it). A subprocess
keeps the server's allocations and CPU out of the client's figures. The runs live in a
child container with the ``CatalogOfBlueskyRuns`` 3.0 spec, which databroker 2.x needs
for ``db[-1]``, ``db[scan_id]`` and ``db[prefix]``; the same container is given to the
three sides, each through its own client so that its requests are counted alone.

The three sides:

- ``ours``: ``databroker_compat.Broker(client)``;
- ``raw``: what a user writes by hand with ``tiled.client`` and ``tiled.queries``;
- ``db2``: ``databroker.v1.Broker(client)`` from ``databroker[back-compat]`` 2.0.x.

Figures: wall time (median of ``--repeat`` calls after a warm-up for the quick
operations; one call for the heavy ones), HTTP requests of one call (httpx request
hook on the side's client), and the peak of Python allocations during one call
(tracemalloc, in a separate call, so tracing does not slow the timed one). Every answer
is checked against ours; a side whose answer differs is reported as such.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

import bench_search  # noqa: E402  (the 20 typical searches and the run metadata)

SIDES = ("ours", "raw", "db2")
SIDE_TITLES = {"ours": "databroker-compat", "raw": "raw Tiled", "db2": "databroker 2.x"}
T0 = bench_search.T0  # 2024-01-01 UTC
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"


# -- server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(directory: Path, readable: Path) -> tuple[subprocess.Popen, str]:
    """``tiled serve config`` with the json-seq exporter registered for BlueskyRun."""
    import httpx

    key = secrets.token_hex(12)
    port = free_port()
    (directory / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "authentication": {"single_user_api_key": key},
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": f"sqlite:///{directory / 'catalog.db'}",
                    "writable_storage": [
                        str(directory / "data"),
                        f"duckdb:///{directory / 'storage.duckdb'}",
                    ],
                    "readable_storage": [str(readable)],
                    "init_if_not_exists": True,
                },
            }
        ],
        "media_types": {
            "BlueskyRun": {"application/json-seq": "bluesky_tiled_plugins.exporters:json_seq_exporter"}
        },
    }
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    tiled = shutil.which("tiled") or str(Path(sys.executable).with_name("tiled"))
    log = open(directory / "server.log", "wb")
    process = subprocess.Popen(
        [tiled, "serve", "config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}/api/v1?api_key={key}"
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"tiled serve config did not start; see {directory / 'server.log'}")


# -- the synthetic catalog ----------------------------------------------------------


def small_run(i: int, n_events: int):
    """Run ``i``: the metadata of bench_search's run ``i``, plus a primary stream when ``n_events``."""
    from event_model import compose_run

    start, stop = (doc for _, doc in bench_search.run_documents(i))
    metadata = {k: v for k, v in start.items() if k not in ("uid", "time")}
    t0 = start["time"]
    bundle = compose_run(time=t0, metadata=metadata)
    yield "start", bundle.start_doc
    if not n_events:
        yield "stop", bundle.compose_stop(time=stop["time"], exit_status=stop["exit_status"])
        return
    keys = {
        "det": {"dtype": "number", "shape": [], "source": "SIM:det", "object_name": "det"},
        "motor": {"dtype": "number", "shape": [], "source": "SIM:motor", "object_name": "motor"},
    }
    desc = bundle.compose_descriptor(
        name="primary", data_keys=keys, object_keys={"det": ["det"], "motor": ["motor"]}, time=t0 + 0.5
    )
    yield "descriptor", desc.descriptor_doc
    for n in range(1, n_events + 1):
        t = t0 + 1 + n
        yield "event", desc.compose_event(
            data={"det": float(i * 1000 + n), "motor": 0.1 * n}, timestamps={"det": t, "motor": t},
            seq_num=n, time=t,
        )
    yield "stop", bundle.compose_stop(time=stop["time"], exit_status=stop["exit_status"])


def long_run(n_events: int, t0: float):
    from event_model import compose_run

    metadata = {"plan_name": "count", "scan_id": 1_000_001, "num_points": n_events}
    bundle = compose_run(time=t0, metadata=metadata)
    yield "start", bundle.start_doc
    keys = {
        "det": {"dtype": "number", "shape": [], "source": "SIM:det", "object_name": "det"},
        "det_stats": {"dtype": "integer", "shape": [], "source": "SIM:det_stats", "object_name": "det"},
    }
    desc = bundle.compose_descriptor(
        name="primary", data_keys=keys, object_keys={"det": ["det", "det_stats"]}, time=t0 + 0.5
    )
    yield "descriptor", desc.descriptor_doc
    for n in range(1, n_events + 1):
        t = t0 + 1 + 1e-3 * n
        yield "event", desc.compose_event(
            data={"det": 0.5 * n, "det_stats": n}, timestamps={"det": t, "det_stats": t}, seq_num=n, time=t
        )
    yield "stop", bundle.compose_stop(time=t0 + 2 + 1e-3 * n_events)


def frame(i: int, size: int):
    import numpy

    return ((numpy.arange(size * size, dtype="uint32").reshape(size, size) + 7 * i) % 65521).astype("uint16")


def write_stack(directory: Path, n: int, size: int) -> Path:
    import h5py

    path = directory / "stack.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("/entry/data/data", shape=(n, size, size), dtype="uint16",
                              chunks=(1, size, size))
        for i in range(n):
            ds[i] = frame(i, size)
    return path


def image_run(path: Path, n: int, size: int, t0: float):
    from event_model import StreamRange, compose_run

    bundle = compose_run(time=t0, metadata={"plan_name": "count", "scan_id": 1_000_002, "detectors": ["cam"]})
    yield "start", bundle.start_doc
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "det_image": {"dtype": "array", "shape": [size, size], "source": "SIM:cam", "external": "STREAM:",
                          "dtype_numpy": "<u2", "object_name": "cam"},
            "det_total": {"dtype": "number", "shape": [], "source": "SIM:cam_total", "object_name": "cam"},
        },
        object_keys={"cam": ["det_image", "det_total"]},
        time=t0 + 0.5,
    )
    yield "descriptor", desc.descriptor_doc
    sres = bundle.compose_stream_resource(
        mimetype="application/x-hdf5", uri=f"file://localhost{path}", data_key="det_image",
        parameters={"dataset": "/entry/data/data", "chunk_shape": [1]},
    )
    yield "stream_resource", sres.stream_resource_doc
    step = 100
    for first in range(0, n, step):
        last = min(n, first + step)
        yield "stream_datum", sres.compose_stream_datum(
            indices=StreamRange(start=first, stop=last), descriptor=desc.descriptor_doc
        )
        for i in range(first, last):
            t = t0 + 1 + 0.01 * i
            yield "event", desc.compose_event(
                data={"det_total": float(i)}, timestamps={"det_total": t}, seq_num=i + 1, time=t
            )
    yield "stop", bundle.compose_stop(time=t0 + 2 + 0.01 * n)


def write(container, docs) -> str:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(container)
    uid = None
    for name, doc in docs:
        if name == "start":
            uid = doc["uid"]
        writer(name, copy.deepcopy(doc))
    return uid


def fill_catalog(uri: str, args, files: Path) -> dict:
    """Writes the catalog into a ``CatalogOfBlueskyRuns`` child; returns what the ops need."""
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri
    from tiled.structures.core import Spec

    root = from_uri(uri)

    catalog = root.create_container("bench", specs=[Spec("CatalogOfBlueskyRuns", version="3.0")])
    t = time.perf_counter()
    # The two large runs are older than the small ones, so db[-1] and db[-100:] are small runs.
    long_uid = write(catalog, long_run(args.long_events, T0 - 2 * 86400))
    print(f"  long run: {args.long_events:,} events in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    path = write_stack(files, args.frames, args.frame_size)
    image_uid = write(catalog, image_run(path, args.frames, args.frame_size, T0 - 86400))
    print(f"  image run: {args.frames:,} frames of {args.frame_size}x{args.frame_size} uint16 "
          f"({path.stat().st_size / 2**20:.0f} MiB HDF5) in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    # The newest --with-events runs (the ones db[-100:] and the range search read) get a
    # primary stream; the others are start and stop only, as most lookups and searches need.
    # One writer, one run after the other: concurrent writers into the shared DuckDB
    # table brought the server down.
    with_events = min(args.small_runs, args.with_events)
    writer = TiledWriter(catalog)
    uids = []
    for i in range(args.small_runs):
        n_events = args.small_events if i >= args.small_runs - with_events else 0
        for name, doc in small_run(i, n_events):
            if name == "start":
                uids.append(doc["uid"])
            writer(name, doc)
        if (i + 1) % 250 == 0:
            print(f"  small runs: {i + 1} written ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"  small runs: {args.small_runs} ({with_events} of them with {args.small_events} events) "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    return {"long": long_uid, "image": image_uid, "small": uids}


def mongo_archive(n_runs: int, n_events: int):
    """A mongomock database in the v1 ``mongo_normalized`` layout (events unpacked, ``_id`` on each)."""
    import mongomock
    from event_model import compose_run

    database = mongomock.MongoClient()["bench_archive"]
    target = {"start": "run_start", "stop": "run_stop", "descriptor": "event_descriptor", "event": "event"}
    for r in range(n_runs):
        t0 = 1.5e9 + 3600 * r
        metadata = {"plan_name": "count", "scan_id": 50_000 + r, "owner": "legacy"}
        bundle = compose_run(time=t0, metadata=metadata)
        keys = {"det": {"dtype": "number", "shape": [], "source": "SIM:det"},
                "motor": {"dtype": "number", "shape": [], "source": "SIM:motor"}}
        desc = bundle.compose_descriptor(name="primary", data_keys=keys,
                                         object_keys={"det": ["det"], "motor": ["motor"]}, time=t0 + 0.5)
        docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
        for n in range(1, n_events + 1):
            t = t0 + 1 + 1e-3 * n
            docs.append(("event", desc.compose_event(data={"det": float(n), "motor": 0.01 * n},
                                                     timestamps={"det": t, "motor": t}, seq_num=n, time=t)))
        docs.append(("stop", bundle.compose_stop(time=t0 + 2 + 1e-3 * n_events)))
        batches: dict[str, list] = {}
        for name, doc in docs:
            record = json.loads(json.dumps(doc))
            if name == "event":
                record.setdefault("filled", {})
            batches.setdefault(target[name], []).append(record)
        for collection, records in batches.items():
            database[collection].insert_many(records)
    return database


def hand_written_migration(database, container) -> tuple[int, int]:
    """What one writes without a migration tool: each run's documents, in time order, into TiledWriter."""
    from bluesky_tiled_plugins import TiledWriter

    def plain(doc):
        doc = dict(doc)
        doc.pop("_id", None)
        return doc

    runs = events = 0
    for start in database["run_start"].find({}, sort=[("time", 1)]):
        writer = TiledWriter(container, batch_size=10_000)
        writer("start", plain(start))
        descriptors = list(database["event_descriptor"].find({"run_start": start["uid"]}, sort=[("time", 1)]))
        for desc in descriptors:
            writer("descriptor", plain(desc))
        for event in database["event"].find({"descriptor": {"$in": [d["uid"] for d in descriptors]}},
                                            sort=[("time", 1)]):
            writer("event", plain(event))
            events += 1
        stop = database["run_stop"].find_one({"run_start": start["uid"]})
        if stop is not None:
            writer("stop", plain(stop))
        runs += 1
    return runs, events


# -- measuring ----------------------------------------------------------------------


class RequestCounter:
    """Counts the HTTP requests a Tiled client sends (an httpx request hook)."""

    def __init__(self, client):
        self.http = client.context.http_client
        self.count = 0

    def _hook(self, request):
        self.count += 1

    def __enter__(self):
        self.count = 0
        self.http.event_hooks["request"].append(self._hook)
        return self

    def __exit__(self, *exc):
        self.http.event_hooks["request"].remove(self._hook)


@dataclass
class Cell:
    seconds: float | None = None
    requests: int | None = None
    peak: int | None = None
    answer: Any = None
    error: str | None = None
    differs: bool = False


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def measure(fn: Callable[[], Any], client, repeat: int) -> Cell:
    """Time (median of ``repeat`` after a warm-up, or one call if ``repeat`` is 1), requests, peak memory."""
    cell = Cell()
    try:
        with RequestCounter(client) as counter:
            t = time.perf_counter()
            cell.answer = fn()
            first = time.perf_counter() - t
        cell.requests = counter.count
        if repeat <= 1:
            cell.seconds = first
        else:
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            cell.seconds = statistics.median(times)
        tracemalloc.start()
        try:
            fn()
            cell.peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    except Exception as exc:  # reported in the table, never skipped
        cell.error = describe_error(exc)
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
    return cell


@dataclass
class Row:
    label: str
    cells: dict[str, Cell] = field(default_factory=dict)
    note: str = ""


def compare(row: Row) -> None:
    reference = row.cells["ours"]
    for side in ("raw", "db2"):
        cell = row.cells[side]
        if cell.error is None and reference.error is None and cell.answer != reference.answer:
            cell.differs = True


# -- the operations -------------------------------------------------------------------


def run_operations(uri: str, ids: dict, archive, args) -> tuple[list[Row], list[Row]]:
    """Every operation on every side; the sides run one after the other, databroker 2.x last.

    databroker 2.x's ``Header`` calls ``BlueskyRun.v2``, which (bluesky-tiled-plugins 2.0.12)
    copies the client dispatch table shallowly and so switches *every* Tiled client in the
    process to the v2 run class; measuring it last keeps that out of the other two sides.
    """
    import databroker
    import databroker.v1
    import numpy
    from tiled.client import from_uri
    from tiled.queries import Comparison, Key, Like

    from databroker_compat import Broker
    from databroker_compat.migration import LegacySource, migrate

    clients = {side: from_uri(uri) for side in SIDES}
    catalogs = {side: clients[side]["bench"] for side in SIDES}
    db = Broker(catalogs["ours"], timezone="UTC")
    raw = catalogs["raw"]
    db2 = databroker.v1.Broker(catalogs["db2"])
    print(f"databroker {databroker.__version__}: {type(db2).__module__}.{type(db2).__name__} over "
          f"{type(catalogs['db2']).__name__}", flush=True)

    small = ids["small"]
    uid = small[len(small) // 2]
    prefix = uid[:8]
    scan_id = len(small) // 2 + 1  # bench_search: scan_id = i + 1
    long_uid, image_uid = ids["long"], ids["image"]
    count = min(100, len(small))
    def utc(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    since = utc(T0 + 600 * (len(small) - count) - 1)
    until = utc(T0 + 600 * len(small))
    k = args.frames // 2
    expected_frame = int(frame(k, args.frame_size).astype("uint64").sum())
    by_time = ("start.time", 1)
    newest_first = ("start.time", -1)

    # Handles fetched once per side, outside the timed calls (as a script holds `h`).
    handles: dict[tuple[str, str], Any] = {}

    def handle(side: str, which: str):
        key = (side, which)
        if key not in handles:
            run_uid = {"long": long_uid, "image": image_uid}[which]
            handles[key] = {"ours": db, "raw": raw, "db2": db2}[side][run_uid]
        return handles[key]

    # -- lookups
    def raw_last():
        return raw.sort(by_time).values().last().metadata["start"]["uid"]

    def raw_prefix():
        found = raw.search(Like("start.uid", prefix + "%")).values().head(2)
        if len(found) != 1:
            raise KeyError(prefix)
        return found[0].metadata["start"]["uid"]

    def raw_scan_id():
        found = raw.search(Key("start.scan_id") == scan_id).sort(by_time)
        return found.values().last().metadata["start"]["uid"]

    ops: list[tuple[Row, dict, int]] = []

    def op(label: str, fns: dict[str, Callable[[], Any]], repeat: int, note: str = "") -> None:
        ops.append((Row(label, note=note), fns, repeat))

    op("db[-1]", {"ours": lambda: db[-1].start["uid"], "raw": raw_last, "db2": lambda: db2[-1].start["uid"]},
       args.repeat)
    op("db[uid]", {"ours": lambda: db[uid].start["uid"], "raw": lambda: raw[uid].metadata["start"]["uid"],
                   "db2": lambda: db2[uid].start["uid"]}, args.repeat)
    op("db[uid prefix] (8 characters)", {"ours": lambda: db[prefix].start["uid"], "raw": raw_prefix,
                                         "db2": lambda: db2[prefix].start["uid"]}, args.repeat)
    op("db[scan_id]", {"ours": lambda: db[scan_id].start["uid"], "raw": raw_scan_id,
                       "db2": lambda: db2[scan_id].start["uid"]}, args.repeat)

    # -- 20 typical searches; answers compared as sets of uids (databroker 2.x does not sort).
    search_ops: list[tuple[Row, dict, int]] = []
    uid_of_500 = small[min(500, len(small) - 1)]
    for label, (positional, kwargs), chain in bench_search.searches(uid_of_500):
        def ours(positional=positional, kwargs=kwargs):
            return sorted(h.start["uid"] for h in db(*positional, **kwargs))

        def base(chain=chain):
            found = raw
            for q in chain:
                found = found.search(q)
            return sorted(run.metadata["start"]["uid"] for run in found.sort(by_time).values())

        def legacy(positional=positional, kwargs=kwargs):
            return sorted(h.start["uid"] for h in db2(*positional, **kwargs))

        fns = {"ours": ours, "raw": base, "db2": legacy}
        search_ops.append((Row(label), fns, max(1, args.search_repeat)))

    # -- tables
    op(f"h.table() ({args.long_events:,} events)", {
        "ours": lambda: len(handle("ours", "long").table()),
        "raw": lambda: handle("raw", "long")["primary"].read().sizes["time"],
        "db2": lambda: len(handle("db2", "long").table()),
    }, 1, note="raw: run['primary'].read(), an xarray Dataset")

    def raw_newest_tables():
        runs = list(raw.sort(newest_first).values()[:count])
        return sum(r["primary"].read().sizes["time"] for r in reversed(runs))

    op(f"db[-{count}:] then h.table() each", {
        "ours": lambda: sum(len(x.table()) for x in db[-count:]),
        "raw": raw_newest_tables,
        "db2": lambda: sum(len(x.table()) for x in db2[-count:]),
    }, 1, note="raw: newest-first sort, first 100, then run['primary'].read() each")

    def raw_range_tables():
        found = raw.search(Comparison("ge", "start.time", T0 + 600 * (len(small) - count) - 1))
        found = found.search(Comparison("lt", "start.time", T0 + 600 * len(small)))
        return sum(r["primary"].read().sizes["time"] for r in found.sort(by_time).values())

    op(f"db(since, until): {count} headers, h.table() each", {
        "ours": lambda: sum(len(x.table()) for x in db(since=since, until=until)),
        "raw": raw_range_tables,
        "db2": lambda: sum(len(x.table()) for x in db2(since=since, until=until)),
    }, 1, note=f"since={since!r}, until={until!r} (UTC)")

    # -- documents of the long run
    def n_events(docs) -> int:
        events = 0
        for name, doc in docs:
            if name == "event":
                events += 1
            elif name == "event_page":
                events += len(doc["seq_num"])
        return events

    op(f"h.documents() ({args.long_events:,} events)", {
        "ours": lambda: n_events(handle("ours", "long").documents()),
        "raw": lambda: n_events(handle("raw", "long").documents()),
        "db2": lambda: n_events(handle("db2", "long").documents()),
    }, 1, note="raw: BlueskyRun.documents() (the server's json-seq exporter); answer: events re-emitted")

    # -- images
    def frame_sum(image) -> int:
        return int(numpy.asarray(image).astype("uint64").sum())

    op("db.get_images(h, 'det_image')[k]", {
        "ours": lambda: frame_sum(db.get_images(handle("ours", "image"), "det_image")[k]),
        "raw": lambda: frame_sum(handle("raw", "image")["primary"]["det_image"][k]),
        "db2": lambda: frame_sum(db2.get_images(handle("db2", "image"), "det_image")[k]),
    }, args.repeat, note=f"k={k}; the written frame sums to {expected_frame}")

    def filled(events) -> tuple[int, int]:
        n = corner = 0
        for event in events:
            n += 1
            corner += int(numpy.asarray(event["data"]["det_image"])[0, 1])
        return n, corner

    def raw_filled():
        images = handle("raw", "image")["primary"].read()["det_image"]
        return len(images), int(images.values[:, 0, 1].astype("int64").sum())

    op(f"db.get_events(h, fill=True) ({args.frames:,} frames)", {
        "ours": lambda: filled(db.get_events(handle("ours", "image"), fill=True)),
        "raw": raw_filled,
        "db2": lambda: filled(db2.get_events(handle("db2", "image"), fill=True)),
    }, 1, note="raw: run['primary'].read(), the whole stream at once; answer: events and a pixel sum")

    # -- migration of a fixed Mongo archive
    def ours_migration():
        target = clients["ours"].create_container("migrated-ours-" + uuid.uuid4().hex)
        result = migrate(LegacySource(archive), target, progress=False)
        if not result.ok:
            raise RuntimeError(result.summary())
        return len(result.migrated), result.events

    def raw_migration():
        target = clients["raw"].create_container("migrated-raw-" + uuid.uuid4().hex)
        return hand_written_migration(archive, target)

    def db2_migration():
        # databroker 2.x takes no v1 Mongo configuration and ships no Mongo -> TiledWriter copy;
        # the error this raises is its answer.
        config = {"metadatastore": {"module": "databroker.headersource.mongo", "class": "MDS",
                                    "config": {"host": "localhost", "port": 27017,
                                               "database": "bench_archive", "timezone": "UTC"}},
                  "assets": {"module": "databroker.assets.mongo", "class": "Registry",
                             "config": {"host": "localhost", "port": 27017, "database": "bench_archive"}}}
        databroker.v1.Broker.from_config(config)
        raise RuntimeError("databroker 2.x has no migration into Tiled")

    op(f"migrate Mongo archive ({args.mongo_runs} runs x {args.mongo_events:,} events)", {
        "ours": ours_migration, "raw": raw_migration, "db2": db2_migration,
    }, 1, note="ours also verifies every run after writing, raw only writes; answer: runs and events")

    for side in SIDES:
        print(f"-- {SIDE_TITLES[side]}", flush=True)
        for row, fns, repeat in ops + search_ops:
            row.cells[side] = cell = measure(fns[side], clients[side], repeat)
            shown = "-" if cell.seconds is None else f"{cell.seconds:9.4f} s"
            print(f"  {row.label:<48} {shown}{'  ' + cell.error if cell.error else ''}", flush=True)

    rows = [row for row, _, _ in ops]
    search_rows = [row for row, _, _ in search_ops]
    for row in rows + search_rows:
        compare(row)
    rows.insert(4, search_summary(search_rows))
    return rows, search_rows


def search_summary(search_rows: list[Row]) -> Row:
    n = len(search_rows)

    def ok(row: Row, side: str) -> bool:
        return row.cells[side].error is None and not row.cells[side].differs

    summary = Row(f"{n} typical searches (sum)")
    for side in SIDES:
        good = [r for r in search_rows if ok(r, side)]
        cell = Cell(seconds=sum(r.cells[side].seconds for r in good) if good else None,
                    requests=sum(r.cells[side].requests for r in good),
                    peak=max((r.cells[side].peak for r in good), default=0), answer=len(good))
        if len(good) < n:
            cell.error = (f"{n - len(good)} of {n} not answered or answered differently: "
                          + ", ".join(r.label for r in search_rows if not ok(r, side)))
        summary.cells[side] = cell
    both = [r for r in search_rows if ok(r, "ours") and ok(r, "db2")]
    summary.common = {  # type: ignore[attr-defined]
        "ours": sum(r.cells["ours"].seconds for r in both), "db2": sum(r.cells["db2"].seconds for r in both)}
    summary.note = (f"sums over the searches each side answered as ours did; the ours/db2 ratio is over the "
                    f"{len(both)} both answered")
    return summary


# -- output -------------------------------------------------------------------------


def fmt_seconds(cell: Cell) -> str:
    if cell.error and cell.seconds is None:
        return "cannot"
    if cell.differs:
        return "differs"
    value = cell.seconds
    text = f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    return text + ("*" if cell.error else "")


def ratio(a: Cell, b: Cell, a_seconds=None, b_seconds=None) -> str:
    a_s = a_seconds if a_seconds is not None else a.seconds
    b_s = b_seconds if b_seconds is not None else b.seconds
    if a.error and a.seconds is None or b.seconds is None or b.differs or a_s is None or not b_s:
        return "-"
    return f"{a_s / b_s:.2f}"


def fmt_count(cell: Cell, attr: str) -> str:
    value = getattr(cell, attr)
    if value is None or (cell.error and cell.seconds is None):
        return "-"
    return f"{value / 2**20:.1f}" if attr == "peak" else str(value)


def table(rows: list[Row]) -> list[list[str]]:
    out = [["operation", "ours", "raw Tiled", "databroker 2.x", "ours/raw", "ours/db2",
            "requests ours/raw/db2", "peak MiB ours/raw/db2"]]
    for row in rows:
        c = row.cells
        common = getattr(row, "common", None)
        if common:
            r2 = ratio(c["ours"], c["db2"], common["ours"], common["db2"])
        else:
            r2 = ratio(c["ours"], c["db2"])
        out.append([
            row.label, fmt_seconds(c["ours"]), fmt_seconds(c["raw"]), fmt_seconds(c["db2"]),
            ratio(c["ours"], c["raw"]), r2,
            "/".join(fmt_count(c[s], "requests") for s in SIDES),
            "/".join(fmt_count(c[s], "peak") for s in SIDES),
        ])
    return out


def notes(rows: list[Row], search_rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        for side in SIDES:
            cell = row.cells[side]
            if cell.error:
                lines.append(f"{row.label} — {SIDE_TITLES[side]}: {cell.error}")
            elif cell.differs:
                lines.append(f"{row.label} — {SIDE_TITLES[side]} answered {short(cell.answer)}, "
                             f"ours {short(row.cells['ours'].answer)}")
        if row.note:
            lines.append(f"{row.label}: {row.note}")
    for row in search_rows:
        for side in SIDES:
            cell = row.cells[side]
            if cell.error:
                lines.append(f"search {row.label} — {SIDE_TITLES[side]}: {cell.error}")
            elif cell.differs:
                lines.append(f"search {row.label} — {SIDE_TITLES[side]} found {len(cell.answer)} runs, "
                             f"ours {len(row.cells['ours'].answer)}")
    return lines


def short(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} items"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def search_table(search_rows: list[Row]) -> list[list[str]]:
    out = [["search", "matches", "ours", "raw Tiled", "databroker 2.x", "ours/raw", "ours/db2",
            "requests ours/raw/db2"]]
    for row in search_rows:
        c = row.cells
        matches = len(c["ours"].answer) if c["ours"].error is None else "-"
        out.append([row.label, str(matches),
                    fmt_seconds(c["ours"]), fmt_seconds(c["raw"]), fmt_seconds(c["db2"]),
                    ratio(c["ours"], c["raw"]), ratio(c["ours"], c["db2"]),
                    "/".join(fmt_count(c[s], "requests") for s in SIDES)])
    return out


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = (cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in rows[0]) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def versions() -> str:
    from importlib.metadata import version

    names = ["databroker-compat", "databroker", "tiled", "bluesky-tiled-plugins", "event-model", "mongomock"]
    return ", ".join(f"{n} {version(n)}" for n in names)


def report(rows, search_rows, args, command: str, elapsed: float) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = (f"{args.small_runs:,} small runs (the newest {min(args.small_runs, args.with_events)} with "
             f"{args.small_events} events, the others start and stop only), "
             f"one {args.long_events:,}-event run, "
             f"one {args.frames:,}-frame {args.frame_size}x{args.frame_size} uint16 image run; Mongo archive "
             f"{args.mongo_runs} runs x {args.mongo_events:,} events")
    parts = [
        f"Command: `{command}` ({when}, {elapsed / 60:.1f} min in all)",
        "",
        f"Machine: {machine()}",
        "",
        f"Versions: {versions()}",
        "",
        f"Catalog: {sizes}. Quick operations: median of {args.repeat} calls after a warm-up "
        f"(searches: {args.search_repeat}); heavy ones: one call.",
        "",
        markdown(table(rows)),
        "",
        "Times: `cannot` = the side raised (see the notes); `differs` = it answered, "
        "but not what ours and the written data say; `*` = a sum over part of the searches. "
        "Ratios below 1 mean ours is faster. "
        "Peak memory: tracemalloc peak of Python allocations in the client process during one call.",
        "",
        "Notes (every error is the one the side raised):",
        "",
        *[f"- {line}" for line in notes(rows, search_rows)],
        "",
        "The searches one by one:",
        "",
        markdown(search_table(search_rows)),
    ]
    return "\n".join(parts)


def write_docs(path: Path, text: str) -> None:
    current = path.read_text() if path.exists() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    else:
        path.write_text(f"{current}\n{BEGIN}\n{text}\n{END}\n")
    print(f"table written into {path}")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--small-runs", type=int, default=None)
    parser.add_argument("--small-events", type=int, default=5)
    parser.add_argument("--long-events", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--frame-size", type=int, default=None)
    parser.add_argument("--mongo-runs", type=int, default=None)
    parser.add_argument("--mongo-events", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--search-repeat", type=int, default=None)
    parser.add_argument("--with-events", type=int, default=150,
                        help="how many of the newest small runs have a primary stream")
    parser.add_argument("--docs", type=Path, default=None,
                        help="rewrite the table between the markers in this file")
    parser.add_argument("--keep", action="store_true", help="keep the server directory")
    args = parser.parse_args(argv)
    full = dict(small_runs=2000, long_events=100_000, frames=1000, frame_size=512, mongo_runs=20,
                mongo_events=1000, repeat=5, search_repeat=3)
    quick = dict(small_runs=150, long_events=5000, frames=50, frame_size=64, mongo_runs=3, mongo_events=100,
                 repeat=2, search_repeat=1)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv=None) -> None:
    import stamina

    args = parse(argv)
    script = os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_absolute() else __file__
    command = "python " + " ".join([script, *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_run_all_"))
    files = workdir / "files"
    files.mkdir()
    process = None
    try:
        from tiled.client import from_uri

        process, uri = start_server(workdir / "server", files)
        print(f"server: tiled serve config in {workdir / 'server'}", flush=True)
        print("writing the catalog ...", flush=True)
        ids = fill_catalog(uri, args, files)
        t = time.perf_counter()
        archive = mongo_archive(args.mongo_runs, args.mongo_events)
        print(f"  Mongo archive: {args.mongo_runs} runs x {args.mongo_events} events in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        # A refused query fails at once instead of being retried for many seconds.
        stamina.set_active(False)
        print("measuring ...", flush=True)
        rows, search_rows = run_operations(uri, ids, archive, args)
        text = report(rows, search_rows, args, command, time.perf_counter() - started)
        print()
        print(plain(table(rows)))
        print()
        for line in notes(rows, search_rows):
            print(f"- {line}")
        print()
        print(plain(search_table(search_rows)))
        if args.docs is not None:
            write_docs(args.docs, text)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
