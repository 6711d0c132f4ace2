"""Live runs: follow new runs, and their documents while TiledWriter writes them.

``db.follow()`` (:func:`~databroker_compat.live.follow.follow`) yields the Header of each
new run; ``db.subscribe(callback)`` (:func:`~databroker_compat.live.subscribe.subscribe`)
feeds a callback each new run's documents. Both use Tiled's websocket updates when
the server runs a streaming cache, and poll otherwise (:mod:`.sources`); see
docs/live.md.

>>> for h in db.follow(timeout=600):   # doctest: +SKIP
...     print(h.start["scan_id"])
"""

from .feed import RunFeed
from .follow import Follower, follow
from .sources import MODES, choose_mode
from .subscribe import LiveSubscription, subscribe
from .watch import CHECK_INTERVAL, MARGIN, POLL_INTERVAL, SETTLE, Watcher

__all__ = [
    "CHECK_INTERVAL",
    "MARGIN",
    "MODES",
    "POLL_INTERVAL",
    "SETTLE",
    "Follower",
    "LiveSubscription",
    "RunFeed",
    "Watcher",
    "choose_mode",
    "follow",
    "subscribe",
]
