"""Writing legacy runs through ``bluesky_tiled_plugins.TiledWriter``.

The writer is the one the RunEngine uses; the migration only configures it through
its public hooks:

- ``normalizer``: a subclass of the writer's own ``RunNormalizer`` with three
  additions: the migration's warnings are stored in the run's ``notes`` metadata (where
  the writer keeps its own notes), a stop with ``exit_status="unknown"`` (a run that
  had no stop) passes the schema check, which knows only success/abort/fail, and events
  are checked against the event schema by :func:`plainly_valid_event` first (the same
  verdict, ~40x cheaper), by the schema validator only when that check is unsure;
- ``patches``: :func:`writer_patches`: resource paths through the root map (the paths
  written to Tiled are where the files are now), AD_TIFF resource paths with their
  trailing ``/``, NPY_SEQ resources with the file template for every resource of a key,
  and each datum of an external key with the row the writer must give it
  (``datum_kwargs["indices"]``, from :class:`WriterSettings`), so that every event keeps
  its own frame;
- ``spec_to_mimetype``: :data:`LEGACY_SPEC_TO_MIMETYPE` plus what the caller adds;
- ``max_array_size``: 0 for a run whose frames are written inline and are small (the
  writer would put them in the table otherwise), the writer's default else.

The reader (:class:`~.assemble.LegacyDocuments`) hands its :class:`WriterSettings` over
as ``writer_settings``; :func:`write_run` builds the writer at the first document, when
the reader has surveyed the run's files.

The writer writes through a view of the target (:mod:`.writing_view`): made with
``include_data_sources=True`` (no refresh GET per run) and, on a server that neither
streams nor dispatches webhooks, with node classes whose stream closes send nothing.

What the target already holds (present, complete, half-written) is read by
:mod:`.target`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exceptions import MigrationError
from .frames import RootMap, resource_directory
from .legacy import UNKNOWN_EXIT_STATUS
from .writing_view import writing_view

if TYPE_CHECKING:
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = [
    "INLINE_BATCH_BYTES",
    "LEGACY_SPEC_TO_MIMETYPE",
    "WriterSettings",
    "WrittenRun",
    "make_writer",
    "plainly_valid_event",
    "write_run",
    "writer_datum_shape",
    "writer_patches",
]

#: Bytes of inline frames the writer may buffer per run: a run with frames written inline
#: is written in batches of at most this many bytes of frames (at least one event).
INLINE_BATCH_BYTES = 256 * 1024**2

#: MIME types for resource specs found in legacy data that the writer's own table lacks.
#: Only MIME types that Tiled servers can read are listed; a spec missing here (and from
#: the writer's table) makes the migration leave that detector's values out of the run,
#: with a warning, instead of registering an asset that cannot be read.
LEGACY_SPEC_TO_MIMETYPE = {
    "AD_HDF5_TS": "application/x-hdf5",
    "AD_EIGER": "application/x-hdf5",
    "AD_EIGER2": "application/x-hdf5",
    "AD_EIGER_SLICE": "application/x-hdf5",
    "ADHDF5_SWMR_STREAM": "application/x-hdf5",
    "HDF5_SINGLE": "application/x-hdf5",
    "AD_TIFF_SEQ": "multipart/related;type=image/tiff",
    "TIFF": "multipart/related;type=image/tiff",
    "NPY_SEQ": "multipart/related;type=application/x-npy",
}


@dataclass
class WriterSettings:
    """What the reader of a run tells the writer, once it has surveyed the run's files.

    Attributes
    ----------
    root_map : RootMap
        Old path prefixes -> where the files are now; applied to every resource written.
    max_array_size : int or None
        The writer's ``max_array_size`` (None: its default).
    inline_frame_bytes : int
        Bytes of the frames written inline per event (0: none); bounds the batch size.
    datum_rows : dict
        Datum id -> the row index the writer registers its frame under (``indices``),
        set by the reader just before it hands the datum over, taken by the patch.
    """

    root_map: RootMap = field(default_factory=RootMap)
    max_array_size: int | None = None
    inline_frame_bytes: int = 0
    datum_rows: dict[str, int] = field(default_factory=dict)

    def batch_size(self, batch_size: int) -> int:
        """``batch_size``, lowered so that buffered inline frames stay under :data:`INLINE_BATCH_BYTES`.

        >>> WriterSettings(inline_frame_bytes=100 * 1024**2).batch_size(10_000)
        2
        """
        if self.inline_frame_bytes <= 0:
            return batch_size
        return max(1, min(batch_size, INLINE_BATCH_BYTES // self.inline_frame_bytes))


#: The file names TiledWriter's NPY consolidator gives NPY_SEQ files (it injects the
#: template only for the first resource of a key; later ones need it in their kwargs).
_NPY_TEMPLATE = "%s_%d.npy"


def _resource_patch(settings: WriterSettings, doc: dict) -> dict:
    """The resource as the writer registers it: mapped paths, AD_TIFF's ``/``, NPY_SEQ's template."""
    mapped = resource_directory(doc, settings.root_map)
    if mapped != resource_directory(doc):
        doc["root"], doc["resource_path"] = "", mapped
    spec = str(doc.get("spec", "")).upper()
    if spec == "AD_TIFF":
        path = doc.get("resource_path", "")
        if path and not path.endswith("/"):
            doc["resource_path"] = path + "/"
    elif spec == "NPY_SEQ":
        doc["resource_kwargs"] = {"template": _NPY_TEMPLATE, **(doc.get("resource_kwargs") or {})}
    return doc


def _datum_patch(settings: WriterSettings, doc: dict) -> dict:
    """The datum with the row the reader chose for it (``indices``), when it chose one."""
    row = settings.datum_rows.pop(str(doc.get("datum_id")), None)
    if row is not None:
        doc["datum_kwargs"] = {**(doc.get("datum_kwargs") or {}), "indices": {"start": row, "stop": row + 1}}
    return doc


def writer_patches(settings: WriterSettings | None = None) -> dict[str, Callable[[dict], dict]]:
    """The ``patches`` given to ``TiledWriter`` for legacy data.

    >>> patches = writer_patches(WriterSettings(root_map=RootMap.parse(["/old=/new"])))
    >>> sorted(patches)
    ['datum', 'resource']
    >>> patches["resource"]({"spec": "AD_TIFF", "root": "/old", "resource_path": "cam"})["resource_path"]
    '/new/cam/'
    """
    settings = settings if settings is not None else WriterSettings()
    return {
        "resource": functools.partial(_resource_patch, settings),
        "datum": functools.partial(_datum_patch, settings),
    }


def writer_datum_shape(declared: list[Any], multiplier: int | None) -> tuple[int, ...]:
    """The shape of one event's value as TiledWriter registers an external key.

    The rule of the writer's ``ConsolidatorBase`` (bluesky-tiled-plugins has no public
    function for it): a declared ``(1,)`` is a scalar frame; with a ``frame_per_point``
    the leading axis is the number of frames.

    >>> writer_datum_shape([4, 5], 1), writer_datum_shape([1, 4, 5], 1), writer_datum_shape([8, 10], None)
    ((1, 4, 5), (1, 4, 5), (8, 10))
    """
    shape = tuple(int(n) for n in declared)
    shape = () if shape == (1,) else shape
    if multiplier:
        shape = shape or (multiplier,)
        if shape[0] != multiplier:
            shape = (multiplier, *shape[1:]) if shape[0] == 1 else (multiplier, *shape)
    return shape


@dataclass
class WrittenRun:
    """The outcome of :func:`write_run`.

    Attributes
    ----------
    uid : str
        The start uid.
    events_written : int
        Events passed to the writer.
    notes : list of str
        The reader's warnings (also stored in the run's ``notes``).
    fixes : list of dict
        Every fix the reader made (``Fix.to_dict()``), for the report.
    missing_frames : dict
        Stream -> key -> ``seq_num`` values of the events that arrived without their frame.
    """

    uid: str
    events_written: int
    notes: list[str] = field(default_factory=list)
    fixes: list[dict] = field(default_factory=list)
    missing_frames: dict[str, dict[str, list[int]]] = field(default_factory=dict)


_EVENT_KEYS = frozenset({"data", "filled", "time", "timestamps", "descriptor", "seq_num", "uid"})
_EVENT_REQUIRED = ("data", "time", "timestamps", "descriptor", "seq_num", "uid")


def plainly_valid_event(doc: Any) -> bool:
    """True only if ``doc`` passes event-model's event schema; checked without jsonschema.

    The event schema is small: the six required keys, ``filled`` optional, nothing else;
    ``data``, ``timestamps`` (and ``filled``) objects, ``filled`` values booleans or
    strings, ``time`` a number, ``seq_num`` an integer, ``uid`` and ``descriptor``
    strings. This plain check is about 40 times cheaper than the schema validator,
    which costs half of the writer's time on a long run. It is strict: anything it does
    not recognise (a numpy scalar, a dict subclass) returns False and is then checked by
    the schema validator, so nothing invalid passes and nothing valid is refused.

    >>> plainly_valid_event({"uid": "u", "descriptor": "d", "seq_num": 1, "time": 1.5, "data": {}, "timestamps": {}})
    True
    >>> plainly_valid_event({"uid": "u", "descriptor": "d", "seq_num": 1, "time": 1.5, "data": {}, "timestamps": {}, "_id": 1})
    False
    """
    if type(doc) is not dict or not doc.keys() <= _EVENT_KEYS:
        return False
    for key in _EVENT_REQUIRED:
        if key not in doc:
            return False
    if type(doc["data"]) is not dict or type(doc["timestamps"]) is not dict:
        return False
    if type(doc["uid"]) is not str or type(doc["descriptor"]) is not str:
        return False
    if type(doc["time"]) not in (int, float):
        return False
    seq = doc["seq_num"]
    if type(seq) is not int and not (type(seq) is float and seq.is_integer()):
        return False
    filled = doc.get("filled", {})
    if type(filled) is not dict:
        return False
    return all(type(v) in (bool, str) for v in filled.values())


def _normalizer_class() -> type:
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer
    from event_model import schema_validators

    class LegacyNormalizer(RunNormalizer):
        """``RunNormalizer`` that records migration notes and accepts ``exit_status="unknown"``."""

        def __init__(self, *args: Any, notes: list[str] | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._migration_notes = notes

        def stop(self, doc: dict) -> None:
            if self._migration_notes:
                self.notes.extend(f"migration: {line}" for line in self._migration_notes)
            super().stop(doc)

        def emit(self, name: Any, doc: dict) -> None:
            if str(name) in ("event", "DocumentNames.event") and plainly_valid_event(doc):
                # The same verdict as the schema validator, without its cost (see plainly_valid_event).
                self.dispatcher.process(name, doc)
                return
            unknown = doc.get("exit_status") == UNKNOWN_EXIT_STATUS
            if unknown and str(name) in ("stop", "DocumentNames.stop"):
                checked = dict(doc, exit_status="fail")
                schema_validators[name].validate(checked)
                self.dispatcher.process(name, doc)
                return
            super().emit(name, doc)

    return LegacyNormalizer


def make_writer(
    client: Container,
    *,
    batch_size: int = 10_000,
    spec_to_mimetype: dict[str, str] | None = None,
    notes: list[str] | None = None,
    settings: WriterSettings | None = None,
) -> TiledWriter:
    """A ``TiledWriter`` set up for legacy documents.

    Parameters
    ----------
    client : tiled.client.container.Container
        Where runs are written (each run becomes a child keyed by its start uid).
    batch_size : int, optional
        Events buffered per table write (the writer's ``batch_size``).
    spec_to_mimetype : dict, optional
        Extra resource spec -> MIME type entries.
    notes : list of str, optional
        A list whose contents, at each stop document, are added to the run's ``notes``
        metadata (``write_run`` passes the reader's warnings here).
    settings : WriterSettings, optional
        The reader's settings for this run (root map, datum rows, array storage).

    >>> writer = make_writer(client)        # doctest: +SKIP
    >>> writer("start", start_doc)          # doctest: +SKIP
    """
    from bluesky_tiled_plugins import TiledWriter

    settings = settings if settings is not None else WriterSettings()
    extra: dict[str, Any] = {}
    if settings.max_array_size is not None:
        extra["max_array_size"] = settings.max_array_size
    return TiledWriter(
        client,
        normalizer=functools.partial(_normalizer_class(), notes=notes),
        patches=writer_patches(settings),
        spec_to_mimetype={**LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})},
        batch_size=settings.batch_size(batch_size),
        **extra,
    )


def write_run(
    client: Container,
    documents: Iterable[tuple[str, dict]],
    *,
    batch_size: int = 10_000,
    spec_to_mimetype: dict[str, str] | None = None,
    close_streams: bool | None = None,
) -> WrittenRun:
    """Write one run's documents (e.g. ``LegacySource.documents(uid)``) into ``client``.

    The warnings of a :class:`~databroker_compat.migration.assemble.LegacyDocuments`
    iterator (or of a wrapper that forwards its attributes) become the run's ``notes``
    metadata and the returned ``notes``; its ``writer_settings`` shape the writer, its
    ``fixes`` and ``missing_frames`` are returned.

    The writer writes through :func:`~.writing_view.writing_view` of ``client``:
    ``close_streams`` True or False says whether it sends its stream-close requests,
    None asks the server (once per target per process).

    Raises
    ------
    MigrationError
        The run already exists (HTTP 409: check it with
        :func:`~databroker_compat.migration.target.run_state`, remove a partial one with
        :func:`~databroker_compat.migration.target.delete_run`), or the writer failed;
        the message names the run and the cause, ``err.uid`` and ``err.document`` hold them.

    >>> written = write_run(client, source.documents(uid))   # doctest: +SKIP
    >>> written.events_written                               # doctest: +SKIP
    5
    """
    notes = getattr(documents, "warnings", None)
    view = writing_view(client, close_streams_option=close_streams)
    writer = None
    uid = None
    events = 0
    name = None
    try:
        for name, doc in documents:
            if writer is None:  # the reader has surveyed the run's files by its first document
                settings = getattr(documents, "writer_settings", None)
                writer = make_writer(
                    view.container, batch_size=batch_size, spec_to_mimetype=spec_to_mimetype, notes=notes, settings=settings
                )
            if name == "start":
                uid = doc["uid"]
            elif name == "event":
                events += 1
            elif name == "event_page":
                events += len(doc.get("seq_num", []))
            writer(name, doc)
    except MigrationError:
        raise
    except Exception as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 409 and name == "start":
            raise MigrationError(
                f"Run {uid} already exists in the target; check it with run_state() and, if it is "
                "partial, remove it with delete_run() before writing it again.",
                uid=uid,
                document=name,
            ) from err
        raise MigrationError(f"Writing run {uid} failed at a {name!r} document: {err!r}", uid=uid, document=name) from err
    if uid is None:
        raise MigrationError("No start document in the documents given to write_run().", uid=None, document=None)
    fixes = [f.to_dict() for f in getattr(documents, "fixes", None) or []]
    missing = getattr(documents, "missing_frames", None) or {}
    return WrittenRun(uid, events, list(notes or []), fixes, {s: {k: list(v) for k, v in ks.items()} for s, ks in missing.items()})
