"""Normalisation of legacy MongoDB documents into valid event-model documents.

Every fix the migration applies to a legacy document lives here, one small function
per document type, so that the table in ``docs/migration.md`` ("Legacy quirks and
their treatment") can point at one place. The functions never modify their input.

Fixes that concern the writer itself (specs without a MIME type, the trailing ``/``
AD_TIFF resources need, a stop whose ``exit_status`` the writer's schema refuses) go
through ``TiledWriter``'s own hooks, which :mod:`.writer` sets up
(``writer_patches``, ``LEGACY_SPEC_TO_MIMETYPE``).

>>> plain({"a": float("nan"), "b": (1, 2)})
{'a': None, 'b': [1, 2]}
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from .fixes import KEY, RESOURCE, START, STOP, VALUE, Notes, note
from .values import conversion_note, event_value, plain, safe_key

logger = logging.getLogger(__name__)

__all__ = [
    "CLOSING_REASON",
    "EXIT_STATUS_ALIASES",
    "UNKNOWN_EXIT_STATUS",
    "closing_stop",
    "final_stop",
    "is_closing_stop",
    "normalise_datum",
    "normalise_event",
    "normalise_resource",
    "normalise_start",
    "normalise_stop",
    "plain",
]

#: The ``exit_status`` of a stop document the migration writes for a run that had none,
#: and of a legacy stop whose status means nothing known.
UNKNOWN_EXIT_STATUS = "unknown"

#: The ``reason`` of the stop document written for a run that had none.
CLOSING_REASON = "The run had no stop document in the legacy database; migrated without a stop document."

#: Legacy spellings of the three exit statuses of the event-model schema.
EXIT_STATUS_ALIASES = {
    "success": "success",
    "succeeded": "success",
    "successful": "success",
    "ok": "success",
    "complete": "success",
    "completed": "success",
    "abort": "abort",
    "aborted": "abort",
    "halt": "abort",
    "halted": "abort",
    "stop": "abort",
    "stopped": "abort",
    "fail": "fail",
    "failed": "fail",
    "failure": "fail",
    "error": "fail",
}

_STREAM_KEY_NAMESPACE = uuid.UUID("7d4c2b8e-4f6a-4c1e-9a55-0b8f3f1e2a61")

# -- documents -------------------------------------------------------------------


def normalise_start(raw: dict, warnings: Notes) -> dict:
    """The start document to write, from a ``run_start`` record.

    ``_id`` goes; metadata values become JSON (:func:`plain`); a string ``scan_id``
    becomes an integer when it is one, else it moves to ``legacy_scan_id``; top-level
    keys with ``.`` or ``/`` (refused by the schema) get ``_`` instead; integers beyond
    +/-2**53 are clamped as the writer clamps them (so that the stored start equals this).

    >>> normalise_start({"_id": 1, "uid": "u", "time": 1.0, "scan_id": "7"}, [])
    {'uid': 'u', 'time': 1.0, 'scan_id': 7}
    """
    doc = {}
    seen: dict[str, int] = {}
    for key, value in raw.items():
        if key == "_id":
            continue
        new_key = safe_key(str(key))
        if new_key != key:
            note(warnings, KEY, f"start: key {key!r} renamed {new_key!r} (dots and slashes are not allowed)")
        doc[new_key] = plain(value, seen)
    _note_conversions(warnings, "start", seen)
    if isinstance(doc.get("scan_id"), str):
        text = doc["scan_id"].strip()
        try:
            doc["scan_id"] = int(text)
            note(warnings, START, f"start: string scan_id {text!r} stored as an integer")
        except ValueError:
            doc["legacy_scan_id"] = doc.pop("scan_id")
            note(warnings, START, f"start: non-numeric scan_id {text!r} moved to 'legacy_scan_id'")
    elif isinstance(doc.get("scan_id"), float) and doc["scan_id"].is_integer():
        doc["scan_id"] = int(doc["scan_id"])
    if not isinstance(doc.get("time"), (int, float)):
        raise ValueError(f"run_start {doc.get('uid')!r} has no numeric 'time'")
    return _json_safe(doc, "start", warnings)


def _note_conversions(warnings: Notes, where: str, seen: dict[str, int]) -> None:
    line = conversion_note(where, seen)
    if line is not None:
        note(warnings, VALUE, line)


def _json_safe(doc: dict, where: str, warnings: Notes) -> dict:
    """Clamp integers beyond +/-2**53, exactly as the writer does for the start document (noted)."""
    from bluesky_tiled_plugins.utils import truncate_json_overflow

    clamped = truncate_json_overflow(doc)
    if clamped != doc:
        note(warnings, VALUE, f"{where}: integers beyond +/-2**53 clamped to +/-(2**53 - 1), as the writer stores them")
    return clamped


def normalise_stop(raw: dict, run_uid: str, warnings: Notes) -> dict:
    """The stop document to write, from a ``run_stop`` record.

    ``_id`` and the metadatastore v0 ``run_start_id`` go, ``run_start`` is the start
    uid; an ``exit_status`` outside {success, abort, fail} is mapped through
    :data:`EXIT_STATUS_ALIASES` or becomes ``"unknown"``, the original value kept in
    ``reason``.

    >>> stop = normalise_stop({"uid": "s", "time": 2.0, "run_start_id": 1, "exit_status": "Aborted"}, "u", [])
    >>> stop["exit_status"], stop["reason"], stop["run_start"]
    ('abort', "legacy exit_status 'Aborted'", 'u')
    """
    doc = {}
    seen: dict[str, int] = {}
    for key, value in raw.items():
        if key in ("_id", "run_start_id"):
            continue
        new_key = safe_key(str(key))
        if new_key != key:
            note(warnings, KEY, f"stop: key {key!r} renamed {new_key!r} (dots and slashes are not allowed)")
        doc[new_key] = plain(value, seen)
    _note_conversions(warnings, "stop", seen)
    doc["run_start"] = run_uid
    if "uid" not in doc:
        doc["uid"] = str(uuid.uuid5(_STREAM_KEY_NAMESPACE, f"{run_uid}/stop"))
        note(warnings, STOP, "stop: no uid; a deterministic one was given")
    status = doc.get("exit_status")
    if status not in ("success", "abort", "fail"):
        mapped = EXIT_STATUS_ALIASES.get(str(status).strip().lower(), UNKNOWN_EXIT_STATUS)
        reason = doc.get("reason") or ""
        kept = f"legacy exit_status {status!r}"
        doc["reason"] = f"{reason} ({kept})" if reason else kept
        doc["exit_status"] = mapped
        note(warnings, STOP, f"stop: exit_status {status!r} written as {mapped!r}")
    if not isinstance(doc.get("time"), (int, float)):
        doc["time"] = 0.0
        note(warnings, STOP, "stop: no numeric time; 0.0 written")
    return _json_safe(doc, "stop", warnings)


def closing_stop(run_uid: str, time: float, num_events: dict[str, int]) -> dict:
    """The stop document written for a run that has none (``close_open_runs=True``).

    Its uid is derived from the start uid, so every migration of the run writes the
    same document.

    >>> closing_stop("u", 5.0, {"primary": 2})["exit_status"]
    'unknown'
    """
    return {
        "uid": str(uuid.uuid5(_STREAM_KEY_NAMESPACE, f"{run_uid}/stop")),
        "run_start": run_uid,
        "time": float(time),
        "exit_status": UNKNOWN_EXIT_STATUS,
        "reason": CLOSING_REASON,
        "num_events": dict(num_events),
    }


def is_closing_stop(stop: dict) -> bool:
    """Whether ``stop`` is one :func:`closing_stop` made up (its uid and time are not the source's).

    >>> is_closing_stop(closing_stop("u", 5.0, {})), is_closing_stop({"exit_status": "success"})
    (True, False)
    """
    return stop.get("exit_status") == UNKNOWN_EXIT_STATUS and "migrat" in str(stop.get("reason", ""))


def final_stop(
    run_uid: str,
    raw: dict | None,
    *,
    close_open_runs: bool,
    last_event_time: float | None,
    start_time: float,
    num_events: dict[str, int],
    warnings: Notes,
) -> dict | None:
    """The stop document a migrated run ends with: its own, a closing one, or none.

    Parameters
    ----------
    run_uid : str
        The start uid.
    raw : dict or None
        The stored ``run_stop`` record, if the run has one (normalised by :func:`normalise_stop`).
    close_open_runs : bool
        Without a record: write a :func:`closing_stop` (True) or leave the run open (False: ``None``).
    last_event_time, start_time : float
        The closing stop's time: the last event's, else the start's.
    num_events : dict
        Stream name -> events, for the closing stop.
    warnings : list of str
        Appended to, one line per fix.

    >>> warnings = []
    >>> final_stop("u", None, close_open_runs=True, last_event_time=None, start_time=1.0,
    ...            num_events={}, warnings=warnings)["time"], warnings
    (1.0, ["no stop document; a stop with exit_status 'unknown' is written"])
    """
    if raw is not None:
        return normalise_stop(raw, run_uid, warnings)
    if close_open_runs:
        note(warnings, STOP, "no stop document; a stop with exit_status 'unknown' is written")
        return closing_stop(run_uid, last_event_time if last_event_time is not None else start_time, num_events)
    note(warnings, STOP, "no stop document; left open, so TiledWriter writes no events")
    return None


def _coerce(value: Any, dtype: str | None) -> tuple[Any, bool]:
    """A value of a column with JSON type ``dtype``; (value, changed)."""
    if dtype == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        try:
            return float(value), True
        except (TypeError, ValueError):
            return math.nan, True
    if dtype == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        try:
            as_float = float(value)
            return (int(as_float) if as_float.is_integer() else as_float), True
        except (TypeError, ValueError):
            return None, True
    if dtype == "string" and not isinstance(value, str) and value is not None:
        return str(value), True
    return value, False


def _count(counter: dict[str, int], label: str) -> None:
    counter[label] = counter.get(label, 0) + 1


def normalise_event(
    raw: dict,
    descriptor: dict,
    warnings_counter: dict[str, int],
    *,
    absent: dict[str, Any] | None = None,
    seen: dict[str, int] | None = None,
) -> dict:
    """The event to write, from an ``event`` record of the (normalised) ``descriptor``.

    metadatastore v0 events (``descriptor_id`` ObjectId, ``data={key: [value, time]}``
    and no ``timestamps``) are split into ``data`` and ``timestamps``; a missing
    timestamp becomes the event time; values of numeric columns that are strings are
    converted (``nan`` when they are not numbers); keys the descriptor lacks are
    dropped; declared internal keys the event lacks get the value ``absent`` gives
    (:func:`~.descriptors.absent_values`). ``warnings_counter`` counts each fix by kind,
    for one warning per run; ``seen`` counts value conversions (ObjectIds, datetimes).

    >>> desc = {"uid": "d", "data_keys": {"x": {"dtype": "number"}}}
    >>> normalise_event({"_id": 1, "uid": "e", "descriptor_id": 9, "seq_num": 1, "time": 2.0,
    ...                  "data": {"x": ["3.5", 1.9]}}, desc, {})["data"]
    {'x': 3.5}
    """
    data_keys = descriptor["data_keys"]
    data_in = raw.get("data") or {}
    timestamps_in: Any = raw.get("timestamps")
    time = raw.get("time")
    data: dict[str, Any] = {}
    timestamps: dict[str, Any] = {}
    split = timestamps_in is None
    if split:
        _count(warnings_counter, "v0 events ({key: [value, timestamp]}) split")
        timestamps_in = {}
    for key, value in data_in.items():
        if split and isinstance(value, (list, tuple)) and len(value) == 2:
            value, ts = value
            timestamps_in[key] = ts
        if key not in data_keys:
            _count(warnings_counter, f"values of data key {key!r} absent from the descriptor dropped")
            continue
        spec = data_keys[key]
        value = event_value(value, seen)
        if "external" not in spec:
            value, changed = _coerce(value, spec.get("dtype"))
            if changed:
                _count(warnings_counter, f"values of {key!r} not of dtype {spec.get('dtype')!r} converted")
        data[key] = value
        ts = timestamps_in.get(key)
        timestamps[key] = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else time
    if absent and len(data) < len(data_keys):
        for key, value in absent.items():
            if key not in data:
                data[key] = value
                timestamps[key] = time
                shown = "null" if value is None else ("NaN" if not hasattr(value, "shape") else "an array of fill values")
                _count(warnings_counter, f"declared key {key!r} absent from the event; written as {shown}")
    if not isinstance(time, (int, float)):
        known = [t for t in timestamps.values() if isinstance(t, (int, float))]
        time = max(known, default=descriptor.get("time", 0.0))
        timestamps = {k: (time if v is None else v) for k, v in timestamps.items()}
    doc = {
        "uid": str(raw["uid"]) if raw.get("uid") else str(
            uuid.uuid5(_STREAM_KEY_NAMESPACE, f"{descriptor['uid']}/{raw.get('seq_num')}")
        ),
        "descriptor": descriptor["uid"],
        "seq_num": int(raw["seq_num"]),
        "time": float(time),
        "data": data,
        "timestamps": timestamps,
    }
    filled = raw.get("filled")
    if isinstance(filled, dict):
        doc["filled"] = {k: bool(v) for k, v in filled.items() if k in data}
    return doc


def normalise_resource(raw: dict, run_uid: str, warnings: Notes | None = None) -> dict:
    """The resource to write, from a ``resource`` record (filestore v0 or later).

    A resource without ``uid`` (filestore v0) takes its ObjectId's hex string, which is
    what its datums' ``resource`` holds; a resource without ``root`` had the root joined
    into ``resource_path`` and gets ``root=""``. Both repairs are recorded in ``warnings``.

    >>> normalise_resource({"_id": "5f", "spec": "NPY_SEQ", "resource_path": "/d/x"}, "u")["uid"]
    '5f'
    """
    warnings = [] if warnings is None else warnings
    doc = {k: plain(v) for k, v in raw.items() if k not in ("_id", "id")}
    if not doc.get("uid"):
        doc["uid"] = plain(raw["_id"])
        note(warnings, RESOURCE, f"resource {doc['uid']}: no uid (filestore v0); its ObjectId's hex string is the uid")
    if not doc.get("root"):
        if "root" not in doc or doc["root"] is None:
            note(warnings, RESOURCE, f"resource {doc['uid']}: no root (filestore v0); the root is joined into "
                 f"resource_path {doc.get('resource_path', '')!r}")
        doc["root"] = ""
    doc.setdefault("resource_path", "")
    doc.setdefault("resource_kwargs", {})
    doc.setdefault("path_semantics", "posix")
    doc["spec"] = str(doc.get("spec", ""))
    doc["run_start"] = run_uid
    return doc


def normalise_datum(raw: dict, resource_uid: str) -> dict:
    """The datum to write, from a ``datum`` record.

    The filestore v0 key ``event_id`` becomes ``datum_id``; ``resource`` is the
    (normalised) resource uid, also when the record holds its ObjectId.

    >>> normalise_datum({"_id": 1, "event_id": "abc", "resource": 7, "datum_kwargs": {"i": 0}}, "r")
    {'datum_id': 'abc', 'resource': 'r', 'datum_kwargs': {'i': 0}}
    """
    datum_id = raw.get("datum_id", raw.get("event_id"))
    return {
        "datum_id": plain(datum_id),
        "resource": resource_uid,
        "datum_kwargs": plain(raw.get("datum_kwargs") or {}),
    }
