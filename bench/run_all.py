"""The side-by-side table: databroker-compat, hand-written Tiled calls and databroker 2.x.

One command writes a fixed synthetic catalog into one Tiled server started by this
script, runs every v1 operation three ways on the same runs in the same process, and
prints one table (time, ratios, HTTP requests, peak memory) plus the notes that say
which side could not do what, with the error it raised.

Usage::

    python bench/run_all.py                  # full sizes (about 20 minutes on 2 busy cores)
    python bench/run_all.py --quick          # smoke run: every operation on a tiny catalog (about 2 minutes)
    python bench/run_all.py --docs docs/performance.md   # also rewrite the table there
    python bench/run_all.py --quick --output /tmp/table.md   # the same, into another file
    python bench/run_all.py --list           # the operations and what each compares, without running

The parts (``bench/side_by_side/``), one concept each:

- ``server``: ``tiled serve config`` in a subprocess (SQLite catalog, DuckDB tables), with
  the ``application/json-seq`` exporter of bluesky-tiled-plugins registered for
  ``BlueskyRun`` (databroker 2.x and ``BlueskyRun.documents()`` need it); started and
  stopped by the test harness's ``tests/servers.py``. A subprocess keeps the server's
  allocations and CPU out of the client's figures.
- ``catalog``: the runs, in a child container with the ``CatalogOfBlueskyRuns`` 3.0 spec
  (which databroker 2.x needs for ``db[-1]``, ``db[scan_id]`` and ``db[prefix]``):
  ``--small-runs`` (2,000) small runs, one every ten minutes from 2024-01-01 UTC, with the
  metadata of ``bench_search.py`` (plan names, owners, detectors, samples, scan_id = 1..N,
  some aborted), the newest ``--with-events`` (150) with a primary stream of
  ``--small-events`` (5) scalar events, the others start and stop only; one run of
  ``--long-events`` (100,000) scalar events; one run of ``--frames`` (1,000)
  ``--frame-size`` square uint16 frames in an HDF5 file, referenced through
  stream_resource/stream_datum documents (the file's directory is the server's readable
  storage); and a MongoDB archive (``mongomock``, the v1 ``mongo_normalized`` layout) of
  ``--mongo-runs`` runs of ``--mongo-events`` events, for the migration row.
- ``operations``: every operation as data, one callable per side (the same container is
  given to the three sides, each through its own client so that its requests are
  counted alone):

  - ``ours``: ``databroker_compat.Broker(client)``;
  - ``raw``: what a user writes by hand with ``tiled.client`` and ``tiled.queries``;
  - ``db2``: ``databroker.v1.Broker(client)`` from ``databroker[back-compat]`` 2.0.x.

- ``measure``: wall time (median of ``--repeat`` calls after a warm-up for the quick
  operations; one call for the heavy ones), HTTP requests of one call (httpx request
  hook on the side's client), and the peak of Python allocations during one call
  (tracemalloc, in a separate call, so tracing does not slow the timed one). Every answer
  is checked against ours; a side whose answer differs is reported as such.
- ``report``: the tables and notes, printed, and written between the markers of
  ``--docs`` (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from side_by_side.catalog import fill_catalog, mongo_archive
from side_by_side.measure import measure_all, search_summary
from side_by_side.operations import OPERATIONS, open_sides, search_operations, targets_for
from side_by_side.report import print_tables, report, write_docs
from side_by_side.server import ExporterServer

FULL = dict(small_runs=2000, small_events=5, with_events=150, long_events=100_000, frames=1000, frame_size=512,
            mongo_runs=20, mongo_events=1000, repeat=5, search_repeat=3)
QUICK = dict(small_runs=30, small_events=5, with_events=150, long_events=5000, frames=50, frame_size=64,
             mongo_runs=3, mongo_events=100, repeat=2, search_repeat=1)

HELP = {"with_events": "how many of the newest small runs have a primary stream",
        "repeat": "calls of a quick operation (after a warm-up) whose median is its time",
        "search_repeat": "calls of each search whose median is its time"}


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run: " + sizes_help(QUICK))
    for name, value in FULL.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                            help=f"{HELP.get(name, '')} (default {value:,})".strip())
    parser.add_argument("--docs", "--output", dest="docs", type=Path, default=None,
                        help="write the report between the run_all markers of this file "
                             "(docs/performance.md; markers and report are appended when missing)")
    parser.add_argument("--keep", action="store_true", help="keep the server directory")
    parser.add_argument("--list", action="store_true", help="list the operations and what each compares, then exit")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def sizes_help(sizes: dict) -> str:
    return ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in sizes.items())


def list_operations(args) -> None:
    labels = {**vars(args), "count": min(100, args.small_runs)}
    for op in OPERATIONS:
        print(f"{op.label.format(**labels):<52} {op.repeat:<6} compares {op.measures}")
    print(f"{'the 20 searches of bench_search.py':<52} {'search':<6} compares the uids found, as sets")


def measure(uri: str, written, archive, args):
    """Every operation on the three sides: ``(rows with the searches' summary, search rows)``."""
    import stamina

    targets = targets_for(written, archive, args)
    searches = search_operations(targets.uid_of_500)
    # A refused query fails at once instead of being retried for many seconds.
    stamina.set_active(False)
    sides = open_sides(uri, targets)
    print("measuring ...", flush=True)
    repeats = {"quick": args.repeat, "once": 1, "search": max(1, args.search_repeat)}
    rows = measure_all(sides, [*OPERATIONS, *searches], repeats)
    rows, search_rows = rows[: len(OPERATIONS)], rows[len(OPERATIONS):]
    rows.insert(4, search_summary(search_rows))
    return rows, search_rows


def main(argv=None) -> None:
    args = parse(argv)
    if args.list:
        list_operations(args)
        return
    script = os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_absolute() else __file__
    command = "python " + " ".join([script, *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_run_all_"))
    files = workdir / "files"
    files.mkdir()
    server = None
    try:
        server = ExporterServer(workdir / "server", files)
        print(f"server: tiled serve config in {workdir / 'server'}", flush=True)
        print("writing the catalog ...", flush=True)
        written = fill_catalog(server.uri, args, files)
        t = time.perf_counter()
        archive = mongo_archive(args.mongo_runs, args.mongo_events)
        print(f"  Mongo archive: {args.mongo_runs} runs x {args.mongo_events} events in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        rows, search_rows = measure(server.uri, written, archive, args)
        print_tables(rows, search_rows)
        if args.docs is not None:
            write_docs(args.docs, report(rows, search_rows, args, command, time.perf_counter() - started))
    finally:
        if server is not None:
            server.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
