"""v1 field selection: ``fields=[...]`` names data keys, devices, or regular expressions.

databroker v1 matched each entry of ``fields`` against a name exactly, or, when the
entry is a valid regular expression, against the whole name (``re.fullmatch``);
databroker 0.x also took the name of a device (an ophyd object) for all of its data
keys, from the descriptor's ``object_keys``. :class:`FieldPatterns` is that rule,
compiled once: an entry that is a data key selects it, an entry that is only a device
name selects the device's data keys, and every entry selects the names it matches as a
pattern. :func:`header_values` gives what v1 added to each event for entries that name
configuration, start or stop values. :func:`check_fields_exist` raises
:class:`~databroker_compat.exceptions.UnknownField` for entries no run can answer.
Tables, events and document streams select their fields through this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .exceptions import UnknownField

__all__ = ["FieldPatterns", "RunFields", "check_fields_exist", "header_values", "known_fields"]


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

    def select(self, names: Iterable[str], devices: Mapping[str, Iterable[str]] | None = None) -> list[str]:
        """The ``names`` the entries select, in the order of ``names``.

        ``devices`` is a descriptor's ``object_keys`` (device name -> its data keys): an
        entry that is not one of ``names`` but names a device selects that device's
        data keys. Exact names come first, then device names, then patterns: an entry
        that is a data key never expands to a device.

        >>> p = FieldPatterns(["nanop", "det"])
        >>> p.select(["det", "nanop_tx", "nanop_ty", "x"], {"nanop": ["nanop_tx", "nanop_ty"], "det": ["det"]})
        ['det', 'nanop_tx', 'nanop_ty']
        >>> FieldPatterns(["motor"]).select(["motor", "motor_setpoint"], {"motor": ["motor", "motor_setpoint"]})
        ['motor']
        """
        names = list(names)
        chosen: set[str] = set()
        if devices:
            present = set(names)
            for entry in self.names:
                if entry not in present and entry in devices:
                    chosen.update(devices[entry])
        return [name for name in names if name in chosen or self.matches(name)]

    def unmatched(self, known: set[str]) -> list[str]:
        """The entries that neither are nor match any of the ``known`` names."""
        return [
            f
            for f, p in zip(self.names, self.patterns, strict=True)
            if f not in known and not any(p.fullmatch(k) for k in known)
        ]


def known_fields(run: RunFields) -> set[str]:
    """Names ``fields=`` may ask for in a run: data keys, devices, configuration, start and stop keys.

    >>> class R:
    ...     uid, start, stop = "r", {"plan_name": "x"}, {}
    ...     descriptors = [{"data_keys": {"det": {}}, "object_keys": {"sim": ["det"]},
    ...                     "configuration": {"det": {"data": {"gain": 1}}}}]
    >>> sorted(known_fields(R()))
    ['det', 'gain', 'plan_name', 'sim']
    """
    names = set(run.start) | set(run.stop)
    for d in run.descriptors:
        names.update(d["data_keys"])
        names.update(d.get("object_keys") or {})
        for conf in d.get("configuration", {}).values():
            names.update(conf.get("data", {}))
    return names


def header_values(
    patterns: FieldPatterns,
    descriptor: Mapping[str, Any],
    start: Mapping[str, Any],
    stop: Mapping[str, Any],
    taken: Iterable[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, timestamps)`` that v1 put into each event of ``descriptor`` for ``fields=``.

    v1 looked, in this order, in the descriptor's configuration (the ``data`` of every
    device, merged), the start document and the stop document, for keys an entry names
    or matches; the first source holding a key wins, and names in ``taken`` (the data
    keys already selected) are skipped. Timestamps are the configuration's own, and the
    start or stop document's ``time`` for their keys.

    >>> d = {"configuration": {"det": {"data": {"det_gain": 2}, "timestamps": {"det_gain": 5.0}}}}
    >>> header_values(FieldPatterns(["det.*", "plan_name", "exit_status"]), d,
    ...               {"time": 1.0, "plan_name": "scan"}, {"time": 9.0, "exit_status": "success"}, ["det"])
    ({'det_gain': 2, 'plan_name': 'scan', 'exit_status': 'success'}, {'det_gain': 5.0, 'plan_name': 1.0, \
'exit_status': 9.0})
    """
    config_data: dict[str, Any] = {}
    config_stamps: dict[str, Any] = {}
    for conf in (descriptor.get("configuration") or {}).values():
        config_data.update(conf.get("data") or {})
        config_stamps.update(conf.get("timestamps") or {})
    sources = (
        (config_data, lambda key: config_stamps.get(key, descriptor.get("time"))),
        (start, lambda key: start.get("time")),
        (stop, lambda key: stop.get("time")),
    )
    seen = set(taken)
    data: dict[str, Any] = {}
    timestamps: dict[str, Any] = {}
    for values, stamp in sources:
        for key, value in values.items():
            if key in seen or not patterns.matches(key):
                continue
            seen.add(key)
            data[key] = value
            timestamps[key] = stamp(key)
    return data, timestamps


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
devices, configuration, start or stop of the run(s) ['01234567']. Known fields: ['plan_name'].
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
            f"The fields {missing} were not found in the data keys, devices, configuration, start or stop of the "
            f"run(s) {[run.uid[:8] for run in runs]}. Known fields: {sorted(known)}.",
            missing=missing,
            known=sorted(known),
        )
