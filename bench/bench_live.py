"""Latency of live runs: from the RunEngine's stop document to ``follow``'s yield and ``subscribe``'s stop.

A RunEngine on a thread writes small runs (``count([det1, det2], 3)``) through TiledWriter
into a ``tiled serve catalog --temp --cache redis://127.0.0.1:6379`` subprocess. For each
way of learning of new runs (websocket updates; polling at its default 1 s interval and
at 0.2 s), a ``db.follow()`` and a ``db.subscribe()`` run side by side in this process;
the time from the moment the RunEngine emitted a run's stop document (a callback
subscribed before the writer) to the moment the follower yielded the run, and to the
moment the subscriber's callback received the stop, is measured per run, next to the
writer's own handling of the stop (the RunEngine returns once TiledWriter has written the
last batch, the stop and closed the run's streams). Printed, not asserted.

Run: ``python bench/bench_live.py [runs_per_mode]`` (default 10). Needs Redis.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: F401  (puts tests/ on sys.path)
from servers import StreamingTiledProcess, redis_available

MODES = (("websocket", None), ("poll", None), ("poll", 0.2))


def measure(uri: str, mode: str, interval: float | None, runs: int) -> tuple[list[float], list[float], list[float]]:
    """(stop -> follow yield, stop -> subscriber's stop, the writer's own stop work) in seconds, per run."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from ophyd.sim import det1, det2
    from tiled.client import from_uri

    from databroker_compat import Broker

    client = from_uri(uri)
    node = client.create_container(f"bench-{mode}-{interval}-{time.time_ns()}")
    db = Broker(node)
    stopped: dict[str, float] = {}
    delivered: dict[str, float] = {}

    def note_stop(name: str, doc: dict) -> None:
        if name == "stop":
            stopped[doc["run_start"]] = time.monotonic()

    def note_delivery(name: str, doc: dict) -> None:
        if name == "stop":
            delivered[doc["run_start"]] = time.monotonic()

    RE = RunEngine({}, context_managers=[], call_returns_result=False)
    RE.subscribe(note_stop)  # before the writer: the moment the RunEngine emitted the stop
    RE.subscribe(TiledWriter(node))
    followed: dict[str, float] = {}
    written: list[float] = []  # RE(plan) returns once TiledWriter has handled the stop
    with (
        db.subscribe(note_delivery, mode=mode, poll_interval=interval),
        db.follow(mode=mode, poll_interval=interval, timeout=60) as follower,
    ):

        def work() -> None:
            for _ in range(runs):
                uid = RE(bp.count([det1, det2], 3))[0]
                written.append(time.monotonic() - stopped[uid])
                time.sleep(0.5)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        for header in follower:
            followed[header.uid] = time.monotonic()
            if len(followed) == runs:
                break
        thread.join()
        deadline = time.monotonic() + 30
        while len(delivered) < runs and time.monotonic() < deadline:
            time.sleep(0.05)
    to_follow = [followed[uid] - stopped[uid] for uid in stopped if uid in followed]
    to_subscriber = [delivered[uid] - stopped[uid] for uid in stopped if uid in delivered]
    return to_follow, to_subscriber, written


def describe(values: list[float]) -> str:
    if not values:
        return "no runs"
    ms = [1000 * v for v in values]
    return f"median {statistics.median(ms):7.0f} ms  min {min(ms):6.0f}  max {max(ms):6.0f}  (n={len(ms)})"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    reason = redis_available()
    if reason:
        raise SystemExit(f"bench_live needs Redis: {reason}")
    server = StreamingTiledProcess(Path(tempfile.mkdtemp()), [], persistent=False)
    try:
        print(f"{runs} runs of count([det1, det2], 3) per mode; tiled serve --temp --cache redis (subprocess)")
        for mode, interval in MODES:
            label = mode if interval is None else f"{mode} every {interval} s"
            to_follow, to_subscriber, written = measure(server.uri, mode, interval, runs)
            print(f"{label:<22} stop -> follow():    {describe(to_follow)}")
            print(f"{'':<22} stop -> subscribe(): {describe(to_subscriber)}")
            print(f"{'':<22} (TiledWriter's own stop work: {describe(written)})")
    finally:
        server.close()


if __name__ == "__main__":
    main()
