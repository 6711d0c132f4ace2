"""The synthetic catalog the side-by-side table reads, and the MongoDB archive it migrates.

- ``small_runs`` small runs, one every ten minutes from 2024-01-01 UTC, with the metadata
  of ``bench_search.py`` (scan_id = 1..N); the newest ``with_events`` have a primary
  stream of ``small_events`` scalar events, the others are start and stop only;
- one run of ``long_events`` scalar events (``_common.detector_run``);
- one run of ``frames`` square uint16 frames of ``frame_size`` in an HDF5 file, referenced
  through stream_resource / stream_datum documents (``_common.stack_run``);
- a ``mongomock`` archive in the v1 ``mongo_normalized`` layout, for the migration row.

Everything goes into a child container with the ``CatalogOfBlueskyRuns`` 3.0 spec, which
databroker 2.x needs for ``db[-1]``, ``db[scan_id]`` and ``db[prefix]``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import bench_search
from _common import detector_run, stack_run, write, write_stack, write_with

T0 = bench_search.T0  # 2024-01-01 UTC
CATALOG = "bench"  # the child container of the server's root


@dataclass(frozen=True)
class Written:
    """The uids of what ``fill_catalog`` wrote: the long run, the image run, the small runs (oldest first)."""

    long: str
    image: str
    small: list[str]


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


def fill_catalog(uri: str, args, files: Path) -> Written:
    """Writes the catalog into a ``CatalogOfBlueskyRuns`` child of the server at ``uri``."""
    from tiled.client import from_uri
    from tiled.structures.core import Spec

    catalog = from_uri(uri).create_container(CATALOG, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")])
    # The two large runs are older than the small ones, so db[-1] and db[-100:] are small runs.
    t = time.perf_counter()
    long_uid = write(catalog, detector_run(args.long_events, T0 - 2 * 86400, scan_id=1_000_001))
    print(f"  long run: {args.long_events:,} events in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    path = write_stack(files, args.frames, args.frame_size)
    image_run = stack_run(path, args.frames, args.frame_size, T0 - 86400, scan_id=1_000_002, detectors=["cam"])
    image_uid = write(catalog, image_run)
    print(f"  image run: {args.frames:,} frames of {args.frame_size}x{args.frame_size} uint16 "
          f"({path.stat().st_size / 2**20:.0f} MiB HDF5) in {time.perf_counter() - t:.1f} s", flush=True)
    return Written(long_uid, image_uid, write_small_runs(catalog, args))


def write_small_runs(catalog, args) -> list[str]:
    """The small runs, oldest first; the newest ``--with-events`` get a primary stream.

    Those are the ones ``db[-100:]`` and the range search read; the others are start and
    stop only, as most lookups and searches need. One writer, one run after the other:
    concurrent writers into the shared DuckDB table brought the server down.
    """
    from bluesky_tiled_plugins import TiledWriter

    t = time.perf_counter()
    with_events = min(args.small_runs, args.with_events)
    writer = TiledWriter(catalog)
    uids = []
    for i in range(args.small_runs):
        n_events = args.small_events if i >= args.small_runs - with_events else 0
        uids.append(write_with(writer, small_run(i, n_events)))
        if (i + 1) % 250 == 0:
            print(f"  small runs: {i + 1} written ({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"  small runs: {args.small_runs} ({with_events} of them with {args.small_events} events) "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    return uids


MONGO_COLLECTIONS = {"start": "run_start", "stop": "run_stop", "descriptor": "event_descriptor", "event": "event"}


def legacy_run(r: int, n_events: int) -> list[tuple[str, dict]]:
    """Run ``r`` of the Mongo archive: a count of ``det`` and ``motor``, one hour after run ``r - 1``."""
    from event_model import compose_run

    t0 = 1.5e9 + 3600 * r
    bundle = compose_run(time=t0, metadata={"plan_name": "count", "scan_id": 50_000 + r, "owner": "legacy"})
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
    return docs


def mongo_archive(n_runs: int, n_events: int):
    """A mongomock database in the v1 ``mongo_normalized`` layout (events unpacked, ``_id`` on each)."""
    import mongomock

    database = mongomock.MongoClient()["bench_archive"]
    for r in range(n_runs):
        batches: dict[str, list] = {}
        for name, doc in legacy_run(r, n_events):
            record = json.loads(json.dumps(doc))
            if name == "event":
                record.setdefault("filled", {})
            batches.setdefault(MONGO_COLLECTIONS[name], []).append(record)
        for collection, records in batches.items():
            database[collection].insert_many(records)
    return database
