"""Migration throughput, scaling and memory: ``migrate()`` against the naive loop, same process.

Cases (sizes are options, so a quick run is possible):

(a) one run of ``--big-events`` events (default 100,000): events/s, naive and ours, and
    the peak traced memory at a quarter of that size and at full size (flat is the
    goal). Memory is the ``tracemalloc`` peak of a separate pass whose source is served
    over a socket by another process (``tests/mongo_wire.py``), as a MongoDB server is:
    mongomock in this process would count its own copies, since its ``find`` builds and
    sorts every matching document before applying the limit.
(b) ``--small-runs`` runs of ``--small-events`` events (default 2,000 x 10): runs/s and
    events/s of the naive loop and of ours with the best setting of the scaling matrix.
(c) the scaling matrix: ours on ``--scale-runs`` small runs with 1, 2 and 4 workers
    (``--workers``) against 1 and 2 Tiled server processes (``--servers``).

The naive loop reads the same ``LegacySource`` in this process and feeds every document
to one default ``TiledWriter`` (no state, no verification, no retries). Ours is
``migrate()`` with its state file and per-run verification: inline for one worker,
a ``dask.distributed`` ``LocalCluster`` of worker processes otherwise, each worker
building the same seeded mongomock source before the clock starts (a stand-in for
every worker connecting to one MongoDB server).

The target is a ``tiled serve`` subprocess whose catalog and tables are in PostgreSQL
(the only backend that takes concurrent writers); a second server process, when asked
for, serves the same catalog on another port. Needs PostgreSQL on 127.0.0.1:5432.

    python bench/bench_migration.py --big-events 20000 --small-runs 200 --scale-runs 100
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TESTS, peak_memory  # and tests/ on sys.path: servers, recorded, migration_source, mongo_wire


def template_run():
    """A count of det1 and det2 (one event) recorded from a RunEngine: the template of the synthetic runs."""
    import copy

    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det1, det2

    from recorded import RecordedRun

    run = RecordedRun("template")
    RE = RunEngine({}, call_returns_result=False)
    RE.subscribe(lambda name, doc: run.docs.append((name, copy.deepcopy(doc))))
    RE(count([det1, det2], 1))
    return run


def build_source(template, runs: int, events: int, time0: float, seed: int):
    """(the picklable spec, an open LegacySource on this process's copy, uids oldest first)."""
    from databroker_compat.migration import LegacySource
    from migration_source import SyntheticSource

    spec = SyntheticSource.of(template, runs=runs, events=events, time0=time0, seed=seed)
    db, uids = spec.build()
    return spec, LegacySource(db, check_files=False), uids


def naive(source, uids, client) -> float:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    t0 = time.perf_counter()
    for uid in uids:
        for name, doc in source.documents(uid):
            writer(name, doc)
    return time.perf_counter() - t0


def ours(source, uids, client, state: Path, **kwargs) -> float:
    from databroker_compat.migration import migrate

    t0 = time.perf_counter()
    report = migrate(source, client, uids=uids, progress=False, state_path=state, **kwargs)
    elapsed = time.perf_counter() - t0
    if not report.ok or len(report.migrated) != len(uids):
        raise SystemExit("migration did not move every run:\n" + report.summary())
    return elapsed


def ours_over(wire: WireSource, uids, client, state: Path) -> float:
    """``ours`` on a source opened (in the traced call) over the socket of ``wire``."""
    return ours(wire.source(), uids, client, state)


def naive_over(wire: WireSource, uids, client) -> float:
    """``naive`` on a source opened (in the traced call) over the socket of ``wire``."""
    return naive(wire.source(), uids, client)


def peak(fn) -> float:
    """Peak MiB of the allocations traced while ``fn`` runs."""
    with peak_memory() as box:
        fn()
    return box[0] / 2**20


class WireSource:
    """A synthetic source served over a socket by another process (``tests/mongo_wire.py``)."""

    def __init__(self, spec, directory: Path):
        import pickle
        import subprocess

        path = directory / f"spec-{spec.seed}.pickle"
        path.write_bytes(pickle.dumps(spec))
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "mongo_wire.py"), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        port = int(self.process.stdout.readline())
        self.uri = f"mongodb://127.0.0.1:{port}/synthetic_{spec.seed}?directConnection=true"

    def source(self):
        from databroker_compat.migration import LegacySource

        return LegacySource.from_uris(self.uri, check_files=False)

    def close(self):
        self.process.stdin.close()
        self.process.wait(30)


class Target:
    """One PostgreSQL catalog served by one or two ``tiled serve`` processes."""

    def __init__(self, directory: Path, processes: int):
        from servers import TiledProcess, postgres_available, postgres_server

        reason = postgres_available()
        if reason:
            raise SystemExit(f"this benchmark needs PostgreSQL: {reason}")
        self.server, self.dbs = postgres_server(directory / "tiled", [])
        self.others = []
        for i in range(1, processes):
            (directory / f"tiled{i}").mkdir(parents=True, exist_ok=True)
            other = TiledProcess(self.server.catalog, self.server.writable, [], directory / f"tiled{i}", init=False)
            other.close()
            other.api_key = self.server.api_key
            other.start()
            self.others.append(other)

    @property
    def bases(self) -> list[str]:
        return [o.base for o in self.others]

    def container(self, label: str):
        from tiled.client import from_uri

        return from_uri(self.server.uri).create_container(f"{label}-{uuid.uuid4().hex[:6]}")

    def close(self):
        for other in self.others:
            other.close()
        self.server.close()
        self.dbs.close()


def run_ours(spec, local_source, uids, target: Target, workers: int, servers: int, state: Path, cluster_cache: dict) -> float:
    container = target.container(f"w{workers}s{servers}")
    also = target.bases[: servers - 1]
    if workers == 1 and servers == 1:
        return ours(local_source, uids, container, state)
    from dask.distributed import Client, LocalCluster

    from databroker_compat.migration.connect import warm

    if workers not in cluster_cache:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR)
        cluster_cache[workers] = (cluster, Client(cluster))
    client = cluster_cache[workers][1]
    client.run(warm, spec)  # each worker builds its source copy before the clock starts
    return ours(spec, uids, container, state, scheduler=client, workers=workers, also_served_by=also)


@dataclass
class Bench:
    """What every case uses: the recorded template, the target servers, a scratch directory, the clusters."""

    template: Any
    target: Target
    tmp: Path
    clusters: dict = field(default_factory=dict)

    def close(self) -> None:
        for cluster, client in self.clusters.values():
            client.close()
            cluster.close()
        self.target.close()


def case_a_speed(b: Bench, n: int) -> None:
    _, src, uids = build_source(b.template, 1, n, 1.0e9, seed=1)
    t_naive = naive(src, uids, b.target.container("a-naive"))
    t_ours = ours(src, uids, b.target.container("a-ours"), b.tmp / "a.jsonl")
    print(f"(a) 1 run x {n} events: naive {n / t_naive:,.0f} events/s, ours {n / t_ours:,.0f} events/s, ratio {t_naive / t_ours:.2f}x", flush=True)


def case_a_memory(b: Bench, n: int) -> None:
    # Warm up imports and caches first, so that neither size pays for them.
    _, src_w, uids_w = build_source(b.template, 1, 100, 1.1e9, seed=11)
    ours(src_w, uids_w, b.target.container("warm"), b.tmp / "warm.jsonl")
    naive(src_w, uids_w, b.target.container("warm-naive"))
    for size in (max(n // 4, 1), n):
        spec_m, _, uids_m = build_source(b.template, 1, size, 1.2e9 + size, seed=size)
        wire = WireSource(spec_m, b.tmp)
        try:
            mb_ours = peak(partial(ours_over, wire, uids_m, b.target.container("mw"), b.tmp / f"mw{size}.jsonl"))
            mb_naive = peak(partial(naive_over, wire, uids_m, b.target.container("mn")))
        finally:
            wire.close()
        print(f"    peak traced memory, 1 run x {size} events (source over a socket): naive {mb_naive:.1f} MiB, ours {mb_ours:.1f} MiB", flush=True)


def case_c(b: Bench, r: int, e: int, worker_counts: list[int], server_counts: list[int]) -> dict[tuple[int, int], float]:
    """The scaling matrix: runs/s for each (workers, servers)."""
    results: dict[tuple[int, int], float] = {}
    spec, src, uids = build_source(b.template, r, e, 3.0e9, seed=3)
    for servers in server_counts:
        for workers in worker_counts:
            t = run_ours(spec, src, uids, b.target, workers, servers, b.tmp / f"c{workers}{servers}.jsonl", b.clusters)
            results[(workers, servers)] = r / t
            print(f"(c) {r} runs x {e} events, {workers} worker(s), {servers} server process(es): {r / t:,.2f} runs/s ({r * e / t:,.0f} events/s)", flush=True)
    t_base = naive(src, uids, b.target.container("c-naive"))
    print(f"(c) naive loop on the same {r} runs: {r / t_base:,.2f} runs/s ({r * e / t_base:,.0f} events/s)", flush=True)
    return results


def case_b(b: Bench, r: int, e: int, best: tuple[int, int]) -> None:
    spec, src, uids = build_source(b.template, r, e, 2.0e9, seed=2)
    t_naive = naive(src, uids, b.target.container("b-naive"))
    t_ours = run_ours(spec, src, uids, b.target, best[0], best[1], b.tmp / "b.jsonl", b.clusters)
    print(
        f"(b) {r} runs x {e} events: naive {r / t_naive:,.2f} runs/s ({r * e / t_naive:,.0f} events/s), "
        f"ours ({best[0]} workers, {best[1]} server processes) {r / t_ours:,.2f} runs/s ({r * e / t_ours:,.0f} events/s), "
        f"ratio {t_naive / t_ours:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-events", type=int, default=100_000)
    parser.add_argument("--small-runs", type=int, default=2_000)
    parser.add_argument("--small-events", type=int, default=10)
    parser.add_argument("--scale-runs", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts of the scaling matrix")
    parser.add_argument("--servers", default="1,2", help="comma-separated Tiled server process counts")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="case (a): only the memory passes (their figures do not suffer from a busy machine)")
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    server_counts = [int(s) for s in args.servers.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench_migration_"))
    b = Bench(None, Target(tmp, max(server_counts)), tmp)
    try:
        b.template = template_run()
        print(f"target: tiled serve over PostgreSQL, up to {max(server_counts)} server process(es); {os.cpu_count()} cores")
        if not args.skip_big:
            if not args.memory_only:
                case_a_speed(b, args.big_events)
            if not args.skip_memory:
                case_a_memory(b, args.big_events)
        if args.memory_only:
            return
        results = case_c(b, args.scale_runs, args.small_events, worker_counts, server_counts)
        if not args.skip_small:
            case_b(b, args.small_runs, args.small_events, max(results, key=results.get))
    finally:
        b.close()


if __name__ == "__main__":
    main()
