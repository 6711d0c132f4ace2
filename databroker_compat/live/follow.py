"""``follow``: an iterator of the Headers of runs that appear from now on.

>>> for h in db.follow(timeout=600):      # doctest: +SKIP
...     process(h.table())
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .sources import choose_mode
from .watch import CHECK_INTERVAL, POLL_INTERVAL, Watcher

if TYPE_CHECKING:
    from ..broker import Broker
    from ..header import Header
    from ..results import Results

__all__ = ["Follower", "check_interval", "follow"]

logger = logging.getLogger(__name__)


def check_interval(poll_interval: float | None, mode: str) -> float:
    """Seconds between full checks: ``poll_interval``, or the default of the chosen mode.

    >>> check_interval(None, "poll"), check_interval(None, "websocket"), check_interval(0.5, "poll")
    (1.0, 5.0, 0.5)
    """
    from ..exceptions import BadArgument

    if poll_interval is None:
        return POLL_INTERVAL if mode == "poll" else CHECK_INTERVAL
    if not poll_interval > 0:
        raise BadArgument(f"poll_interval must be a positive number of seconds, not {poll_interval!r}.")
    return float(poll_interval)


class Follower:
    """The iterator ``follow`` returns: Headers of new runs, as they come; ``close()`` ends it.

    The follower starts watching when it is made (runs that start after the call are
    new, even if iteration begins later). Usable as a context manager.

    >>> with db.follow(timeout=60) as runs:   # doctest: +SKIP
    ...     for h in runs:
    ...         print(h.start["scan_id"])
    """

    def __init__(self, watcher: Watcher, *, complete: bool, timeout: float | None) -> None:
        self._watcher = watcher
        self._ready: collections.deque[Header] = collections.deque()
        self.complete = complete
        self.timeout = timeout
        self._closed = False
        if complete:
            watcher.on_complete = self._ready.append
        else:
            watcher.on_match = self._ready.append
        watcher.start()
        self._last = time.monotonic()

    @property
    def mode(self) -> str:
        """``"websocket"`` or ``"poll"``: how this follower learns of new runs."""
        return self._watcher.mode

    def __iter__(self) -> Iterator[Header]:
        return self

    def __next__(self) -> Header:
        while not self._closed:
            if self._ready:
                self._last = time.monotonic()
                return self._ready.popleft()
            until = None if self.timeout is None else self._last + self.timeout
            if until is not None and time.monotonic() >= until:
                break
            self._watcher.wait(until)
            self._watcher.step()
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop following (websocket subscriptions closed); iteration ends."""
        if not self._closed:
            self._closed = True
            self._watcher.close()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Follower mode={self.mode!r} complete={self.complete} timeout={self.timeout}>"


def follow(
    db: Broker,
    results: Results,
    *,
    complete: bool = True,
    timeout: float | None = None,
    mode: str = "auto",
    poll_interval: float | None = None,
) -> Follower:
    """Headers of the runs of ``results`` that appear from now on (see ``Broker.follow``).

    >>> runs = follow(db, db(plan_name="scan"), timeout=30)   # doctest: +SKIP
    """
    from ..exceptions import BadArgument

    if timeout is not None and not timeout > 0:
        raise BadArgument(f"timeout must be a positive number of seconds or None, not {timeout!r}.")
    chosen = choose_mode(db.run_container, mode, check_interval(poll_interval, "poll"))
    watcher = Watcher(db, results, mode=chosen, interval=check_interval(poll_interval, chosen))
    return Follower(watcher, complete=complete, timeout=timeout)
