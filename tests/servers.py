"""Tiled servers for the tests: embedded, a `tiled serve` subprocess, PostgreSQL-backed.

Every wait here (a server's start-up, a ``psql`` command) lasts up to
``DATABROKER_COMPAT_SERVER_WAIT`` seconds (default 180: a loaded 2-core machine needs
more than a minute to start ``tiled serve``). A server that does not come up in time
raises with the last lines of its log in the message.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

PG_HOST = os.environ.get("DATABROKER_COMPAT_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DATABROKER_COMPAT_PG_PORT", "5432"))
PG_USER = os.environ.get("DATABROKER_COMPAT_PG_USER", "postgres")

SERVER_WAIT_ENV = "DATABROKER_COMPAT_SERVER_WAIT"
DEFAULT_SERVER_WAIT = 180.0
LOG_LINES = 50


def server_wait() -> float:
    """Seconds to wait for a test server (``DATABROKER_COMPAT_SERVER_WAIT``, default 180)."""
    raw = os.environ.get(SERVER_WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_SERVER_WAIT
    try:
        wait = float(raw)
    except ValueError:
        raise ValueError(f"{SERVER_WAIT_ENV}={raw!r} is not a number of seconds; set it to e.g. 300.") from None
    if wait <= 0:
        raise ValueError(f"{SERVER_WAIT_ENV}={raw!r} must be a positive number of seconds.")
    return wait


def log_tail(path: Path, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of a log file (or why there are none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"(no log at {path}: {err})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(the log {path} is empty)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TiledProcess:
    """A `tiled serve catalog ...` subprocess, stopped by ``close()``."""

    def __init__(self, catalog: str, writable: list[str], readable: list[str], directory: Path, init=True):
        self.api_key = secrets.token_hex(16)
        self.port = free_port()
        self.directory = directory
        self.catalog = catalog
        self.writable = writable
        self.readable = readable
        self.init = init
        self.log_path = directory / "server.log"
        self.process = None
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        return f"{self.base}/api/v1?api_key={self.api_key}"

    def command(self) -> list[str]:
        tiled = shutil.which("tiled") or str(Path(sys.executable).with_name("tiled"))
        cmd = [tiled, "serve", "catalog"]
        if self.init:
            cmd.append("--init")
        cmd.append(self.catalog)
        for w in self.writable:
            cmd += ["-w", w]
        for r in self.readable:
            cmd += ["-r", r]
        cmd += ["--api-key", self.api_key, "--host", "127.0.0.1", "--port", str(self.port)]
        return cmd

    def start(self, timeout: float | None = None) -> None:
        """Start the server and wait until it answers ``/healthz`` (``timeout``: see ``server_wait``)."""
        timeout = server_wait() if timeout is None else timeout
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tiled serve exited with {self.process.returncode} before answering; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=min(5.0, timeout)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise TimeoutError(
            f"tiled serve did not answer on {self.base}/healthz within {timeout:.0f}s "
            f"(set {SERVER_WAIT_ENV} to wait longer on a loaded machine); "
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def sqlite_server(directory: Path, readable: list[str]) -> TiledProcess:
    """The command the Tiled docs give Bluesky users: SQLite catalog + DuckDB tables."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    return TiledProcess(
        str(directory / "catalog.db"),
        # An absolute path after duckdb:/// gives the four slashes DuckDB needs.
        [f"duckdb:///{directory / 'storage.db'}", str(directory / "data")],
        readable,
        directory,
    )


def _psql(sql: str, database: str = "postgres") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=server_wait(),
    )


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    if shutil.which("psql") is None:
        return "psql is not installed"
    try:
        result = _psql("SELECT 1")
    except (subprocess.TimeoutExpired, OSError) as err:
        return f"psql failed: {err!r}"
    if result.returncode != 0:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} did not answer: {result.stderr.strip()}"
    return None


class PostgresDatabases:
    """Fresh databases on the local PostgreSQL server, dropped by ``close()``."""

    def __init__(self, *names: str):
        tag = uuid.uuid4().hex[:10]
        self.names = [f"dbc_{name}_{tag}" for name in names]
        for db in self.names:
            result = _psql(f'CREATE DATABASE "{db}"')
            if result.returncode != 0:
                raise RuntimeError(f"Could not create database {db}: {result.stderr}")

    def uri(self, name: str) -> str:
        return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def close(self) -> None:
        for db in self.names:
            _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def postgres_server(directory: Path, readable: list[str]):
    """Catalog and tables both in PostgreSQL (separate databases), files in ``directory``."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    dbs = PostgresDatabases("catalog", "storage")
    try:
        server = TiledProcess(
            dbs.uri(dbs.names[0]),
            [dbs.uri(dbs.names[1]), str(directory / "data")],
            readable,
            directory,
        )
    except Exception:
        dbs.close()
        raise
    return server, dbs


def tiled_serve(mode: str, directory: Path, readable: list[str]):
    """A ``tiled serve`` subprocess of one test mode ("sqlite" or "postgres").

    Returns ``(server, closers)``: call the closers in reverse order when done. PostgreSQL
    mode skips the calling test, saying why, when the server does not answer.
    """
    if mode == "sqlite":
        server = sqlite_server(directory, readable)
        return server, [server.close]
    if mode != "postgres":
        raise ValueError(f"no `tiled serve` mode {mode!r}; use 'sqlite' or 'postgres'")
    reason = postgres_available()
    if reason:
        import pytest

        pytest.skip(f"POSTGRESQL TESTS SKIPPED: {reason}")
    server, dbs = postgres_server(directory, readable)
    return server, [dbs.close, server.close]


def in_process_server(directory: Path, readable: list, api_key: str):
    """A ``SimpleTiledServer`` in this process, given up to ``server_wait()`` seconds to start.

    Tiled gives the in-process server a fixed 20 s to come up, which a loaded machine can
    miss: a start-up that times out is tried again, in a fresh directory, until our own
    wait is spent; then the error names the server's log.
    """
    from tiled.server import SimpleTiledServer

    deadline = time.monotonic() + server_wait()
    attempt = 1
    where = Path(directory)
    while True:
        try:
            return SimpleTiledServer(where, readable_storage=readable, api_key=api_key)
        except TimeoutError as err:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the in-process Tiled server did not start within {server_wait():.0f}s "
                    f"({attempt} attempts; set {SERVER_WAIT_ENV} to wait longer): {err}; "
                    f"last lines of {where / 'error.log'}:\n{log_tail(where / 'error.log')}"
                ) from err
            attempt += 1
            where = Path(directory) / f"retry-{attempt}"
        except RuntimeError as err:  # its thread died: trying again would not help
            raise RuntimeError(f"{err}; last lines of {where / 'error.log'}:\n{log_tail(where / 'error.log')}") from err


# -- servers with a streaming cache (websocket updates; tests/test_live.py) -----------------
REDIS_URI = os.environ.get("DATABROKER_COMPAT_REDIS_URI", "redis://127.0.0.1:6379")


def redis_available() -> str | None:
    """None if Redis answers ``redis-cli ping`` at :data:`REDIS_URI`, else the reason it does not."""
    if shutil.which("redis-cli") is None:
        return "redis-cli is not installed"
    try:
        result = subprocess.run(["redis-cli", "-u", REDIS_URI, "ping"], capture_output=True, text=True, timeout=10)
    except (subprocess.TimeoutExpired, OSError) as err:
        return f"redis-cli failed: {err!r}"
    if result.returncode != 0 or result.stdout.strip() != "PONG":
        return f"Redis at {REDIS_URI} did not answer: {(result.stdout + result.stderr).strip()}"
    return None


class StreamingTiledProcess(TiledProcess):
    """A ``tiled serve`` subprocess with a Redis streaming cache.

    ``persistent=False``: ``tiled serve catalog --temp --cache redis://...`` (tiled 0.2.20
    takes ``--cache redis://`` only with ``--temp``; the catalog is lost when it stops).
    ``persistent=True``: ``tiled serve config`` with a ``streaming_cache:`` section over a
    SQLite catalog in ``directory``, which survives a restart (``close()``, ``start()``:
    the same port).
    """

    def __init__(self, directory: Path, readable: list[str], *, persistent: bool):
        self.persistent = persistent
        # Its own Redis database number: node ids of two catalogs must not meet in one keyspace.
        self.cache_uri = f"{REDIS_URI.rstrip('/')}/{12 if persistent else 11}"
        self.config_path = directory / "config.yml"
        if persistent:
            (directory / "data").mkdir(parents=True, exist_ok=True)
            readable_yaml = "".join(f"\n        - {r}" for r in readable) or " []"
            self.config_path.write_text(
                "trees:\n"
                "  - path: /\n"
                "    tree: catalog\n"
                "    args:\n"
                f"      uri: sqlite:///{directory / 'catalog.db'}\n"
                "      writable_storage:\n"
                f"        - duckdb:///{directory / 'storage.db'}\n"
                f"        - {directory / 'data'}\n"
                f"      readable_storage:{readable_yaml}\n"
                "      init_if_not_exists: true\n"
                "streaming_cache:\n"
                f"  uri: {self.cache_uri}\n"
            )
        super().__init__("", [], readable, directory)

    def command(self) -> list[str]:
        tiled = shutil.which("tiled") or str(Path(sys.executable).with_name("tiled"))
        if self.persistent:
            cmd = [tiled, "serve", "config", str(self.config_path)]
        else:
            cmd = [tiled, "serve", "catalog", "--temp", "--cache", self.cache_uri]
            for r in self.readable:
                cmd += ["-r", r]
        return cmd + ["--api-key", self.api_key, "--host", "127.0.0.1", "--port", str(self.port)]

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
