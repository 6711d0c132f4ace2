"""Migration throughput, requests, server CPU, scaling and memory: ``migrate()`` against the naive loop.

Everything the "Targets" of issue 16 asks, in one command, the two sides interleaved
(the naive loop's line, then ours, then the ratio), on the same servers and the same runs:

(r) requests per run, per run kind (small scalar run, image run, large run), inline
    against one server process, verification included on our side; and the server's
    CPU seconds per migrated run, read from the server processes (psutil, or
    ``/proc/<pid>/stat``), for both sides;
(e) events/s of one ``--mid-events`` (2,000) and one ``--big-events`` (100,000) event run;
(s) runs/s of ``--small-runs`` small runs inline against one server process;
(d) runs/s of the same runs with 2 workers over 2 ``tiled serve`` processes sharing one
    PostgreSQL catalog, against the naive loop (one process, one server);
(c) the scaling matrix: ours on ``--scale-runs`` small runs with 1, 2 and 4 workers
    (``--workers``) against 1 and 2 server processes (``--servers``);
(a) peak traced memory at a quarter of ``--big-events`` and at full size (flat is the goal).
    Memory is the ``tracemalloc`` peak of a separate pass whose source is served over a
    socket by another process (``tests/mongo_wire.py``), as a MongoDB server is.

The naive loop reads the same ``LegacySource`` in this process and feeds every document
of each run to a fresh default ``TiledWriter`` (no state, no verification, no retries;
the legacy spec MIME types and resource patches only where a run has files, which send
no request). Ours is ``migrate()`` with its state file and per-run verification: inline
for one worker, a ``dask.distributed`` ``LocalCluster`` of worker processes otherwise,
each worker building the same seeded mongomock source before the clock starts.

The target is a ``tiled serve`` subprocess whose catalog and tables are in PostgreSQL
(the only backend that takes concurrent writers); a second server process serves the
same catalog on another port. Needs PostgreSQL on 127.0.0.1:5432.

    python bench/bench_migration.py --quick          # a few minutes
    python bench/bench_migration.py                  # the full sizes
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

from _common import (  # and tests/ on sys.path: servers, recorded, migration_source, mongo_wire
    TESTS,
    Requests,
    peak_memory,
)


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


def image_source(data_dir: Path, runs: int):
    """A LegacySource of ``runs`` recorded image runs (3 frames each, NPY_SEQ files in ``data_dir``)."""
    import copy

    import bluesky.plans as bp
    import mongomock
    import numpy
    from bluesky import RunEngine
    from ophyd.sim import SynSignalWithRegistry, det

    from databroker_compat.migration import LegacySource
    from migration_source import insert_recorded
    from recorded import RecordedRun

    img = SynSignalWithRegistry(func=lambda: numpy.arange(36, dtype="float64").reshape(6, 6), name="img", save_path=str(data_dir))
    recorded: dict[str, RecordedRun] = {}
    RE = RunEngine({}, call_returns_result=False)
    for i in range(runs):
        run = recorded[f"images{i}"] = RecordedRun(f"images{i}")
        token = RE.subscribe(lambda name, doc, run=run: run.docs.append((name, copy.deepcopy(doc))))
        RE(bp.count([img, det], 3))
        RE.unsubscribe(token)
    db = mongomock.MongoClient()["images"]
    insert_recorded(db, recorded)
    return LegacySource(db), [r.uid for r in recorded.values()]


def naive(source, uids, client) -> float:
    """A fresh TiledWriter per run, fed the run's normalised documents."""
    from bluesky_tiled_plugins import TiledWriter

    from databroker_compat.migration.writer import LEGACY_SPEC_TO_MIMETYPE, writer_patches

    t0 = time.perf_counter()
    for uid in uids:
        documents = source.documents(uid)
        writer = None
        for name, doc in documents:
            if writer is None:  # the reader's settings exist once it has read the first document
                writer = TiledWriter(
                    client, spec_to_mimetype=LEGACY_SPEC_TO_MIMETYPE, patches=writer_patches(documents.writer_settings)
                )
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (psutil, else /proc/<pid>/stat)."""
    try:
        import psutil
    except ImportError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    process = psutil.Process(pid)
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


class Target:
    """One PostgreSQL catalog served by one or two ``tiled serve`` processes."""

    def __init__(self, directory: Path, processes: int, readable: list[str]):
        from servers import TiledProcess, postgres_available, postgres_server

        reason = postgres_available()
        if reason:
            raise SystemExit(f"this benchmark needs PostgreSQL: {reason}")
        self.server, self.dbs = postgres_server(directory / "tiled", readable)
        self.others = []
        for i in range(1, processes):
            (directory / f"tiled{i}").mkdir(parents=True, exist_ok=True)
            other = TiledProcess(self.server.catalog, self.server.writable, readable, directory / f"tiled{i}", init=False)
            other.close()
            other.api_key = self.server.api_key
            other.start()
            self.others.append(other)

    @property
    def bases(self) -> list[str]:
        return [o.base for o in self.others]

    def cpu(self) -> float:
        """CPU seconds used so far by every server process."""
        return sum(cpu_seconds(p.process.pid) for p in [self.server, *self.others])

    def container(self, label: str):
        from tiled.client import from_uri

        return from_uri(self.server.uri).create_container(f"{label}-{uuid.uuid4().hex[:6]}")

    def close(self):
        for other in self.others:
            other.close()
        self.server.close()
        self.dbs.close()


@dataclass
class Side:
    """What one side cost on one set of runs: wall seconds, requests (inline only), server CPU seconds."""

    seconds: float
    requests: int | None
    cpu: float


def measure(target: Target, container, fn) -> Side:
    """Run ``fn()`` (returns wall seconds), counting the requests of ``container``'s client and the servers' CPU."""
    cpu0 = target.cpu()
    with Requests(container) as requests:
        seconds = fn()
    return Side(seconds, requests.count, target.cpu() - cpu0)


def run_ours(spec, local_source, uids, target: Target, workers: int, servers: int, state: Path, cluster_cache: dict,
             container=None) -> float:
    container = container if container is not None else target.container(f"w{workers}s{servers}")
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
    seed: int = 100

    def close(self) -> None:
        for cluster, client in self.clusters.values():
            client.close()
            cluster.close()
        self.target.close()

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed


def side_by_side(label: str, runs: int, events: int, n: Side, o: Side, threads: Side | None = None) -> None:
    """The naive line, our line(s), the ratios: runs/s, events/s, requests/run, server CPU s/run."""
    def line(name: str, s: Side) -> str:
        requests = f", {s.requests / runs:5.1f} requests/run" if s.requests is not None else ""
        per_request = f" ({1000 * s.cpu / s.requests:.1f} ms/request)" if s.requests else ""
        return (f"    {name:5s} {runs / s.seconds:8.2f} runs/s {runs * events / s.seconds:10,.0f} events/s"
                f"{requests}, server CPU {1000 * s.cpu / runs:7.1f} ms/run{per_request}")

    print(f"{label} ({runs} run(s) x {events} events)", flush=True)
    print(line("naive", n), flush=True)
    print(line("ours", o), flush=True)
    ratio = f"    ratio {n.seconds / o.seconds:.2f}x the naive loop's runs/s"
    if n.requests and o.requests is not None:
        ratio += f", requests {o.requests / n.requests:.2f}x"
    if n.cpu > 0:
        ratio += f", server CPU {o.cpu / n.cpu:.2f}x"
    print(ratio, flush=True)
    if threads is not None:
        print(line("ours2", threads), flush=True)
        print(f"    ratio {n.seconds / threads.seconds:.2f}x the naive loop's runs/s (ours2: workers=2, partitions on 2 threads "
              "of this process, one server process)", flush=True)


def case_pair(b: Bench, label: str, runs: int, events: int, *, threads: bool = False) -> None:
    """Naive then ours, inline, one server process, on identical sets of synthetic runs.

    With ``threads``, ours once more with ``workers=2``: the in-memory source makes the
    job run its partitions on two threads of this process (no dask), against the same
    single server process.
    """
    seed = b.next_seed()
    _, src_n, uids_n = build_source(b.template, runs, events, 1.0e9 + seed * 1e5, seed=seed)
    _, src_o, uids_o = build_source(b.template, runs, events, 1.0e9 + seed * 1e5, seed=seed)  # the same runs
    c_n, c_o = b.target.container("naive"), b.target.container("ours")
    n = measure(b.target, c_n, partial(naive, src_n, uids_n, c_n))
    o = measure(b.target, c_o, partial(ours, src_o, uids_o, c_o, b.tmp / f"{label[:3]}{seed}.jsonl"))
    t = None
    if threads:
        _, src_t, uids_t = build_source(b.template, runs, events, 1.0e9 + seed * 1e5, seed=seed)
        c_t = b.target.container("ours2")
        t = measure(b.target, c_t, partial(ours, src_t, uids_t, c_t, b.tmp / f"{label[:3]}{seed}t.jsonl", workers=2))
    side_by_side(label, runs, events, n, o, t)


def case_images(b: Bench, runs: int) -> None:
    data = b.tmp / "images"
    data.mkdir(exist_ok=True)
    src, uids = image_source(data, runs)
    c_n, c_o = b.target.container("img-naive"), b.target.container("img-ours")
    n = measure(b.target, c_n, partial(naive, src, uids, c_n))
    o = measure(b.target, c_o, partial(ours, src, uids, c_o, b.tmp / "img.jsonl"))
    side_by_side("(r) image runs (3 frames of 6x6, NPY_SEQ files)", runs, 3, n, o)


def case_distributed(b: Bench, runs: int, events: int) -> None:
    """2 workers over 2 server processes against the naive loop (one process, one server)."""
    seed = b.next_seed()
    spec, src, uids = build_source(b.template, runs, events, 1.0e9 + seed * 1e5, seed=seed)
    c_n = b.target.container("d-naive")
    n = measure(b.target, c_n, partial(naive, src, uids, c_n))
    _, _, uids_o = build_source(b.template, runs, events, 1.0e9 + seed * 1e5, seed=seed)
    c_o = b.target.container("d-ours")
    o = measure(b.target, c_o, partial(run_ours, spec, src, uids_o, b.target, 2, 2, b.tmp / f"d{seed}.jsonl", b.clusters, c_o))
    o.requests = None  # sent from the worker processes: not counted here
    side_by_side("(d) 2 workers over 2 server processes (PostgreSQL catalog) vs the naive loop", runs, events, n, o)


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
        print(f"(a) peak traced memory, 1 run x {size} events (source over a socket): naive {mb_naive:.1f} MiB, ours {mb_ours:.1f} MiB", flush=True)


def case_c(b: Bench, r: int, e: int, worker_counts: list[int], server_counts: list[int]) -> None:
    """The scaling matrix: runs/s for each (workers, servers), and the naive loop on the same runs."""
    spec, src, uids = build_source(b.template, r, e, 3.0e9, seed=3)
    c_n = b.target.container("c-naive")
    t_base = naive(src, uids, c_n)
    print(f"(c) naive loop on {r} runs x {e} events: {r / t_base:,.2f} runs/s ({r * e / t_base:,.0f} events/s)", flush=True)
    for servers in server_counts:
        for workers in worker_counts:
            cpu0 = b.target.cpu()
            t = run_ours(spec, src, uids, b.target, workers, servers, b.tmp / f"c{workers}{servers}.jsonl", b.clusters)
            cpu = b.target.cpu() - cpu0
            print(f"(c) ours, {workers} worker(s), {servers} server process(es): {r / t:,.2f} runs/s "
                  f"({r * e / t:,.0f} events/s), {t_base / t:.2f}x naive, server CPU {1000 * cpu / r:.1f} ms/run", flush=True)


QUICK = {"big_events": 20_000, "mid_events": 2_000, "small_runs": 60, "small_events": 10, "image_runs": 5,
         "scale_runs": 40, "workers": "1,2", "servers": "1,2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, no memory passes: a few minutes " + str(QUICK))
    parser.add_argument("--big-events", type=int, default=100_000)
    parser.add_argument("--mid-events", type=int, default=2_000)
    parser.add_argument("--small-runs", type=int, default=300)
    parser.add_argument("--small-events", type=int, default=10)
    parser.add_argument("--image-runs", type=int, default=20)
    parser.add_argument("--scale-runs", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts of the scaling matrix")
    parser.add_argument("--servers", default="1,2", help="comma-separated Tiled server process counts")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="case (a) only (its figures do not suffer from a busy machine)")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.skip_memory = True
    worker_counts = [int(w) for w in args.workers.split(",")]
    server_counts = [int(s) for s in args.servers.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench_migration_"))
    (tmp / "images").mkdir()
    b = Bench(None, Target(tmp, max(2, *server_counts), [str(tmp / "images")]), tmp)
    try:
        b.template = template_run()
        from databroker_compat.migration.writing_view import close_streams

        print(f"target: tiled serve over PostgreSQL, up to {max(2, *server_counts)} server process(es); {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}; the writer's stream closes: "
              f"{'sent' if close_streams(b.target.container('probe')) else 'skipped (no streaming cache, no webhook API)'}")
        if not args.memory_only:
            # Warm both sides (imports, the server's caches, the target's close decision) outside the figures.
            case_pair(b, "(warm-up)", 3, args.small_events)
            print("-- requests and server CPU per run, inline, one server process")
            case_pair(b, "(r) small scalar runs", args.small_runs, args.small_events, threads=True)
            case_images(b, args.image_runs)
            case_pair(b, "(r)(e) large run", 1, args.mid_events)
            if not args.skip_big:
                case_pair(b, "(e) big run", 1, args.big_events)
            print("-- scaling out")
            case_distributed(b, args.small_runs, args.small_events)
            if not args.skip_scale:
                case_c(b, args.scale_runs, args.small_events, worker_counts, server_counts)
        if not args.skip_big and not args.skip_memory:
            case_a_memory(b, args.big_events)
    finally:
        b.close()


if __name__ == "__main__":
    main()
