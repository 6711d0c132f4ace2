"""A partition's runs are decided and verified in batches: few requests, and every mismatch still found.

Source: small one-stream legacy runs stored in mongomock the way ``mongo_normalized``
holds them. Target: a fresh child container of each served Tiled server. The requests
are counted on the target client's own HTTP client (an httpx request hook), so the
counts are what the server received from the job (the writer's requests included; the
assertions below count the decision's and verification's, by endpoint).

The formula (N small one-stream runs in one partition, at most 100 of them):

- a fresh migration adds to the writer's requests exactly N table reads and 3 searches
  (the decision's search, the verification's search and its deep search);
- a second job over the same target decides all N from 1 search, 1 deep search and N
  ``seq_num`` reads, and writes nothing;
- a job resuming runs it had begun (recorded as started) that are complete verifies them
  in a batch: 2N + 4 requests, nothing written.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter

import mongomock
import pytest

from databroker_compat import _tiled
from databroker_compat.migration import LegacySource, migrate, verify
from databroker_compat.migration.state import JobState
from databroker_compat.migration.target import delete_run
from databroker_compat.migration.worker import migrate_partition
from databroker_compat.migration.writing_view import close_streams

# Batched searches and the writer's close decision depend on the server: every mode.
pytestmark = pytest.mark.backends

T0 = 1_600_000_000.0
N = 4


def _run(scan_id: int) -> list[tuple[str, dict]]:
    uid, desc = str(uuid.uuid4()), str(uuid.uuid4())
    t = T0 + 100 * scan_id
    docs = [
        ("start", {"uid": uid, "time": t, "scan_id": scan_id, "plan_name": "count"}),
        ("descriptor", {"uid": desc, "run_start": uid, "time": t + 0.5, "name": "primary",
                        "data_keys": {"x": {"dtype": "number", "shape": [], "source": "PV:x"}},
                        "configuration": {}, "hints": {}, "object_keys": {}}),
    ]
    for i in range(1, 4):
        docs.append(("event", {"uid": str(uuid.uuid4()), "descriptor": desc, "seq_num": i, "time": t + i,
                               "data": {"x": float(scan_id * 10 + i)}, "timestamps": {"x": t + i - 0.1},
                               "filled": {}}))
    docs.append(("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": t + 5, "exit_status": "success",
                          "reason": "", "num_events": {"primary": 3}}))
    return docs


_COLLECTIONS = {"start": "run_start", "descriptor": "event_descriptor", "event": "event", "stop": "run_stop"}


def _store(db, runs: list[list[tuple[str, dict]]]) -> LegacySource:
    for docs in runs:
        for name, doc in docs:
            db[_COLLECTIONS[name]].insert_one(copy.deepcopy(doc))
    return LegacySource(db)


@pytest.fixture(scope="module")
def runs() -> list[list[tuple[str, dict]]]:
    return [_run(i) for i in range(1, 7)]


@pytest.fixture(scope="module")
def source(runs) -> LegacySource:
    return _store(mongomock.MongoClient()["batch"], runs)


def _uids(runs) -> list[str]:
    return [docs[0][1]["uid"] for docs in runs]


class Requests:
    """(method, endpoint) of every request the target client sends, e.g. ``("GET", "table/full")``."""

    def __init__(self, node) -> None:
        self.http = node.context.http_client
        self.api = str(node.context.api_uri)
        self.seen: list[tuple[str, str]] = []

    def _hook(self, request) -> None:
        path = str(request.url).split("?")[0][len(self.api):]
        endpoint = "/".join(path.split("/")[:2]) if path.startswith(("table/", "array/", "stream/")) else path.split("/")[0]
        self.seen.append((request.method, endpoint))

    def __enter__(self) -> Requests:
        self.http.event_hooks["request"].append(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.http.event_hooks["request"].remove(self._hook)

    def reads(self) -> Counter:
        """The GETs, by endpoint, but the writer's own look at the container (include_data_sources)."""
        return Counter(e for m, e in self.seen if m == "GET" and e != "metadata")

    def writes(self) -> int:
        return sum(1 for m, _ in self.seen if m != "GET")


def _target(served):
    return served.client.create_container(f"batch-{uuid.uuid4().hex}")


def test_a_partition_costs_n_table_reads_and_three_searches(served, source, runs, tmp_path):
    target = _target(served)
    uids = _uids(runs)[:N]
    # The writer's close decision asks each server once per process (a websocket handshake
    # and, on a server without streaming cache, one GET of its webhook route); ask it here,
    # so that the count below is the partition's alone whichever test ran first.
    close_streams(target)
    with Requests(target) as requests:
        report = migrate(source, target, uids=uids, progress=False, state_path=tmp_path / "s.jsonl")
    assert [r.status for r in report.runs] == ["migrated"] * N, report.summary()
    assert report.verification.ok, report.verification.summary()
    assert requests.reads() == Counter({"search": 2, "search-deep": 1, "table/full": N})
    assert requests.seen.count(("GET", "metadata")) <= N  # only the writer's look at the container, if any
    assert requests.writes() >= 5 * N  # the writer's: run, stream, table, rows, stop (per run)
    # Every run's share: its table read, and the verification's two searches divided among the runs.
    assert sorted(r.requests for r in report.verification.runs) == [1] * (N - 2) + [2, 2]

    # A second job (its own state file) decides from the target: 1 search, 1 deep search, N rows.
    with Requests(target) as requests:
        again = migrate(source, target, uids=uids, progress=False, state_path=tmp_path / "other.jsonl")
    assert [r.status for r in again.runs] == ["skipped"] * N
    assert requests.reads() == Counter({"search": 1, "search-deep": 1, "table/full": N})
    assert requests.writes() == 0

    # Runs this job had begun, found complete: skipped only once verified, in one batch.
    state = JobState(tmp_path / "resume.jsonl")
    for uid in uids:
        state.mark(uid, "started")
    state.close()
    with Requests(target) as requests:
        resumed = migrate(source, target, uids=uids, progress=False, state_path=tmp_path / "resume.jsonl")
    assert [r.status for r in resumed.runs] == ["skipped"] * N
    assert all("(verified)" in r.reason for r in resumed.runs), [r.reason for r in resumed.runs]
    assert resumed.verification.ok
    assert requests.reads() == Counter({"search": 2, "search-deep": 2, "table/full": 2 * N})
    assert requests.writes() == 0


def test_results_are_passed_on_only_once_verified(served, source, runs):
    target = _target(served)
    uids = _uids(runs)[:N]
    events: list[tuple[str, str]] = []
    results = migrate_partition(
        source, target, uids,
        on_start=lambda uid: events.append(("start", uid)),
        on_result=lambda result: events.append(("result", result["outcome"]["uid"])),
    )
    assert [r["outcome"]["status"] for r in results] == ["migrated"] * N
    assert all(r["verification"]["ok"] for r in results)
    # All written first, then verified together: no result before the last write.
    assert events == [("start", u) for u in uids] + [("result", u) for u in uids]


def _tampered_copy(runs, index: int) -> LegacySource:
    """The same runs with one event value of run ``index`` changed (a fresh write of it differs)."""
    changed = copy.deepcopy(runs)
    event = next(doc for name, doc in changed[index] if name == "event")
    event["data"]["x"] = -1.0
    return _store(mongomock.MongoClient()["tampered"], changed)


def test_batched_verification_finds_every_kind_of_mismatch(served, source, runs, tmp_path):
    target = _target(served)
    uids = _uids(runs)
    # Run 4 is written from a copy whose event value differs from the source's.
    report = migrate(_tampered_copy(runs, 4), target, uids=uids, progress=False, state_path=tmp_path / "s.jsonl")
    assert [r.status for r in report.runs] == ["migrated"] * 6, report.summary()
    ok, stop, no_stream, extra, value, gone = uids

    run = _tiled.as_container(target[stop])
    changed = json.loads(json.dumps(dict(run.metadata["stop"])))
    changed["exit_status"] = "abort"
    run.update_metadata(metadata={"stop": changed})
    _tiled.as_container(target[no_stream]).delete_contents("primary", recursive=True, external_only=False)
    _tiled.as_container(target[extra]).create_container(
        "extra", metadata={"uid": str(uuid.uuid4()), "data_keys": {}}
    )
    delete_run(target, gone)

    with Requests(target) as requests:
        result = verify(source, target, uids=uids)
    mismatches = {r.uid: "; ".join(r.mismatches) for r in result.runs}
    assert mismatches[ok] == ""
    assert mismatches[stop] == "stop differs in ['exit_status']"
    assert mismatches[no_stream] == "stream 'primary' missing in target"
    assert mismatches[extra] == "streams ['extra'] in target but not in source"
    assert mismatches[value] == "stream 'primary': checksum of 'x' differs"
    assert mismatches[gone] == "run missing in target"
    # A search and a deep search for the batch; a table read per run with its stream (4); the
    # run with an extra child and the one not found asked on their own: their metadata (2),
    # and the listing of the first (1).
    assert requests.reads() == Counter({"search": 2, "search-deep": 1, "table/full": 4})
    assert len(requests.seen) == 9  # the 7 above, and the 2 metadata GETs
    assert result.requests == len(requests.seen)


def test_searches_page_and_split_without_losing_the_query(served, source, runs, tmp_path, monkeypatch):
    from databroker_compat.migration import batch

    target = _target(served)
    uids = _uids(runs)
    report = migrate(source, target, uids=uids, progress=False, state_path=tmp_path / "s.jsonl")
    assert report.verification.ok
    monkeypatch.setattr(batch, "PAGE", 2)
    monkeypatch.setattr(batch, "IN_VALUES", 3)
    container = _tiled.as_container(target)
    wanted = uids[0::2]  # three of the six runs: a page without the query would list the others
    searches = batch.Searches()
    urls: list[str] = []
    hook = lambda request: urls.append(str(request.url))  # noqa: E731
    container.context.http_client.event_hooks["request"].append(hook)
    items = batch.find_runs(container, [*wanted, "no-such-run"], searches)
    assert sorted(items) == sorted(wanted)
    assert searches.requests == 2 + 1  # the three uids: two pages; the last value: one request
    descriptors = {uid: [doc["uid"] for name, doc in docs if name == "descriptor"]
                   for uid, docs in zip(uids, runs, strict=True)}
    searches = batch.Searches()
    streams = batch.find_streams(container, items, descriptors, searches)
    assert {uid: sorted(found or {}) for uid, found in streams.items()} == {uid: ["primary"] for uid in wanted}
    assert {uid: found["primary"]["attributes"]["ancestors"][-1] for uid, found in streams.items() if found} == {
        uid: uid for uid in wanted
    }
    assert searches.requests == 2  # three descriptor uids: two pages
    container.context.http_client.event_hooks["request"].remove(hook)
    # Every page asks with the query (a next link alone would list the whole container).
    assert len(urls) == 5
    assert all("filter%5Bin%5D%5Bcondition%5D%5Bvalue%5D" in url for url in urls), urls


def test_a_server_error_while_verifying_the_batch_is_retried_run_by_run(served, source, runs):
    import httpx

    from databroker_compat.migration.options import MigrationOptions, RetryPolicy

    target = _target(served)
    uids = _uids(runs)[:N]
    failed: list[str] = []

    def refuse_the_first_deep_search(request) -> None:  # the server "went away" for one request
        if "/search-deep/" in str(request.url) and not failed:
            failed.append(str(request.url))
            raise httpx.ConnectError("injected: connection refused", request=request)

    http = target.context.http_client
    http.event_hooks["request"].append(refuse_the_first_deep_search)
    try:
        options = MigrationOptions(retry=RetryPolicy(retries=2, backoff=0.01, backoff_max=0.02))
        results = migrate_partition(source, target, uids, options=options)
    finally:
        http.event_hooks["request"].remove(refuse_the_first_deep_search)
    assert len(failed) == 1
    # Each run looked at the target again, found itself complete and verified on its own.
    assert [r["outcome"]["status"] for r in results] == ["migrated"] * N
    assert [r["outcome"]["attempts"] for r in results] == [2] * N
    assert [r["outcome"]["events"] for r in results] == [3] * N
    assert all(r["verification"]["ok"] for r in results)
