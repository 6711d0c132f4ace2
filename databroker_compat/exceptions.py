"""Errors raised by databroker-compat.

The hierarchy::

    DatabrokerCompatError
    ├── RunNotFound            (also KeyError: ``db[...]`` with nothing to find)
    ├── AmbiguousKey           (also ValueError: a uid prefix that matches several runs)
    ├── BadKey                 (also TypeError: a key of a type ``db[...]`` cannot take)
    ├── UnknownField           (also ValueError: ``fields=[...]`` names nothing the runs hold)
    ├── QueryNotSupported      (also ValueError: a query neither the server nor the client can run)
    ├── ServerUnavailable      (also ConnectionError: the Tiled server went away)
    ├── BadArgument            (also ValueError: an argument or option that cannot be used)
    ├── BadTime                (also ValueError: a time value that cannot be read)
    ├── MigrationError         (also RuntimeError: a migration step that failed)
    ├── ExternalDataUnavailable (also OSError: the server could not read a detector file)
    ├── ConfigNotFound         (also FileNotFoundError: ``Broker.named`` found no such name)
    └── ConfigError            (also ValueError: a configuration that cannot be used)
        └── MongoConfigNeedsMigration  (a legacy configuration that still names MongoDB)

Every class also subclasses the builtin exception databroker v1 raised in the same
situation, so scripts that catch ``KeyError`` or ``ValueError`` keep working.

Each error carries its context as attributes as well as in its message: keyword
arguments given when it is raised (``RunNotFound(msg, key=42)``) become attributes
(``err.key``), and all of them are in ``err.context``.

>>> err = RunNotFound("No run with scan_id 42 in this catalog.", key=42)
>>> err.key, isinstance(err, KeyError), str(err)
(42, True, 'No run with scan_id 42 in this catalog.')
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmbiguousKey",
    "BadArgument",
    "BadKey",
    "BadTime",
    "ConfigError",
    "ConfigNotFound",
    "DatabrokerCompatError",
    "ExternalDataUnavailable",
    "MigrationError",
    "MongoConfigNeedsMigration",
    "QueryNotSupported",
    "RunNotFound",
    "ServerUnavailable",
    "UnknownField",
]


class DatabrokerCompatError(Exception):
    """Base class of every error this package raises on purpose.

    Keyword arguments are the error's context: each becomes an attribute, and
    ``context`` holds them all.
    """

    def __init__(self, *args: object, **context: object) -> None:
        super().__init__(*args)
        self.context: dict[str, object] = dict(context)
        for name, value in context.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the context across pickling (dask workers)
        return (_rebuild, (type(self), self.args, self.context))


def _rebuild(cls: type[DatabrokerCompatError], args: tuple[Any, ...], context: dict[str, Any]) -> DatabrokerCompatError:
    return cls(*args, **context)


class RunNotFound(DatabrokerCompatError, KeyError):
    """No run matches the key given to ``db[...]``.

    >>> issubclass(RunNotFound, KeyError)
    True
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class AmbiguousKey(DatabrokerCompatError, ValueError):
    """A uid prefix matches more than one run."""


class BadKey(DatabrokerCompatError, TypeError):
    """A key of a type that ``db[...]`` does not accept."""


class UnknownField(DatabrokerCompatError, ValueError):
    """``fields=`` names a field that none of the runs holds."""


class QueryNotSupported(DatabrokerCompatError, ValueError):
    """A query that cannot be run, on the server or on the client."""


class ServerUnavailable(DatabrokerCompatError, ConnectionError):
    """The Tiled server did not answer."""


class BadArgument(DatabrokerCompatError, ValueError):
    """An argument or option that cannot be used (a count below one, a malformed mapping)."""


class BadTime(DatabrokerCompatError, ValueError):
    """A time value (``since``/``until``, ``--since``) that cannot be read; ``value`` holds it."""


class MigrationError(DatabrokerCompatError, RuntimeError):
    """A migration step failed."""


class ExternalDataUnavailable(DatabrokerCompatError, OSError):
    """The Tiled server could not read the files holding external (detector) data.

    The message names the files; the rest of the run stays readable.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigNotFound(DatabrokerCompatError, FileNotFoundError):
    """``Broker.named`` found no configuration of that name (v1 raised ``FileNotFoundError``)."""


class ConfigError(DatabrokerCompatError, ValueError):
    """A configuration that is malformed or cannot be opened as written."""


class MongoConfigNeedsMigration(ConfigError):
    """A configuration that still names MongoDB: its data must be migrated to Tiled first."""
