"""The migration fanned out over ``dask.distributed``: partitions, retries, faults.

The source is served over a real socket (mockupdb answering from mongomock) so that
worker processes open their own pymongo connections from a ``MongoSpec``; the target
is a ``tiled serve`` subprocess over PostgreSQL, the only backend that takes concurrent
writers. One ``LocalCluster`` of two worker processes serves the module.

Fault tests: the Tiled server is stopped and started again in the middle of a job, and
a worker process is SIGKILLed in the middle of a job. Either way the job completes,
every run is in the target exactly once with all its rows, and verification passes.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import threading
import time
import uuid

import httpx
import mongomock
import pytest

from databroker_compat import Broker
from databroker_compat.migration import LegacySource, migrate, verify
from databroker_compat.migration.connect import MongoSpec, TiledSpec, target_specs
from databroker_compat.migration.options import RetryPolicy
from databroker_compat.migration.partition import plan_partitions
from databroker_compat.migration.worker import is_transient
from migration_source import fill_synthetic, insert_recorded, record_source_runs
from mongo_wire import MongoWireServer
from servers import tiled_serve

SMALL_RUNS = 30
SMALL_EVENTS = 5
BIG_EVENTS = 3_000
FAST_RETRY = RetryPolicy(retries=8, backoff=0.5, backoff_max=4.0)


@pytest.fixture(scope="module")
def legacy(data_dir):
    """A wire-served legacy database: recorded runs, one long run, many small ones."""
    runs = record_source_runs(data_dir)
    client = mongomock.MongoClient()
    db = client["mds"]
    insert_recorded(db, runs, names=["count", "scan", "config", "nostop"])
    (big,) = fill_synthetic(db, runs["count"], runs=1, events=BIG_EVENTS, time0=2.0e9)
    fill_synthetic(db, runs["count"], runs=SMALL_RUNS, events=SMALL_EVENTS, time0=2.1e9)
    wire = MongoWireServer(client)
    uri = f"mongodb://127.0.0.1:{wire.port}/mds?directConnection=true&serverSelectionTimeoutMS=5000"
    source = LegacySource.from_uris(uri, check_files=False)
    source.uri = uri
    uids = list(source.find_run_uids())
    yield source, uids, big
    wire.close()


@pytest.fixture(scope="module")
def pg_target(data_dir, tmp_path_factory):
    server, closers = tiled_serve("postgres", tmp_path_factory.mktemp("distributed_pg"), [str(data_dir)])
    yield server
    for close in reversed(closers):
        close()


@pytest.fixture(scope="module")
def cluster():
    import logging

    from dask.distributed import Client, LocalCluster

    # The tiled client's own retries (10 attempts over 45 s by default) would ride out a
    # server restart by themselves; cut them short so the job's per-run retries are
    # what the restart test exercises.
    quick = {"TILED_RETRY_ATTEMPTS": "2", "TILED_RETRY_TIMEOUT": "1"}
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR, env=quick
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def _container(server, name: str):
    from tiled.client import from_uri

    root = from_uri(server.uri)
    return root.create_container(name)


def _expected_rows(source, uid: str) -> dict[str, int]:
    return source.expected(uid).event_counts


def _assert_complete(source, uids, container):
    """Every run once, every stream with all its rows, verification clean."""
    assert sorted(container) == sorted(uids)
    checked = verify(source, container, uids=uids)
    assert checked.ok, checked.summary()
    for result in checked.runs:
        assert result.event_counts == _expected_rows(source, result.uid), result.uid


def _background(fn):
    box: dict = {}

    def target():
        try:
            box["report"] = fn()
        except BaseException as err:  # reported by the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _wait_for_runs(container, at_least: int, thread, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        try:
            n = len(container)
        except httpx.HTTPError:
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.1)
    raise AssertionError(f"the job wrote fewer than {at_least} runs in {timeout}s (alive: {thread.is_alive()})")


def _finished(thread, box, before: int, source, uids, container, event: str):
    """The background job's report, once it ended well after ``event`` hit it mid-job."""
    thread.join(600)
    assert not thread.is_alive(), f"the job did not finish after {event}"
    assert "error" not in box, repr(box.get("error"))
    report = box["report"]
    assert before < len(uids), "the fault must land mid-job"
    assert report.ok, report.summary()
    assert sorted(r.uid for r in report.runs) == sorted(uids)
    _assert_complete(source, uids, container)
    return report


# -- pieces ----------------------------------------------------------------------------


def test_partitions_keep_order_and_isolate_large_runs():
    sizes = [("a", 10), ("b", 10), ("c", 50_000), ("d", None), ("e", 3), ("f", 4), ("g", 5)]
    parts = list(plan_partitions(sizes, large_run_events=20_000, max_runs=2))
    assert [p.uids for p in parts] == [["a", "b"], ["c"], ["d"], ["e", "f"], ["g"]]
    assert [p.events for p in parts] == [20, 50_000, 0, 7, 5]
    assert [p.index for p in parts] == list(range(5))
    grouped = list(plan_partitions([(str(i), 400) for i in range(10)], group_events=1_000, max_runs=50))
    assert [len(p.uids) for p in grouped] == [3, 3, 3, 1]
    with pytest.raises(ValueError):
        list(plan_partitions(sizes, max_runs=0))


def test_event_estimates_from_stop_or_counted(legacy):
    source, uids, big = legacy
    sizes = source.event_estimates(uids)
    assert sizes[big] == BIG_EVENTS
    for uid in uids:
        assert sizes[uid] == sum(source.expected(uid).event_counts.values()), uid
    # A run without a stop document: counted from its events.
    nostop = [u for u in uids if source.expected(u, close_open_runs=False).stop is None]
    assert len(nostop) == 1 and sizes[nostop[0]] > 0


def test_specs_pickle_and_hide_secrets(pg_target):
    spec = MongoSpec("mongodb://op:hunter2@db.example/mds", options=(("check_files", False),))
    assert "hunter2" not in repr(spec)
    assert pickle.loads(pickle.dumps(spec)) == spec
    client = _container(pg_target, f"spec-{uuid.uuid4().hex[:6]}")
    (target,) = target_specs(client)
    assert pg_target.api_key not in repr(target)
    reopened = pickle.loads(pickle.dumps(target))()
    assert reopened.item["id"] == client.item["id"] and len(reopened) == 0
    other = target_specs(client, also_served_by=["http://127.0.0.1:9"])[1]
    assert other.uri.startswith("http://127.0.0.1:9/api/v1/metadata/spec-")
    assert repr(TiledSpec("http://t/api/v1", "s3cret")) == "TiledSpec('http://t/api/v1', api_key=***)"


def test_transient_errors_are_told_apart():
    request = httpx.Request("POST", "http://tiled/api/v1/metadata/x")

    def status(code):
        return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code, request=request))

    assert is_transient(httpx.ConnectError("refused", request=request))
    assert is_transient(status(503)) and is_transient(status(500)) and is_transient(status(429))
    assert is_transient(status(409))
    assert not is_transient(status(400)) and not is_transient(status(403))
    try:
        try:
            raise httpx.ReadTimeout("slow", request=request)
        except httpx.ReadTimeout as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert not is_transient(KeyError("uid"))
    assert RetryPolicy(backoff=2.0, backoff_max=5.0).delay(1, jitter=False) == 2.0
    assert RetryPolicy(backoff=2.0, backoff_max=5.0).delay(4, jitter=False) == 5.0
    assert 1.0 <= RetryPolicy(backoff=2.0).delay(1) <= 2.0


# -- jobs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_dask_job_moves_every_run_once(legacy, pg_target, cluster, tmp_path):
    source, uids, big = legacy
    container = _container(pg_target, "dask")
    report = migrate(source, container, scheduler=cluster, workers=2, state_path=tmp_path / "s.jsonl", progress=False, retry=FAST_RETRY, partition_runs=8)
    assert report.ok, report.summary()
    assert sorted(r.uid for r in report.migrated) == sorted(uids)
    assert report.verification is not None and len(report.verification.runs) == len(uids)
    assert report.events == sum(sum(source.expected(u).event_counts.values()) for u in uids)
    _assert_complete(source, uids, container)
    db = Broker(container, timezone="UTC")
    assert len(db[big].table()) == BIG_EVENTS
    assert db[big].table()["seq_num" if "seq_num" in db[big].table() else "time"].is_monotonic_increasing
    # Both workers took part.
    workers = {w for w in cluster.run(os.getpid).values()}
    assert len(workers) == 2

    # Run again with a fresh state file: everything is found complete in the target.
    again = migrate(source, container, scheduler=cluster, state_path=tmp_path / "s2.jsonl", progress=False)
    assert again.ok and not again.migrated
    assert sorted(r.uid for r in again.skipped) == sorted(uids)
    assert {r.reason for r in again.skipped} == {"already present in the target with the same content"}


@pytest.mark.slow
def test_thread_workers_share_an_in_memory_source(legacy, pg_target, tmp_path):
    """A source only this process can open (no spec) runs its partitions on threads."""
    wire_source, uids, _ = legacy
    local = LegacySource(wire_source.metadatastore, check_files=False)
    assert local.spec is None
    container = _container(pg_target, "threads")
    some = uids[:8]
    report = migrate(local, container, uids=some, workers=2, progress=False, partition_runs=2)
    assert report.ok, report.summary()
    _assert_complete(wire_source, some, container)


@pytest.mark.slow
def test_tiled_server_restart_mid_job(legacy, pg_target, cluster, tmp_path):
    source, uids, _ = legacy
    container = _container(pg_target, "restart")
    state = tmp_path / "state.jsonl"
    thread, box = _background(
        lambda: migrate(source, container, scheduler=cluster, state_path=state, progress=False, retry=FAST_RETRY, partition_runs=4)
    )
    before = _wait_for_runs(container, 6, thread)
    pg_target.close()
    time.sleep(2.0)
    pg_target.start()
    report = _finished(thread, box, before, source, uids, container, "the server came back")
    assert not report.failed
    assert max(r.attempts for r in report.runs) > 1, "the outage must have failed some write, retried by the job"


@pytest.mark.slow
def test_killed_worker_mid_job(legacy, pg_target, cluster, tmp_path):
    source, uids, _ = legacy
    container = _container(pg_target, "killed-worker")
    thread, box = _background(
        lambda: migrate(source, container, scheduler=cluster, state_path=tmp_path / "s.jsonl", progress=False, retry=FAST_RETRY, partition_runs=4)
    )
    before = _wait_for_runs(container, 6, thread)
    pids = sorted(set(cluster.run(os.getpid).values()))
    os.kill(pids[0], signal.SIGKILL)
    _finished(thread, box, before, source, uids, container, "a worker was killed")
    # The nanny restarted the worker: the cluster is whole again for later tests.
    cluster.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_cli_runs_on_a_scheduler(legacy, pg_target, cluster, tmp_path):
    from typer.testing import CliRunner

    from databroker_compat.migration.cli import app

    source, _, _ = legacy
    query = {"scan_id": {"$gte": 100_000 + SMALL_RUNS - 10}}
    wanted = list(source.find_run_uids(query=query))
    assert len(wanted) == 10
    container = _container(pg_target, "cli-dask")
    args = [
        "run", "--metadatastore-uri", source.uri, "--tiled-uri", container.uri, "--query", json.dumps(query),
        "--scheduler", cluster.scheduler.address, "--partition-runs", "3", "--retries", "2",
        "--state", str(tmp_path / "s.jsonl"), "--report", str(tmp_path / "r.json"), "--no-progress",
    ]
    result = CliRunner().invoke(app, args, env={"TILED_API_KEY": pg_target.api_key})
    assert result.exit_code == 0, result.output
    assert "migrated: 10 (50 events)" in result.output
    assert pg_target.api_key not in result.output + (tmp_path / "r.json").read_text()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"migrated": 10} and report["verification"]["checked"] == 10
    _assert_complete(source, wanted, container)


def test_prefetch_gives_the_same_documents(legacy):
    """Reading a partition ahead (a few queries for all its runs) changes no document."""
    import copy

    source, uids, big = legacy
    plain = {uid: copy.deepcopy(list(source.documents(uid))) for uid in uids}
    source.prefetch(uids, max_events=BIG_EVENTS + SMALL_RUNS * SMALL_EVENTS + 1_000)
    assert set(source._prefetched) == set(uids)
    for uid in uids:
        assert list(source.documents(uid)) == plain[uid], uid
    assert not source._prefetched, "documents() drops what was read ahead for its run"
    # Above max_events only the run records are read ahead; the events are read in pages.
    source.prefetch([big], max_events=10)
    assert "events" not in source._prefetched[big]
    assert list(source.documents(big)) == plain[big]
