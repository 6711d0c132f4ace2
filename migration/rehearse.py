"""Rehearse a migration end to end on throw-away copies, through the real command.

Records runs with a RunEngine (ophyd.sim) into mongomock in the databroker v1 layout,
serves them on a mongodb:// socket (mockupdb), starts a `tiled serve` target (SQLite +
DuckDB), then runs: the dry run, the job, a second pass (must move nothing), `verify`.
Needs the test extra (`pip install -e .[test]`) and the repository's tests/ helpers.

    python migration/rehearse.py [--extra-runs 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra-runs", type=int, default=10, help="synthetic 10-event runs added to the recorded ones")
    args = parser.parse_args()

    import mongomock
    from tiled.client import from_uri

    from migration_source import fill_synthetic, insert_recorded, record_source_runs
    from mongo_wire import MongoWireServer
    from servers import sqlite_server

    work = Path(tempfile.mkdtemp(prefix="rehearse_migration_"))
    data = work / "detector_data"
    data.mkdir()
    runs = record_source_runs(data)
    mongo = mongomock.MongoClient()
    insert_recorded(mongo["metadatastore"], runs)
    fill_synthetic(mongo["metadatastore"], runs["count"], runs=args.extra_runs, events=10, time0=1.9e9)
    wire = MongoWireServer(mongo)
    server = sqlite_server(work / "tiled", [str(data)])
    try:
        from_uri(server.uri).create_container("legacy")
        env = {**os.environ, "TILED_API_KEY": server.api_key}
        job = work / "job.yaml"
        job.write_text(
            f"source:\n  metadatastore: mongodb://127.0.0.1:{wire.port}/metadatastore?directConnection=true\n"
            f"target:\n  uri: {server.base}/api/v1/metadata/legacy\n"
            "progress: false\n"
        )
        exe = [sys.executable, "-m", "databroker_compat.migration.cli"]
        status = 0
        for title, argv in [
            ("dry run", ["run", "--config", str(job), "--dry-run"]),
            ("the job", ["run", "--config", str(job)]),
            ("second pass (moves nothing)", ["run", "--config", str(job)]),
            ("verify", ["verify", "--config", str(job)]),
        ]:
            print(f"== {title}: databroker-migrate {' '.join(argv)}", flush=True)
            result = subprocess.run([*exe, *argv], env=env, cwd=work)
            status = status or result.returncode
        print(f"work directory (state file, reports, server log): {work}")
        return status
    finally:
        server.close()
        wire.close()


if __name__ == "__main__":
    raise SystemExit(main())
