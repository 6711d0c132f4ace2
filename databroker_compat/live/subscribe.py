"""``subscribe``: a callback given each new run's documents while the run is written.

>>> from bluesky.callbacks import LiveTable                   # doctest: +SKIP
>>> with db.subscribe(LiveTable(["det"])):                     # doctest: +SKIP
...     RE(count([det], 5))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..layout import ALL
from .feed import deliver
from .follow import check_interval
from .sources import choose_mode
from .watch import SETTLE, Watcher

if TYPE_CHECKING:
    from ..broker import Broker
    from ..results import Results

__all__ = ["LiveSubscription", "subscribe"]

logger = logging.getLogger(__name__)


class LiveSubscription:
    """What ``subscribe`` returns: the callback is fed on a thread until :meth:`stop`.

    Usable as a context manager (``stop()`` on leaving). ``documents`` counts the
    documents delivered so far.

    >>> sub = db.subscribe(print)   # doctest: +SKIP
    >>> sub.stop()                  # doctest: +SKIP
    """

    def __init__(self, watcher: Watcher, callback: Callable[[str, Any], Any], hook: Callable[[str, dict], Any]) -> None:
        self.callback = callback
        self._hook = hook
        self._watcher = watcher
        self._stopping = threading.Event()
        #: Documents delivered so far.
        self.documents = 0
        watcher.on_documents = self._deliver
        watcher.start()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="databroker-compat-live")
        self._thread.start()

    @property
    def mode(self) -> str:
        """``"websocket"`` or ``"poll"``: how new documents are found."""
        return self._watcher.mode

    @property
    def running(self) -> bool:
        """Whether the callback is still being fed."""
        return self._thread.is_alive()

    def _deliver(self, uid: str, documents: list[tuple[str, dict]]) -> None:
        self.documents += deliver(self.callback, documents, self._hook)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watcher.step()
            except Exception:
                logger.exception("Following runs failed; trying again in %.1f s.", self._watcher.interval)
                self._stopping.wait(self._watcher.interval)
                continue
            if self._stopping.is_set():
                break
            self._watcher.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop feeding the callback (waits up to ``timeout`` s for a delivery under way)."""
        self._stopping.set()
        self._watcher.interrupt()
        started = time.monotonic()
        self._thread.join(timeout)
        self._watcher.close()
        if self._thread.is_alive():
            logger.warning("The live subscription did not stop within %.0f s; its thread is left to end.", timeout)
        logger.debug("Live subscription stopped in %.2f s.", time.monotonic() - started)

    def __enter__(self) -> LiveSubscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LiveSubscription mode={self.mode!r} documents={self.documents} running={self.running}>"


def subscribe(
    db: Broker,
    results: Results,
    callback: Callable[[str, Any], Any],
    *,
    stream_names: Any = ALL,
    mode: str = "auto",
    poll_interval: float | None = None,
    settle: float = SETTLE,
) -> LiveSubscription:
    """Feed ``callback(name, doc)`` the documents of each new run of ``results`` (see ``Broker.subscribe``).

    >>> sub = subscribe(db, db(), print)   # doctest: +SKIP
    """
    if isinstance(stream_names, str):
        stream_names = [stream_names]
    chosen = choose_mode(db.run_container, mode, check_interval(poll_interval, "poll"))
    watcher = Watcher(
        db,
        results,
        mode=chosen,
        interval=check_interval(poll_interval, chosen),
        feeds=True,
        stream_names=stream_names,
        settle=settle,
    )
    return LiveSubscription(watcher, callback, db.prepare_hook)
