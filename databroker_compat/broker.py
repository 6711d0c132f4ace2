"""``Broker``: the databroker v1 entry point, over a Tiled container of Bluesky runs.

Lookups and reading are here; the search methods come from ``results.Searching``, v0's
``fill_event``/``fill_events``/``get_resource_uids`` from ``v0.V0Methods``, ``db.v2`` from ``v2``,
``follow``/``subscribe`` from ``live.methods.LiveMethods``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from os import PathLike
from typing import TYPE_CHECKING, Any

from . import _tiled, documents, images, tables
from .config import config_for_client, open_config, open_named
from .embedded import start as start_embedded
from .handlers import HandlerRegistry, warn_handlers_unused
from .header import Header, Headers, as_headers
from .layout import ALL
from .live.methods import LiveMethods
from .lookup import CATALOG, runs_for_key
from .model import Document
from .results import SavedSearches, Searching, headers_of
from .v0 import RecentRuns, V0Methods
from .v2 import catalog_of_runs

if TYPE_CHECKING:
    import pandas as pd
    from tiled.client.base import BaseClient
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["ALL", "Broker", "temp"]

class Broker(Searching, V0Methods, LiveMethods):
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

    def __init__(
        self,
        client: BaseClient,
        *,
        timezone: str | None = None,
        name: str | None = None,
        config: dict | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._children = _tiled.as_container(client)
        self._root = _tiled.runs_only(self._children)
        self.timezone = timezone
        self.name = name
        #: The configuration this broker was built from (``get_config``), if any.
        self._config = copy.deepcopy(config) if config is not None else None
        #: Called once by ``close()``: stops an embedded server this broker owns.
        self._on_close = on_close
        self._searches = SavedSearches()  # filters and aliases
        self._writer: Callable[[str, dict], Any] | None = None  # the TiledWriter of insert(), made on first use
        self._handler_registry: HandlerRegistry | None = None  # db.reg, made on first use
        self._recent = RecentRuns()  # runs handed out lately, to trace lone events (fill_event)
        self._v2: Any = None  # db.v2, made on first use

    # -- Tiled access ---------------------------------------------------------
    @property
    def v2(self) -> Any:
        """bluesky-tiled-plugins' ``CatalogOfBlueskyRuns`` client over this node (:mod:`databroker_compat.v2`).

        Even on a plain Tiled root: ``db.v2.search(ScanID(42))``, bare keys meaning
        ``start.<key>``, ``db.v2[uid]["primary"]["data"]["img"][:]``; ``db.v2.v1 is db``.

        >>> db.v2.v1 is db      # doctest: +SKIP
        True
        """
        if self._v2 is None:
            self._v2 = catalog_of_runs(self, self._children)
        return self._v2

    @property
    def run_container(self) -> Container:
        """The Bluesky runs of the catalog (a plain ``Container`` search: other nodes left out).

        Searches and lookups start from here.

        >>> len(db.run_container)   # doctest: +SKIP
        12
        """
        return self._root

    def header_of(self, run: BaseClient) -> Header:
        """The :class:`~databroker_compat.Header` of a run client of this catalog.

        >>> db.header_of(db.run_container[uid]).uid == uid   # doctest: +SKIP
        True
        """
        header = Header(self, run)
        self._recent.add(header.run)
        return header

    # -- configuration (see the config package) --------------------------------------
    @classmethod
    def named(cls, name: str, *, timezone: str | None = None) -> Broker:
        """The broker configured under ``name``: a Tiled profile, ``<name>.yml`` or an intake source.

        See :mod:`databroker_compat.config` for the search order and the file schema;
        ``"temp"`` gives a broker over a new embedded server. ``timezone`` overrides the
        configuration's.

        Raises
        ------
        ConfigNotFound
            No configuration of that name (a ``FileNotFoundError``, as v1).
        MongoConfigNeedsMigration
            The only configuration of that name points at MongoDB; the message gives the
            ``databroker-migrate`` command that moves its data into Tiled.
        ConfigError
            The configuration is malformed (unknown keys, unset environment variables).

        >>> db = Broker.named("csx")      # doctest: +SKIP
        """
        opened = open_named(name, start_embedded=start_embedded)
        zone = timezone if timezone is not None else opened.timezone
        return cls(opened.client, timezone=zone, name=opened.name, config=opened.config, on_close=opened.close)

    @classmethod
    def from_config(cls, config: dict, auto_register: bool = True, name: str | None = None) -> Broker:
        """A broker from a configuration dict: ``{"tiled": {"uri": ..., "api_key": ...}}``.

        ``${ENV}`` references are expanded when the broker is built; :meth:`get_config`
        gives the dict as written. ``auto_register`` is accepted for v1 scripts (the Tiled
        server reads detector files itself).

        >>> db = Broker.from_config({"tiled": {"uri": "http://localhost:8000"}})   # doctest: +SKIP
        >>> db.get_config()["tiled"]["uri"]                                          # doctest: +SKIP
        'http://localhost:8000'
        """
        opened = open_config(config, name=name, auto_register=auto_register, start_embedded=start_embedded)
        return cls(
            opened.client, timezone=opened.timezone, name=opened.name, config=opened.config, on_close=opened.close
        )

    @classmethod
    def temp(
        cls, directory: str | PathLike[str] | None = None, *, readable_storage: Any = None, timezone: str | None = None
    ) -> Broker:
        """A broker over a new embedded Tiled server (``SimpleTiledServer``) in this process.

        Parameters
        ----------
        directory : path, optional
            Where the server keeps its catalog and data. Temporary (deleted when the
            broker closes, or at exit) by default; give a directory to keep the runs.
        readable_storage : path or list of paths, optional
            Directories of detector files the server may read (external data).
        timezone : str, optional
            As the ``Broker`` parameter.

        ``close()`` (or leaving a ``with`` block) stops the server. Needs the server
        extra: ``pip install "databroker-compat[demo]"``.

        >>> with Broker.temp() as db:          # doctest: +SKIP
        ...     RE.subscribe(db.insert)
        """
        client, close = start_embedded(directory, readable_storage=readable_storage)
        return cls(client, timezone=timezone, name="temp", on_close=close)

    def get_config(self) -> dict:
        """The configuration this broker was built from (secrets as written, ``${ENV}`` unexpanded).

        For a broker built from a client directly, ``{"tiled": {"uri": ...}}`` with the
        server's address and node path (the API key is left out), and its ``timezone``.

        >>> Broker.named("csx").get_config()["tiled"]["uri"]     # doctest: +SKIP
        'https://tiled.example.org/api/v1'
        """
        if self._config is not None:
            return copy.deepcopy(self._config)
        return config_for_client(self._client, timezone=self.timezone)

    # -- lookup -----------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        """Look up runs as v1 did: ``db[-1]``, ``db[-5:]``, ``db[scan_id]``, ``db[uid]``, lists, sets.

        ``db[-N]`` past the oldest run raises ``NotEnoughRuns`` (a ``KeyError`` and the
        ``IndexError`` v1 raised); ``db[:]`` (a slice with neither bound) raises
        ``ValueError``, as v1 refused to read the whole catalog.

        >>> db[-1].start["uid"] == db[db[-1].start["uid"][:8]].uid   # doctest: +SKIP
        True
        """
        if self._searches.filters:
            return self()[key]  # filters apply to lookups too, as in v1
        found = runs_for_key(self._root, key, children=self._children, where=CATALOG)
        return headers_of(self, found)

    # -- tables -------------------------------------------------------------------
    def get_table(
        self,
        headers: Headers,
        stream_name: Any = "primary",
        fields: Any = None,
        fill: bool = False,
        handler_registry: Any = None,
        convert_times: bool = True,
        timezone: str | None = None,
        localize_times: bool = True,
    ) -> pd.DataFrame:
        """Events of one stream of one or more runs as a ``pandas.DataFrame``.

        The index is ``seq_num``; ``time`` comes first, as datetimes localised to
        ``timezone`` (then made naive, as v1 did) unless ``convert_times=False``.
        ``fields`` keeps the named data keys (exact names or regular expressions) and
        adds requested configuration, start and stop values as constant columns.
        A field that no run holds raises ``ValueError``; a stream the run lacks gives
        an empty DataFrame.

        >>> db.get_table(db[-1], fields=["det"])          # doctest: +SKIP
        """
        warn_handlers_unused(handler_registry, "get_table(handler_registry=...)")
        headers = as_headers(headers)
        zones = [timezone or h.db.timezone for h in headers]  # the zone asked for, else each run's broker's
        runs = [h.run for h in headers]
        return tables.get_table(
            runs, stream_name=stream_name, fields=fields, fill=fill, timezones=zones, convert_times=convert_times,
            localize_times=localize_times,
        )

    def stream_names_given_header(self, header: Header) -> list[str]:
        """The stream names of a run."""
        return header.stream_names

    def get_fields(self, header: Header, name: Any = None) -> set[str]:
        """Data keys of a run: of stream ``name``, or of all streams."""
        return header.fields(ALL if name is None else name)

    # -- images and handlers (see images.py) -----------------------------------------
    def get_images(
        self, headers: Headers, name: str, stream_name: str = "primary", handler_registry: Any = None
    ) -> images.Images:
        """Frames of data key ``name``: a lazy sequence (``len``, ``[k]``, ``[a:b]``, iteration).

        Only the frames asked for are read from the server. ``handler_registry`` is
        accepted and not used: the Tiled server reads the files (see docs/images.md).

        >>> imgs = db.get_images(db[-1], "pilatus_image")   # doctest: +SKIP
        >>> imgs[0].shape, len(imgs)                        # doctest: +SKIP
        ((195, 487), 10)
        """
        runs = [h.run for h in as_headers(headers)]
        return images.get_images(runs, name, stream_name=stream_name, handler_registry=handler_registry)

    @property
    def reg(self) -> HandlerRegistry:
        """v1's asset registry, for old ``db.reg.register_handler(...)`` calls (recorded, not used)."""
        if self._handler_registry is None:
            self._handler_registry = HandlerRegistry()
        return self._handler_registry

    # -- documents (see documents.py) -------------------------------------------------
    @staticmethod
    def prepare_hook(name: str, doc: dict) -> Any:
        """Applied to every document on its way out; by default wraps it in a ``Document``.

        Replace it on an instance (``db.prepare_hook = lambda name, doc: doc``) to get
        plain dicts, as v1 allowed.

        >>> Broker.prepare_hook("start", {"uid": "u"}).uid
        'u'
        """
        return Document(doc)

    def get_documents(
        self,
        headers: Headers,
        stream_name: Any = ALL,
        fields: Any = None,
        fill: bool = False,
        handler_registry: Any = None,
        event_pages: bool = False,
    ) -> Iterator[tuple[str, dict]]:
        """``(name, doc)`` pairs of one or more runs, each run in its emission order.

        Parameters
        ----------
        headers : Header or iterable of Header
        stream_name : str or ALL
            Only the descriptors and events of this stream (start and stop always come).
        fields : list of str, optional
            Only these data keys in events (exact names or regular expressions, as v1);
            descriptors holding none of them are left out, with their events.
        fill : bool
            External (detector) data in the events instead of datum ids.
        handler_registry : ignored
            The Tiled server reads detector files; accepted for v1 scripts.
        event_pages : bool
            ``event_page``/``datum_page`` documents instead of single events and datums.

        Raises
        ------
        UnknownField
            ``fields`` names nothing the runs hold (a ``ValueError``, as v1).

        >>> for name, doc in db.get_documents(db[-1]):   # doctest: +SKIP
        ...     print(name, doc["uid"] if "uid" in doc else "")
        """
        warn_handlers_unused(handler_registry, "get_documents(handler_registry=...)")
        runs = [h.run for h in as_headers(headers)]
        return documents.runs_documents(
            runs, stream_name=stream_name, fields=fields, fill=fill, event_pages=event_pages, prepare_hook=self.prepare_hook
        )

    def get_events(
        self,
        headers: Headers,
        stream_name: Any = "primary",
        fields: Any = None,
        fill: bool = False,
        handler_registry: Any = None,
    ) -> Iterator[dict]:
        """Event documents of one stream (``ALL``: every stream) of one or more runs.

        >>> [ev["data"]["det"] for ev in db.get_events(db[-1], fields=["det"])]   # doctest: +SKIP
        [1.0, 0.6, 0.1]
        """
        stream = self.get_documents(headers, stream_name, fields=fields, fill=fill, handler_registry=handler_registry)
        return (doc for name, doc in stream if name == "event")

    def restream(
        self, headers: Headers, fields: Any = None, fill: bool = False, handler_registry: Any = None
    ) -> Iterator[tuple[str, dict]]:
        """Every document of one or more runs, for replaying into callbacks.

        >>> for name, doc in db.restream(db[-3:]):    # doctest: +SKIP
        ...     callback(name, doc)
        """
        return self.get_documents(headers, fields=fields, fill=fill, handler_registry=handler_registry)

    stream = restream

    def process(
        self,
        headers: Headers,
        func: Callable[[str, dict], Any],
        fields: Any = None,
        stream_name: Any = ALL,
        fill: bool = False,
        handler_registry: Any = None,
    ) -> None:
        """Call ``func(name, doc)`` on every document of one or more runs.

        >>> db.process(db[-1], lambda name, doc: print(name))   # doctest: +SKIP
        """
        if not callable(func):
            raise TypeError(f"process() needs a callable func(name, doc), not {type(func).__name__}.")
        for name, doc in self.get_documents(headers, stream_name, fields, fill=fill, handler_registry=handler_registry):
            func(name, doc)

    def insert(self, name: str, doc: dict) -> None:
        """Write one document to this broker's Tiled catalog, through ``TiledWriter``.

        ``RE.subscribe(db.insert)`` records runs as the RunEngine emits them. The writer
        sends events in batches and at the stop document: a run is complete on the
        server once its stop document has been inserted.

        >>> RE.subscribe(db.insert)     # doctest: +SKIP
        """
        if self._writer is None:
            from bluesky_tiled_plugins import TiledWriter

            self._writer = TiledWriter(self._client)
        self._writer(name, doc)

    def export(self, headers: Headers, db: Broker, new_root: Any = None, copy_kwargs: Any = None) -> list[str]:
        """Copy runs into another broker (another Tiled catalog), through its ``insert``.

        Detector files are not copied: the other server must be able to read them where
        they are (its readable storage). ``new_root`` and ``copy_kwargs`` belong to v1's
        file copying and are refused. Returns the uids of the runs copied.

        >>> db.export(db[-3:], other_db)     # doctest: +SKIP
        ['0c9f...', ...]
        """
        if new_root is not None or copy_kwargs is not None:
            raise ValueError(
                "export() does not copy detector files (new_root/copy_kwargs): Tiled servers "
                "read them in place. Copy the files yourself, make them readable by the other "
                "server, and call export(headers, db) without those arguments."
            )
        if not isinstance(db, Broker):
            raise TypeError(f"export() needs a Broker to copy into, not {type(db).__name__}.")
        copied = []
        for header in as_headers(headers):
            for name, doc in documents.run_documents(header.run):
                db.insert(name, doc)
            copied.append(header.uid)
        return copied

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Stop what this broker started (an embedded server); later calls do nothing.

        >>> db = Broker.temp(); db.close(); db.close()     # doctest: +SKIP
        """
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self._root.context.api_uri).split("?")[0]
        label = f" {self.name!r}" if self.name else ""
        return f"<Broker{label} over {where}>"


def temp(
    directory: str | PathLike[str] | None = None, *, readable_storage: Any = None, timezone: str | None = None
) -> Broker:
    """A :class:`Broker` over a new embedded Tiled server: :meth:`Broker.temp` (v1's ``temp()``).

    >>> db = temp()                      # doctest: +SKIP
    >>> RE.subscribe(db.insert)          # doctest: +SKIP
    """
    return Broker.temp(directory, readable_storage=readable_storage, timezone=timezone)
