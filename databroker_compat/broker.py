"""``Broker``: the databroker v1 entry point, over a Tiled container of Bluesky runs."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from . import _tiled
from .header import ALL, Header
from .lookup import runs_for_key

logger = logging.getLogger(__name__)

__all__ = ["Broker"]


def _as_headers(headers) -> list[Header]:
    """v1 accepted one Header or any iterable of them."""
    if isinstance(headers, Header):
        return [headers]
    return list(headers)


class Broker:
    """The databroker v1 API over a Tiled container whose children are Bluesky runs.

    Parameters
    ----------
    client : tiled.client.container.Container
        The catalog: a plain Tiled root (``tiled serve catalog``, ``SimpleTiledServer``)
        or a node with the ``CatalogOfBlueskyRuns`` spec.
    timezone : str, optional
        The time zone ``get_table`` localises times to (v1's ``timezone`` setting);
        by default this machine's.
    name : str, optional
        The name v1 configurations gave the broker.

    Examples
    --------
    >>> from tiled.client import from_uri                 # doctest: +SKIP
    >>> db = Broker(from_uri("http://localhost:8000"))    # doctest: +SKIP
    >>> h = db[-1]                                        # doctest: +SKIP
    >>> h.table()                                         # doctest: +SKIP
    """

    def __init__(self, client, *, timezone: str | None = None, name: str | None = None):
        self._client = client
        self._root = _tiled.runs_only(_tiled.as_container(client))
        self.timezone = timezone
        self.name = name
        self._server = None  # an embedded server this broker owns (see temp())

    # -- Tiled access ---------------------------------------------------------
    @property
    def v2(self):
        """The Tiled client this broker reads."""
        return self._client

    def _header(self, run) -> Header:
        return Header(self, run)

    # -- lookup -----------------------------------------------------------------
    def __getitem__(self, key: Any):
        """Look up runs as v1 did: ``db[-1]``, ``db[-5:]``, ``db[scan_id]``, ``db[uid]``, lists.

        >>> db[-1].start["uid"] == db[db[-1].start["uid"][:8]].uid   # doctest: +SKIP
        True
        """
        found = runs_for_key(self._root, key)
        return _wrap(self, found)

    # -- tables -------------------------------------------------------------------
    def get_table(
        self,
        headers,
        stream_name: Any = "primary",
        fields=None,
        fill: bool = False,
        handler_registry=None,
        convert_times: bool = True,
        timezone: str | None = None,
        localize_times: bool = True,
    ):
        """Events of one stream of one or more runs as a ``pandas.DataFrame``.

        The index is ``seq_num``; ``time`` comes first, as datetimes localised to
        ``timezone`` (then made naive, as v1 did) unless ``convert_times=False``.
        ``fields`` keeps the named data keys (exact names or regular expressions) and
        adds requested configuration, start and stop values as constant columns.
        A field that no run holds raises ``ValueError``; a stream the run lacks gives
        an empty DataFrame.

        >>> db.get_table(db[-1], fields=["det"])          # doctest: +SKIP
        """
        from .tables import get_table

        return get_table(
            _as_headers(headers),
            stream_name=stream_name,
            fields=fields,
            fill=fill,
            timezone=timezone,
            convert_times=convert_times,
            localize_times=localize_times,
        )

    def stream_names_given_header(self, header: Header) -> list[str]:
        """The stream names of a run."""
        return header.stream_names

    def get_fields(self, header: Header, name=None) -> set[str]:
        """Data keys of a run: of stream ``name``, or of all streams."""
        return header.fields(ALL if name is None else name)

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Stop the embedded server, if this broker started one."""
        if self._server is not None:
            from .embedded import _close_quietly

            server, self._server = self._server, None
            _close_quietly(server)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        where = str(self._root.context.api_uri).split("?")[0]
        label = f" {self.name!r}" if self.name else ""
        return f"<Broker{label} over {where}>"


def _wrap(db: Broker, found):
    if isinstance(found, list):
        return [_wrap(db, f) for f in found]
    return db._header(found)
