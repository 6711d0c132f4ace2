"""The unit tier: no server, no network, well under a minute.

``python -m pytest tests/unit`` runs this tier alone; the README's ``python -m pytest``
runs it with the integration tier (the rest of ``tests/``).

A unit test here may not

- use a fixture that starts a server (``served``, ``simple_served``, ``db``, ... — any
  fixture that depends on one of ``SERVER_FIXTURES``): it fails before the server starts;
- listen on a port (``SimpleTiledServer``, ``tiled serve``, a MongoDB wire server, a
  dask cluster), build an in-process Tiled app (``Context.from_app``), or connect to (or
  look up) an address outside the loopback range: the attempt fails the test.

Connections to a loopback address are allowed (a refused connection to a closed port is
a fine unit test of an error path); nothing listens there that a unit test started.
The recorded runs (``recorded``: a RunEngine, no server) are allowed too.
A test that needs a server belongs in ``tests/`` (the integration tier).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading

import pytest

import servers

# Fixtures (of tests/conftest.py and the integration modules) that start a server.
SERVER_FIXTURES = ("served", "simple_served", "pg_target", "killable")

ADVICE = "a unit test needs no server; move it to tests/ (the integration tier) or drop the server"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a unit test that asks for a server fixture, before the server starts."""
    asked = [name for name in SERVER_FIXTURES if name in getattr(item, "fixturenames", ())]
    if asked:
        pytest.fail(f"{item.nodeid} uses {', '.join(asked)}: {ADVICE}.", pytrace=False)


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and other non-IP addresses
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name to resolve: outside this machine, as far as a unit test knows


@pytest.fixture(autouse=True)
def _no_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Refuse listening sockets, non-loopback connections and in-process Tiled apps."""
    test_thread = threading.get_ident()
    in_other_threads: list[str] = []

    def refuse(what: str) -> None:
        if threading.get_ident() != test_thread:
            in_other_threads.append(what)
        # Failed is a BaseException: library code catching OSError/Exception does not swallow it.
        pytest.fail(f"{request.node.nodeid} {what}: {ADVICE}.", pytrace=False)

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def listen(sock: socket.socket, *args: object) -> None:
        refuse(f"listens on a port ({sock.getsockname()!r})")

    def connect(sock: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            refuse(f"connects to {address!r}")
        return original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        if not _is_loopback(address):
            refuse(f"connects to {address!r}")
        return original_connect_ex(sock, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host is not None and not _is_loopback((host.decode() if isinstance(host, bytes) else host,)):
            refuse(f"looks up the host {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    def start(self: servers.TiledProcess, timeout: float | None = None) -> None:
        refuse("starts `tiled serve`")

    def from_app(*args: object, **kwargs: object) -> None:
        refuse("builds an in-process Tiled app (Context.from_app)")

    def simple_server(*args: object, **kwargs: object) -> None:
        refuse("starts a SimpleTiledServer")

    monkeypatch.setattr(socket.socket, "listen", listen)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(servers.TiledProcess, "start", start)
    try:
        from tiled.client.context import Context
    except ImportError:  # tiled is a dependency; without it no Tiled app can be built either
        pass
    else:
        monkeypatch.setattr(Context, "from_app", classmethod(from_app))
    simple = sys.modules.get("tiled.server.simple")
    if simple is not None:  # imported by the test module: refuse at once (else its listen fails, slowly)
        monkeypatch.setattr(simple.SimpleTiledServer, "__init__", simple_server)
    yield
    if in_other_threads:  # an attempt made in another thread (which may swallow the failure) still counts
        pytest.fail(f"{request.node.nodeid}: {'; '.join(in_other_threads)}: {ADVICE}.", pytrace=False)
