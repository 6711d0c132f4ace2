"""Live runs: ``db.follow()`` and ``db.subscribe()`` while a RunEngine writes through TiledWriter.

Real parts: a ``tiled serve catalog --temp --cache redis://...`` subprocess (websocket
updates through Redis), the in-process ``SimpleTiledServer`` (its in-memory streaming
cache, and polling chosen explicitly), a plain ``tiled serve`` over SQLite (no streaming
cache: the fallback), and a persistent catalog with Redis (``tiled serve config``) that
is killed and started again mid-run. The RunEngine runs on a thread with ophyd.sim
devices; what the subscriber receives is checked with the same comparison as the
``documents()`` round trip (tests/roundtrip.py).
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time

import pytest

from databroker_compat import Broker
from databroker_compat.exceptions import BadArgument
from helpers import new_container, synthetic_run, write_docs
from recorded import RecordedRun
from roundtrip import assert_round_trip
from servers import StreamingTiledProcess, redis_available, sqlite_server

WAIT = 60.0  # the longest any wait below lasts before the test fails (a loaded machine)


# -- helpers ------------------------------------------------------------------------
def wait_until(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


class Writer:
    """A RunEngine on a thread writing through TiledWriter; keeps what it emitted, per run."""

    def __init__(self, client, **writer_kwargs):
        from bluesky import RunEngine
        from bluesky_tiled_plugins import TiledWriter

        self.RE = RunEngine({}, context_managers=[])  # no signal handlers: not the main thread
        self.runs: list[RecordedRun] = []
        self.RE.subscribe(self._record)
        self.RE.subscribe(TiledWriter(client, **writer_kwargs))
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _record(self, name, doc):
        if name == "start":
            self.runs.append(RecordedRun(doc.get("plan_name", "")))
        self.runs[-1].docs.append((name, copy.deepcopy(doc)))

    def start(self, *plans) -> Writer:
        def work():
            try:
                for plan in plans:
                    self.RE(plan)
            except BaseException as err:  # reported by join()
                self.error = err

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the RunEngine did not finish"
        if self.error is not None:
            raise self.error


class Received:
    """A subscriber's callback: the documents it got, as plain dicts, split by run."""

    def __init__(self):
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name, doc):
        self.docs.append((name, dict(doc)))

    def runs(self) -> dict[str, list]:
        out: dict[str, list] = {}
        current = None
        for name, doc in self.docs:
            if name == "start":
                current = out.setdefault(doc["uid"], [])
            assert current is not None, f"a {name} document before any start"
            current.append((name, doc))
        return out

    def stops(self) -> int:
        return sum(1 for name, _ in self.docs if name == "stop")


def gated(gate: threading.Event, n_before: int = 2, n_after: int = 1, md: dict | None = None):
    """A run that reads det1 ``n_before`` times, waits for ``gate``, reads ``n_after`` more."""
    import bluesky.plan_stubs as bps
    from ophyd.sim import det1

    def plan():
        yield from bps.open_run(md={"plan_name": "gated", **(md or {})})
        for _ in range(n_before):
            yield from bps.trigger_and_read([det1])
        while not gate.is_set():
            yield from bps.sleep(0.05)
        for _ in range(n_after):
            yield from bps.trigger_and_read([det1])
        yield from bps.close_run()

    return plan()


def plans(data_dir):
    """A count, a scan with a baseline stream, and a count of an image detector (resource/datum)."""
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    import numpy
    from ophyd.sim import SynSignalWithRegistry, det1, det2, motor

    img = SynSignalWithRegistry(
        func=lambda: numpy.arange(16, dtype="float64").reshape(4, 4), name="img", save_path=str(data_dir)
    )
    scan = bpp.baseline_wrapper(bp.scan([det1], motor, -1, 1, 3), [motor])
    return [bp.count([det1, det2], 3), scan, bp.count([img, det1], 2)]


# -- servers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_tiled(tmp_path_factory, data_dir):
    reason = redis_available()
    if reason:
        pytest.skip(f"REDIS TESTS SKIPPED (websocket updates need Redis): {reason}")
    server = StreamingTiledProcess(tmp_path_factory.mktemp("tiled_redis"), [str(data_dir)], persistent=False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def plain_tiled(tmp_path_factory):
    """``tiled serve`` over SQLite without a streaming cache: the polling fallback."""
    server = sqlite_server(tmp_path_factory.mktemp("tiled_plain"), [])
    yield server
    server.close()


def fresh_broker(client, prefix: str) -> Broker:
    return Broker(new_container(client, prefix))


@pytest.fixture(params=["redis-websocket", "inprocess-poll", "inprocess-websocket"])
def live_setup(request, simple_served, data_dir):
    """(broker over a fresh node, its client, mode) for each way of learning of new runs."""
    from tiled.client import from_uri

    server, mode = request.param.split("-")
    if server == "redis":
        client = from_uri(request.getfixturevalue("redis_tiled").uri)
    else:
        client = simple_served.client
    node = new_container(client, "live")
    return Broker(node), node, mode


# -- follow and subscribe receive every run, documents equal to what was emitted ------------
def test_follow_and_subscribe_receive_every_run(live_setup, data_dir):
    db, node, mode = live_setup
    received = Received()
    writer = Writer(node)
    with db.subscribe(received, mode=mode) as sub, db.follow(mode=mode, timeout=WAIT) as follower:
        assert sub.mode == follower.mode == mode
        writer.start(*plans(data_dir))
        followed = list(itertools.islice(follower, 3))
        writer.join()
        wait_until(lambda: received.stops() == 3, "three stop documents")
    emitted = {run.uid: run for run in writer.runs}
    assert [h.uid for h in followed] == [run.uid for run in writer.runs]
    assert [h.stop["exit_status"] for h in followed] == ["success"] * 3
    got = received.runs()
    assert list(got) == list(emitted)
    for uid, docs in got.items():
        assert_round_trip(docs, emitted[uid])
    names = {name for docs in got.values() for name, _ in docs}
    assert {"resource", "datum"} <= names


def test_events_arrive_in_the_writers_batches_before_the_stop(simple_served):
    db, node = None, new_container(simple_served.client, "batches")
    db = Broker(node)
    gate = threading.Event()
    received = Received()
    writer = Writer(node, batch_size=2)
    with db.subscribe(received, mode="websocket", settle=0.1):
        writer.start(gated(gate, n_before=4, n_after=1))
        wait_until(lambda: sum(1 for n, _ in received.docs if n == "event") == 4, "the first two batches")
        assert writer.thread.is_alive() and received.stops() == 0  # the run is still being written
        gate.set()
        writer.join()
        wait_until(lambda: received.stops() == 1, "the stop")
    (run,) = writer.runs
    assert_round_trip(received.runs()[run.uid], run)


# -- a run open when the follower starts; a Header of a run in progress ---------------------
@pytest.mark.parametrize("mode", ["poll", "websocket"])
def test_a_run_open_at_the_call_is_followed_and_caught_up(simple_served, mode):
    node = new_container(simple_served.client, f"open-{mode}")
    db = Broker(node)
    gate = threading.Event()
    writer = Writer(node)
    writer.start(gated(gate))
    wait_until(lambda: len(node) == 1 and "primary" in node.values().first(), "the open run on the server")
    received = Received()
    with db.subscribe(received, mode=mode), db.follow(complete=False, mode=mode, timeout=WAIT) as follower:
        header = next(follower)
        # A Header of a run in progress: start, no stop, the descriptor, no events yet
        # (TiledWriter sends them at the stop, below its batch size).
        assert header.uid == writer.runs[0].uid and header.stop == {}
        assert header.stream_names == ["primary"]
        assert len(header.table()) == 0
        with pytest.warns(RuntimeWarning, match="no stop document"):
            assert [n for n, _ in header.documents()] == ["start", "descriptor"]
        wait_until(lambda: [n for n, _ in received.docs] == ["start", "descriptor"], "start and descriptor")
        gate.set()
        writer.join()
        wait_until(lambda: received.stops() == 1, "the stop")
    (run,) = writer.runs
    assert_round_trip(received.runs()[run.uid], run)
    assert db[run.uid].table()["det1"].tolist() == [e["data"]["det1"] for e in run.events()]


# -- filters, queries, timeout, modes ------------------------------------------------------
def test_follow_honours_filters_and_queries(simple_served):
    import bluesky.plans as bp
    from ophyd.sim import det1, motor

    node = new_container(simple_served.client, "filters")
    filtered = Broker(node)
    filtered.add_filter(plan_name="count")
    scans = Broker(node)(plan_name="scan", num_points={"$gt": 2})
    writer = Writer(node)
    with filtered.follow(mode="poll", timeout=WAIT) as counts, scans.follow(mode="websocket", timeout=WAIT) as found:
        writer.start(bp.count([det1], 1), bp.scan([det1], motor, 0, 1, 2), bp.scan([det1], motor, 0, 1, 3))
        got_counts = [h.start["plan_name"] for h in itertools.islice(counts, 1)]
        got_scans = [h.start["num_points"] for h in itertools.islice(found, 1)]
        writer.join()
    assert got_counts == ["count"]
    assert got_scans == [3]


def test_timeout_ends_the_iteration(simple_served):
    db = fresh_broker(simple_served.client, "quiet")
    assert list(db.follow(timeout=0.5, mode="poll")) == []
    assert list(db(plan_name="none").follow(timeout=0.5)) == []


def test_without_streaming_cache_polling_is_chosen_and_said_once(plain_tiled, caplog):
    import bluesky.plans as bp
    from ophyd.sim import det1
    from tiled.client import from_uri

    node = new_container(from_uri(plain_tiled.uri), "fallback")
    db = Broker(node)
    with pytest.raises(BadArgument, match="no streaming cache"):
        db.follow(mode="websocket")
    with pytest.raises(BadArgument, match="mode must be one of"):
        db.subscribe(print, mode="sometimes")
    received = Received()
    writer = Writer(node)
    with caplog.at_level(logging.INFO, logger="databroker_compat.live"):
        with db.subscribe(received) as sub, db.follow(timeout=WAIT, poll_interval=0.2) as follower:
            assert sub.mode == follower.mode == "poll"
            writer.start(bp.count([det1], 2))
            (header,) = itertools.islice(follower, 1)
            writer.join()
            wait_until(lambda: received.stops() == 1, "the stop")
    told = [r for r in caplog.records if "has no streaming cache" in r.getMessage()]
    assert len(told) == 1
    (run,) = writer.runs
    assert header.uid == run.uid
    assert_round_trip(received.runs()[run.uid], run)


# -- runs that never stop, servers that restart -----------------------------------------------
def test_a_run_without_stop_is_given_up_with_a_warning_when_a_newer_one_starts(simple_served, caplog):
    node = new_container(simple_served.client, "nostop")
    db = Broker(node)
    now = time.time()
    interrupted = synthetic_run("a" * 8 + "-0000-4000-8000-" + "0" * 12, now, 1)[:-1]  # no stop
    complete = synthetic_run("b" * 8 + "-0000-4000-8000-" + "0" * 12, now + 1, 2)
    received = Received()
    with caplog.at_level(logging.WARNING, logger="databroker_compat.live"):
        with db.subscribe(received, mode="poll", poll_interval=0.2):
            write_docs(node, interrupted)
            wait_until(lambda: len(received.docs) == 2, "start and descriptor of the interrupted run")
            write_docs(node, complete)
            wait_until(lambda: received.stops() == 1, "the stop of the complete run")
    got = received.runs()
    assert [n for n, _ in got[interrupted[0][1]["uid"]]] == ["start", "descriptor"]
    assert [n for n, _ in got[complete[0][1]["uid"]]] == ["start", "descriptor", "event", "event", "stop"]
    assert any("probably interrupted" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def persistent_redis_tiled(tmp_path_factory):
    """A persistent catalog with Redis (``tiled serve config``): it survives a restart."""
    reason = redis_available()
    if reason:
        pytest.skip(f"REDIS TESTS SKIPPED (websocket updates need Redis): {reason}")
    server = StreamingTiledProcess(tmp_path_factory.mktemp("tiled_persistent"), [], persistent=True)
    yield server
    server.close()


@pytest.mark.parametrize("mode", ["websocket", "poll"])
def test_a_server_restart_mid_run_loses_and_repeats_nothing(persistent_redis_tiled, mode):
    """The server is killed and started again (same port, same catalog) while a run is open."""
    import bluesky.plans as bp
    from ophyd.sim import det1
    from tiled.client import from_uri

    server = persistent_redis_tiled
    node = new_container(from_uri(server.uri), f"restart-{mode}")
    db = Broker(node)
    gate = threading.Event()
    received = Received()
    writer = Writer(node)
    with db.subscribe(received, mode=mode), db.follow(mode=mode, timeout=WAIT) as follower:
        writer.start(gated(gate))
        wait_until(lambda: [n for n, _ in received.docs] == ["start", "descriptor"], "start and descriptor")
        server.kill()
        server.start()
        gate.set()  # the rest of the run goes to the restarted server
        first = next(follower)
        writer.join()
        writer.start(bp.count([det1], 2))  # and a run after the restart
        second = next(follower)
        writer.join()
        wait_until(lambda: received.stops() == 2, "the stops of both runs")
    assert [first.uid, second.uid] == [run.uid for run in writer.runs]
    got = received.runs()
    assert list(got) == [first.uid, second.uid]
    for run in writer.runs:
        assert_round_trip(got[run.uid], run)


def test_stream_names_and_a_failing_callback(simple_served, caplog):
    """Only the streams asked for, as ``documents(stream_name=...)``; a callback that raises keeps being fed."""
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    from ophyd.sim import det1, motor

    node = new_container(simple_served.client, "streams")
    db = Broker(node)
    db.prepare_hook = lambda name, doc: doc  # plain dicts, as v1 allowed
    primary = Received()
    failing_calls = []

    def failing(name, doc):
        failing_calls.append(name)
        raise RuntimeError("a broken callback")

    writer = Writer(node)
    with caplog.at_level(logging.ERROR, logger="databroker_compat.live"):
        with db.subscribe(primary, stream_names=["primary"], mode="websocket"), db.subscribe(failing, mode="poll"):
            writer.start(bpp.baseline_wrapper(bp.scan([det1], motor, 0, 1, 3), [motor]))
            writer.join()
            wait_until(lambda: primary.stops() == 1 and failing_calls.count("stop") == 1, "both stops")
    (run,) = writer.runs
    expected = [(n, dict(d)) for n, d in db[run.uid].documents(stream_name="primary")]
    assert primary.docs == expected
    assert {d["name"] for n, d in primary.docs if n == "descriptor"} == {"primary"}
    assert len(failing_calls) == len(list(db[run.uid].documents()))
    assert any("raised on a 'start' document" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mode", ["poll", "websocket"])
def test_a_later_streams_descriptor_waits_for_its_place(simple_served, mode):
    """Baseline, then primary: while the run waits, only the first stream's descriptor is delivered.

    ``documents()`` puts the baseline's first event (sent by the writer only at the stop)
    before the primary descriptor; delivering that descriptor early would break the order.
    """
    import bluesky.preprocessors as bpp
    from ophyd.sim import motor

    node = new_container(simple_served.client, f"order-{mode}")
    db = Broker(node)
    gate = threading.Event()
    received = Received()
    writer = Writer(node)
    with db.subscribe(received, mode=mode, poll_interval=0.2):
        writer.start(bpp.baseline_wrapper(gated(gate), [motor]))
        wait_until(lambda: "primary" in (node.values().first() if len(node) else {}), "the primary stream")
        wait_until(lambda: [n for n, _ in received.docs] == ["start", "descriptor"], "start and a descriptor")
        time.sleep(1.0)  # several polls: the primary descriptor must still be held
        assert [d["name"] for n, d in received.docs if n == "descriptor"] == ["baseline"]
        gate.set()
        writer.join()
        wait_until(lambda: received.stops() == 1, "the stop")
    (run,) = writer.runs
    assert_round_trip(received.runs()[run.uid], run)
