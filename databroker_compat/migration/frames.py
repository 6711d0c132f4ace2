"""Legacy detector frames read straight from the files, as databroker v1's handlers did.

The migration needs the source's own view of every external value: the first frame of
each resource tells the true shape and dtype (descriptors from ophyd.sim and older
detectors declare neither reliably), the files a datum needs tell what is missing, and
verification compares frames read back through Tiled with frames read here. This
module is the one place that knows how a legacy ``resource`` + ``datum_kwargs`` name
bytes on disk, and it owns the root map (old file-system prefixes → where the files are
now).

Supported specs and what one datum reads (the v1 handler's result, unchanged):

=================  ===================================================  =====================
spec               files                                                one datum
=================  ===================================================  =====================
``NPY_SEQ``        ``{root}/{resource_path}_{index}.npy``               the saved array
``AD_HDF5``        ``{root}/{resource_path}`` (dataset                  ``frame_per_point``
                   ``/entry/data/data``)                                frames, squeezed
``AD_TIFF``        ``template % (dir + "/", filename, n)`` for the      ``(frame_per_point,
                   ``frame_per_point`` files of ``point_number``        y, x)``
=================  ===================================================  =====================

Other specs raise :class:`UnsupportedSpec`, which names the supported ones.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import BadArgument, MigrationError

if TYPE_CHECKING:
    import numpy

__all__ = [
    "SUPPORTED_SPECS",
    "RootMap",
    "UnsupportedSpec",
    "datum_files",
    "datum_point",
    "files_exist",
    "frame_per_point",
    "is_supported",
    "read_datum",
    "resource_directory",
]

#: The resource specs whose files this module reads.
SUPPORTED_SPECS = ("AD_HDF5", "AD_TIFF", "NPY_SEQ")
_HDF5_DATASET = "/entry/data/data"


class UnsupportedSpec(MigrationError):
    """A resource spec whose files this module cannot read; ``spec`` names it."""


@dataclass(frozen=True)
class RootMap:
    """Old path prefixes and the prefixes the files live under now, first match wins.

    >>> m = RootMap.parse(["/GPFS/xf11id=/nsls2/data/chx/legacy"])
    >>> m.apply("/GPFS/xf11id/2016/img_0.npy")
    '/nsls2/data/chx/legacy/2016/img_0.npy'
    >>> m.apply("/GPFS/xf11idb/x")   # whole path components only
    '/GPFS/xf11idb/x'
    """

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str] | Mapping[str, str] | None) -> RootMap:
        """A root map from ``OLD=NEW`` strings (``--root-map``) or a ``{old: new}`` mapping.

        Raises
        ------
        BadArgument
            An item without ``=``, or with an empty or relative side.
        """
        if not items:
            return cls()
        pairs = list(items.items()) if isinstance(items, Mapping) else []
        if not isinstance(items, Mapping):
            for item in items:
                old, sep, new = str(item).partition("=")
                if not sep:
                    raise BadArgument(
                        f"A root map entry is OLD=NEW (an absolute path on each side), not {item!r}.",
                        option="root_map", value=item,
                    )
                pairs.append((old, new))
        checked = []
        for old, new in pairs:
            old, new = str(old).strip(), str(new).strip()
            if not old.startswith("/") or not new.startswith("/"):
                raise BadArgument(
                    f"Root map entry {old!r}={new!r}: both sides must be absolute paths.",
                    option="root_map", value=f"{old}={new}",
                )
            checked.append((old.rstrip("/") or "/", new.rstrip("/") or "/"))
        return cls(tuple(checked))

    def apply(self, path: str) -> str:
        """``path`` with its first matching old prefix replaced (whole components only)."""
        for old, new in self.pairs:
            if path == old or path.startswith(old.rstrip("/") + "/"):
                return new + path[len(old):] if old != "/" else posixpath.join(new, path.lstrip("/"))
        return path

    def __bool__(self) -> bool:
        return bool(self.pairs)


def resource_directory(resource: Mapping[str, Any], root_map: RootMap | None = None) -> str:
    """``root`` joined with ``resource_path``, through the root map.

    >>> resource_directory({"root": "/old", "resource_path": "a/b"}, RootMap.parse(["/old=/new"]))
    '/new/a/b'
    """
    joined = posixpath.join(str(resource.get("root") or ""), str(resource.get("resource_path") or ""))
    if not joined.startswith("/") and resource.get("root"):
        joined = "/" + joined
    return (root_map or RootMap()).apply(joined)


def _spec(resource: Mapping[str, Any]) -> str:
    spec = str(resource.get("spec") or "")
    if spec not in SUPPORTED_SPECS:
        raise UnsupportedSpec(
            f"Cannot read files of spec {spec!r} directly; supported: {', '.join(SUPPORTED_SPECS)}.",
            spec=spec,
        )
    return spec


def is_supported(resource: Mapping[str, Any]) -> bool:
    """Whether this module reads the files of ``resource`` (its spec is in :data:`SUPPORTED_SPECS`).

    >>> is_supported({"spec": "NPY_SEQ"}), is_supported({"spec": "XSP3"})
    (True, False)
    """
    return str(resource.get("spec") or "") in SUPPORTED_SPECS


def frame_per_point(resource: Mapping[str, Any]) -> int:
    """Frames per datum of ``resource`` (``resource_kwargs["frame_per_point"]``, 1 if absent).

    >>> frame_per_point({"resource_kwargs": {"frame_per_point": 3}})
    3
    """
    return int((resource.get("resource_kwargs") or {}).get("frame_per_point", 1) or 1)


_frame_per_point = frame_per_point


def datum_point(datum_kwargs: Mapping[str, Any]) -> int:
    """The point a datum names in its resource's files (``point_number``, or ``index`` for NPY_SEQ).

    >>> datum_point({"index": 4})
    4
    """
    for name in ("point_number", "index"):
        if name in datum_kwargs:
            return int(datum_kwargs[name])
    raise MigrationError(f"A datum without point_number or index: {dict(datum_kwargs)!r}.", datum=dict(datum_kwargs))


_point = datum_point


def datum_files(
    resource: Mapping[str, Any], datum_kwargs: Mapping[str, Any], root_map: RootMap | None = None
) -> list[str]:
    """The files one datum reads, after the root map (they may not exist).

    >>> datum_files({"spec": "NPY_SEQ", "root": "/d", "resource_path": "x"}, {"index": 2})
    ['/d/x_2.npy']
    """
    spec = _spec(resource)
    path = resource_directory(resource, root_map)
    if spec == "NPY_SEQ":
        return [f"{path}_{_point(datum_kwargs)}.npy"]
    if spec == "AD_HDF5":
        return [path]
    kwargs = resource.get("resource_kwargs") or {}
    template, filename = str(kwargs["template"]), str(kwargs.get("filename", ""))
    fpp = _frame_per_point(resource)
    start = _point(datum_kwargs) * fpp
    directory = path if path.endswith("/") else path + "/"
    return [template % (directory, filename, n) for n in range(start, start + fpp)]


def read_datum(
    resource: Mapping[str, Any], datum_kwargs: Mapping[str, Any], root_map: RootMap | None = None
) -> numpy.ndarray:
    """The value v1's handler gave for one datum, read from the files.

    Raises
    ------
    FileNotFoundError
        A file the datum needs is not there (after the root map).
    UnsupportedSpec
        The spec is not one of :data:`SUPPORTED_SPECS`.
    """
    import numpy

    spec = _spec(resource)
    files = datum_files(resource, datum_kwargs, root_map)
    for name in files:
        if not os.path.exists(name):
            raise FileNotFoundError(f"{name} (spec {spec}, datum {dict(datum_kwargs)!r})")
    if spec == "NPY_SEQ":
        return numpy.load(files[0], allow_pickle=False)
    if spec == "AD_HDF5":
        import h5py

        fpp = _frame_per_point(resource)
        start = _point(datum_kwargs) * fpp
        with h5py.File(files[0], "r") as f:
            return numpy.asarray(f[_HDF5_DATASET][start:start + fpp]).squeeze()
    import tifffile

    return numpy.asarray([tifffile.imread(name) for name in files])


def files_exist(resource: Mapping[str, Any]) -> bool:
    """Whether the files of a (normalised) resource are there: the path, or files starting with it.

    >>> files_exist({"root": "/no/such", "resource_path": "dir/file.h5"})
    False
    """
    root = resource.get("root") or ""
    path = resource.get("resource_path") or ""
    full = posixpath.join(root, path.lstrip("/")) if root else path
    if not full:
        return False
    if os.path.exists(full):
        return True
    return bool(glob.glob(glob.escape(full.rstrip("/")) + "*"))
