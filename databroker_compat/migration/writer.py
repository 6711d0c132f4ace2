"""Writing legacy runs through ``bluesky_tiled_plugins.TiledWriter``.

The writer is the one the RunEngine uses; the migration only configures it through
its public hooks:

- ``normalizer``: :class:`LegacyNormalizer`, the writer's own ``RunNormalizer`` with three
  additions: the migration's warnings are stored in the run's ``notes`` metadata (where
  the writer keeps its own notes), a stop with ``exit_status="unknown"`` (a run that
  had no stop) passes the schema check, which knows only success/abort/fail, and events
  are checked against the event schema by :func:`plainly_valid_event` first (the same
  verdict, ~40x cheaper), by the schema validator only when that check is unsure;
- ``patches``: :func:`~databroker_compat.migration.legacy.writer_patches`;
- ``spec_to_mimetype``: :data:`~databroker_compat.migration.legacy.LEGACY_SPEC_TO_MIMETYPE`
  plus what the caller adds.

Deleting a half-written run (:func:`delete_run`) needs a server that allows deletes:
the API key (or user) must hold the ``delete:node`` and ``delete:revision`` scopes, which
the single-user ``--api-key`` servers and ``SimpleTiledServer`` grant.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field
from typing import Iterable

from ..exceptions import MigrationError
from . import legacy

logger = logging.getLogger(__name__)

__all__ = ["WrittenRun", "delete_run", "make_writer", "plainly_valid_event", "run_state", "write_run"]


@dataclass
class WrittenRun:
    """The outcome of :func:`write_run`: start uid, events passed to the writer, notes."""

    uid: str
    events_written: int
    notes: list[str] = field(default_factory=list)


_EVENT_KEYS = frozenset({"data", "filled", "time", "timestamps", "descriptor", "seq_num", "uid"})
_EVENT_REQUIRED = ("data", "time", "timestamps", "descriptor", "seq_num", "uid")


def plainly_valid_event(doc) -> bool:
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


def _normalizer_class():
    from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer
    from event_model import schema_validators

    class LegacyNormalizer(RunNormalizer):
        """``RunNormalizer`` that records migration notes and accepts ``exit_status="unknown"``."""

        def __init__(self, *args, notes: list[str] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self._migration_notes = notes

        def stop(self, doc):
            if self._migration_notes:
                self.notes.extend(f"migration: {line}" for line in self._migration_notes)
            super().stop(doc)

        def emit(self, name, doc):
            if str(name) in ("event", "DocumentNames.event") and plainly_valid_event(doc):
                # The same verdict as the schema validator, without its cost (see plainly_valid_event).
                self.dispatcher.process(name, doc)
                return
            unknown = doc.get("exit_status") == legacy.UNKNOWN_EXIT_STATUS
            if unknown and str(name) in ("stop", "DocumentNames.stop"):
                checked = dict(doc, exit_status="fail")
                schema_validators[name].validate(checked)
                self.dispatcher.process(name, doc)
                return
            super().emit(name, doc)

    return LegacyNormalizer


def make_writer(
    client,
    *,
    batch_size: int = 10_000,
    spec_to_mimetype: dict[str, str] | None = None,
    notes: list[str] | None = None,
):
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
        patches=legacy.writer_patches(),
        spec_to_mimetype={**legacy.LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})},
        batch_size=batch_size,
    )


def write_run(
    client,
    documents: Iterable[tuple[str, dict]],
    *,
    batch_size: int = 10_000,
    spec_to_mimetype: dict[str, str] | None = None,
) -> WrittenRun:
    """Write one run's documents (e.g. ``LegacySource.documents(uid)``) into ``client``.

    The warnings of a :class:`~databroker_compat.migration.mongo.LegacyDocuments`
    iterator become the run's ``notes`` metadata and the returned ``notes``.

    Raises
    ------
    MigrationError
        The run already exists (HTTP 409: check it with :func:`run_state`, remove a
        partial one with :func:`delete_run`), or the writer failed; the message names
        the run and the cause.

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
                "partial, remove it with delete_run() before writing it again."
            ) from err
        raise MigrationError(f"Writing run {uid} failed at a {name!r} document: {err!r}") from err
    if uid is None:
        raise MigrationError("No start document in the documents given to write_run().")
    return WrittenRun(uid, events, list(notes or []))


def _plain(value):
    """Tiled metadata (DictView, tuples) as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(stored: dict, expected: dict) -> bool:
    from tiled.utils import safe_json_dump
    import json

    return _plain(stored) == json.loads(safe_json_dump(copy.deepcopy(expected)))


def _rows(stream_node) -> int:
    """Rows of a stream's event table (a composite stream node's ``internal`` part)."""
    parts = getattr(stream_node, "base", stream_node)
    if "internal" not in parts:
        return 0
    return len(parts["internal"].read(["seq_num"]))


def run_state(client, uid: str, expected) -> str:
    """Whether a run is in the target: ``"absent"``, ``"complete"`` or ``"partial"``.

    ``"complete"`` needs the same start and stop documents, the same streams and, per
    stream, as many table rows as ``expected.event_counts``. Anything else (no stop:
    the writer was killed before the end; different content) is ``"partial"``.

    >>> run_state(client, uid, source.expected(uid))   # doctest: +SKIP
    'absent'
    """
    if uid not in client:
        return "absent"
    node = client[uid]
    metadata = node.metadata
    stop = metadata.get("stop")
    if not _same(metadata.get("start", {}), expected.start):
        logger.info("run %s: start differs from the source", uid)
        return "partial"
    if expected.stop is None:  # left open on purpose: only start and streams can be checked
        return "partial" if stop else ("complete" if set(node) == set(expected.descriptors) else "partial")
    if not stop:
        logger.info("run %s: no stop document (a writer stopped before the end)", uid)
        return "partial"
    if not _same(stop, expected.stop):
        logger.info("run %s: stop differs from the source", uid)
        return "partial"
    streams = set(node)
    if streams != set(expected.descriptors):
        logger.info("run %s: streams %s, expected %s", uid, sorted(streams), sorted(expected.descriptors))
        return "partial"
    for stream, count in expected.event_counts.items():
        rows = _rows(node[stream])
        if rows != count:
            logger.info("run %s: stream %s holds %d rows, expected %d", uid, stream, rows, count)
            return "partial"
    return "complete"


def delete_run(client, uid: str) -> None:
    """Remove a run (e.g. a partial one) and everything under it from the target.

    Files of detectors registered as external assets are not touched; the data the
    writer stored itself (tables, arrays) is deleted. The server must allow deletes
    (see this module's notes).

    >>> delete_run(client, uid)   # doctest: +SKIP
    """
    if uid not in client:
        return
    try:
        client.delete_contents(uid, recursive=True, external_only=False)
    except Exception as err:
        raise MigrationError(
            f"Could not delete run {uid} from the target ({err!r}); the API key needs the "
            "'delete:node' scope, or delete it by hand and run the job again."
        ) from err
