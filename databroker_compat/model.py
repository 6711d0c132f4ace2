"""Documents as databroker v1 handed them out, and descriptors rebuilt from stream metadata.

TiledWriter keeps the start and stop documents whole, each stream's first descriptor
(less ``name``, ``object_keys`` and ``run_start``) as the stream node's metadata, and
later descriptors of a stream only as ``{uid, time, configuration}`` entries in
``_config_updates``. :func:`descriptors_from_stream` turns those back into documents,
deterministically; :func:`sorted_by_time` puts them in the order they were emitted.
See docs/compat.md for every field that cannot come back exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["Document", "descriptors_from_stream", "object_keys", "sorted_by_time", "to_plain"]

# dtype -> dtype_numpy as the writer's normaliser fills it in when a data key has none.
_DEFAULT_NUMPY_DTYPE = {
    "number": "<f8",
    "array": "<f8",
    "boolean": "|b1",
    "string": "<U0",
    "integer": "<i8",
}
# Keys the writer adds to the stream metadata that are not part of a descriptor.
_STREAM_ONLY_KEYS = {"_config_updates"}

D = TypeVar("D", bound=Mapping)


class Document(dict):
    """A document: a ``dict`` whose keys can also be read as attributes.

    Nested dicts are Documents too, stored in place: ``doc.data`` *is* ``doc["data"]``,
    so a write through either sticks, as it did with v1's documents.

    >>> d = Document({"plan_name": "scan", "sample": {"name": "Si"}})
    >>> d.plan_name, d.sample.name, d["plan_name"]
    ('scan', 'Si', 'scan')
    >>> d.sample["thickness"] = 0.5
    >>> d["sample"]["thickness"], d.sample is d["sample"]
    (0.5, True)
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            if type(value) is dict:
                # Replacing a value does not resize the dict: safe while iterating.
                dict.__setitem__(self, key, Document(value))

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(f"This document has no key {key!r}; its keys are {sorted(self)}.") from None
        if type(value) is dict:
            # A plain dict stored after construction (``doc["x"] = {...}``): it becomes a
            # Document in place, so that this attribute and ``doc[key]`` stay one object.
            value = Document(value)
            dict.__setitem__(self, key, value)
        return value

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *(k for k in self if isinstance(k, str) and k.isidentifier())]

    def __copy__(self) -> Document:
        return Document(self)

    def __deepcopy__(self, memo: dict) -> Document:
        return Document(copy.deepcopy(dict(self), memo))

    def to_dict(self) -> dict:
        """A plain ``dict`` deep copy.

        >>> type(Document({"a": {"b": 1}}).to_dict()["a"]) is dict
        True
        """
        return to_plain(self)


def to_plain(obj: Any) -> Any:
    """Deep-copy mappings and sequences from Tiled's views into plain dicts and lists.

    >>> to_plain({"a": (1, 2), "b": Document({"c": 3})})
    {'a': [1, 2], 'b': {'c': 3}}
    """
    if isinstance(obj, dict) or hasattr(obj, "items") and hasattr(obj, "keys"):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _restore_data_keys(data_keys: dict) -> dict:
    """Undo what the writer's normaliser added to data keys where it can be told apart."""
    out = {}
    for key, spec in data_keys.items():
        spec = dict(spec)
        if spec.get("dtype_numpy") is not None and spec.get("dtype_numpy") == _DEFAULT_NUMPY_DTYPE.get(
            str(spec.get("dtype"))
        ):
            # The normaliser derives exactly this value from ``dtype`` when the
            # original had none; the common case (ophyd) never sends one.
            del spec["dtype_numpy"]
        out[key] = spec
    return out


def object_keys(data_keys: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """A descriptor's ``object_keys``, rebuilt from the ``object_name`` of its data keys.

    >>> object_keys({"det": {"object_name": "det"}, "m": {"object_name": "motor"}, "x": {}})
    {'det': ['det'], 'motor': ['m']}
    """
    found: dict[str, list[str]] = {}
    for key, spec in data_keys.items():
        name = spec.get("object_name")
        if name is not None:
            found.setdefault(name, []).append(key)
    return found


def descriptors_from_stream(run_uid: str, stream_name: str, metadata: Mapping) -> list[Document]:
    """The descriptor documents of one stream, first one first.

    ``metadata`` is the stream node's metadata. Later descriptors (configuration
    updates) carry the first descriptor's data keys, hints and object keys: the writer
    keeps only their ``uid``, ``time`` and ``configuration``.

    >>> md = {"uid": "d1", "time": 1.0, "data_keys": {"x": {"dtype": "number",
    ...       "shape": [], "source": "s", "object_name": "x", "dtype_numpy": "<f8"}},
    ...       "configuration": {}, "hints": {}}
    >>> [d["uid"] for d in descriptors_from_stream("r1", "primary", md)]
    ['d1']
    >>> descriptors_from_stream("r1", "primary", md)[0]["object_keys"]
    {'x': ['x']}
    """
    metadata = to_plain(metadata)
    first = {k: v for k, v in metadata.items() if k not in _STREAM_ONLY_KEYS}
    data_keys = _restore_data_keys(first.get("data_keys", {}))
    first["data_keys"] = data_keys
    if "configuration" in first:
        first["configuration"] = {
            obj: {**conf, "data_keys": _restore_data_keys(conf.get("data_keys", {}))} if "data_keys" in conf else conf
            for obj, conf in first["configuration"].items()
        }
    first["name"] = stream_name
    first["run_start"] = run_uid
    first["object_keys"] = object_keys(data_keys)
    descriptors = [Document(first)]
    for update in metadata.get("_config_updates", []) or []:
        later = copy.deepcopy(first)
        later["uid"] = update["uid"]
        later["time"] = update["time"]
        if "configuration" in update:
            merged = copy.deepcopy(first.get("configuration", {}))
            for obj, conf in update["configuration"].items():
                merged.setdefault(obj, {}).update(conf)
                if "data_keys" in merged[obj]:
                    merged[obj]["data_keys"] = _restore_data_keys(merged[obj]["data_keys"])
            later["configuration"] = merged
        descriptors.append(Document(later))
    return descriptors


def sorted_by_time(descriptors: Iterable[D]) -> list[D]:
    """Descriptors in the order they were emitted (time, then uid).

    >>> [d["uid"] for d in sorted_by_time([{"uid": "b", "time": 2}, {"uid": "a", "time": 2}, {"uid": "c", "time": 1}])]
    ['c', 'a', 'b']
    """
    return sorted(descriptors, key=lambda d: (d.get("time", 0), d.get("uid", "")))
