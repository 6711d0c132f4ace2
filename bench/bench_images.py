"""``imgs[k]`` from ``db.get_images`` against tiled's own array client, on one server.

Writes a 1,000-frame 512x512 uint16 stack (HDF5, one chunk per frame, StreamResource /
StreamDatum documents through TiledWriter), serves it with a ``tiled serve`` subprocess
(so the client's memory is measured alone), then reads the same frames both ways,
interleaved, and prints:

- time per frame (median) and the ratio ours / tiled;
- bytes transferred per frame (response bytes on the wire, counted with an httpx hook);
- peak Python memory per frame (tracemalloc) and over a 100-frame iteration, against the
  size of one frame and of the whole stack: memory stays flat.

Run: ``python bench/bench_images.py [--frames 1000] [--size 512] [--reads 60]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).parent))

from _common import frame_value, stack_run, write, write_stack
from servers import sqlite_server


class WireBytes:
    """Bytes received in HTTP responses (an httpx response hook; bodies are not forced)."""

    def __init__(self, http):
        self.http, self.responses = http, []

    def _hook(self, response):
        self.responses.append(response)

    @property
    def total(self) -> int:
        return sum(r.num_bytes_downloaded for r in self.responses)

    def __enter__(self):
        self.responses = []
        self.http.event_hooks["response"].append(self._hook)
        return self

    def __exit__(self, *exc):
        self.http.event_hooks["response"].remove(self._hook)


def measure(read, k: int, http):
    """(seconds, wire bytes, peak traced bytes) of one read of frame k."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with WireBytes(http) as wire:
        t0 = time.perf_counter()
        frame = read(k)
        elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    del frame
    return elapsed, wire.total, peak


def open_both(client, uid: str, args):
    """tiled's array client and ``db.get_images`` of the same frames, timed once, values checked."""
    from databroker_compat import Broker

    t0 = time.perf_counter()
    baseline_array = client[uid]["primary"]["det_image"]
    baseline_setup = time.perf_counter() - t0
    db = Broker(client)
    t0 = time.perf_counter()
    imgs = db.get_images(db[uid], "det_image")
    ours_setup = time.perf_counter() - t0
    print(f"setup: tiled client[uid]['primary']['det_image'] {baseline_setup * 1e3:.0f} ms; "
          f"db.get_images(db[uid], 'det_image') {ours_setup * 1e3:.0f} ms (once per run)")
    assert len(imgs) == args.frames == len(baseline_array)
    return baseline_array, imgs


def compare_reads(baseline_array, imgs, http, args) -> None:
    """``imgs[k]`` against ``baseline_array[k]`` for ``--reads`` random k, interleaved (tracemalloc running)."""
    rng = numpy.random.default_rng(0)
    ks = [int(k) for k in rng.integers(0, args.frames, size=args.reads)]
    # Check values once, and warm both paths up.
    for k in ks[:3]:
        expected = frame_value(k, args.size)
        numpy.testing.assert_array_equal(imgs[k], expected)
        numpy.testing.assert_array_equal(baseline_array[k], expected)
    ours, base = [], []
    for k in ks:  # interleaved, so drift affects both alike
        base.append(measure(baseline_array.__getitem__, k, http))
        ours.append(measure(imgs.__getitem__, k, http))

    def summary(rows):
        return (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
                max(r[2] for r in rows))

    (tb, bb, mb), (to, bo, mo) = summary(base), summary(ours)
    print(f"\nimgs[k], {args.reads} random k, median over reads (frame = {args.size**2 * 2 / 2**10:.0f} KiB):")
    print(f"  {'':22}{'time/frame':>12}{'bytes/frame':>14}{'peak memory':>14}")
    print(f"  {'tiled ArrayClient[k]':22}{tb * 1e3:>10.1f}ms{bb:>14,}{mb / 2**20:>12.2f}MiB")
    print(f"  {'db.get_images()[k]':22}{to * 1e3:>10.1f}ms{bo:>14,}{mo / 2**20:>12.2f}MiB")
    print(f"  {'ratio ours/tiled':22}{to / tb:>11.2f}x{bo / bb:>13.2f}x{mo / mb:>13.2f}x"
          "   (target <= 1.2x)")


def iterate(imgs, http, args) -> None:
    """Flat memory: iterating a slice keeps about one chunk alive, never the stack (tracemalloc running)."""
    frame_bytes = args.size * args.size * 2
    tracemalloc.reset_peak()
    start_mem = tracemalloc.get_traced_memory()[0]
    with WireBytes(http) as wire:
        t0 = time.perf_counter()
        total = 0
        for frame in imgs[100:200]:
            total += int(frame[0, 0])
        iter_time = time.perf_counter() - t0
    iter_peak = tracemalloc.get_traced_memory()[1] - start_mem
    print(f"\niterating imgs[100:200]: {iter_time / 100 * 1e3:.1f} ms/frame, "
          f"{wire.total / 100:,.0f} bytes/frame, "
          f"peak memory {iter_peak / 2**20:.2f} MiB = {iter_peak / frame_bytes:.1f} frames "
          f"(whole stack: {args.frames * frame_bytes / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reads", type=int, default=60)
    args = parser.parse_args()

    from tiled.client import from_uri

    root = Path(tempfile.mkdtemp(prefix="bench_images_"))
    files = root / "files"
    files.mkdir()
    server = None
    try:
        t0 = time.perf_counter()
        path = write_stack(files, args.frames, args.size)
        server = sqlite_server(root / "server", [str(files)])
        client = from_uri(server.uri)
        uid = write(client, stack_run(path, args.frames, args.size, plan_name="bench_stack"))
        print(f"setup: {args.frames} frames of {args.size}x{args.size} uint16 "
              f"({path.stat().st_size / 2**20:.0f} MiB file) written and registered in "
              f"{time.perf_counter() - t0:.1f} s")
        baseline_array, imgs = open_both(client, uid, args)
        tracemalloc.start()
        try:
            compare_reads(baseline_array, imgs, client.context.http_client, args)
            iterate(imgs, client.context.http_client, args)
        finally:
            tracemalloc.stop()
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
