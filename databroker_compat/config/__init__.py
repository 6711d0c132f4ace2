"""Named brokers: v1 YAML configurations, intake catalog YAML and Tiled profiles.

``Broker.named(name)`` looks for ``name`` in this order and opens the first
route that leads to a Tiled server:

1. ``"temp"``: a new embedded server, as :func:`databroker_compat.temp` (v1 did the same);
2. a Tiled profile called ``name`` (``tiled profile list``; tiled's own search path);
3. a v1-style YAML file ``<name>.yml`` / ``<name>.yaml`` with a ``tiled:`` section, in
   the configuration search path (:func:`config_search_path`);
4. a source called ``name`` in an intake catalog YAML file (in the same directories and
   in the intake data directories) whose driver opens Tiled (``databroker-compat`` or
   intake's ``tiled_cat``).

When nothing leads to Tiled but a legacy configuration of that name still names MongoDB
(a v1 ``metadatastore:``/``assets:`` file, or an intake source with driver
``bluesky-mongo-normalized-catalog``), :class:`MongoConfigNeedsMigration` explains that
the data must be migrated and prints the ``databroker-migrate`` command to do it.

The v1-style schema (every string value may use ``${ENV_VAR}``)::

    description: CSX raw data                      # optional, free text
    timezone: US/Eastern                           # optional, as v1's setting
    tiled:
      uri: https://tiled.example.org/api/v1        # or: profile: csx
      api_key: ${TILED_API_KEY}                    # optional
      path: raw/csx                                # optional: a node inside the server
      verify: true                                 # optional: TLS verification
      headers: {X-Extra: value}                    # optional: extra HTTP headers

The package has three parts, one job each:

- :mod:`~databroker_compat.config.discovery`: the search path and what a name resolves to
  (:func:`list_configs`, :func:`lookup_config`);
- :mod:`~databroker_compat.config.opening`: checking a configuration, expanding
  ``${ENV}`` (:mod:`~databroker_compat.config.environment`) and connecting a client
  (:func:`open_named`, :func:`open_config`, :func:`config_for_client`);
- :mod:`~databroker_compat.config.legacy`: MongoDB configurations, for the migration
  (:func:`mongo_sources`, :func:`migrate_command`).

None of them builds a Broker: ``Broker.named``/``from_config``/``temp`` do, from the
:class:`Opened` these functions return.

>>> from databroker_compat.config import config_search_path
>>> any(str(p).endswith("databroker") for p in config_search_path())
True
"""

from __future__ import annotations

from .discovery import (
    SEARCH_PATH_ENV,
    Found,
    config_search_path,
    intake_search_path,
    list_configs,
    lookup_config,
    resolve,
    temp_config,
)
from .environment import expand
from .legacy import migrate_command, mongo_sources, needs_migration
from .opening import TILED_KEYS, Opened, StartEmbedded, config_for_client, open_config, open_named

__all__ = [
    "SEARCH_PATH_ENV",
    "TILED_KEYS",
    "Found",
    "Opened",
    "StartEmbedded",
    "config_for_client",
    "config_search_path",
    "expand",
    "intake_search_path",
    "list_configs",
    "lookup_config",
    "migrate_command",
    "mongo_sources",
    "needs_migration",
    "open_config",
    "open_named",
    "resolve",
    "temp_config",
]
