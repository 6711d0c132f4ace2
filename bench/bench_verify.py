"""The cost of verification per run: no verification, the sampled default and ``full``, side by side.

Legacy runs recorded by a RunEngine (``ophyd.sim``) through suitcase-mongo into mongomock,
two kinds:

- *scalar*: ``count([det1, det2], --scalar-events)``;
- *image*: ``count([img, det], --frames)`` where ``img`` is a ``SynSignalWithRegistry``
  saving ``--size`` x ``--size`` float64 frames as NPY_SEQ files (one resource per run).

Each kind is migrated ``--runs`` times per verification mode (fresh uids, the same
documents and files) by the real job (``run_job``, one worker, one run per job) into a
fresh container of a ``tiled serve`` subprocess (SQLite catalog, DuckDB tables); the
modes take turns: ``--no-verify``, ``sample`` (the default: first, last and one random
frame per resource) and ``full`` (every frame). Printed per kind and mode: seconds per
run (median) and HTTP requests per run of the whole job, their ratio to ``--no-verify``,
what verification added, the requests the verification reports for itself and the
frames it compared.

    python bench/bench_verify.py            # 20 runs per kind, 100 frames of 256x256
    python bench/bench_verify.py --quick    # 8 runs per kind, 50 frames of 128x128 (about a minute)
"""

from __future__ import annotations

import argparse
import copy
import itertools
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Requests, machine  # and tests/ on sys.path: servers, migration_source
from migration_source import insert_mongo_normalized
from servers import sqlite_server

MODES = (("no verification", False, "sample"), ("sample (default)", True, "sample"), ("full", True, "full"))


def record(kind: str, files: Path, *, events: int, frames: int, size: int) -> list[tuple[str, dict]]:
    """The documents of one run of ``kind``, recorded with a RunEngine."""
    import bluesky.plans as bp
    import numpy
    from bluesky import RunEngine
    from ophyd.sim import SynSignalWithRegistry, det, det1, det2

    docs: list[tuple[str, dict]] = []
    RE = RunEngine({}, call_returns_result=False)
    RE.subscribe(lambda name, doc: docs.append((name, copy.deepcopy(doc))))
    if kind == "scalar":
        RE(bp.count([det1, det2], events))
    else:
        counter = itertools.count()
        ramp = numpy.arange(size * size, dtype="float64").reshape(size, size)
        img = SynSignalWithRegistry(func=lambda: ramp + next(counter), name="img", save_path=str(files))
        RE(bp.count([img, det], frames))
    return docs


def clone(docs: list[tuple[str, dict]], n: int) -> list[tuple[str, dict]]:
    """Run ``n``'s copy of ``docs``: fresh start, descriptor, event, stop and resource uids; same files."""
    from event_model import unpack_datum_page, unpack_event_page

    new: dict[str, str] = {}

    def fresh(old: str) -> str:
        return new.setdefault(old, str(uuid.uuid4()))

    out = []
    for name, doc in docs:
        doc = copy.deepcopy(doc)
        if name == "event_page":
            out.extend(("event", e) for e in unpack_event_page(doc))
        elif name == "datum_page":
            out.extend(("datum", d) for d in unpack_datum_page(doc))
        else:
            out.append((name, doc))
    for name, doc in out:
        if "uid" in doc:
            doc["uid"] = fresh(doc["uid"])
        for link in ("run_start", "descriptor", "resource"):
            if link in doc:
                doc[link] = fresh(doc[link])
        if name == "start":
            doc["time"] += n
        if name == "datum":
            doc["datum_id"] = new.setdefault(doc["datum_id"], f"{doc['resource']}/{doc['datum_kwargs']['index']}")
        if name == "event":
            doc["data"] = {k: new.get(v, v) if isinstance(v, str) else v for k, v in doc["data"].items()}
    return out


def measure(source, client, uids: list[str], verify: bool, level: str, tmp: Path) -> dict:
    from databroker_compat.migration.job import run_job
    from databroker_compat.migration.options import MigrationOptions

    target = client.create_container(f"bench-verify-{uuid.uuid4().hex}")
    options = MigrationOptions(verify=verify, verify_data=level, progress=False)
    with Requests(client) as requests:
        t0 = time.perf_counter()
        report = run_job(source, target, options, uids=uids, state_path=tmp / f"{uuid.uuid4().hex}.jsonl")
        seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"the migration did not succeed:\n{report.summary()}")
    checked = report.verification.runs if report.verification is not None else []
    return {
        "seconds": seconds / len(uids),
        "requests": requests.count / len(uids),
        "reported": statistics.mean(r.requests for r in checked) if checked else 0.0,
        "frames": statistics.mean(sum(r.frames_checked.values()) for r in checked) if checked else 0.0,
    }


def _mean(results: list[dict]) -> dict:
    """Seconds as the median over runs (one slow request must not decide), counts as means."""
    out = {k: statistics.mean(r[k] for r in results) for k in results[0]}
    out["seconds"] = statistics.median(r["seconds"] for r in results)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 runs per kind and mode, 50 frames of 128x128")
    parser.add_argument("--runs", type=int, default=None, help="runs per kind and mode (default 20; quick 8)")
    parser.add_argument("--scalar-events", type=int, default=10)
    parser.add_argument("--frames", type=int, default=None, help="frames per image run (default 100; quick 50)")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels (default 256; quick 128)")
    args = parser.parse_args(argv)
    runs = args.runs or (8 if args.quick else 20)
    frames = args.frames or (50 if args.quick else 100)
    size = args.size or (128 if args.quick else 256)

    import mongomock
    from tiled.client import from_uri

    from databroker_compat.migration import LegacySource

    tmp = Path(tempfile.mkdtemp(prefix="bench_verify_"))
    files = tmp / "files"
    files.mkdir()
    server = None
    try:
        t0 = time.perf_counter()
        server = sqlite_server(tmp / "server", [str(files)])
        client = from_uri(server.uri)
        db = mongomock.MongoClient()["metadatastore"]
        kinds = {}
        for kind in ("scalar", "image"):
            docs = record(kind, files, events=args.scalar_events, frames=frames, size=size)
            uids = []
            for n in range(1 + len(MODES) * runs):
                run = clone(docs, n)
                insert_mongo_normalized(db, run)
                uids.append(run[0][1]["uid"])
            kinds[kind] = uids
        source = LegacySource(db)
        print(f"machine: {machine()}")
        print(f"target: tiled serve (SQLite catalog, DuckDB tables); set up in {time.perf_counter() - t0:.1f} s")
        print(f"runs per kind and mode: {runs}; scalar: {args.scalar_events} events; "
              f"image: {frames} frames of {size}x{size} float64 (NPY_SEQ, one resource)\n")
        header = (f"{'run kind':<8} {'verification':<17} {'s/run':>7} {'x none':>7} {'+ms/run':>8} "
                  f"{'req/run':>8} {'x none':>7} {'+req':>6} {'reported':>9} {'frames':>7}")
        print(header)
        print("-" * len(header))
        for kind, uids in kinds.items():
            measure(source, client, uids[:1], False, "sample", tmp)  # warm-up: the server's first tables
            results: dict[str, list[dict]] = {label: [] for label, _, _ in MODES}
            for r in range(runs):  # the modes in turns, so that drift hits them alike
                for i, (label, verify, level) in enumerate(MODES):
                    uid = uids[1 + r * len(MODES) + i]
                    results[label].append(measure(source, client, [uid], verify, level, tmp))
            base = _mean(results[MODES[0][0]])
            for label, _, _ in MODES:
                result = _mean(results[label])
                print(f"{kind:<8} {label:<17} {result['seconds']:>7.3f} {result['seconds'] / base['seconds']:>7.2f} "
                      f"{(result['seconds'] - base['seconds']) * 1e3:>8.0f} {result['requests']:>8.1f} "
                      f"{result['requests'] / base['requests']:>7.2f} {result['requests'] - base['requests']:>6.1f} "
                      f"{result['reported']:>9.1f} {result['frames']:>7.1f}")
        print("\ns/run, req/run: the whole job per run (write and verify); x none: ratio to no verification;"
              "\n+ms/run, +req: what verification added; reported: the requests the verification counts"
              "\nfor itself (its share of the batch's searches included); frames: frames of array data compared per run.")
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
