"""How a migration worker reaches the source and the target: picklable connection specs.

A job fanned out over ``dask.distributed`` runs its partitions in other processes,
maybe on other machines, so it cannot hand them its open MongoDB and Tiled
connections. It hands them specs instead; each worker process opens its own
connections from them once and keeps them for the partitions it runs.

- :class:`~databroker_compat.migration.source.MongoSpec`: the MongoDB URIs of a
  :class:`~databroker_compat.migration.source.LegacySource` (``LegacySource.from_uris``
  records one on the source it returns); it lives with the source, which it opens;
- :class:`TiledSpec`: the URI of the target container and the API key. The key travels
  inside the task (use TLS between client, scheduler and workers on a shared network)
  and never appears in a ``repr``, a log line or a report;
- any other picklable zero-argument callable returning a ``LegacySource`` works as a
  source spec (tests and benchmarks build their MongoDB stand-in that way).

>>> spec = TiledSpec("http://tiled:8000/api/v1/metadata/raw", api_key="secret")
>>> spec
TiledSpec('http://tiled:8000/api/v1/metadata/raw', api_key=***)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._redact import redact
from .source import MongoSpec

if TYPE_CHECKING:
    from tiled.client.container import Container

__all__ = ["MongoSpec", "TiledSpec", "open_cached", "source_spec", "target_specs", "warm"]

_OPENED: dict[Any, Any] = {}
_LOCK = threading.Lock()


def open_cached(spec: Callable[[], Any]) -> Any:
    """``spec()``, opened once per process (per spec) and reused afterwards.

    >>> open_cached(TiledSpec("http://tiled:8000/api/v1"))   # doctest: +SKIP
    <Container {...}>
    """
    with _LOCK:
        if spec in _OPENED:
            return _OPENED[spec]
    opened = spec()
    with _LOCK:
        return _OPENED.setdefault(spec, opened)


def warm(spec: Callable[[], Any]) -> str:
    """Open ``spec`` in this process now (e.g. on every worker: ``client.run(warm, spec)``).

    Returns the spec's ``repr`` (secrets hidden), not the connection, so that it can
    travel back from a dask worker.
    """
    open_cached(spec)
    return repr(spec)


@dataclass(frozen=True)
class TiledSpec:
    """The URI of a Tiled container (a server root or any node below it) and its API key.

    >>> TiledSpec("http://tiled:8000/api/v1/metadata/raw")
    TiledSpec('http://tiled:8000/api/v1/metadata/raw', api_key=None)
    """

    uri: str
    api_key: str | None = field(default=None, compare=True)

    def __call__(self) -> Container:
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key) if self.api_key else from_uri(self.uri)

    def __repr__(self) -> str:
        return f"TiledSpec({redact(self.uri)!r}, api_key={'***' if self.api_key else None})"


def is_open_source(source: object) -> bool:
    """Whether ``source`` is an open source (it has ``documents``) rather than a spec to open."""
    return hasattr(source, "documents")


def source_spec(source: Any) -> Callable[[], Any] | None:
    """A spec a worker can open ``source`` from, or None (e.g. an in-memory mongomock source).

    >>> source_spec(MongoSpec("mongodb://host/mds"))
    MongoSpec('mongodb://host/mds', assets_uri=None)
    """
    if isinstance(source, MongoSpec) or (callable(source) and not is_open_source(source)):
        return source
    return getattr(source, "spec", None)


def _with_base(uri: str, base: str | None = None) -> str:
    """``uri`` (``http://a:1/api/v1/metadata/x``), served by ``base`` (``http://b:2``) if given.

    Empty path segments (tiled writes ``metadata//x`` for children of the root) are dropped.
    """
    parts = urlsplit(uri)
    other = urlsplit(base) if base else parts
    path = re.sub(r"/{2,}", "/", parts.path)
    return urlunsplit((other.scheme or parts.scheme, other.netloc, path, parts.query, ""))


def target_specs(client: Any, *, also_served_by: list[str] | None = None, api_key: str | None = None) -> list[TiledSpec]:
    """Specs for the container ``client``; one per server process when several serve it.

    ``also_served_by`` lists the base URIs (``http://host:port``) of other Tiled server
    processes that serve the same catalog (several ``tiled serve`` processes on one
    PostgreSQL catalog); partitions are spread over them in turn.

    >>> [s.uri for s in target_specs(client, also_served_by=["http://127.0.0.1:8001"])]   # doctest: +SKIP
    ['http://127.0.0.1:8000/api/v1/metadata/raw', 'http://127.0.0.1:8001/api/v1/metadata/raw']
    """
    if isinstance(client, TiledSpec):
        specs = [client]
    else:
        key = api_key or getattr(client.context, "api_key", None)
        specs = [TiledSpec(_with_base(client.uri), key)]
    for base in also_served_by or []:
        specs.append(TiledSpec(_with_base(specs[0].uri, base), specs[0].api_key))
    return specs
