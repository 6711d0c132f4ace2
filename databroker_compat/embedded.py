"""A Broker over an embedded Tiled server, for tutorials, tests and demos."""

from __future__ import annotations

import atexit
import logging
import pathlib
from typing import Union

logger = logging.getLogger(__name__)

PathLike = Union[str, pathlib.Path]


def temp(directory: PathLike | None = None, *, readable_storage=None, timezone: str | None = None):
    """A :class:`Broker` over a new embedded Tiled server (``SimpleTiledServer``).

    Parameters
    ----------
    directory : path, optional
        Where the server keeps its catalog and data. Temporary (deleted at exit) by
        default; give a directory to keep the runs between sessions.
    readable_storage : path or list of paths, optional
        Directories of detector files the server may read (external data).
    timezone : str, optional
        Passed to :class:`Broker`.

    Needs the server extra: ``pip install "databroker-compat[demo]"``.

    >>> db = temp()                      # doctest: +SKIP
    >>> RE.subscribe(db.insert)          # doctest: +SKIP
    """
    try:
        from tiled.client import from_uri
        from tiled.server import SimpleTiledServer
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "temp() runs an embedded Tiled server, which needs tiled's server parts: "
            'pip install "databroker-compat[demo]"'
        ) from err

    from .broker import Broker

    server = SimpleTiledServer(directory, readable_storage=readable_storage)
    atexit.register(_close_quietly, server)
    logger.info("Embedded Tiled server at %s (data in %s)", server.web_ui_link.split("?")[0], server.directory)
    db = Broker(from_uri(server.uri), timezone=timezone, name="temp")
    db._server = server
    return db


def _close_quietly(server) -> None:
    """Stop an embedded server once; later calls (atexit after close()) do nothing."""
    if getattr(server, "_databroker_compat_closed", False):
        return
    server._databroker_compat_closed = True
    try:
        server.close()
    except FileNotFoundError:  # its temporary directory is already gone
        pass
