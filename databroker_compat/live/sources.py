"""Where a follower learns that something changed: Tiled's websocket updates, or polling.

:func:`choose_mode` picks the way for a server: ``"websocket"`` when it runs Tiled's
streaming cache (asked once with :func:`databroker_compat._tiled.streaming_cache`),
``"poll"`` otherwise, said once in the log per server. :class:`NodeWatch` holds the
websocket subscriptions (tiled's own ``ContainerSubscription``/``TableSubscription``/
``ArraySubscription``, from ``tiled.client.stream``): every update calls one function
with the node's path; the follower re-reads what the update is about over HTTP. A
subscription the server ends (the writer closes a run's nodes at its stop) is let go;
one that drops (a server restart) is tiled's to reconnect, resuming from the last
sequence number it received when the server still holds it; one that gives up is
started again here, after :data:`RECONNECT_DELAY` seconds, for as long as it is wanted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _tiled
from ..exceptions import BadArgument

if TYPE_CHECKING:
    from tiled.client.context import Context

__all__ = ["MODES", "RECONNECT_DELAY", "NodeWatch", "choose_mode"]

logger = logging.getLogger(__name__)

#: The ``mode=`` values of ``follow``/``subscribe``.
MODES = ("auto", "websocket", "poll")
#: Seconds before a websocket subscription that gave up is started again.
RECONNECT_DELAY = 2.0
_told_polling: set[str] = set()  # servers whose polling was logged (once each)


def choose_mode(node: Any, mode: str, interval: float) -> str:
    """``"websocket"`` or ``"poll"`` for ``mode`` (one of :data:`MODES`) on the server of ``node``.

    ``"auto"`` asks the server (one websocket handshake) and polls only when it surely
    has no streaming cache; ``"websocket"`` on such a server raises ``BadArgument``.

    >>> choose_mode(None, "poll", 1.0)
    'poll'
    >>> choose_mode(None, "sometimes", 1.0)
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.BadArgument: mode must be one of ('auto', 'websocket', 'poll'), not 'sometimes'.
    """
    if mode not in MODES:
        raise BadArgument(f"mode must be one of {MODES}, not {mode!r}.", mode=mode)
    if mode == "poll":
        return "poll"
    streams = _tiled.streaming_cache(node)
    where = str(node.context.api_uri).split("?")[0]
    if streams is False:
        if mode == "websocket":
            raise BadArgument(
                f"The Tiled server at {where} has no streaming cache, so it sends no websocket updates. "
                "Start it with one (see docs/live.md) or use mode='auto' or 'poll'.",
                mode=mode,
            )
        if where not in _told_polling:
            _told_polling.add(where)
            logger.info(
                "The Tiled server at %s has no streaming cache: new runs and their documents are "
                "found by polling every %.1f s (see docs/live.md to turn on websocket updates).",
                where,
                interval,
            )
        return "poll"
    return "websocket"


class NodeWatch:
    """Websocket subscriptions to nodes of one server; each update calls ``on_update(path, update)``.

    ``path`` is the node's path segments; ``update`` is tiled's update object, or
    ``None`` after a subscription was started again (something may have been missed).
    Callbacks run on tiled's subscription threads: ``on_update`` must be quick.

    >>> watch = NodeWatch(db.run_container.context, print)   # doctest: +SKIP
    >>> watch.watch([], "container")                          # doctest: +SKIP
    >>> watch.close()                                         # doctest: +SKIP
    """

    def __init__(self, context: Context, on_update: Callable[[list[str], Any], None]) -> None:
        self.context = context
        self.on_update = on_update
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._watched: set[tuple[str, ...]] = set()
        self._subscriptions: dict[tuple[str, ...], Any] = {}
        self._threads: list[threading.Thread] = []

    def watch(self, path: list[str], family: str, *, children: bool = False, keep: bool = False) -> None:
        """Subscribe to the node at ``path`` (``family``: its structure family), once.

        ``children``: subscribe to each child it gets, and theirs (a run's streams, their
        tables and arrays). ``keep``: start the subscription again whenever it ends
        (the catalog); otherwise an end by the server is final (a run's node at its stop).
        """
        key = tuple(path)
        with self._lock:
            if self._closed.is_set() or key in self._watched:
                return
            self._watched.add(key)
        thread = threading.Thread(
            target=self._run, args=(list(path), family, children, keep), daemon=True, name=f"live-{'/'.join(path)}"
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]  # those of finished runs end
            self._threads.append(thread)
        thread.start()

    def _subscription(self, path: list[str], family: str, children: bool) -> tuple[Any, list[Callable]]:
        from tiled.client.stream import ArraySubscription, ContainerSubscription, TableSubscription

        def updated(update: Any) -> None:
            self.on_update(path, update)

        def created(update: Any) -> None:
            if children:
                family = update.structure_family  # tiled's StructureFamily (a str enum)
                self.watch([*path, update.key], str(getattr(family, "value", family)), children=True)
            self.on_update(path, update)

        keep_alive: list[Callable] = [updated, created]  # tiled holds callbacks by weak reference
        if family == "container":
            sub: Any = ContainerSubscription(self.context, path)
            sub.child_created.add_callback(created)
            sub.child_metadata_updated.add_callback(updated)
        else:
            sub = (TableSubscription if family == "table" else ArraySubscription)(self.context, path)
            sub.new_data.add_callback(updated)
        return sub, keep_alive

    def _run(self, path: list[str], family: str, children: bool, keep: bool) -> None:
        first = True
        while not self._closed.is_set():
            sub, callbacks = self._subscription(path, family, children)
            with self._lock:
                if self._closed.is_set():
                    return
                self._subscriptions[tuple(path)] = sub
            if not first:
                self.on_update(path, None)
            first = False
            try:
                sub.start()  # blocks; tiled reconnects a dropped connection itself
            except Exception as err:
                if self._closed.is_set():
                    return
                logger.warning(
                    "Websocket updates of %s stopped (%r); starting again in %.0f s, re-reading over HTTP meanwhile.",
                    "/".join(path) or "the catalog",
                    err,
                    RECONNECT_DELAY,
                )
            del callbacks
            if not keep:
                with self._lock:
                    self._subscriptions.pop(tuple(path), None)
                return
            self._closed.wait(RECONNECT_DELAY)

    def close(self, timeout: float = 5.0) -> None:
        """End every subscription and wait (up to ``timeout`` s) for their threads."""
        with self._lock:
            self._closed.set()
            subscriptions = list(self._subscriptions.values())
            threads = list(self._threads)
        for sub in subscriptions:
            try:
                sub.disconnect(wait=False)
            except Exception as err:  # a subscription that never connected
                logger.debug("Closing %r: %r", sub, err)
        for thread in threads:
            thread.join(timeout)
