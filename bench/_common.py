"""Shared pieces of the benchmark scripts: an embedded server, synthetic runs, counters."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from contextlib import contextmanager


def embedded_server(**kwargs):
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    server = SimpleTiledServer(**kwargs)
    return server, from_uri(server.uri)


def synthetic_run(n_events: int, *, keys=("det", "motor"), start_time: float | None = None, **md):
    """Documents of a run with ``n_events`` scalar events, built with event_model."""
    from event_model import compose_run

    t0 = time.time() if start_time is None else start_time
    bundle = compose_run(time=t0, metadata={"plan_name": "count", **md})
    yield "start", bundle.start_doc
    data_keys = {k: {"dtype": "number", "shape": [], "source": f"sim:{k}", "object_name": k} for k in keys}
    desc = bundle.compose_descriptor(name="primary", data_keys=data_keys, object_keys={k: [k] for k in keys}, time=t0)
    yield "descriptor", desc.descriptor_doc
    for i in range(n_events):
        t = t0 + 0.001 * (i + 1)
        yield "event", desc.compose_event(
            data={k: float(i) + j for j, k in enumerate(keys)},
            timestamps={k: t for k in keys},
            seq_num=i + 1,
            time=t,
        )
    yield "stop", bundle.compose_stop(time=t0 + 0.001 * (n_events + 2))


def write(client, docs, **kwargs) -> str:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client, **kwargs)
    uid = None
    for name, doc in docs:
        if name == "start":
            uid = doc["uid"]
        writer(name, doc)
    return uid


class Requests:
    """Counts requests and response bytes of a Tiled client (httpx event hooks)."""

    def __init__(self, client):
        self.http = client.context.http_client
        self.count = 0
        self.bytes = 0

    def _request(self, request):
        self.count += 1

    def _response(self, response):
        response.read()
        self.bytes += len(response.content)

    def __enter__(self):
        self.count = self.bytes = 0
        self.http.event_hooks["request"].append(self._request)
        self.http.event_hooks["response"].append(self._response)
        return self

    def __exit__(self, *exc):
        self.http.event_hooks["request"].remove(self._request)
        self.http.event_hooks["response"].remove(self._response)


def timed(fn, repeat: int = 7):
    """Median wall time of ``fn()`` over ``repeat`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@contextmanager
def peak_memory():
    """Peak Python heap allocation (tracemalloc) inside the block, in bytes: box[0]."""
    box = [0]
    tracemalloc.start()
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
