"""Errors raised by databroker-compat.

The hierarchy::

    DatabrokerCompatError
    ├── RunNotFound            (also KeyError: ``db[...]`` with nothing to find)
    │   └── NotEnoughRuns      (also IndexError: ``db[-N]`` past the oldest run)
    ├── UnknownDatum           (also KeyError: a datum id ``fill_event`` cannot trace to a run)
    ├── AmbiguousKey           (also ValueError: a uid prefix that matches several runs)
    ├── BadKey                 (also TypeError: a key of a type ``db[...]`` cannot take)
    ├── UnknownField           (also ValueError: ``fields=[...]`` names nothing the runs hold)
    ├── QueryNotSupported      (also ValueError and NotImplementedError: a query that cannot be run)
    ├── ConflictingArguments   (also TypeError: an argument given under two of its names)
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
    "ConflictingArguments",
    "DatabrokerCompatError",
    "ExternalDataUnavailable",
    "MigrationError",
    "MongoConfigNeedsMigration",
    "NotEnoughRuns",
    "QueryNotSupported",
    "RunNotFound",
    "ServerUnavailable",
    "UnknownDatum",
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


class NotEnoughRuns(RunNotFound, IndexError):
    """``db[-N]`` (or ``results[-N]``) counts back past the oldest run.

    v1 raised ``IndexError("There are only N runs.")`` here; this is also a ``KeyError``
    (a :class:`RunNotFound`), so scripts that catch either keep working. ``err.key`` is
    the index, ``err.count`` the number of runs there are.

    >>> err = NotEnoughRuns("No run at index -5: there are only 4 runs.", key=-5, count=4)
    >>> isinstance(err, IndexError), isinstance(err, KeyError), err.count
    (True, True, 4)
    """


class UnknownDatum(DatabrokerCompatError, KeyError):
    """A datum id that ``fill_event`` / ``fill_events`` cannot trace to a run of this catalog.

    ``err.datum_id`` is the id, ``err.key`` the data key it was found under. The message
    says to pass the run's descriptors (``db.fill_events(events, h.descriptors)``).
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class AmbiguousKey(DatabrokerCompatError, ValueError):
    """A uid prefix matches more than one run."""


class BadKey(DatabrokerCompatError, TypeError):
    """A key of a type that ``db[...]`` does not accept."""


class UnknownField(DatabrokerCompatError, ValueError):
    """``fields=`` names a field that none of the runs holds."""


class QueryNotSupported(DatabrokerCompatError, ValueError, NotImplementedError):
    """A query that cannot be run, on the server or on the client.

    Also a ``NotImplementedError`` (what databroker's own v1 shim raised for searches it
    no longer ran) and a ``ValueError`` (what v1 raised for a malformed query).

    >>> issubclass(QueryNotSupported, NotImplementedError), issubclass(QueryNotSupported, ValueError)
    (True, True)
    """


class ConflictingArguments(DatabrokerCompatError, TypeError):
    """An argument given under two of its names (``since=`` and its old name ``start_time=``).

    v1 raised ``TypeError`` here, as Python does for a keyword given twice.
    """


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
