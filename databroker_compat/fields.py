"""v1 field selection: ``fields=[...]`` names data keys exactly or as regular expressions.

databroker v1 matched each entry of ``fields`` against a name exactly, or, when the
entry is a valid regular expression, against the whole name (``re.fullmatch``).
:class:`FieldPatterns` is that rule, compiled once; :func:`check_fields_exist` raises
:class:`~databroker_compat.exceptions.UnknownField` for entries no run can answer.
``get_table`` and the document streams select their fields through this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .exceptions import UnknownField

__all__ = ["FieldPatterns", "RunFields", "check_fields_exist", "known_fields"]


class RunFields(Protocol):
    """What the field checks read of a run (a :class:`~databroker_compat.run.Run` has it)."""

    @property
    def uid(self) -> str: ...

    @property
    def start(self) -> Mapping[str, Any]: ...

    @property
    def stop(self) -> Mapping[str, Any]: ...

    @property
    def descriptors(self) -> Sequence[Mapping[str, Any]]: ...


class FieldPatterns:
    """The entries of ``fields=``, each an exact name or a regular expression.

    An entry that is not a valid regular expression matches only itself.

    >>> p = FieldPatterns(["det", "motor.*", "a[b"])
    >>> [name for name in ["det", "det2", "motor_setpoint", "a[b"] if p.matches(name)]
    ['det', 'motor_setpoint', 'a[b']
    >>> p.select(["x", "motor", "det"])
    ['motor', 'det']
    """

    def __init__(self, fields: Iterable[str]) -> None:
        self.names: list[str] = list(fields)
        self.patterns: list[re.Pattern[str]] = []
        for f in self.names:
            try:
                self.patterns.append(re.compile(f))
            except re.error:
                self.patterns.append(re.compile(re.escape(f)))

    def matches(self, name: str) -> bool:
        """Whether ``name`` is one of the entries or matches one of them whole."""
        return name in self.names or any(p.fullmatch(name) for p in self.patterns)

    def select(self, names: Iterable[str]) -> list[str]:
        """The ``names`` that match, in their own order."""
        return [name for name in names if self.matches(name)]

    def unmatched(self, known: set[str]) -> list[str]:
        """The entries that neither are nor match any of the ``known`` names."""
        return [
            f
            for f, p in zip(self.names, self.patterns, strict=True)
            if f not in known and not any(p.fullmatch(k) for k in known)
        ]


def known_fields(run: RunFields) -> set[str]:
    """Names ``fields=`` may ask for in a run: data keys, configuration keys, start and stop keys.

    >>> class R:
    ...     uid, start, stop = "r", {"plan_name": "x"}, {}
    ...     descriptors = [{"data_keys": {"det": {}}, "configuration": {"det": {"data": {"gain": 1}}}}]
    >>> sorted(known_fields(R()))
    ['det', 'gain', 'plan_name']
    """
    names = set(run.start) | set(run.stop)
    for d in run.descriptors:
        names.update(d["data_keys"])
        for conf in d.get("configuration", {}).values():
            names.update(conf.get("data", {}))
    return names


def check_fields_exist(fields: Iterable[str] | None, runs: Sequence[RunFields]) -> None:
    """Raise ``UnknownField`` (a ``ValueError``, as in v1) for fields no run holds.

    The error's ``missing`` attribute lists them, ``known`` the names the runs hold.

    >>> class R:
    ...     uid, start, stop, descriptors = "0123456789", {"plan_name": "x"}, {}, []
    >>> check_fields_exist(["plan_.*"], [R()])
    >>> check_fields_exist(["nope"], [R()])
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.UnknownField: The fields ['nope'] were not found in the data keys, \
configuration, start or stop of the run(s) ['01234567']. Known fields: ['plan_name'].
    """
    if not fields:
        return
    patterns = FieldPatterns(fields)
    known: set[str] = set()
    for run in runs:
        known |= known_fields(run)
    missing = patterns.unmatched(known)
    if missing:
        raise UnknownField(
            f"The fields {missing} were not found in the data keys, configuration, start or stop of the "
            f"run(s) {[run.uid[:8] for run in runs]}. Known fields: {sorted(known)}.",
            missing=missing,
            known=sorted(known),
        )
