"""Writing legacy runs through ``bluesky_tiled_plugins.TiledWriter``.

The writer is the one the RunEngine uses; the migration only configures it through
its public hooks:

- ``normalizer``: a subclass of the writer's own ``RunNormalizer`` with three
  additions: the migration's warnings are stored in the run's ``notes`` metadata (where
  the writer keeps its own notes), a stop with ``exit_status="unknown"`` (a run that
  had no stop) passes the schema check, which knows only success/abort/fail, and events
  are checked against the event schema by :func:`plainly_valid_event` first (the same
  verdict, ~40x cheaper), by the schema validator only when that check is unsure;
- ``patches``: :func:`writer_patches` (AD_TIFF resource paths get their trailing ``/``);
- ``spec_to_mimetype``: :data:`LEGACY_SPEC_TO_MIMETYPE` plus what the caller adds.

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
from .legacy import UNKNOWN_EXIT_STATUS

if TYPE_CHECKING:
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["LEGACY_SPEC_TO_MIMETYPE", "WrittenRun", "make_writer", "plainly_valid_event", "write_run", "writer_patches"]

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


def _resource_patch(doc: dict) -> dict:
    """AD_TIFF resources name a directory: the writer needs the trailing ``/``."""
    if str(doc.get("spec", "")).upper() == "AD_TIFF":
        path = doc.get("resource_path", "")
        if path and not path.endswith("/"):
            doc["resource_path"] = path + "/"
    return doc


def writer_patches() -> dict[str, Callable[[dict], dict]]:
    """The ``patches`` given to ``TiledWriter`` for legacy data.

    >>> sorted(writer_patches())
    ['resource']
    """
    return {"resource": _resource_patch}


@dataclass
class WrittenRun:
    """The outcome of :func:`write_run`: start uid, events passed to the writer, notes."""

    uid: str
    events_written: int
    notes: list[str] = field(default_factory=list)


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

    >>> writer = make_writer(client)        # doctest: +SKIP
    >>> writer("start", start_doc)          # doctest: +SKIP
    """
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(
        client,
        normalizer=functools.partial(_normalizer_class(), notes=notes),
        patches=writer_patches(),
        spec_to_mimetype={**LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})},
        batch_size=batch_size,
    )


def write_run(
    client: Container,
    documents: Iterable[tuple[str, dict]],
    *,
    batch_size: int = 10_000,
    spec_to_mimetype: dict[str, str] | None = None,
) -> WrittenRun:
    """Write one run's documents (e.g. ``LegacySource.documents(uid)``) into ``client``.

    The warnings of a :class:`~databroker_compat.migration.assemble.LegacyDocuments`
    iterator become the run's ``notes`` metadata and the returned ``notes``.

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
    writer = make_writer(client, batch_size=batch_size, spec_to_mimetype=spec_to_mimetype, notes=notes)
    uid = None
    events = 0
    name = None
    try:
        for name, doc in documents:
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
    return WrittenRun(uid, events, list(notes or []))
