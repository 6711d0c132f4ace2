"""databroker-compat: the databroker v1 API over Tiled servers of Bluesky runs.

>>> from databroker_compat import Broker      # doctest: +SKIP
>>> db = Broker(tiled_client)                 # doctest: +SKIP
>>> db[-1].table()                            # doctest: +SKIP
"""

from ._version import __version__
from .broker import Broker, temp
from .config import list_configs, lookup_config, temp_config
from .exceptions import (
    AmbiguousKey,
    BadArgument,
    BadKey,
    BadTime,
    ConfigError,
    ConfigNotFound,
    ConflictingArguments,
    DatabrokerCompatError,
    ExternalDataUnavailable,
    MigrationError,
    MongoConfigNeedsMigration,
    NotEnoughRuns,
    QueryNotSupported,
    RunNotFound,
    ServerUnavailable,
    UnknownDatum,
    UnknownField,
)
from .header import Header
from .layout import ALL
from .results import Results

__all__ = [
    "ALL",
    "AmbiguousKey",
    "BadArgument",
    "BadKey",
    "BadTime",
    "Broker",
    "ConfigError",
    "ConfigNotFound",
    "ConflictingArguments",
    "DatabrokerCompatError",
    "ExternalDataUnavailable",
    "Header",
    "MigrationError",
    "MongoConfigNeedsMigration",
    "NotEnoughRuns",
    "QueryNotSupported",
    "Results",
    "RunNotFound",
    "ServerUnavailable",
    "UnknownDatum",
    "UnknownField",
    "__version__",
    "list_configs",
    "lookup_config",
    "temp",
    "temp_config",
]
