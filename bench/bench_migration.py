"""Migration throughput and memory: ``migrate()`` against the naive loop, same process.

Cases (sizes are options, so a quick run is possible):

(a) one run of ``--big-events`` events (default 100,000);
(b) ``--small-runs`` runs of ``--small-events`` events (default 2,000 x 10).

The naive loop reads the same ``LegacySource`` and feeds every document to a default
``TiledWriter`` (one writer for all runs, no state, no verification). Ours is
``migrate()`` with its state file and end-of-job verification, with ``--workers``
threads. The source is mongomock, built without unique indexes. Peak memory is the
``tracemalloc`` peak of a separate pass (tracing slows the timed passes down).

The target is an in-process ``SimpleTiledServer`` (``--server simple``) or a
PostgreSQL-backed ``tiled serve`` subprocess (``--server postgres``, needs the test
PostgreSQL on 127.0.0.1:5432); concurrent writers are only safe on the latter.

    python bench/bench_migration.py --big-events 20000 --small-runs 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def build_source(template, runs: int, events: int, time0: float):
    import mongomock

    from migration_source import fill_synthetic

    from databroker_compat.migration import LegacySource

    db = mongomock.MongoClient()[f"bench_{uuid.uuid4().hex[:8]}"]
    uids = fill_synthetic(db, template, runs=runs, events=events, time0=time0)
    return LegacySource(db, check_files=False), uids


def naive(source, uids, client) -> float:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    t0 = time.perf_counter()
    for uid in uids:
        for name, doc in source.documents(uid):
            writer(name, doc)
    return time.perf_counter() - t0


def ours(source, uids, client, workers: int, state: Path) -> float:
    from databroker_compat.migration import migrate

    t0 = time.perf_counter()
    report = migrate(source, client, uids=uids, progress=False, workers=workers, state_path=state)
    elapsed = time.perf_counter() - t0
    if not report.ok or len(report.migrated) != len(uids):
        raise SystemExit("migration did not move every run:\n" + report.summary())
    return elapsed


def peak(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def template_run():
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det1, det2

    from recorded import _Collector

    RE = RunEngine({}, call_returns_result=False)
    collect = _Collector()
    RE.subscribe(collect)
    collect.begin("template")
    RE(count([det1, det2], 1))
    return collect.runs["template"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-events", type=int, default=100_000)
    parser.add_argument("--small-runs", type=int, default=2_000)
    parser.add_argument("--small-events", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server", choices=["simple", "postgres"], default="simple")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    from tiled.client import from_uri

    tmp = Path(tempfile.mkdtemp(prefix="bench_migration_"))
    closers = []
    if args.server == "simple":
        from tiled.server import SimpleTiledServer

        server = SimpleTiledServer(tmp / "tiled")
        closers.append(server.close)
        uri = server.uri
    else:
        from servers import postgres_available, postgres_server

        reason = postgres_available()
        if reason:
            raise SystemExit(f"--server postgres: {reason}")
        server, dbs = postgres_server(tmp / "tiled", [])
        closers += [dbs.close, server.close]
        uri = server.uri
    try:
        root = from_uri(uri)
        template = template_run()
        print(f"server: {args.server}, workers: {args.workers}")

        # (a) one long run
        n = args.big_events
        src_n, uids_n = build_source(template, 1, n, 1.0e9)
        src_o, uids_o = build_source(template, 1, n, 1.1e9)
        t_naive = naive(src_n, uids_n, root.create_container("a-naive-" + uuid.uuid4().hex[:6]))
        t_ours = ours(src_o, uids_o, root.create_container("a-ours-" + uuid.uuid4().hex[:6]), args.workers, tmp / "a.jsonl")
        print(f"(a) 1 run x {n} events: naive {n / t_naive:,.0f} events/s, ours {n / t_ours:,.0f} events/s, ratio {t_naive / t_ours:.2f}x")
        if not args.skip_memory:
            for size in (max(n // 4, 1), n):
                src_m, uids_m = build_source(template, 1, size, 1.2e9 + size)
                mb_ours = peak(lambda: ours(src_m, uids_m, root.create_container("m-" + uuid.uuid4().hex[:6]), 1, tmp / f"m{size}.jsonl"))
                src_m, uids_m = build_source(template, 1, size, 1.3e9 + size)
                mb_naive = peak(lambda: naive(src_m, uids_m, root.create_container("mn-" + uuid.uuid4().hex[:6])))
                print(f"    peak traced memory, 1 run x {size} events: naive {mb_naive:.1f} MiB, ours {mb_ours:.1f} MiB")

        # (b) many small runs
        r, e = args.small_runs, args.small_events
        src_n, uids_n = build_source(template, r, e, 2.0e9)
        src_o, uids_o = build_source(template, r, e, 2.1e9)
        t_naive = naive(src_n, uids_n, root.create_container("b-naive-" + uuid.uuid4().hex[:6]))
        t_ours = ours(src_o, uids_o, root.create_container("b-ours-" + uuid.uuid4().hex[:6]), args.workers, tmp / "b.jsonl")
        print(
            f"(b) {r} runs x {e} events: naive {r / t_naive:,.2f} runs/s ({r * e / t_naive:,.0f} events/s), "
            f"ours {r / t_ours:,.2f} runs/s ({r * e / t_ours:,.0f} events/s), ratio {t_naive / t_ours:.2f}x"
        )
    finally:
        for close in reversed(closers):
            close()


if __name__ == "__main__":
    main()
