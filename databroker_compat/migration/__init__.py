"""Move runs from legacy databroker MongoDB databases into Tiled through TiledWriter.

``LegacySource`` loads on first use, so ``import databroker_compat.migration`` imports
neither pymongo nor the writer.

>>> from databroker_compat.migration import LegacySource, migrate   # doctest: +SKIP
>>> report = migrate(LegacySource.from_uris("mongodb://host/mds"), client)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# Bound eagerly (both modules are light): the function ``verify`` must shadow the
# submodule of the same name, which a lazy lookup could not do.
from .job import MigrationReport, RetryPolicy, migrate
from .verify import verify

__all__ = ["LegacySource", "MigrationReport", "MongoSpec", "RetryPolicy", "TiledSpec", "migrate", "verify"]

_WHERE = {"LegacySource": ".mongo", "MongoSpec": ".connect", "TiledSpec": ".connect"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
