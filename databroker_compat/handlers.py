"""Handlers: accepted for v1 scripts, documented, and not used.

databroker v1 opened detector files on the client, through *handlers* registered per
resource ``spec``. On Tiled the server opens the files (its adapters, chosen by the
data's MIME type); the client only reads arrays. ``handler_registry=`` arguments and
``db.reg.register_handler(...)`` calls are therefore accepted, and a warning, given
once per kind of call, says they do not apply.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

__all__ = ["HandlerRegistry", "warn_handlers_unused"]

logger = logging.getLogger(__name__)

# The kinds of call already warned about (once each per process).
_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_handlers_unused(handlers: Any, where: str) -> None:
    """Warn once per call site kind that client-side handlers do not apply on Tiled.

    Nothing happens when ``handlers`` is empty or ``None``.

    >>> warn_handlers_unused(None, "get_table(handler_registry=...)")
    """
    if not handlers:
        return
    with _warned_lock:
        if where in _warned:
            return
        _warned.add(where)
    message = (
        f"{where}: handlers are not used with Tiled. The Tiled server opens the detector files "
        "itself (through its adapters, chosen by the data's MIME type); the client only reads "
        "arrays. To support a new file format, register an adapter on the server "
        "(tiled's adapters_by_mimetype) and map its spec with TiledWriter(spec_to_mimetype=...)."
    )
    logger.warning("%s", message)
    warnings.warn(message, UserWarning, stacklevel=3)


class HandlerRegistry(dict):
    """``db.reg``: v1's asset registry, kept for ``register_handler`` calls in old scripts.

    Registering records the handler (so ``db.reg.handler_reg`` shows it) and warns once
    that the Tiled server, not this client, reads the files.

    >>> reg = HandlerRegistry()
    >>> reg.register_handler("AD_HDF5", object)   # doctest: +SKIP
    >>> reg.handler_reg                           # doctest: +SKIP
    {'AD_HDF5': <class 'object'>}
    """

    @property
    def handler_reg(self) -> dict:
        """The registered handlers, by spec (a copy)."""
        return dict(self)

    def register_handler(self, spec: str, handler: Any, overwrite: bool = False) -> None:
        """Record ``handler`` for ``spec`` (v1 signature); it is not used on Tiled."""
        if not isinstance(spec, str):
            raise TypeError(f"A handler is registered for a spec name (str), not {spec!r}.")
        if spec in self and self[spec] is not handler and not overwrite:
            raise KeyError(f"A handler is already registered for {spec!r}; pass overwrite=True to replace it.")
        self[spec] = handler
        warn_handlers_unused({spec: handler}, "register_handler")

    def deregister_handler(self, spec: str) -> None:
        """Forget the handler of ``spec``, if any.

        >>> HandlerRegistry().deregister_handler("AD_TIFF")
        """
        self.pop(spec, None)
