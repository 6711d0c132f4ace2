"""20 typical v1 searches, ``db(...)``, against the hand-written ``client.search(...)`` chains.

Usage: python bench/bench_search.py [--runs 2000] [--repeat 7] [--directory DIR]

Writes ``--runs`` small synthetic runs (start and stop documents, built with
event_model's ``compose_run``, written with TiledWriter) into an embedded
SimpleTiledServer (SQLite catalog), or reuses the catalog in ``--directory`` when it
already holds them. Each search is timed end to end: the uids of every match in
start-time order, as ``[h.start["uid"] for h in db(...)]`` gives them. The baseline
is the chain of ``tiled.queries`` a Tiled user would write by hand for the same
question, sorted the same way, reading the same uids. Prints the best time of
each, the HTTP requests, and the ratio ours/baseline. Target: <= 1.2x.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import Requests, embedded_server, machine, write_with

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
PLANS = ["count", "scan", "rel_scan", "grid_scan"]
OWNERS = ["alice", "bob", "carol", "dave"]
DETECTORS = [["det1"], ["det1", "det2"], ["pilatus"], ["det10", "pilatus"], ["det2"]]


def run_documents(i: int):
    """Start and stop documents of run ``i`` (one run every 10 minutes from 2024-01-01 UTC)."""
    from event_model import compose_run

    plan = PLANS[i % len(PLANS)]
    md = {
        "scan_id": i + 1,
        "plan_name": plan,
        "owner": OWNERS[i % len(OWNERS)],
        "detectors": DETECTORS[i % len(DETECTORS)],
        "num_points": 1 + (i * 7) % 50,
        "sample": ({"name": "Si", "thickness_mm": 0.5} if i % 10 == 0
                   else ("Cu foil" if i % 3 else "Si wafer")),
    }
    if plan != "count":
        md["motors"] = ["motor1"] if plan != "grid_scan" else ["motor1", "motor2"]
    bundle = compose_run(time=T0 + 600 * i, metadata=md)
    status = "success" if i % 17 else "abort"
    stop = bundle.compose_stop(time=T0 + 600 * i + 30, exit_status=status)
    return [("start", bundle.start_doc), ("stop", stop)]


def fill(client, n: int) -> None:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    t = time.perf_counter()
    for i in range(n):
        write_with(writer, run_documents(i))
    print(f"wrote {n} runs in {time.perf_counter() - t:.1f} s")


def v1_uids(db, positional: tuple, kwargs: dict) -> list[str]:
    """``[h.start["uid"] for h in db(*positional, **kwargs)]``: a v1 search's uids, in its order."""
    return [h.start["uid"] for h in db(*positional, **kwargs)]


def raw_uids(root, chain) -> list[str]:
    """The uids the hand-written chain of ``tiled.queries`` finds in ``root``, in start-time order."""
    found = root
    for q in chain:
        found = found.search(q)
    return [run.metadata["start"]["uid"] for run in found.sort(("start.time", 1)).values()]


def searches(uid_of_500: str):
    """(label, db(...) arguments, hand-written query chain) for 20 typical searches."""
    from tiled.queries import Comparison, Contains, FullText, In, Key, KeyPresent, NotEq

    def at(day: str) -> float:
        return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()

    return [
        ("plan_name='scan'", ((), {"plan_name": "scan"}), [Key("start.plan_name") == "scan"]),
        ("scan_id=1234", ((), {"scan_id": 1234}), [Key("start.scan_id") == 1234]),
        ("scan_id $in", ((), {"scan_id": {"$in": [1, 5, 9, 250, 1999]}}),
         [In("start.scan_id", [1, 5, 9, 250, 1999])]),
        ("scan_id range", ((), {"scan_id": {"$gte": 100, "$lt": 200}}),
         [Comparison("ge", "start.scan_id", 100), Comparison("lt", "start.scan_id", 200)]),
        ("since/until strings", ((), {"since": "2024-01-03", "until": "2024-01-05"}),
         [Comparison("ge", "start.time", at("2024-01-03")),
          Comparison("lt", "start.time", at("2024-01-05"))]),
        ("since only", ((), {"since": "2024-01-13"}), [Comparison("ge", "start.time", at("2024-01-13"))]),
        ("owner='alice'", ((), {"owner": "alice"}), [Key("start.owner") == "alice"]),
        ("sample='Cu foil'", ((), {"sample": "Cu foil"}), [Key("start.sample") == "Cu foil"]),
        ("sample.name='Si'", ((), {"sample.name": "Si"}), [Key("start.sample.name") == "Si"]),
        ("detectors='pilatus' (array)", ((), {"detectors": "pilatus"}),
         [Contains("start.detectors", "pilatus")]),
        ("motors='motor2' (array)", ((), {"motors": "motor2"}), [Contains("start.motors", "motor2")]),
        ("owner $in", ((), {"owner": {"$in": ["alice", "bob"]}}), [In("start.owner", ["alice", "bob"])]),
        ("num_points $gt", ((), {"num_points": {"$gt": 45}}), [Comparison("gt", "start.num_points", 45)]),
        ("plan_name + num_points", ((), {"plan_name": "count", "num_points": {"$lte": 10}}),
         [Key("start.plan_name") == "count", Comparison("le", "start.num_points", 10)]),
        ("exit_status='abort' (stop)", ((), {"exit_status": "abort"}), [Key("stop.exit_status") == "abort"]),
        ("text 'wafer'", (("wafer",), {}), [FullText("wafer")]),
        ("uid", ((), {"uid": uid_of_500}), [Key("start.uid") == uid_of_500]),
        ("plan+owner+since", ((), {"plan_name": "rel_scan", "owner": "carol", "since": "2024-01-10"}),
         [Key("start.plan_name") == "rel_scan", Key("start.owner") == "carol",
          Comparison("ge", "start.time", at("2024-01-10"))]),
        ("motors $exists", ((), {"motors": {"$exists": True}}), [KeyPresent("start.motors")]),
        ("plan_name $ne", ((), {"plan_name": {"$ne": "count"}}), [NotEq("start.plan_name", "count")]),
    ]


def interleaved(a, b, repeat: int) -> tuple[float, float]:
    """Best wall time of ``a()`` and of ``b()``, called alternately (the machine is shared)."""
    best_a = best_b = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a()
        best_a = min(best_a, time.perf_counter() - t)
        t = time.perf_counter()
        b()
        best_b = min(best_b, time.perf_counter() - t)
    return best_a, best_b


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--directory", default=None, help="keep (and reuse) the catalog here")
    args = parser.parse_args(argv)

    from tiled.queries import Key, SpecsQuery

    from databroker_compat import Broker

    server, client = embedded_server(directory=args.directory)
    try:
        if len(client) < args.runs:
            fill(client, args.runs)
        db = Broker(client, timezone="UTC")
        root = client.search(SpecsQuery(include=["BlueskyRun"]))  # the runs, as the Broker reads them
        scan_id = min(501, args.runs)  # run 500 (scan_id 501), or the last of a smaller catalog
        uid_of_500 = root.search(Key("start.scan_id") == scan_id).values().first().metadata["start"]["uid"]
        list(db(plan_name="count"))  # warm-up: the one-off backend probe

        print(f"machine: {machine()}; catalog: {len(root)} runs; best of {args.repeat}, alternating")
        print(f"{'search':<30}{'matches':>8}{'ours (s)':>10}{'base (s)':>10}{'ratio':>7}{'requests':>10}")
        total_ours = total_base = 0.0
        for label, (positional, kwargs), chain in searches(uid_of_500):
            ours = partial(v1_uids, db, positional, kwargs)
            base = partial(raw_uids, root, chain)
            got = ours()
            assert got == base(), label  # on this data the hand-written chains are exact
            t_ours, t_base = interleaved(ours, base, args.repeat)
            with Requests(client) as r_ours:
                ours()
            with Requests(client) as r_base:
                base()
            total_ours += t_ours
            total_base += t_base
            print(
                f"{label:<30}{len(got):>8}{t_ours:>10.4f}{t_base:>10.4f}{t_ours / t_base:>7.2f}"
                f"{r_ours.count:>6}/{r_base.count:<3}"
            )
        ratio = total_ours / total_base
        print(f"{'all 20 searches':<30}{'':>8}{total_ours:>10.4f}{total_base:>10.4f}{ratio:>7.2f}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
