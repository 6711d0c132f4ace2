"""What the migration's writer sends: the stream closes only where a server uses them.

``TiledWriter`` ends each run with one ``DELETE /api/v1/stream/close/...`` per node it
created; the migration writes through a view of the target whose nodes skip them on a
server with no streaming cache and no webhook API
(``databroker_compat.migration.writing_view``). These tests write real runs through the
writer against each served mode and FAIL LOUDLY when a new writer version stops closing
its nodes through their public ``close_stream()`` (the skipped list would be empty, or
closes would be sent regardless of the view) or creates nodes the view does not reach.

Server modes: ``simple`` (in-process ``SimpleTiledServer``: it has a memory streaming
cache, so closes are sent), ``sqlite`` and ``postgres`` (``tiled serve``, no streaming
cache, no webhook API: closes skipped).
"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import mongomock
import numpy
import pytest
from typer.testing import CliRunner

from databroker_compat import Broker, _tiled
from databroker_compat.migration import LegacySource, migrate
from databroker_compat.migration.cli import app
from databroker_compat.migration.writer import make_writer
from databroker_compat.migration.writing_view import close_streams, forget_decisions, writing_view
from migration_source import insert_recorded, record_source_runs
from mongo_wire import MongoWireServer
from servers import TiledProcess

# What the writer sends depends on what the server offers (streaming cache, webhooks): every mode.
pytestmark = pytest.mark.backends

#: Whether each served mode runs a streaming cache (tests/conftest.py describes the modes).
STREAMS = {"simple": True, "sqlite": False, "postgres": False}
#: The nodes TiledWriter creates for each recorded run, below the run's own node.
NODES = {"count": ["", "primary", "primary/internal"], "images": ["", "primary", "primary/internal", "primary/img"]}


class Sent:
    """The (method, path after ``/api/v1/``) of every request a Tiled client sends (an httpx hook)."""

    def __init__(self, client) -> None:
        self.http = client.context.http_client
        self.requests: list[tuple[str, str]] = []

    def _hook(self, request) -> None:
        path = str(request.url.path).split("/api/v1/", 1)[1]
        self.requests.append((request.method, "/".join(p for p in path.split("/") if p)))

    def __enter__(self) -> Sent:
        self.http.event_hooks["request"].append(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.http.event_hooks["request"].remove(self._hook)

    def under(self, prefix: str) -> list[str]:
        return [path for _, path in self.requests if path.startswith(prefix)]


def _paths(container, uid: str, nodes: list[str]) -> set[str]:
    """The paths (below ``/api/v1/<route>/``) of a run's nodes, as the server's routes spell them."""
    base = _tiled.url_path(*_tiled.node_path(container.item), uid)
    return {"/".join(p for p in (base, node) if p).lstrip("/") for node in nodes}


def _strip(path: str, route: str) -> str:
    return path.removeprefix(route).lstrip("/")


@pytest.mark.parametrize("name", ["count", "images"])
def test_the_writer_closes_streams_only_where_the_server_uses_them(served, name):
    run = served.runs[name]
    container = served.client.create_container(f"req-{uuid.uuid4().hex}")
    forget_decisions()
    streams = STREAMS[served.mode]
    assert _tiled.streaming_cache(container) is streams
    assert _tiled.webhooks(container) is False
    view = writing_view(container)
    assert view.closes_streams is streams
    writer = make_writer(view.container)
    with Sent(container) as sent:
        for n, doc in run.documents_to_write():
            writer(n, doc)
    expected = _paths(container, run.uid, NODES[name])
    closes = {_strip(p, "stream/close") for p in sent.under("stream/close/")}
    skipped = {_strip("/".join(p for p in u.split("/api/v1/", 1)[1].split("/") if p), "metadata") for u in view.skipped}
    if streams:
        assert closes == expected, "the writer no longer closes each node it created"
        assert skipped == set()
    else:
        assert closes == set(), "closes were sent through the quiet view: the writer no longer uses close_stream()"
        assert skipped == expected, "the writer no longer calls close_stream() on every node it created"
        assert len(view.skipped) == len(expected)  # each node once
    # TiledWriter.__init__ refreshes a client without data sources: the view spares that GET.
    container_path = _tiled.url_path(*_tiled.node_path(container.item)).lstrip("/")
    assert ("GET", f"metadata/{container_path}") not in sent.requests
    # The run reads back whole.
    header = Broker(container, timezone="UTC")[run.uid]
    events = run.events("primary")
    table = header.table(fill=(name == "images"))
    assert len(table) == len(events)
    assert header.stop["exit_status"] == run.stop["exit_status"]
    for key in run.descriptors("primary")[0]["data_keys"]:
        if key == "img":
            assert [numpy.asarray(v).tolist() for v in table[key]] == [numpy.arange(100.0).reshape(10, 10).tolist()] * 3
        else:
            assert table[key].tolist() == [e["data"][key] for e in events], key


def test_the_decision_is_asked_once_per_target(served):
    container = served.client.create_container(f"req-{uuid.uuid4().hex}")
    forget_decisions()
    with Sent(container) as sent:
        first = close_streams(container)
        again = [close_streams(container) for _ in range(3)]
        explicit = (close_streams(container, True), close_streams(container, False))
    assert first is STREAMS[served.mode] and again == [first] * 3
    assert explicit == (True, False)
    # The webhook GET is sent only where the streaming answer leaves the question open; the
    # websocket handshake is not an httpx request.
    assert sent.under("webhooks/target/") == ([] if first else [f"webhooks/target/{_tiled.url_path(*_tiled.node_path(container.item)).lstrip('/')}"])


class ConfiguredTiled(TiledProcess):
    """``tiled serve config <yaml>``: an SQLite catalog, DuckDB tables, and a ``webhooks:`` section."""

    def command(self) -> list[str]:
        config = self.directory / "config.yml"
        config.write_text(
            "trees:\n  - path: /\n    tree: catalog\n    args:\n"
            f"      uri: sqlite:///{self.directory / 'catalog.db'}\n"
            f"      writable_storage: ['duckdb:///{self.directory / 'tables.db'}', '{self.directory / 'data'}']\n"
            "      init_if_not_exists: true\n"
            "webhooks:\n  secret_keys: ['" + "0" * 64 + "']\n"
        )
        tiled = shutil.which("tiled") or str(Path(sys.executable).with_name("tiled"))
        return [tiled, "serve", "config", str(config), "--api-key", self.api_key, "--host", "127.0.0.1", "--port", str(self.port)]


def test_a_server_with_the_webhook_api_keeps_its_closes(tmp_path):
    """No streaming cache, but webhooks configured: closes (and their StreamClosed webhooks) are kept."""
    from tiled.client import from_uri

    (tmp_path / "data").mkdir()
    server = ConfiguredTiled("", [], [], tmp_path)
    try:
        container = from_uri(server.uri).create_container("runs")
        forget_decisions()
        assert _tiled.streaming_cache(container) is False
        assert _tiled.webhooks(container) is True
        assert writing_view(container).closes_streams is True
        assert writing_view(container, close_streams_option=False).closes_streams is False
    finally:
        server.close()


@pytest.fixture(scope="module")
def source_runs(data_dir):
    return record_source_runs(data_dir)


def test_migrate_sends_no_closes_where_none_are_needed(served, source_runs):
    db = mongomock.MongoClient()["mds"]
    insert_recorded(db, source_runs)
    container = served.client.create_container(f"req-{uuid.uuid4().hex}")
    forget_decisions()
    with Sent(container) as sent:
        report = migrate(LegacySource(db), container, progress=False, state_path=None)
    assert report.ok and len(report.migrated) == len(source_runs), report.summary()
    closes = sent.under("stream/close/")
    if STREAMS[served.mode]:
        assert len(closes) >= 3 * len(source_runs)
    else:
        assert closes == []
    # Asking for them explicitly sends them again, on any server.
    other = served.client.create_container(f"req-{uuid.uuid4().hex}")
    with Sent(other) as sent:
        report = migrate(LegacySource(db), other, progress=False, close_streams=True, uids=[source_runs["count"].uid])
    assert report.ok
    assert len(sent.under("stream/close/")) == 3


def test_the_cli_flag_reaches_the_writer(simple_served, source_runs, tmp_path):
    """``--no-close-streams`` on a server that streams: the writer skips its closes; the runs verify."""
    client = mongomock.MongoClient()
    insert_recorded(client["mds"], source_runs)
    wire = MongoWireServer(client)
    try:
        base, _, key = simple_served.uri.partition("?api_key=")
        node = f"cli-{uuid.uuid4().hex}"
        simple_served.client.create_container(node)
        mongo = f"mongodb://127.0.0.1:{wire.port}/mds?directConnection=true&serverSelectionTimeoutMS=5000"
        config = tmp_path / "job.yaml"
        config.write_text(f"source:\n  metadatastore: {mongo}\ntarget:\n  uri: {base}/metadata/{node}\nprogress: false\n")
        forget_decisions()
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--no-close-streams", "-v"], env={"TILED_API_KEY": key})
    finally:
        wire.close()
    assert result.exit_code == 0, result.output
    assert "the writer's stream closes are skipped (close_streams=False)" in result.output
    assert f"migrated: {len(source_runs)}" in result.output
    count = source_runs["count"]
    db = Broker(simple_served.client[node], timezone="UTC")
    assert db[count.uid].table()["det1"].tolist() == [e["data"]["det1"] for e in count.events("primary")]
