"""``databroker-migrate``: in-process through typer's CliRunner, and as a real subprocess
that is SIGKILLed mid-run and restarted.

The legacy database is served over a real socket (``mongodb://`` URI) by ``mockupdb``
answering from mongomock (tests/mongo_wire.py); the target is a ``tiled serve``
subprocess (SQLite catalog, DuckDB tables).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mongomock
import pytest
from typer.testing import CliRunner

from databroker_compat import Broker
from databroker_compat.migration.cli import app
from migration_source import fill_synthetic, insert_recorded, record_source_runs
from mongo_wire import MongoWireServer
from servers import tiled_serve

runner = CliRunner()


@pytest.fixture(scope="module")
def source_runs(data_dir):
    return record_source_runs(data_dir)


@pytest.fixture(scope="module")
def wire(source_runs):
    client = mongomock.MongoClient()
    insert_recorded(client["mds"], source_runs)
    server = MongoWireServer(client)
    yield server
    server.close()


def _mongo_uri(wire, database: str) -> str:
    return f"mongodb://127.0.0.1:{wire.port}/{database}?directConnection=true&serverSelectionTimeoutMS=5000"


def _split(uri: str) -> tuple[str, str]:
    """A served URI ``http://host/api/v1?api_key=K`` as (URI without the key, K)."""
    base, _, key = uri.partition("?api_key=")
    return base, key


def test_cli_run_then_verify(simple_served, wire, source_runs, tmp_path):
    base, key = _split(simple_served.uri)
    node = f"cli-{uuid.uuid4().hex}"
    simple_served.client.create_container(node)
    tiled_uri = f"{base}/metadata/{node}"
    config = tmp_path / "job.yaml"
    config.write_text(
        f"source:\n  metadatastore: {_mongo_uri(wire, 'mds')}\n"
        f"target:\n  uri: {tiled_uri}\n"
        "batch_size: 5000\nprogress: false\n"
    )
    env = {"TILED_API_KEY": key}
    result = runner.invoke(app, ["run", "--config", str(config), "-v"], env=env)
    assert result.exit_code == 0, result.output
    assert f"migrated: {len(source_runs)}" in result.output
    assert key not in result.output
    saved = json.loads((tmp_path / "databroker-migrate-report.json").read_text())
    assert saved["counts"] == {"migrated": len(source_runs)}
    assert key not in (tmp_path / "databroker-migrate-report.json").read_text()
    db = Broker(simple_served.client[node], timezone="UTC")
    count = source_runs["count"]
    assert db[count.uid].table()["det1"].tolist() == [e["data"]["det1"] for e in count.events("primary")]

    again = runner.invoke(app, ["run", "--config", str(config)], env=env)
    assert again.exit_code == 0, again.output
    assert "migrated: 0" in again.output and f"skipped as present: {len(source_runs)}" in again.output

    checked = runner.invoke(
        app, ["verify", "--metadatastore-uri", _mongo_uri(wire, "mds"), "--tiled-uri", tiled_uri], env=env
    )
    assert checked.exit_code == 0, checked.output
    assert f"verified {len(source_runs)} run(s): {len(source_runs)} ok, 0 mismatched" in checked.output


def test_cli_bad_input_and_secrets(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  metadatastore: mongodb://h/db\nbatchsize: 3\n")
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert "unknown keys" in result.output and "batchsize" in result.output

    secret = tmp_path / "secret.yaml"
    secret.write_text("target:\n  uri: http://t\n  api_key: abc\n")
    result = runner.invoke(app, ["run", "--config", str(secret)])
    assert result.exit_code == 2 and "TILED_API_KEY" in result.output and "abc" not in result.output

    # A URI without a database name: the error names the problem, the password never shows.
    result = runner.invoke(
        app, ["run", "--metadatastore-uri", "mongodb://op:hunter2@127.0.0.1:1/", "--tiled-uri", "http://127.0.0.1:1/api/v1"]
    )
    assert result.exit_code == 2, result.output
    assert "names no database" in result.output
    assert "hunter2" not in result.output

    result = runner.invoke(app, ["run", "--query", "{not json", "--metadatastore-uri", "mongodb://h/db"])
    assert result.exit_code == 2


# -- the killed job ---------------------------------------------------------------------

BIG_EVENTS = 6_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def killable(request, source_runs, data_dir, tmp_path_factory):
    """A wire-served source (recorded runs + one long run) and a `tiled serve` target
    (SQLite + DuckDB, or PostgreSQL-backed)."""
    client = mongomock.MongoClient()
    db = client["mds"]
    insert_recorded(db, source_runs, names=["count", "scan", "config"])
    (big,) = fill_synthetic(db, source_runs["count"], runs=1, events=BIG_EVENTS, time0=2.0e9)
    fill_synthetic(db, source_runs["count"], runs=3, events=5, time0=2.1e9)
    directory = tmp_path_factory.mktemp(f"killed_target_{request.param}")
    server, closers = tiled_serve(request.param, directory, [str(data_dir)])
    wire = MongoWireServer(client)
    closers.append(wire.close)
    try:
        yield wire, server, big
    finally:
        for close in reversed(closers):
            close()


def _cli(*args) -> list[str]:
    exe = Path(sys.executable).with_name("databroker-migrate")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "databroker_compat.migration.cli"]
    return [*prefix, *args]


def _state(path: Path) -> dict[str, str]:
    status = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            status[record["uid"]] = record["status"]
    return status


def _rows(root, path: list[str], *, while_writing: bool = False) -> int:
    """Rows of a table node written so far (0 if it does not exist yet).

    ``while_writing``: the writer may be creating the table at this moment, and the
    DuckDB-backed server then answers 500 for a read; count that as "no rows yet".
    """
    import httpx

    from databroker_compat import _tiled

    try:
        table = _tiled.read_table(root.context, path, columns=["seq_num"])
    except httpx.HTTPStatusError as err:
        if while_writing and err.response.status_code >= 500:
            return 0
        raise
    return 0 if table is None else table.num_rows


def _content(container) -> dict:
    """Everything a reader sees of each run: start, stop, per-stream rows of the event table."""
    out = {}
    for uid in sorted(container):
        h = Broker(container, timezone="UTC")[uid]
        out[uid] = {
            "start": json.loads(json.dumps(dict(h.start))),
            "stop": json.loads(json.dumps(dict(h.stop))) if h.stop else None,
            # A PostgreSQL-backed table may hand rows back out of order; h.table() sorts by seq_num.
            "tables": {s: h.table(s).reset_index().to_dict("list") for s in sorted(h.stream_names)},
        }
    return out


def test_killed_job_restarts_to_the_same_content(killable, tmp_path):
    wire, server, big = killable
    from tiled.client import from_uri

    root = from_uri(server.uri)
    root.create_container("killed")
    root.create_container("uninterrupted")
    env = {**os.environ, "TILED_API_KEY": server.api_key}
    common = ["--metadatastore-uri", _mongo_uri(wire, "mds"), "--batch-size", "100", "--no-progress"]
    state = tmp_path / "state.jsonl"
    args = _cli("run", *common, "--tiled-uri", f"{server.base}/api/v1/metadata/killed", "--state", str(state), "--report", str(tmp_path / "r1.json"))

    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        # Kill once the long run has been started and some of its rows are in the target.
        while time.monotonic() < deadline and proc.poll() is None:
            if _state(state).get(big) == "started" and _rows(root, ["killed", big, "primary", "internal"], while_writing=True):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed = root["killed"]
    assert killed[big].metadata.get("stop") is None, "the kill must land mid-run"
    assert 0 < _rows(root, ["killed", big, "primary", "internal"]) < BIG_EVENTS
    done_before = {u for u, s in _state(state).items() if s == "done"}
    # Runs are verified once their partition is written: those written before the kill are
    # recorded as started, and the next pass skips them only once they verify.
    started_before = {u for u, s in _state(state).items() if s == "started"} - {big}

    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert server.api_key not in resumed.stdout + resumed.stderr
    report = json.loads((tmp_path / "r1.json").read_text())
    statuses = {r["uid"]: r["status"] for r in report["runs"]}
    assert statuses[big] == "rewritten"
    skipped = {u for u, s in statuses.items() if s == "skipped"}
    assert done_before <= skipped <= done_before | started_before
    reasons = {r["uid"]: r["reason"] for r in report["runs"]}
    assert all(reasons[u].endswith("(verified)") for u in skipped - done_before), reasons
    assert report["verification"]["ok"] is True

    clean = subprocess.run(
        _cli("run", *common, "--tiled-uri", f"{server.base}/api/v1/metadata/uninterrupted", "--state", str(tmp_path / "s2.jsonl"), "--report", str(tmp_path / "r2.json")),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert sorted(killed) == sorted(root["uninterrupted"])
    assert len(killed) == 7
    got, want = _content(killed), _content(root["uninterrupted"])
    for uid in want:
        for part in want[uid]:
            assert got[uid][part] == want[uid][part], (uid, part)
    assert len(Broker(killed, timezone="UTC")[big].table()) == BIG_EVENTS

    verified = subprocess.run(
        _cli("verify", "--metadatastore-uri", _mongo_uri(wire, "mds"), "--tiled-uri", f"{server.base}/api/v1/metadata/killed"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified 7 run(s): 7 ok, 0 mismatched" in verified.stdout
