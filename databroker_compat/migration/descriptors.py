"""Normalisation of legacy ``event_descriptor`` records, and what an event lacking a declared key holds.

A descriptor decides how the writer stores each data key (a table column, an array
node, an external array registered over files), so it must be complete and valid before
the first event: every data key with a JSON ``dtype``, a ``shape`` and a ``source``,
every configuration entry with ``data``, ``timestamps`` and typed ``data_keys``. Each
default filled in is recorded (:mod:`.fixes`). The external keys' shapes and dtypes are
checked against their files later, by :mod:`.survey`.

>>> d = normalise_descriptor({"uid": "d", "time": 1.0, "data_keys": {"x": {}}}, "u", {"x": 1.5}, [])
>>> d["name"], d["data_keys"]["x"]["dtype"], d["configuration"]
('primary', 'number', {})
"""

from __future__ import annotations

import math
from typing import Any

from .fixes import CONFIGURATION, DESCRIPTOR, KEY, VALUE, Notes, note
from .values import conversion_note, plain, safe_key

__all__ = ["JSON_DTYPES", "RESERVED_KEYS", "absent_values", "infer_dtype", "normalise_descriptor", "stored_as_array"]

#: The JSON types the event-model schema allows as a data key's ``dtype``.
JSON_DTYPES = frozenset({"string", "number", "array", "boolean", "integer"})
#: Data keys the writer renames (they collide with its table's own columns).
RESERVED_KEYS = ("time", "seq_num")


def infer_dtype(value: Any) -> tuple[str, list[int]]:
    """The JSON ``dtype`` and ``shape`` of one event value.

    >>> infer_dtype([[1, 2, 3], [4, 5, 6]])
    ('array', [2, 3])
    """
    if isinstance(value, bool):
        return "boolean", []
    if isinstance(value, int):
        return "integer", []
    if isinstance(value, float):
        return "number", []
    if isinstance(value, str):
        return "string", []
    if isinstance(value, (list, tuple)):
        shape = []
        probe: Any = value
        while isinstance(probe, (list, tuple)):
            shape.append(len(probe))
            probe = probe[0] if probe else None
        return "array", shape
    return "string", []


def stored_as_array(spec: dict) -> bool:
    """Whether the writer stores this internal data key as an array node, not a table column.

    The writer's rule (``TiledWriter``'s ``max_array_size``, 16 elements by default): an
    ``array`` key of known shape with more elements goes to an array node.

    >>> stored_as_array({"dtype": "array", "shape": [10, 8]}), stored_as_array({"dtype": "array", "shape": [2]})
    (True, False)
    """
    from bluesky_tiled_plugins.writing.tiled_writer import MAX_ARRAY_SIZE

    shape = spec.get("shape") or []
    if "external" in spec or spec.get("dtype") != "array" or any(not isinstance(n, int) for n in shape):
        return False
    return 0 <= MAX_ARRAY_SIZE < math.prod(shape)


def absent_values(descriptor: dict) -> dict[str, Any]:
    """Declared internal key -> what an event that lacks it holds (computed once per descriptor).

    An event that lacks a declared key would leave a hole the writer fills badly: the
    first row of a table batch decides its columns (a key absent there is dropped for the
    whole batch), and an array node gets one row fewer (every later row shifts). So the
    value is given explicitly: NaN for ``number`` keys, an array of NaN (or 0 for an
    integer ``dtype_numpy``) for keys stored as array nodes, ``None`` (null) otherwise.

    >>> absent_values({"data_keys": {"x": {"dtype": "number"}, "s": {"dtype": "string"},
    ...                              "img": {"dtype": "array", "shape": [2], "external": "FS"}}})
    {'x': nan, 's': None}
    """
    out: dict[str, Any] = {}
    for key, spec in descriptor.get("data_keys", {}).items():
        if "external" in spec:
            continue
        if spec.get("dtype") == "number":
            out[key] = math.nan
        elif stored_as_array(spec):
            import numpy

            dtype = numpy.dtype(spec.get("dtype_numpy") or "float64")
            out[key] = numpy.full(spec["shape"], fill_value(dtype), dtype=dtype)
        else:
            out[key] = None
    return out


def fill_value(dtype: Any) -> Any:
    """The value of a missing frame or array element: NaN for floats, 0 for integers, False for booleans.

    >>> import numpy
    >>> fill_value(numpy.dtype("uint16")), fill_value(numpy.dtype("float32"))
    (0, nan)
    """
    kind = getattr(dtype, "kind", "f")
    if kind in "fc":
        return math.nan
    if kind == "b":
        return False
    if kind in "iu":
        return 0
    return None


def _normalise_configuration(doc: dict, warnings: Notes) -> None:
    uid = doc.get("uid")
    configuration = doc.get("configuration")
    if not isinstance(configuration, dict):
        if configuration is not None:
            note(warnings, CONFIGURATION, f"descriptor {uid}: configuration was not a mapping; written as {{}}")
        else:
            note(warnings, CONFIGURATION, f"descriptor {uid}: no configuration; written as {{}}")
        doc["configuration"] = {}
        return
    for name, entry in list(configuration.items()):
        if not isinstance(entry, dict):
            configuration[name] = entry = {}
            note(warnings, CONFIGURATION, f"descriptor {uid}: configuration of {name!r} was not a mapping; written as {{}}")
        for part in ("data", "timestamps", "data_keys"):
            if not isinstance(entry.get(part), dict):
                entry[part] = {}
                note(warnings, CONFIGURATION, f"descriptor {uid}: configuration of {name!r} had no {part!r}; {{}} written")
        for key, spec in entry["data_keys"].items():
            if not isinstance(spec, dict):
                spec = entry["data_keys"][key] = {}
            filled = []
            if spec.get("dtype") not in JSON_DTYPES:
                value = entry["data"].get(key)
                spec["dtype"] = infer_dtype(value)[0] if value is not None else "number"
                filled.append("dtype")
            if not isinstance(spec.get("shape"), list):
                spec["shape"] = []
                filled.append("shape")
            if not isinstance(spec.get("source"), str):
                spec["source"] = "unknown"
                filled.append("source")
            if filled:
                note(warnings, CONFIGURATION, f"descriptor {uid}: configuration key {key!r} of {name!r}: "
                     f"{', '.join(filled)} filled in")


def normalise_descriptor(raw: dict, run_uid: str, first_values: dict[str, Any], warnings: Notes) -> dict:
    """The descriptor to write, from an ``event_descriptor`` record.

    Parameters
    ----------
    raw : dict
        The stored record.
    run_uid : str
        The start uid (replaces ``run_start`` / the v0 ``run_start_id`` ObjectId).
    first_values : dict
        Data values of the stream's first events, key -> value: used to add data keys
        that events hold but the descriptor lacks, and to fill a missing or invalid
        ``dtype``/``shape``.
    warnings : FixLog or list of str
        Where each fix is recorded.

    A missing ``name`` becomes ``"primary"`` (what metadatastore v0 meant), a missing
    ``configuration`` becomes ``{}``; ``hints`` and ``object_keys`` stay absent
    (both optional). A data key without ``source`` gets ``"unknown"``.
    """
    doc = {}
    seen: dict[str, int] = {}
    for key, value in raw.items():
        if key in ("_id", "run_start_id"):
            continue
        doc[safe_key(str(key))] = plain(value, seen)
    uid = doc.get("uid")
    line = conversion_note(f"descriptor {uid}", seen)
    if line is not None:
        note(warnings, VALUE, line)
    doc["run_start"] = run_uid
    if not doc.get("name"):
        doc["name"] = "primary"
        note(warnings, DESCRIPTOR, f"descriptor {uid}: no name; stream named 'primary'")
    _normalise_configuration(doc, warnings)
    data_keys = doc.setdefault("data_keys", {})
    for key, value in first_values.items():
        if key not in data_keys:
            dtype, shape = infer_dtype(value)
            data_keys[key] = {"dtype": dtype, "shape": shape, "source": "unknown"}
            note(warnings, DESCRIPTOR, f"descriptor {uid}: data key {key!r} found in events but not in the descriptor; added")
    for key, spec in data_keys.items():
        if not isinstance(spec, dict):
            spec = data_keys[key] = {}
        sample = first_values.get(key)
        if spec.get("dtype") not in JSON_DTYPES:
            if "external" in spec:
                spec["dtype"] = "array"
            else:
                spec["dtype"], inferred = infer_dtype(sample) if sample is not None else ("number", [])
                spec.setdefault("shape", inferred)
            note(warnings, DESCRIPTOR, f"descriptor {uid}: data key {key!r} has dtype {spec['dtype']!r} (was missing or invalid)")
        if not isinstance(spec.get("shape"), list) or any(
            not (isinstance(n, int) or n is None) for n in spec.get("shape", [])
        ):
            problem = "had an invalid shape" if spec.get("shape") is not None else "had no shape"
            spec["shape"] = infer_dtype(sample)[1] if sample is not None and "external" not in spec else []
            note(warnings, DESCRIPTOR, f"descriptor {uid}: data key {key!r} {problem}; {spec['shape']} written")
        if "external" not in spec and sample is not None and spec["dtype"] != "array":
            inferred_dtype, inferred_shape = infer_dtype(sample)
            if inferred_dtype == "array":
                spec["dtype"], spec["shape"] = "array", inferred_shape
                note(warnings, DESCRIPTOR, f"descriptor {uid}: data key {key!r} holds arrays; dtype set to 'array'")
        if not isinstance(spec.get("source"), str):
            spec["source"] = "unknown"
            note(warnings, DESCRIPTOR, f"descriptor {uid}: data key {key!r} has no source; 'unknown' written")
        if key in RESERVED_KEYS:
            note(warnings, KEY, f"stream {doc['name']!r}: data key {key!r} is stored as {key + '_'!r} "
                 "(the writer's table has a column of that name)", stream=doc["name"], key=key)
    return doc
