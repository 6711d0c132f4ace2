"""The view of the target that ``TiledWriter`` writes through: no refresh, and stream closes only where they matter.

A run written by ``TiledWriter`` ends with one ``DELETE /api/v1/stream/close/...``
request per node it created (three for a one-stream run: run, stream, table). On the
server such a request does two things (``close_stream`` of tiled's catalog adapter):
it closes the node's stream in the *streaming cache* (the Redis or memory cache that
feeds websocket subscribers) and it dispatches a ``StreamClosed`` *webhook*. A server
with neither does nothing with it, and each request still costs it its per-request
framework work: for a small run the closes are a third of the writer's requests.

So the writer is given a *view* of the target container (:func:`writing_view`):

- made with ``include_data_sources=True``, so ``TiledWriter.__init__``'s
  ``client.include_data_sources()`` sends no GET (it refreshes a client that lacks
  it: one ``GET /metadata/<container>`` per run, for data sources the writer never
  reads of the container);
- where closes are to be skipped, made with a ``structure_clients`` dispatch
  (:class:`QuietDispatch`) whose client classes are subclasses of the target's
  structure-family classes, with a ``close_stream`` that sends nothing and records
  the node's address in the dispatch's ``skipped`` list. Nodes created under a
  container get its ``structure_clients`` (tiled's ``Container.new`` builds them with
  ``client_for_item(context, self.structure_clients, ...)``), so every node the
  writer creates is quiet, and so is the ``.base`` container of each stream it writes
  into. ``TiledWriter`` has no hook for this; its ``_close_stream_tree`` calls the
  public ``close_stream()`` of each node it created. ``tests/test_migration_requests.py``
  fails loudly when a new writer version stops doing so or makes nodes the view does
  not reach.

Whether closes are skipped is :func:`close_streams`: an explicit option, or asked of
the server once per target per process. They are sent unless the server says it has
no streaming cache (:func:`databroker_compat._tiled.streaming_cache` is False) *and*
no webhook API (:func:`databroker_compat._tiled.webhooks` is False); a server that
cannot be told apart is closed as today. Skipping closes skips ``StreamClosed``
webhooks too: on a server that mounts the webhook API the closes are always sent,
unless ``close_streams=False`` (``--no-close-streams``) is given explicitly.

Limits of the question: whether webhooks are *registered* is not asked (one may be
registered on any ancestor node at any time), only whether the server can dispatch
them; a server that mounts the webhook API without ``secret_keys`` has no dispatcher
but cannot be told from one that has, so its closes are sent. A proxy that hides the
websocket route or answers the webhook route itself makes the answer "cannot tell":
closes are sent. ``--no-close-streams`` is the way out for such a server when no one
subscribes to the target's streams or webhooks during the migration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _tiled
from .._redact import redact

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["QuietDispatch", "WritingView", "close_streams", "forget_decisions", "writing_view"]

_decisions: dict[str, bool] = {}
_decisions_lock = threading.Lock()


def _target_key(container: Any) -> str:
    """The address of a target server: its API URI (streaming cache and webhooks are the server's)."""
    context = getattr(container, "context", None)
    return str(getattr(context, "api_uri", None) or getattr(container, "uri", container))


def close_streams(container: Any, option: bool | None = None) -> bool:
    """Whether the writer must close the streams of the nodes it creates in ``container``.

    ``option`` True or False is the answer. None asks the server, once per target
    server (its API address) per process: closes are skipped only if the server has no
    streaming cache *and* no webhook API; a server that does not tell is closed. The
    decision is logged (INFO) the first time for each target.

    >>> close_streams(None, True), close_streams(None, False)
    (True, False)
    >>> close_streams(tiled_container)   # doctest: +SKIP
    False
    """
    key = f"{_target_key(container)} {option}"
    with _decisions_lock:
        if key in _decisions:
            return _decisions[key]
    if option is not None:
        decision, why = bool(option), f"close_streams={option}"
    else:
        streams = _tiled.streaming_cache(container)
        hooks = _tiled.webhooks(container) if streams is False else None
        decision = not (streams is False and hooks is False)
        why = f"streaming cache: {_SAYS[streams]}, webhook API: {_SAYS[hooks] if streams is False else 'not asked'}"
    logger.info(
        "Target %s: %s (%s)", redact(_target_key(container)),
        "the writer closes its streams" if decision else "the writer's stream closes are skipped", why,
    )
    with _decisions_lock:
        _decisions[key] = decision
    return decision


_SAYS = {True: "yes", False: "no", None: "cannot tell"}


def forget_decisions() -> None:
    """Forget what the servers said (the next :func:`close_streams` asks again).

    >>> forget_decisions()
    """
    with _decisions_lock:
        _decisions.clear()


def _skip_close(node: Any) -> None:
    """``close_stream`` of a quiet node: nothing is sent; the address is recorded."""
    skipped = getattr(node.structure_clients, "skipped", None)
    if skipped is not None:
        skipped.append(str(node.uri))


def _families() -> frozenset[str]:
    """The names a quiet dispatch serves: tiled's structure families, and ``composite``."""
    from tiled.structures.core import StructureFamily

    return frozenset(f.value for f in StructureFamily) | {"composite"}


class QuietDispatch(Mapping):
    """A ``structure_clients`` dispatch whose classes do not send ``close_stream``.

    ``QuietDispatch(dispatch)[name]``, for a structure family (``container``,
    ``table``, ``array``, ...) or ``composite`` (the spec tiled gives its
    ``CompositeClient``), is a subclass of ``dispatch[name]`` (made at the first
    look-up, then reused) whose ``close_stream()`` sends nothing and appends the node's
    address to :attr:`skipped`. A class with a ``base`` property (``CompositeClient``:
    the writer writes into ``.base`` of each stream) gives a quiet base. Other names
    (special clients chosen by spec, such as ``BlueskyRun``) are not served, so that
    every node is made by its structure family's class; the writer uses only their
    common methods (``create_container``, ``new``, ``update_metadata``, ...).

    >>> from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH
    >>> quiet = QuietDispatch(DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"])
    >>> cls = quiet["container"]
    >>> cls.__name__, cls.close_stream.__name__, quiet.skipped, quiet.get("BlueskyRun")
    ('QuietContainer', '_skip_close', [], None)
    """

    def __init__(self, dispatch: Mapping) -> None:
        self.dispatch = dispatch
        self.skipped: list[str] = []
        self._names = _families()
        self._classes: dict[type, type] = {}

    def quiet(self, cls: Any) -> type:
        """The quiet subclass of ``cls`` (made once).

        >>> from tiled.client.container import Container
        >>> QuietDispatch({}).quiet(Container).__mro__[1] is Container
        True
        """
        if cls not in self._classes:
            namespace: dict[str, Any] = {"close_stream": _skip_close, "__module__": __name__}
            parent_base = getattr(cls, "base", None)
            if isinstance(parent_base, property) and parent_base.fget is not None:
                namespace["base"] = property(self._quiet_base(parent_base.fget))
            self._classes[cls] = type(f"Quiet{cls.__name__}", (cls,), namespace)
        return self._classes[cls]

    def _quiet_base(self, fget: Any) -> Any:
        def base(node: Any) -> Any:
            # The parent's own base (all its attributes as tiled sets them), in the quiet
            # subclass of its class: that adds methods only, no state.
            container = fget(node)
            container.__class__ = self.quiet(type(container))
            return container

        return base

    def __getitem__(self, name: str) -> type:
        if name not in self._names:
            raise KeyError(name)
        return self.quiet(self.dispatch[name])

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.dispatch if name in self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class WritingView:
    """What :func:`writing_view` returns: the container to give ``TiledWriter``, and what it skipped.

    Attributes
    ----------
    container : tiled.client.container.Container
        The view of the target container.
    closes_streams : bool
        Whether the writer's stream closes are sent.
    skipped : list of str
        Addresses of the nodes whose ``close_stream()`` sent nothing (empty when
        ``closes_streams``).
    """

    container: Any
    closes_streams: bool
    skipped: list[str] = field(default_factory=list)


def writing_view(container: Container, *, close_streams_option: bool | None = None) -> WritingView:
    """The view of ``container`` that ``TiledWriter`` writes through (see the module's description).

    Building it sends no request, except :func:`close_streams`'s question to the
    server, at most once per target per process, when ``close_streams_option`` is None.

    >>> view = writing_view(container, close_streams_option=False)   # doctest: +SKIP
    >>> writer = make_writer(view.container)                         # doctest: +SKIP
    """
    if close_streams(container, close_streams_option):
        return WritingView(container.new_variation(include_data_sources=True), True)
    dispatch = QuietDispatch(container.structure_clients)
    view = container.new_variation(include_data_sources=True, structure_clients=dispatch)
    return WritingView(view, False, dispatch.skipped)
