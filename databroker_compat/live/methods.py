"""``Broker.follow`` and ``Broker.subscribe``: the live methods, as a base class of ``Broker``.

They act on ``db()``: the broker's runs, with its filters. Search results have the
same methods (``db(plan_name="scan").follow()``), acting on their query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..layout import ALL
from .watch import SETTLE

if TYPE_CHECKING:
    from ..broker import Broker
    from ..results import Results
    from .follow import Follower
    from .subscribe import LiveSubscription

__all__ = ["LiveMethods"]


class LiveMethods:
    """``follow`` and ``subscribe`` of a :class:`~databroker_compat.Broker`."""

    if TYPE_CHECKING:

        def __call__(self, text_search: str | None = None, **query: Any) -> Results: ...

    def follow(
        self,
        *,
        complete: bool = True,
        timeout: float | None = None,
        mode: str = "auto",
        poll_interval: float | None = None,
    ) -> Follower:
        """Iterate over the Headers of runs that appear from now on (the broker's filters apply).

        Parameters
        ----------
        complete : bool
            True: yield a run once its stop document is on the server. False: as soon
            as it starts (its Header then has no stop and few or no events; look it up
            again, ``db[h.uid]``, for what came since).
        timeout : float, optional
            End the iteration after this many seconds without a new run (None: never).
        mode : {"auto", "websocket", "poll"}
            How new runs are found: Tiled's websocket updates (the server needs a
            streaming cache), polling, or ``"auto"``: websockets where the server has them.
        poll_interval : float, optional
            Seconds between checks: 1.0 when polling; with websockets, a full check
            every 5.0 s catches anything an update missed.

        A run still open when the call is made (the newest run, or any started in the
        last :data:`~databroker_compat.live.MARGIN` seconds) is yielded too. See
        docs/live.md.

        >>> for h in db.follow(timeout=3600):      # doctest: +SKIP
        ...     print(h.start["scan_id"], h.stop["exit_status"])
        """
        from .follow import follow

        return follow(
            self._broker(), self(), complete=complete, timeout=timeout, mode=mode, poll_interval=poll_interval
        )

    def subscribe(
        self,
        callback: Callable[[str, Any], Any],
        *,
        stream_names: Any = ALL,
        mode: str = "auto",
        poll_interval: float | None = None,
        settle: float = SETTLE,
    ) -> LiveSubscription:
        """Feed ``callback(name, doc)`` each new run's documents while TiledWriter writes them.

        Start, descriptors, events, resource and datum, stop: as ``h.documents()`` gives
        them for the finished run (through the broker's ``prepare_hook``), each once, as
        soon as the writer has sent them to the server (it sends events in batches, and
        the last batch at the stop). Any event-model callback works: ``LiveTable``, a
        ``DocumentRouter``, a suitcase serializer. The callback runs on a thread of the
        subscription; an exception it raises is logged and delivery goes on.

        Parameters
        ----------
        callback : callable
            ``callback(name, doc)``.
        stream_names : list of str, or ALL
            Only these streams' descriptors and events.
        mode, poll_interval
            As :meth:`follow`.
        settle : float
            Seconds new documents are held, before the stop, to let a batch arrive
            whole (0: deliver at once; see docs/live.md).

        Returns
        -------
        LiveSubscription
            ``.stop()`` ends it; usable as a context manager.

        >>> with db.subscribe(LiveTable(["det"])):   # doctest: +SKIP
        ...     RE(count([det], 5))
        """
        from .subscribe import subscribe

        return subscribe(
            self._broker(),
            self(),
            callback,
            stream_names=stream_names,
            mode=mode,
            poll_interval=poll_interval,
            settle=settle,
        )

    def _broker(self) -> Broker:
        return self  # type: ignore[return-value]  # LiveMethods is a base class of Broker only
