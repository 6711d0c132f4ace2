"""Re-emitting a long run: ``Header.documents()`` against ``BlueskyRun.documents()``.

The anchor is the path the Tiled/Bluesky docs give: the plugins' ``BlueskyRun.documents()``,
which needs the ``application/json-seq`` exporter registered on the server (a plain
server answers 406). Both paths read the same run from the same in-process server
(``tiled.server.app.build_app`` with that exporter, reached through
``Context.from_app``), so the server's own work is in both figures.

Run: ``python bench/bench_documents.py [n_events ...]`` (default 20000 100000).
Prints, per run size, seconds and documents per second, and how far the process's
resident memory rose above its level at the start of each pass (sampled every 5 ms;
the in-process server's allocations are included for both paths), then the ratios.
Our passes run first, so the anchor's larger allocations cannot hide in ours.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import detector_run, write


def build_client(directory: Path):
    """An in-process Tiled app over a SQL catalog, with the json-seq exporter registered."""
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.client import Context, from_context
    from tiled.config import Authentication
    from tiled.media_type_registration import default_serialization_registry
    from tiled.server.app import build_app

    (directory / "data").mkdir(parents=True, exist_ok=True)
    catalog = catalog_from_uri(
        directory / "catalog.db",
        writable_storage=[directory / "data", f"duckdb:///{directory / 'storage.duckdb'}"],
        init_if_not_exists=True,
    )
    # The exporter is registered by spec name, as a server config's `media_types` does.
    default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    api_key = "secret"
    app = build_app(
        catalog,
        authentication=Authentication(single_user_api_key=api_key),
        serialization_registry=default_serialization_registry,
    )
    context = Context.from_app(app, api_key=api_key)
    return context, from_context(context)


def write_run(client, n_events: int) -> str:
    """A count of two scalar detectors, n_events long, written through TiledWriter."""
    return write(client, detector_run(n_events))


class PeakRSS:
    """Samples this process's resident memory every few milliseconds; the peak above the start."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._done.is_set():
            self.peak = max(self.peak, self.rss())
            self._done.wait(self.interval)

    def __enter__(self):
        gc.collect()
        self.start = self.peak = self.rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def measure(label: str, make_iterator):
    """Seconds, documents per second and peak memory growth while iterating to the end."""
    with PeakRSS() as memory:
        t0 = time.perf_counter()
        count = 0
        for _ in make_iterator():
            count += 1
        elapsed = time.perf_counter() - t0
    print(
        f"  {label:<36} {count:>8} docs {elapsed:7.2f} s {count / elapsed:>10,.0f} docs/s"
        f"  peak +{memory.growth_mb:7.1f} MB"
    )
    return elapsed, max(memory.growth_mb, 0.1)


def probe_row_ranges(context, uid: str) -> None:
    """What Tiled's read endpoints return for the events table of one stream."""
    base = f"{context.api_uri}"
    table = f"{uid}/primary/internal"
    arrow = {"format": "application/vnd.apache.arrow.file"}
    probes = [
        ("table/full (whole table)", f"{base}table/full/{table}", arrow),
        ("table/partition 0", f"{base}table/partition/{table}", {**arrow, "partition": 0}),
        ("table/partition 1", f"{base}table/partition/{table}", {**arrow, "partition": 1}),
        ("array/full column det, slice=0:1000", f"{base}array/full/{table}/det", {"slice": "0:1000"}),
    ]
    print("  row ranges: what the endpoints return")
    for label, url, params in probes:
        t0 = time.perf_counter()
        response = context.http_client.get(url, params=params)
        elapsed = time.perf_counter() - t0
        print(f"    {label:<38} HTTP {response.status_code}  {len(response.content):>10,} bytes  {elapsed:6.3f} s")


def plain(name: str, doc: dict) -> dict:
    """A ``prepare_hook`` that keeps the plain dicts."""
    return doc


def plain_documents(db, uid: str):
    return db[uid].documents()


def main(sizes: list[int]) -> None:
    from databroker_compat import Broker

    with tempfile.TemporaryDirectory() as tmp:
        context, client = build_client(Path(tmp))
        db = Broker(client)
        # Warm up both paths (imports, caches) on a small run so that neither pays for them.
        small = write_run(client, 100)
        for _ in db[small].documents():
            pass
        for _ in client[small].documents():
            pass
        for n in sizes:
            t0 = time.perf_counter()
            uid = write_run(client, n)
            print(f"run of {n:,} events written in {time.perf_counter() - t0:.1f} s")
            probe_row_ranges(context, uid)
            header = db[uid]
            header.descriptors  # noqa: B018 (stream list fetched outside the timing)
            ours_t, ours_m = measure("ours   Header.documents()", header.documents)
            events_t, events_m = measure("ours   Header.events()", header.events)
            pages_t, pages_m = measure("ours   documents(event_pages=True)", partial(header.documents, event_pages=True))
            plain_db = Broker(client)
            plain_db.prepare_hook = plain
            raw_t, raw_m = measure("ours   documents(), plain dicts", partial(plain_documents, plain_db, uid))
            run_client = client[uid]
            anchor_t, anchor_m = measure("anchor BlueskyRun.documents()", run_client.documents)
            print(
                f"  ours/anchor: documents() {anchor_t / ours_t:.1f}x faster, peak memory "
                f"{ours_m:.1f} MB vs {anchor_m:.1f} MB ({anchor_m / ours_m:.1f}x less); "
                f"events() {anchor_t / events_t:.1f}x faster; event pages {anchor_t / pages_t:.1f}x faster; "
                f"plain dicts {anchor_t / raw_t:.1f}x faster"
            )
        context.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20_000, 100_000])
