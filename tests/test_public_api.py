"""The public surface, as a newcomer imports it: the error hierarchy and the migration API.

(``databroker_compat.__all__`` sorted and resolving, and ``import databroker_compat``
staying light, are pinned in tests/test_package.py; lighter sub-imports in
tests/test_light_import.py.)
"""

from __future__ import annotations

import builtins
import inspect
import pickle

import pytest

import databroker_compat
import databroker_compat.migration
from databroker_compat import exceptions
from databroker_compat.exceptions import DatabrokerCompatError

# The builtin exceptions that carry no meaning of their own: an error must name a more specific one.
GENERIC = {BaseException, Exception}
BUILTIN_ERRORS = {
    obj for obj in vars(builtins).values() if isinstance(obj, type) and issubclass(obj, BaseException)
} - GENERIC


def error_classes() -> list[type[BaseException]]:
    """Every public exception class defined in ``databroker_compat.exceptions``."""
    return [
        obj
        for name, obj in vars(exceptions).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
        and not name.startswith("_")
    ]


def test_exceptions_all_is_sorted_and_lists_every_error_class():
    names = exceptions.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert set(names) == {cls.__name__ for cls in error_classes()}
    for name in names:
        assert getattr(exceptions, name).__name__ == name


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_is_a_databroker_compat_error_and_a_builtin(cls):
    assert issubclass(cls, DatabrokerCompatError)
    if cls is DatabrokerCompatError:
        return
    builtin = [base for base in cls.__mro__ if base in BUILTIN_ERRORS]
    assert builtin, f"{cls.__name__} subclasses no builtin exception besides Exception: {cls.__mro__}"


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_carries_its_context_across_pickling(cls):
    err = cls("What went wrong, and what to do.", key=42, uri="http://tiled.example:8000")
    assert (err.key, err.uri) == (42, "http://tiled.example:8000")
    assert err.context == {"key": 42, "uri": "http://tiled.example:8000"}
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls
    assert str(again) == str(err) == "What went wrong, and what to do."
    assert (again.key, again.uri, again.context) == (42, "http://tiled.example:8000", err.context)


def test_package_exports_are_the_exceptions_module_classes():
    for name in databroker_compat.__all__:
        if name in exceptions.__all__:
            assert getattr(databroker_compat, name) is getattr(exceptions, name)


def test_migration_all_is_sorted_and_resolves():
    names = databroker_compat.migration.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(databroker_compat.migration, name) is not None, name
    assert {"migrate", "verify"} <= set(names)
    assert callable(databroker_compat.migration.migrate) and callable(databroker_compat.migration.verify)


def test_errors_of_the_v1_broker_api_are_the_builtins_v1_raised():
    # issue 15: db[-N] past the oldest run (v1: IndexError), searches v1's own shim refused
    # (NotImplementedError), both spellings of since (TypeError), an untraceable datum id.
    from databroker_compat import ConflictingArguments, NotEnoughRuns, QueryNotSupported, RunNotFound, UnknownDatum

    assert issubclass(NotEnoughRuns, RunNotFound) and issubclass(NotEnoughRuns, IndexError)
    assert issubclass(NotEnoughRuns, KeyError)
    assert issubclass(QueryNotSupported, NotImplementedError) and issubclass(QueryNotSupported, ValueError)
    assert issubclass(ConflictingArguments, TypeError)
    assert issubclass(UnknownDatum, KeyError) and not issubclass(UnknownDatum, RunNotFound)
    assert str(NotEnoughRuns("No run at index -9: 3 runs in this catalog.", key=-9, count=3)).startswith("No run")
    assert str(UnknownDatum("pass the descriptors", datum_id="x/0")) == "pass the descriptors"
