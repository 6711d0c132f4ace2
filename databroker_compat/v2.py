"""``db.v2``: bluesky-tiled-plugins' catalog-of-runs client over a broker's node, pointing back at it.

Code that mixes the v1 and v2 APIs (``db.v2.search(ScanID(5))``, ``db.v2[uid]["primary"]``)
gets the ``CatalogOfBlueskyRuns`` client of bluesky-tiled-plugins — the class Tiled gives a
node with that spec — over the broker's node, even when that node is a plain Tiled root
without the spec, with three things set right for a broker:

- ``.v1`` is the :class:`~databroker_compat.Broker` (``db.v2.v1 is db``);
- ``.is_sql`` says what the node is: from its ``CatalogOfBlueskyRuns`` spec version when it
  has one; a node without the spec is a Tiled SQL catalog (the only kind TiledWriter
  writes to), so partial-uid lookups run as ``LIKE`` there instead of a query it ignores;
- a ``dict`` query (v1's MongoDB style, ``db.v2.search({"plan_name": "scan"})``) runs
  with this package's translation, and refuses what the server cannot answer exactly.

The plugin turns its own queries (``ScanID``, ``ScanIDRange``, ``TimeRange``,
``PartialUID``) into standard Tiled queries and prefixes bare keys with ``start.``, so
they select the right runs on a plain catalog too. Runs are the plugin's v2 run clients
(``db.v2[uid]["primary"]["data"]["img"][:]``), as databroker's own ``catalog.v2``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import QueryNotSupported
from .queries import DEPRECATED_NAMES, parse, plan_search

if TYPE_CHECKING:
    from tiled.client.base import BaseClient

    from .broker import Broker

__all__ = ["catalog_of_runs"]

#: Keywords v1's ``db(...)`` read itself: they are not start-document keys.
_V1_KEYWORDS = ("since", "until", "data_key", *DEPRECATED_NAMES)


def _structure_clients(structure_clients: Any) -> Any:
    """The client's structure clients, with runs read by the plugin's v2 run client."""
    from bluesky_tiled_plugins import BlueskyEventStream
    from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV2

    if hasattr(structure_clients, "set"):  # tiled's OneShotCachedMap of class factories
        from tiled.utils import OneShotCachedMap

        # A new map whose factories defer to the given one. (A copy would share the
        # given map's storage: setting a key on it would change every client of the
        # process, the shared default dispatch included.)
        clients = OneShotCachedMap(
            {name: functools.partial(structure_clients.__getitem__, name) for name in structure_clients}
        )
        clients.set("BlueskyRun", lambda: BlueskyRunV2)
        if "BlueskyEventStream" not in clients:
            clients.set("BlueskyEventStream", lambda: BlueskyEventStream)
    else:  # a plain mapping of classes
        clients = dict(clients)
        clients["BlueskyRun"] = BlueskyRunV2
        clients.setdefault("BlueskyEventStream", BlueskyEventStream)
    return clients


@functools.lru_cache(maxsize=None)
def _catalog_class() -> type:
    """The client class, defined on first use: bluesky-tiled-plugins (and xarray) load only then."""
    from bluesky_tiled_plugins import CatalogOfBlueskyRuns

    class BrokerCatalog(CatalogOfBlueskyRuns):
        """``CatalogOfBlueskyRuns`` over a broker's node: ``.v1`` is the broker (see the module)."""

        def __init__(
            self, context: Any, *, item: dict, structure_clients: Any, broker: Any = None, **kwargs: Any
        ) -> None:
            super().__init__(context, item=item, structure_clients=structure_clients, **kwargs)
            self._broker = broker

        def new_variation(self, **kwargs: Any) -> Any:
            # Searches, sorts and views of this catalog keep pointing at the broker.
            return super().new_variation(broker=self._broker, **kwargs)

        @property
        def v1(self) -> Broker:
            """The :class:`~databroker_compat.Broker` this catalog belongs to."""
            return self._broker

        @property
        def v2(self) -> Any:
            """This catalog (its runs already use the v2 run client)."""
            return self

        @property
        def is_sql(self) -> bool:
            """Whether the node is a SQL catalog (see the module)."""
            for spec in self.specs:
                if spec.name == "CatalogOfBlueskyRuns":
                    return bool(spec.version and spec.version.startswith("3."))
            return True

        def search(self, query: Any) -> Any:
            if isinstance(query, Mapping):
                return _mongo_search(self, query)
            return super().search(query)

    BrokerCatalog.__module__ = __name__
    return BrokerCatalog


def _mongo_search(catalog: Any, query: Mapping) -> Any:
    """A v1 (MongoDB-style) query dict on ``catalog``: server-side queries, or ``QueryNotSupported``."""
    special = [k for k in query if k in _V1_KEYWORDS]
    if special:
        raise QueryNotSupported(
            f"{special[0]!r} is a keyword of v1's db(...), not a start-document key: write "
            f"db.v1({special[0]}=...) for v1's meaning, or use bluesky_tiled_plugins.queries.TimeRange "
            "for a time range.",
            key=special[0],
        )
    plan = plan_search(parse(query), catalog)
    if not plan.exact:
        raise QueryNotSupported(
            f"The Tiled server cannot answer {dict(query)!r} exactly ({'; '.join(plan.reasons)}). "
            "Search with db(...) instead (the v1 API checks such conditions on the client), or "
            "write the query with tiled.queries.",
            query=dict(query),
        )
    result = catalog
    for server_query in plan.queries:
        result = result.search(server_query)
    return result


def catalog_of_runs(db: Broker, client: BaseClient) -> Any:
    """bluesky-tiled-plugins' ``CatalogOfBlueskyRuns`` client over ``client``'s node, ``.v1`` being ``db``.

    No request is made: the client is built from ``client``'s item and context.

    >>> catalog = catalog_of_runs(db, db.run_container)      # doctest: +SKIP
    >>> catalog.v1 is db, type(catalog).__mro__[1].__name__  # doctest: +SKIP
    (True, 'CatalogOfBlueskyRuns')
    """
    return _catalog_class()(
        client.context, item=client.item, structure_clients=_structure_clients(client.structure_clients), broker=db
    )
