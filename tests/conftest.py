"""Session fixtures: recorded runs, and the same catalog served three ways.

``served`` is parametrized over the server modes; every test that takes it runs
against each of them:

- ``simple``: ``tiled.server.SimpleTiledServer`` in this process (plain root, no specs);
- ``sqlite``: ``tiled serve catalog --init catalog.db -w duckdb:///...`` subprocess;
- ``postgres``: a ``tiled serve catalog`` subprocess whose catalog and tables live in
  PostgreSQL on 127.0.0.1:5432 (skipped, with the reason, when PostgreSQL is down).

Each mode also holds a child node ``bluesky`` with the ``CatalogOfBlueskyRuns`` spec
and two runs, for the specialised-client path.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recorded import RecordedRun, record_catalog, write_runs
from servers import tiled_serve

import os

# DATABROKER_COMPAT_TEST_MODES=simple (comma-separated) narrows a local run; CI runs all three.
MODES = [m for m in os.environ.get("DATABROKER_COMPAT_TEST_MODES", "simple,sqlite,postgres").split(",") if m]
# Tiled keeps the in-process server's settings (its API key among them) process-wide:
# a second SimpleTiledServer with another key makes the first one refuse its own.
# Every in-process server of a test session therefore shares this key.
IN_PROCESS_API_KEY = secrets.token_hex(8)
SPECIAL_NODE = "bluesky"
SPECIAL_RUNS = ("count", "scan")


@dataclass
class Served:
    mode: str
    uri: str
    client: object
    runs: dict[str, RecordedRun]
    directory: Path
    extras: dict = field(default_factory=dict)

    def broker(self, **kwargs):
        from databroker_compat import Broker

        return Broker(self.client, **kwargs)

    def special(self):
        """The ``CatalogOfBlueskyRuns`` child node."""
        return self.client[SPECIAL_NODE]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Detector files written during recording; every server may read them."""
    return tmp_path_factory.mktemp("detector_data")


@pytest.fixture(scope="session")
def recorded(data_dir) -> dict[str, RecordedRun]:
    return record_catalog(data_dir)


def _fill(client, recorded):
    from tiled.structures.core import Spec

    write_runs(client, recorded)
    special = client.create_container(
        SPECIAL_NODE, specs=[Spec("CatalogOfBlueskyRuns", version="3.0")], metadata={"purpose": "tests"}
    )
    write_runs(special, recorded, names=SPECIAL_RUNS)


@pytest.fixture(scope="session", params=MODES)
def served(request, recorded, data_dir, tmp_path_factory):
    from tiled.client import from_uri

    mode = request.param
    directory = tmp_path_factory.mktemp(f"tiled_{mode}")
    closers = []
    if mode == "simple":
        from tiled.server import SimpleTiledServer

        server = SimpleTiledServer(directory, readable_storage=[data_dir], api_key=IN_PROCESS_API_KEY)
        closers.append(server.close)
        uri = server.uri
    else:
        server, closers = tiled_serve(mode, directory, [str(data_dir)])
        uri = server.uri
    try:
        client = from_uri(uri)
        _fill(client, recorded)
        yield Served(mode, uri, client, recorded, directory, extras={"server": server})
    finally:
        for close in reversed(closers):
            close()


@pytest.fixture(scope="session")
def simple_served(recorded, data_dir, tmp_path_factory):
    """Only the in-process server, for tests that need one mode."""
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    server = SimpleTiledServer(
        tmp_path_factory.mktemp("tiled_simple_only"), readable_storage=[data_dir], api_key=IN_PROCESS_API_KEY
    )
    try:
        client = from_uri(server.uri)
        _fill(client, recorded)
        yield Served("simple", server.uri, client, recorded, Path(server.directory), extras={"server": server})
    finally:
        server.close()


@pytest.fixture
def db(served):
    return served.broker(timezone="UTC")


class RequestCounter:
    """Counts the HTTP requests a Tiled client makes (an httpx event hook)."""

    def __init__(self, client):
        self.http = client.context.http_client
        self.urls: list[str] = []

    def _hook(self, request):
        self.urls.append(str(request.url))

    def __enter__(self):
        self.http.event_hooks["request"].append(self._hook)
        return self

    def __exit__(self, *exc):
        self.http.event_hooks["request"].remove(self._hook)

    @property
    def count(self) -> int:
        return len(self.urls)


@pytest.fixture
def count_requests():
    return RequestCounter
