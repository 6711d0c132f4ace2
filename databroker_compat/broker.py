"""``Broker``: the databroker v1 entry point, over a Tiled container of Bluesky runs."""

from __future__ import annotations

import copy
import logging
from os import PathLike
from typing import Any, Callable, Iterable, Iterator

from . import _tiled
from .config import config_for_client, open_config, open_named
from .embedded import start as start_embedded
from .header import ALL, Header
from .lookup import runs_for_key

logger = logging.getLogger(__name__)

__all__ = ["Broker", "temp"]


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

    def __init__(
        self,
        client,
        *,
        timezone: str | None = None,
        name: str | None = None,
        config: dict | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self._client = client
        self._children = _tiled.as_container(client)
        self._root = _tiled.runs_only(self._children)
        self.timezone = timezone
        self.name = name
        #: The configuration this broker was built from (``get_config``), if any.
        self._config = copy.deepcopy(config) if config is not None else None
        #: Called once by ``close()``: stops an embedded server this broker owns.
        self._on_close = on_close
        self._filters: dict = {}
        self._aliases: dict = {}
        self._writer = None  # the TiledWriter of insert(), made on first use
        self._handler_registry = None  # db.reg, made on first use
        self._server = None  # TRANSITIONAL: replaced by _on_close when config/embedded return clients

    # -- Tiled access ---------------------------------------------------------
    @property
    def v2(self):
        """The Tiled client this broker reads."""
        return self._client

    def _header(self, run) -> Header:
        return Header(self, run)

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
        return cls(
            opened.client,
            timezone=timezone if timezone is not None else opened.timezone,
            name=opened.name,
            config=opened.config,
            on_close=opened.close,
        )

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
    def __getitem__(self, key: Any):
        """Look up runs as v1 did: ``db[-1]``, ``db[-5:]``, ``db[scan_id]``, ``db[uid]``, lists.

        >>> db[-1].start["uid"] == db[db[-1].start["uid"][:8]].uid   # doctest: +SKIP
        True
        """
        if self.__dict__.get("_filters"):
            return self()[key]  # filters apply to lookups too, as in v1
        found = runs_for_key(self._root, key, children=self._children)
        return _wrap(self, found)

    # -- search, filters, aliases ----------------------------------------------
    def __call__(self, text_search: str | None = None, **query):
        """Search as v1 did: keyword arguments are MongoDB-style conditions on the start document.

        ``since``/``until`` bound ``start.time`` (strings read in ``self.timezone``);
        ``start.``/``stop.`` prefixes choose the document; operators ``$eq $ne $gt $gte
        $lt $lte $in $nin $exists $regex $not $all $size $and $or $nor $where``.
        Active filters (:meth:`add_filter`) apply. Returns a lazy
        :class:`~databroker_compat.results.Results`, oldest run first.

        >>> res = db(plan_name="scan", scan_id={"$gt": 10}, since="2024-01")   # doctest: +SKIP
        >>> res[-1].start["scan_id"]                                           # doctest: +SKIP
        118
        """
        from .results import Results, build_nodes

        nodes = build_nodes(self, None, self.__dict__.get("_filters") or {})
        return Results(self, nodes + build_nodes(self, text_search, query))

    def add_filter(self, **query) -> None:
        """Add conditions that every later search and lookup must also meet.

        As in v1, filters are one dict: a key given again replaces its earlier condition.

        >>> db.add_filter(owner="alice", since="2024-01")   # doctest: +SKIP
        """
        from .results import build_nodes

        merged = {**self.__dict__.get("_filters", {}), **query}
        build_nodes(self, None, merged)  # a bad filter fails here, not at the next search
        self.__dict__["_filters"] = merged

    def clear_filters(self) -> None:
        """Remove every filter added by :meth:`add_filter`.

        >>> db.clear_filters()   # doctest: +SKIP
        """
        self.__dict__["_filters"] = {}

    @property
    def filters(self) -> dict:
        """The active filters (a copy), as one query dict.

        >>> db.filters   # doctest: +SKIP
        {'owner': 'alice'}
        """
        return dict(self.__dict__.get("_filters", {}))

    def alias(self, key: str, **query) -> None:
        """Name a search: ``db.alias("cal", plan_name="calib")`` makes ``db.cal`` run it.

        >>> db.alias("cal", plan_name="calib"); len(db.cal)   # doctest: +SKIP
        3
        """
        from .results import build_nodes

        self._check_alias(key)
        build_nodes(self, None, query)
        self.__dict__.setdefault("_aliases", {})[key] = dict(query)

    def dynamic_alias(self, key: str, func) -> None:
        """Name a search whose conditions ``func()`` returns each time it is used.

        As in v1, ``func`` takes no arguments; a function of one argument gets the broker.

        >>> db.dynamic_alias("today", lambda: {"since": time.time() - 86400})   # doctest: +SKIP
        """
        if not callable(func):
            raise TypeError(f"dynamic_alias needs a callable returning a query dict, not {func!r}.")
        self._check_alias(key)
        self.__dict__.setdefault("_aliases", {})[key] = func

    @property
    def aliases(self) -> dict:
        """Alias name -> query dict (:meth:`alias`) or callable (:meth:`dynamic_alias`)."""
        return dict(self.__dict__.get("_aliases", {}))

    def _check_alias(self, key: str) -> None:
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"An alias must be a Python identifier, not {key!r}.")
        if hasattr(type(self), key) or key in self.__dict__:
            raise ValueError(f"{key!r} is already an attribute of Broker; choose another alias name.")

    def __getattr__(self, name: str):
        aliases = self.__dict__.get("_aliases") or {}
        if name in aliases:
            query = aliases[name]
            if callable(query):
                query = query(self) if _takes_an_argument(query) else query()
            return self(**query)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def stats(self) -> dict:
        """What v1's ``stats()`` summarised, for a Tiled catalog.

        v1 returned MongoDB collection statistics; a Tiled server has no such thing.
        This gives the number of runs (with the active filters), the server address
        and the SQL backend searches run on.

        >>> db.stats()   # doctest: +SKIP
        {'runs': 11, 'uri': 'http://localhost:8000/api/v1/', 'backend': 'sqlite'}
        """
        from .queries import backend_of

        return {
            "runs": len(self()),
            "uri": str(self._root.context.api_uri).split("?")[0],
            "backend": backend_of(self._root),
        }

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
        from .images import warn_handlers_unused
        from .tables import get_table

        warn_handlers_unused(handler_registry, "get_table(handler_registry=...)")
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

    # -- images and handlers (see images.py) -----------------------------------------
    def get_images(self, headers, name: str, stream_name: str = "primary", handler_registry=None):
        """Frames of data key ``name``: a lazy sequence (``len``, ``[k]``, ``[a:b]``, iteration).

        Only the frames asked for are read from the server. ``handler_registry`` is
        accepted and not used: the Tiled server reads the files (see docs/images.md).

        >>> imgs = db.get_images(db[-1], "pilatus_image")   # doctest: +SKIP
        >>> imgs[0].shape, len(imgs)                        # doctest: +SKIP
        ((195, 487), 10)
        """
        from .images import get_images

        return get_images(headers, name, stream_name=stream_name, handler_registry=handler_registry)

    @property
    def reg(self):
        """v1's asset registry, for old ``db.reg.register_handler(...)`` calls (recorded, not used)."""
        if getattr(self, "_handler_registry", None) is None:
            from .images import HandlerRegistry

            self._handler_registry = HandlerRegistry()
        return self._handler_registry

    # -- documents (see documents.py) -------------------------------------------------
    @staticmethod
    def prepare_hook(name: str, doc: dict):
        """Applied to every document on its way out; by default wraps it in a ``Document``.

        Replace it on an instance (``db.prepare_hook = lambda name, doc: doc``) to get
        plain dicts, as v1 allowed.

        >>> Broker.prepare_hook("start", {"uid": "u"}).uid
        'u'
        """
        from .documents import Document

        return Document(doc)

    def get_documents(
        self,
        headers,
        stream_name: Any = ALL,
        fields=None,
        fill: bool = False,
        handler_registry=None,
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
        from .documents import resolve_fields, run_documents
        from .images import warn_handlers_unused

        warn_handlers_unused(handler_registry, "get_documents(handler_registry=...)")
        headers = _as_headers(headers)
        selections = resolve_fields(headers, fields)
        hook = self.prepare_hook

        def generate():
            for header, selected in zip(headers, selections):
                yield from run_documents(
                    header,
                    stream_name=stream_name,
                    fields=selected,
                    fill=fill,
                    event_pages=event_pages,
                    prepare_hook=hook,
                )

        return generate()

    def get_events(
        self,
        headers,
        stream_name: Any = "primary",
        fields=None,
        fill: bool = False,
        handler_registry=None,
    ) -> Iterator[dict]:
        """Event documents of one stream (``ALL``: every stream) of one or more runs.

        >>> [ev["data"]["det"] for ev in db.get_events(db[-1], fields=["det"])]   # doctest: +SKIP
        [1.0, 0.6, 0.1]
        """
        documents = self.get_documents(
            headers, stream_name=stream_name, fields=fields, fill=fill, handler_registry=handler_registry
        )
        return (doc for name, doc in documents if name == "event")

    def restream(self, headers, fields=None, fill: bool = False, handler_registry=None):
        """Every document of one or more runs, for replaying into callbacks.

        >>> for name, doc in db.restream(db[-3:]):    # doctest: +SKIP
        ...     callback(name, doc)
        """
        return self.get_documents(headers, fields=fields, fill=fill, handler_registry=handler_registry)

    stream = restream

    def process(
        self, headers, func, fields=None, stream_name: Any = ALL, fill: bool = False, handler_registry=None
    ) -> None:
        """Call ``func(name, doc)`` on every document of one or more runs.

        >>> db.process(db[-1], lambda name, doc: print(name))   # doctest: +SKIP
        """
        if not callable(func):
            raise TypeError(f"process() needs a callable func(name, doc), not {type(func).__name__}.")
        for name, doc in self.get_documents(
            headers, stream_name=stream_name, fields=fields, fill=fill, handler_registry=handler_registry
        ):
            func(name, doc)

    def insert(self, name: str, doc: dict) -> None:
        """Write one document to this broker's Tiled catalog, through ``TiledWriter``.

        ``RE.subscribe(db.insert)`` records runs as the RunEngine emits them. The writer
        sends events in batches and at the stop document: a run is complete on the
        server once its stop document has been inserted.

        >>> RE.subscribe(db.insert)     # doctest: +SKIP
        """
        writer = getattr(self, "_writer", None)
        if writer is None:
            from bluesky_tiled_plugins import TiledWriter

            writer = self._writer = TiledWriter(self._client)
        writer(name, doc)

    def export(self, headers, db: "Broker", new_root=None, copy_kwargs=None) -> list[str]:
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
        from .documents import run_documents

        copied = []
        for header in _as_headers(headers):
            for name, doc in run_documents(header):
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


def _takes_an_argument(func) -> bool:
    import inspect

    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.default is p.empty and p.kind in positional for p in params)


def _wrap(db: Broker, found):
    if isinstance(found, list):
        return [_wrap(db, f) for f in found]
    return db._header(found)


def temp(
    directory: str | PathLike[str] | None = None, *, readable_storage: Any = None, timezone: str | None = None
) -> Broker:
    """A :class:`Broker` over a new embedded Tiled server: :meth:`Broker.temp` (v1's ``temp()``).

    >>> db = temp()                      # doctest: +SKIP
    >>> RE.subscribe(db.insert)          # doctest: +SKIP
    """
    return Broker.temp(directory, readable_storage=readable_storage, timezone=timezone)
