"""h.table() against raw Tiled (client[uid]["primary"].read()) on one run.

Usage: python bench/bench_table.py [--events 5000] [--repeat 7]
Prints time, HTTP requests and the ratio ours/raw. Target: <= 1.1x.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import Requests, embedded_server, machine, synthetic_run, timed, write  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from databroker_compat import Broker

    server, client = embedded_server()
    try:
        uid = write(client, synthetic_run(args.events))
        db = Broker(client, timezone="UTC")

        def ours():
            return db[uid].table()

        def raw():
            return client[uid]["primary"].read()

        assert len(ours()) == args.events and raw().sizes["time"] == args.events
        t_ours, t_raw = timed(ours, args.repeat), timed(raw, args.repeat)
        with Requests(client) as r_ours:
            ours()
        with Requests(client) as r_raw:
            raw()
        print(f"machine: {machine()}; run: {args.events} events; median of {args.repeat}")
        print(f"{'operation':<44}{'time (s)':>10}{'requests':>10}")
        for label, t, r in (
            ("ours: db[uid].table()", t_ours, r_ours),
            ('raw:  client[uid]["primary"].read()', t_raw, r_raw),
        ):
            print(f"{label:<44}{t:>10.4f}{r.count:>10}")
        print(f"ratio ours/raw: time {t_ours / t_raw:.2f}x, requests {r_ours.count}/{r_raw.count}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
