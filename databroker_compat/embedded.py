"""An embedded Tiled server (``SimpleTiledServer``) in this process, for tutorials, tests and demos.

:func:`start` gives a connected client and the function that stops the server; it
builds no Broker (``databroker_compat.temp()`` and ``Broker.temp()`` do). The server
is stopped at exit if nobody stopped it before; stopping it twice does nothing.

Needs the server extra: ``pip install "databroker-compat[demo]"``.

>>> client, close = start()          # doctest: +SKIP
>>> close()                          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["start"]

PathLike = Union[str, "os.PathLike[str]"]


def start(directory: PathLike | None = None, *, readable_storage: Any = None) -> tuple[Container, Callable[[], None]]:
    """Start a new embedded Tiled server: ``(client, close)``.

    Parameters
    ----------
    directory : path, optional
        Where the server keeps its catalog and data. Temporary (deleted when the server
        stops) by default; give a directory to keep the runs between sessions.
    readable_storage : path or list of paths, optional
        Directories of detector files the server may read (external data).

    Returns
    -------
    client : tiled.client.container.Container
        Connected to the new server (its API key included).
    close : callable
        Stops the server; later calls (and the one registered with ``atexit``) do nothing.

    Raises
    ------
    ImportError
        tiled's server parts are not installed.

    >>> client, close = start()          # doctest: +SKIP
    >>> len(client), close()             # doctest: +SKIP
    (0, None)
    """
    try:
        from tiled.client import from_uri
        from tiled.server import SimpleTiledServer
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            'An embedded Tiled server needs tiled\'s server parts: pip install "databroker-compat[demo]"'
        ) from err

    server = SimpleTiledServer(directory, readable_storage=readable_storage)
    close = _closer(server.close)
    atexit.register(close)
    logger.info("Embedded Tiled server at %s (data in %s)", server.web_ui_link.split("?")[0], server.directory)
    try:
        client = from_uri(server.uri)
    except BaseException:
        close()
        raise
    return client, close


def _closer(stop: Callable[[], None]) -> Callable[[], None]:
    """``stop`` made safe to call more than once, from any thread; unregistered from ``atexit`` once run."""
    lock = threading.Lock()
    stopped = False

    def close() -> None:
        nonlocal stopped
        with lock:
            if stopped:
                return
            stopped = True
        atexit.unregister(close)
        try:
            stop()
        except FileNotFoundError:  # its temporary directory is already gone
            pass

    return close
