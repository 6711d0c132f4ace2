"""Opening a broker by name, against building the client by hand.

Usage: python bench/bench_config.py [--repeat 7] [--files 50]

Starts one embedded SimpleTiledServer and writes, into a temporary configuration
directory, ``--files`` unrelated v1-style files plus an intake catalog file, then:

- baseline: ``Broker(tiled.client.from_uri(uri))`` — what a script does without a name;
- ours, v1-style file: ``Broker.named(name)`` (search path scan, YAML parse, ${ENV} expansion);
- ours, Tiled profile: ``Broker.named(profile)``;
- ours, intake source: ``Broker.named(source)`` (the source is in the last file scanned);
- ``list_configs()`` on the same directories.

Prints the median time of each, its HTTP requests, and the ratio to the baseline.
Target: a name costs no extra request, and <= 1.2x the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import embedded_server, machine, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--files", type=int, default=50)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_config_"))
    config_dir = workdir / "databroker"
    profiles = workdir / "profiles"
    config_dir.mkdir()
    profiles.mkdir()
    os.environ["DATABROKER_CONFIG_PATH"] = str(config_dir)
    os.environ["XDG_DATA_HOME"] = str(workdir / "data")

    import tiled.profiles
    from tiled.client import from_uri

    from databroker_compat import Broker, list_configs

    tiled.profiles.paths[:] = [profiles]  # only this run's profiles (tiled's public search path)
    server, _ = embedded_server(directory=workdir / "tiled")
    try:
        base, key = server.uri.split("?api_key=")
        os.environ["BENCH_TILED_KEY"] = key
        for i in range(args.files):
            (config_dir / f"other{i:03d}.yml").write_text(
                f"metadatastore:\n  module: databroker.headersource.mongo\n  class: MDS\n"
                f"  config: {{host: localhost, port: 27017, database: db{i}}}\n"
            )
        (config_dir / "bench.yml").write_text(f"tiled:\n  uri: {base}\n  api_key: ${{BENCH_TILED_KEY}}\n")
        (config_dir / "zz_catalog.yml").write_text(
            f"sources:\n  benchintake:\n    driver: databroker-compat\n    args:\n"
            f"      uri: {base}\n      api_key: ${{BENCH_TILED_KEY}}\n"
        )
        (profiles / "bench.yml").write_text(f"benchprofile:\n  uri: {server.uri}\n")

        cases = {
            "baseline Broker(from_uri(uri))": lambda: Broker(from_uri(server.uri)),
            "Broker.named(v1-style file)": lambda: Broker.named("bench"),
            "Broker.named(Tiled profile)": lambda: Broker.named("benchprofile"),
            "Broker.named(intake source)": lambda: Broker.named("benchintake"),
        }
        print(f"machine: {machine()}; {args.files} other config files; median of {args.repeat}")
        baseline = None
        for label, fn in cases.items():
            seconds = timed(fn, repeat=args.repeat)
            requests = _opening_requests(fn)
            baseline = baseline or seconds
            print(f"{label:34s} {seconds * 1000:8.1f} ms  {requests:2d} requests  ratio {seconds / baseline:5.2f}x")
        seconds = timed(list_configs, repeat=args.repeat)
        print(f"{'list_configs()':34s} {seconds * 1000:8.1f} ms  ({len(list_configs())} names)")
    finally:
        server.close()


def _opening_requests(fn) -> int:
    """HTTP requests made while opening (counted on every new httpx client)."""
    import httpx

    count = [0]
    original = httpx.Client.send

    def send(self, request, *a, **kw):
        count[0] += 1
        return original(self, request, *a, **kw)

    httpx.Client.send = send
    try:
        fn()
    finally:
        httpx.Client.send = original
    return count[0]


if __name__ == "__main__":
    main()
