"""Shared pieces of the benchmark scripts: servers, synthetic runs, counters, the machine.

Importing this module also puts the test harness (``tests/``: ``servers.py``,
``recorded.py``, ``migration_source.py``, ...) on ``sys.path``, so that the scripts start
their Tiled servers the way the tests do instead of keeping copies.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


# -- servers ----------------------------------------------------------------------------


def embedded_server(**kwargs):
    """An in-process ``SimpleTiledServer`` and a client of it: ``(server, client)``."""
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    server = SimpleTiledServer(**kwargs)
    return server, from_uri(server.uri)


# -- synthetic runs (documents built with event_model) -----------------------------------------


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


def detector_run(n_events: int, t0: float | None = None, **metadata):
    """A count of one detector with two fields (``det`` float, ``det_stats`` integer), ``n_events`` long.

    The long run of ``run_all.py`` and ``bench_documents.py``; ``metadata`` is added to the
    start document (``plan_name="count"`` and ``num_points`` are set).
    """
    from event_model import compose_run

    t0 = time.time() if t0 is None else t0
    bundle = compose_run(time=t0, metadata={"plan_name": "count", "num_points": n_events, **metadata})
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


def frame_value(i: int, size: int):
    """Frame ``i`` of the stack: a ``size`` x ``size`` uint16 ramp, shifted by ``7 * i``."""
    import numpy

    return ((numpy.arange(size * size, dtype="uint32").reshape(size, size) + 7 * i) % 65521).astype("uint16")


def write_stack(directory: Path, n: int, size: int) -> Path:
    """``directory/stack.h5``: ``n`` frames at ``/entry/data/data``, one chunk per frame."""
    import h5py

    path = directory / "stack.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("/entry/data/data", shape=(n, size, size), dtype="uint16", chunks=(1, size, size))
        for i in range(n):  # one frame at a time: the writer's memory stays small too
            ds[i] = frame_value(i, size)
    return path


def stack_run(path: Path, n: int, size: int, t0: float | None = None, **metadata):
    """Documents of a run whose ``det_image`` frames are the HDF5 stack at ``path``.

    The frames are referenced through stream_resource / stream_datum documents (one datum
    per 100 frames); ``det_total`` is an ordinary scalar field.
    """
    from event_model import StreamRange, compose_run

    t0 = time.time() if t0 is None else t0
    bundle = compose_run(time=t0, metadata={"plan_name": "count", **metadata})
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


def write(client, docs, **kwargs) -> str:
    """Feed ``docs`` to a new ``TiledWriter(client, **kwargs)`` (each a copy); the run's uid."""
    from bluesky_tiled_plugins import TiledWriter

    return write_with(TiledWriter(client, **kwargs), docs)


def write_with(writer, docs) -> str:
    """Feed one run's ``docs`` to ``writer`` (each a copy, the writer's own); the run's uid."""
    uid = None
    for name, doc in docs:
        if name == "start":
            uid = doc["uid"]
        writer(name, copy.deepcopy(doc))
    return uid


# -- counting and timing -----------------------------------------------------------------


class Requests:
    """Counts the HTTP requests a Tiled client sends (an httpx request hook): ``.count``."""

    def __init__(self, client):
        self.http = client.context.http_client
        self.count = 0

    def _request(self, request):
        self.count += 1

    def __enter__(self):
        self.count = 0
        self.http.event_hooks["request"].append(self._request)
        return self

    def __exit__(self, *exc):
        self.http.event_hooks["request"].remove(self._request)


def median_time(fn, repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timed(fn, repeat: int = 7) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls (after one warm-up)."""
    fn()
    return median_time(fn, repeat)


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
    """CPU model, cores, RAM, OS and Python version of this machine, in one line."""
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
