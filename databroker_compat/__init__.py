"""databroker-compat: the databroker v1 API over Tiled servers of Bluesky runs.

>>> from databroker_compat import Broker      # doctest: +SKIP
>>> db = Broker(tiled_client)                 # doctest: +SKIP
>>> db[-1].table()                            # doctest: +SKIP
"""

from ._version import __version__
from .broker import Broker
from .embedded import temp
from .exceptions import (
    AmbiguousKey,
    BadKey,
    DatabrokerCompatError,
    MigrationError,
    QueryNotSupported,
    RunNotFound,
    ServerUnavailable,
    UnknownField,
)
from .header import ALL, Header

__all__ = [
    "ALL",
    "AmbiguousKey",
    "BadKey",
    "Broker",
    "DatabrokerCompatError",
    "Header",
    "MigrationError",
    "QueryNotSupported",
    "RunNotFound",
    "ServerUnavailable",
    "UnknownField",
    "__version__",
    "temp",
]
