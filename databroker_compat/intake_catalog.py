"""Open the Tiled-backed :class:`Broker` from intake (``pip install "databroker-compat[intake]"``).

Two entries, for the two kinds of intake files people have:

- ``BrokerSource``, driver ``databroker-compat``: for catalog YAML files in the format
  the databroker v2 era used (``sources: {csx: {driver: ..., args: ...}}``), which
  intake 2 still opens with ``intake.open_catalog``::

      sources:
        csx:
          driver: databroker-compat
          args:
            uri: http://tiled.example.org:8000
            api_key: ${TILED_API_KEY}

  ``intake.open_catalog("catalog.yml")["csx"].read()`` is the Broker. The same file is
  found by ``Broker.named("csx")`` when it sits in a configuration directory.

- ``BrokerReader``: an intake 2 reader of a ``TiledService`` data description,
  ``BrokerReader(intake.readers.datatypes.TiledService(url)).read()``.

>>> import intake                                                     # doctest: +SKIP
>>> db = intake.open_catalog("catalog.yml")["csx"].read()             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

from intake.readers import BaseReader, datatypes
from intake.source.base import DataSource, Schema

from ._version import __version__
from .broker import Broker

logger = logging.getLogger(__name__)

__all__ = ["BrokerReader", "BrokerSource"]


def _config(uri: str | None, api_key: str | None, profile: str | None, path: str | None, timezone: str | None) -> dict:
    section: dict[str, Any] = {}
    if uri is not None:
        section["uri"] = uri
    if profile is not None:
        section["profile"] = profile
    if api_key is not None:
        section["api_key"] = api_key
    if path is not None:
        section["path"] = path
    config: dict[str, Any] = {"tiled": section}
    if timezone is not None:
        config["timezone"] = timezone
    return config


class BrokerSource(DataSource):
    """An intake (catalog-format) source whose ``read()`` is a Tiled-backed Broker.

    Parameters
    ----------
    uri : str, optional
        The Tiled server (or node) address.
    api_key : str, optional
        Its API key; ``${ENV}`` references are expanded when reading.
    profile : str, optional
        A Tiled profile instead of ``uri``.
    path : str, optional
        A node inside the server whose children are the runs.
    timezone : str, optional
        As :class:`Broker`'s.

    >>> BrokerSource(uri="http://localhost:8000").read()     # doctest: +SKIP
    <Broker over http://localhost:8000/api/v1/>
    """

    name = "databroker-compat"
    version = __version__
    container = "python"
    partition_access = False

    def __init__(
        self,
        uri: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        path: str | None = None,
        timezone: str | None = None,
        metadata: dict | None = None,
    ):
        super().__init__(metadata=metadata)
        self._broker_config = _config(uri, api_key, profile, path, timezone)

    def _get_schema(self) -> Schema:
        return Schema(datashape=None, dtype=None, shape=None, npartitions=1, extra_metadata={})

    def read(self) -> Broker:
        """The :class:`Broker` over the configured server."""
        return Broker.from_config(self._broker_config, name=self.name if self.name != "databroker-compat" else None)

    def to_dask(self) -> Broker:
        """Same as :meth:`read`: a Broker has no dask form."""
        return self.read()


class BrokerReader(BaseReader):
    """intake 2 reader: a ``TiledService`` description to a Tiled-backed Broker.

    Reader options ``api_key``, ``path`` and ``timezone`` go into the broker
    configuration; ``data.options`` may carry ``api_key`` too.

    >>> from intake.readers.datatypes import TiledService              # doctest: +SKIP
    >>> BrokerReader(TiledService("http://localhost:8000")).read()     # doctest: +SKIP
    """

    implements = {datatypes.TiledService}
    imports = {"tiled"}
    output_instance = "databroker_compat.broker:Broker"

    def _read(
        self,
        data: datatypes.TiledService,
        api_key: str | None = None,
        path: str | None = None,
        timezone: str | None = None,
        **kw: Any,
    ) -> Broker:
        api_key = api_key if api_key is not None else (data.options or {}).get("api_key")
        if kw:
            logger.info("BrokerReader ignores options %s", sorted(kw))
        return Broker.from_config(_config(data.url, api_key, None, path, timezone))
