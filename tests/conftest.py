"""Session fixtures: recorded runs, and the same catalog served three ways.

The catalog can be served in three modes:

- ``simple``: ``tiled.server.SimpleTiledServer`` in this process (plain root, no specs);
- ``sqlite``: ``tiled serve catalog --init catalog.db -w duckdb:///...`` subprocess;
- ``postgres``: a ``tiled serve catalog`` subprocess whose catalog and tables live in
  PostgreSQL on 127.0.0.1:5432 (skipped, with the reason, when PostgreSQL is down).

Each mode also holds a child node ``bluesky`` with the ``CatalogOfBlueskyRuns`` spec
and two runs, for the specialised-client path.

Two tiers of integration test (``pytest_generate_tests`` below):

- a test that takes ``served`` (or ``db``) runs **once**, against the fastest real
  server (``simple``, the in-process server; the first mode of the run when the
  environment leaves ``simple`` out);
- a test whose behaviour depends on the backend (query translation, key order, what a
  storage keeps, concurrency, persistence) carries ``@pytest.mark.backends`` (or a
  module-level ``pytestmark``) and runs in **every** mode.

Each mode's server is started and filled once per session, whichever tier asks first;
``simple_served`` is the same in-process server.

No fixture here is autouse: a server starts only for a test that asks for one, so the
unit tier (``python -m pytest tests/unit``) starts none.

Environment:

- ``DATABROKER_COMPAT_TEST_MODES=simple,sqlite`` (comma-separated) narrows the modes of a
  local run; CI runs all three.
- ``DATABROKER_COMPAT_SERVER_WAIT=300`` waits longer for a server to start (seconds,
  default 180; see ``servers.py``).

Markers: every test that runs against PostgreSQL carries ``postgres`` (the ``served``
mode by its parameter; any other test parametrized with ``"postgres"`` or using the
``pg_target`` fixture by ``pytest_collection_modifyitems`` below), so
``-m "not postgres"`` leaves them out.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recorded import RecordedRun, record_catalog, write_runs
from servers import in_process_server, tiled_serve

MODES_ENV = "DATABROKER_COMPAT_TEST_MODES"
ALL_MODES = ("simple", "sqlite", "postgres")
# Fixtures that start a PostgreSQL-backed server without a "postgres" parameter.
POSTGRES_FIXTURES = ("pg_target",)


def _modes() -> list:
    """The server modes of this run: all three, or those ``DATABROKER_COMPAT_TEST_MODES`` names."""
    names = [m.strip() for m in os.environ.get(MODES_ENV, ",".join(ALL_MODES)).split(",") if m.strip()]
    unknown = sorted(set(names) - set(ALL_MODES))
    if unknown or not names:
        raise ValueError(
            f"{MODES_ENV}={os.environ.get(MODES_ENV)!r}: use a comma-separated subset of {', '.join(ALL_MODES)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return [pytest.param(m, marks=pytest.mark.postgres, id=m) if m == "postgres" else m for m in names]


MODES = _modes()
# The mode a test without the ``backends`` marker runs in: the in-process server.
FASTEST = next((m for m in MODES if getattr(m, "values", (m,))[0] == "simple"), MODES[0])
# Tiled keeps the in-process server's settings (its API key among them) process-wide:
# a second SimpleTiledServer with another key makes the first one refuse its own.
# Every in-process server of a test session therefore shares this key.
IN_PROCESS_API_KEY = secrets.token_hex(8)
SPECIAL_NODE = "bluesky"
SPECIAL_RUNS = ("count", "scan")


def pytest_generate_tests(metafunc) -> None:
    """``served`` in every mode for ``backends`` tests, else once, in the fastest mode."""
    if "served" not in metafunc.fixturenames:
        return
    every = metafunc.definition.get_closest_marker("backends") is not None
    metafunc.parametrize("served", MODES if every else [FASTEST], indirect=True, scope="session")


def pytest_collection_modifyitems(config, items) -> None:
    """Mark ``postgres`` the tests that reach PostgreSQL through fixtures other than ``served``."""
    for item in items:
        if item.get_closest_marker("postgres") is not None:
            continue
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if any(isinstance(v, str) and v == "postgres" for v in params) or any(
            name in item.fixturenames for name in POSTGRES_FIXTURES
        ):
            item.add_marker(pytest.mark.postgres)


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


class _Servers:
    """The session's servers, one per mode, each started and filled when first asked for."""

    def __init__(self, recorded, data_dir, tmp_path_factory):
        self.recorded = recorded
        self.data_dir = data_dir
        self.tmp_path_factory = tmp_path_factory
        self.started: dict[str, Served] = {}
        self.closers: list = []

    def get(self, mode: str) -> Served:
        if mode not in self.started:
            self.started[mode] = self._start(mode)
        return self.started[mode]

    def _start(self, mode: str) -> Served:
        from tiled.client import from_uri

        directory = self.tmp_path_factory.mktemp(f"tiled_{mode}")
        if mode == "simple":
            server = in_process_server(directory, [self.data_dir], IN_PROCESS_API_KEY)
            self.closers.append(server.close)
            uri = server.uri
            directory = Path(server.directory)
        else:
            server, closers = tiled_serve(mode, directory, [str(self.data_dir)])
            self.closers.extend(closers)
            uri = server.uri
        client = from_uri(uri)
        _fill(client, self.recorded)
        return Served(mode, uri, client, self.recorded, directory, extras={"server": server})

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


@pytest.fixture(scope="session")
def servers(recorded, data_dir, tmp_path_factory):
    """Every mode's server of this session (see :class:`_Servers`)."""
    started = _Servers(recorded, data_dir, tmp_path_factory)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def served(request, servers) -> Served:
    """The catalog in one mode (parametrized by ``pytest_generate_tests``)."""
    return servers.get(request.param)


@pytest.fixture(scope="session")
def simple_served(servers) -> Served:
    """The in-process server, for tests that need that mode in particular."""
    return servers.get("simple")


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
