"""What the detector files say about a run's external keys, found before anything is written.

TiledWriter registers an external key of a stream as one array over the detector files,
one row per datum in the order the datums reach it, and readers give row *i* to the
*i*-th event. A datum, resource or file that is missing in the middle of a stream would
therefore shift every later frame onto the previous event. :func:`survey_stream` reads,
before the stream's descriptor is written, every event's datum, every resource and the
file each datum names (after the root map), and the first frame of each resource, and
decides per key:

- **external** (the writer registers the files): every event has its frame, or only
  events at the end of the stream lack one (they read as ``None``); the datums' rows are
  told to the writer exactly (:class:`KeyPlan` ``first_use``), the descriptor's shape
  and dtype corrected from the files;
- **inline** (the writer stores the frames as an array node): some event in the middle
  lacks its frame, or the datums cannot be registered in event order; every frame is
  read from the files and sent in its event, the missing ones as the fill value (NaN
  for floats, 0 for integers, False for booleans);
- an external key whose frames cannot be read here (an unsupported spec, file checks
  off) and cannot be registered in order keeps its frames only up to the first gap.

Frames whose shape or dtype differ between resources make the run fail
(:class:`FramesDisagree`): they cannot be written without reinterpreting bytes.
"""

from __future__ import annotations

import heapq
import logging
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import MigrationError
from . import frames, legacy
from .descriptors import fill_value
from .fixes import DTYPE, INLINE, MISSING_FRAMES, RESOURCE, SHAPE, FixLog, describe_seq_nums
from .records import LegacyRecords
from .seqnums import SeqNums
from .writer import writer_datum_shape

logger = logging.getLogger(__name__)

__all__ = ["FramesDisagree", "KeyPlan", "survey_stream"]

_CHUNK = 1000  # datum ids per query


class FramesDisagree(MigrationError):
    """The frames of one external key differ in shape or dtype: the run is not written.

    ``stream``, ``key`` and ``frames`` (resource uid -> (shape, dtype)) say where.
    """


@dataclass
class KeyPlan:
    """How one external key of one stream is written; filled by :func:`survey_stream`.

    Attributes
    ----------
    stream, key : str
    rows : int
        Events of the stream (after duplicate ``seq_num`` values are dropped).
    missing : dict
        ``seq_num`` -> why that event has no frame.
    inline : bool
        The frames are read here and sent in the events (an array node), not registered.
    left_out : set of (descriptor uid, seq_num)
        Events whose value is removed (external) or replaced by the fill value (inline).
    resources : dict
        Stored resource reference -> normalised resource, or None when unusable.
    first_use : dict
        (resource uid, descriptor uid) -> the row of its first datum (external, readable specs).
    shape, dtype : tuple, str or None
        The frames' shape and dtype, when they were read.
    fill : Any
        What a missing frame reads as (inline keys).
    """

    stream: str
    key: str
    rows: int = 0
    missing: dict[int, str] = field(default_factory=dict)
    inline: bool = False
    left_out: set[tuple[str, int]] = field(default_factory=set)
    resources: dict[Any, dict | None] = field(default_factory=dict)
    first_use: dict[tuple[str, str], int] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    fill: Any = None

    def fill_frame(self) -> Any:
        """An array of the fill value, in the frames' shape and dtype (inline keys)."""
        import numpy

        return numpy.full(self.shape or (), self.fill, dtype=self.dtype)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (0 when unknown)."""
        import math

        import numpy

        if self.shape is None or self.dtype is None:
            return 0
        return math.prod(self.shape) * numpy.dtype(self.dtype).itemsize


def _shown(fill: Any) -> Any:
    """A fill value as the report and the notes show it (NaN as the string ``"NaN"``: JSON has no NaN)."""
    return "NaN" if isinstance(fill, float) and fill != fill else fill


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def _kept_events(records: LegacyRecords, uid: str, raw: dict, desc: dict, keys: list[str]) -> Iterator[tuple]:
    """(time, descriptor uid, seq_num, {key: value}) of the events the run writes, in order."""
    seen = SeqNums()
    for page in records.event_pages(uid, raw):
        for rec in page:
            seq = rec.get("seq_num")
            if seq in seen:
                continue
            seen.add(seq)
            event = legacy.normalise_event(rec, desc, {})
            yield event["time"], desc["uid"], event["seq_num"], {k: event["data"].get(k) for k in keys}


class _Survey:
    """The survey of one key: rows, datums, resources, files, first frames."""

    def __init__(self, records: LegacyRecords, uid: str, plan: KeyPlan, *, root_map: frames.RootMap,
                 check_files: bool, known_specs: Any, log: FixLog) -> None:
        self.records, self.uid, self.plan = records, uid, plan
        self.root_map, self.check_files, self.known_specs, self.log = root_map, check_files, known_specs, log
        self.why: dict[Any, str] = {}  # stored resource ref -> why its datums have no frame
        self.first_frame: dict[str, tuple[tuple[int, ...], str]] = {}  # resource uid -> (shape, dtype)
        self.exists: dict[str, bool] = {}
        self.reasons: list[str | None] = []  # per row: why it has no frame, or None
        self.points: list[tuple[Any, int | None]] = []  # per row: (stored resource ref, point in its files)
        self.irregular: int | None = None  # the first row whose datum an earlier row used already

    def resource(self, ref: Any) -> dict | None:
        plan = self.plan
        if ref in plan.resources:
            return plan.resources[ref]
        rec = self.records.resource_record(ref, self.uid)
        resource = None
        if rec is None:
            self.why[ref] = f"resource {legacy.plain(ref)!r} not found"
        else:
            resource = legacy.normalise_resource(rec, self.uid, self.log)
            spec = resource["spec"]
            if spec.upper() not in self.known_specs:
                self.why[ref] = (f"resource spec {spec!r} has no MIME type "
                                 "(give spec_to_mimetype={spec: mimetype} to migrate it)")
                resource = None
            elif self.check_files and not frames.is_supported(resource):
                mapped = dict(resource, root="", resource_path=frames.resource_directory(resource, self.root_map))
                if not frames.files_exist(mapped):
                    self.why[ref] = f"files missing at {mapped['resource_path']!r}"
                    resource = None
                else:
                    logger.info("run %s: spec %r is not read by the migration; %s/%s frames are not checked",
                                self.uid, spec, plan.stream, plan.key)
        plan.resources[ref] = resource
        return resource

    def file_missing(self, resource: dict, datum_kwargs: dict) -> str | None:
        """The first file a datum needs that is not there (after the root map), or None."""
        for name in frames.datum_files(resource, datum_kwargs, self.root_map):
            if name not in self.exists:
                self.exists[name] = os.path.exists(name)
            if not self.exists[name]:
                return name
        return None

    def read_first(self, resource: dict, datum_kwargs: dict) -> str | None:
        """Read a resource's first frame (shape, dtype); why it cannot be read, or None."""
        if resource["uid"] in self.first_frame:
            return None
        try:
            value = frames.read_datum(resource, datum_kwargs, self.root_map)
        except Exception as err:  # a truncated or corrupt file: its frames cannot be migrated
            return f"files unreadable ({type(err).__name__}: {err})"
        self.first_frame[resource["uid"]] = (tuple(value.shape), value.dtype.str)
        return None


def survey_stream(
    records: LegacyRecords,
    uid: str,
    streams: list[tuple[dict, dict]],
    *,
    root_map: frames.RootMap,
    check_files: bool,
    known_specs: Any,
    log: FixLog,
) -> dict[str, KeyPlan]:
    """Plans for the external keys of one stream; corrects the stream's descriptors in place.

    Parameters
    ----------
    records : LegacyRecords
    uid : str
        The start uid.
    streams : list of (descriptor, record)
        The stream's normalised descriptors and their stored records, in time order.
    root_map : RootMap
        Where the files are now.
    check_files : bool
        Look at the files (off: only the database is checked, frames are not read).
    known_specs : container
        Resource specs the writer has a MIME type for.
    log : FixLog
        Where every fix is recorded.

    Raises
    ------
    FramesDisagree
        The frames of a key differ in shape or dtype between resources.
    """
    first = streams[0][0]
    keys = [k for k, v in first["data_keys"].items() if "external" in v]
    if not keys:
        return {}
    stream = first["name"]
    rows: list[tuple[str, int, dict[str, Any]]] = []
    merged = heapq.merge(*(_kept_events(records, uid, raw, desc, keys) for desc, raw in streams), key=lambda e: e[0])
    for _, desc_uid, seq, values in merged:
        rows.append((desc_uid, seq, values))
    plans = {}
    for key in keys:
        plan = KeyPlan(stream, key, rows=len(rows))
        survey = _Survey(records, uid, plan, root_map=root_map, check_files=check_files, known_specs=known_specs,
                         log=log)
        _survey_key(survey, rows)
        _decide(survey, rows, [desc for desc, _ in streams])
        plans[key] = plan
    return plans


def _survey_key(survey: _Survey, rows: list[tuple[str, int, dict[str, Any]]]) -> None:
    """Each row's datum, resource, files and point: ``survey.reasons``, ``points``, ``irregular``."""
    plan = survey.plan
    ids = list(dict.fromkeys(v[plan.key] for _, _, v in rows if isinstance(v.get(plan.key), str)))
    datums: dict[str, dict] = {}
    for i in range(0, len(ids), _CHUNK):
        datums.update(survey.records.datum_records(ids[i:i + _CHUNK]))
    used: set[str] = set()
    for row, (_, _, values) in enumerate(rows):
        datum_id = values.get(plan.key)
        reason: str | None = None
        ref: Any = None
        point: int | None = None
        if not isinstance(datum_id, str):
            reason = "the event holds no datum"
        else:
            if datum_id in used and survey.irregular is None:
                survey.irregular = row
            used.add(datum_id)
            rec = datums.get(datum_id)
            if rec is None:
                reason = "datum not found"
            else:
                ref = rec.get("resource")
                resource = survey.resource(ref)
                kwargs = legacy.plain(rec.get("datum_kwargs") or {})
                if resource is None:
                    reason = survey.why[ref]
                elif survey.check_files and frames.is_supported(resource):
                    try:
                        point = frames.datum_point(kwargs)
                        gone = survey.file_missing(resource, kwargs)
                    except (MigrationError, KeyError, TypeError, ValueError) as err:
                        reason, gone = f"datum unusable ({err})", None
                    if gone is not None:
                        reason = f"files missing under {posixpath.dirname(gone)!r}"
                    elif reason is None:
                        reason = survey.read_first(resource, kwargs)
                        if reason is not None:
                            survey.why[ref] = reason
                            plan.resources[ref] = None
        survey.reasons.append(reason)
        survey.points.append((ref, point))
    v0 = sum(1 for rec in datums.values() if "datum_id" not in rec)
    if v0:
        survey.log.add(RESOURCE, f"{plan.stream}/{plan.key}: {v0} datum(s) keyed 'event_id' (filestore v0) read as "
                       "datum_id", stream=plan.stream, key=plan.key)


def _irregular_row(survey: _Survey, rows: list[tuple[str, int, dict[str, Any]]]) -> int | None:
    """The first row the writer would not register as its own event's frame (None: all in order).

    TiledWriter registers a key's frames over the files of one resource: a second
    resource of the same key is appended under the first one's file names (its
    multipart consolidators keep the first URI), and HDF5 frames are appended in file
    order. So a key stays external only when its datums name one resource, each
    descriptor's datums in one block (the writer's ``indices`` then name each datum's own
    file), and, for HDF5, one descriptor whose datums are the file's points 0, 1, 2, ...
    """
    plan = survey.plan
    candidates = [] if survey.irregular is None else [survey.irregular]
    order: list[tuple[str, str]] = []
    for row, ((desc_uid, _, _), (ref, point), reason) in enumerate(zip(rows, survey.points, survey.reasons, strict=True)):
        resource = plan.resources.get(ref) if reason is None else None
        if resource is None or point is None:
            continue
        sres = (resource["uid"], desc_uid)
        if order and sres[0] != order[0][0]:
            candidates.append(row)  # a second resource of this key
        elif sres not in plan.first_use:
            plan.first_use[sres] = row
            order.append(sres)
        elif order[-1] != sres:
            candidates.append(row)  # the descriptors' datums interleave
        if resource["spec"] == "AD_HDF5" and (len(order) > 1 or point != row):
            candidates.append(row)
    return min(candidates, default=None)


def _decide(survey: _Survey, rows: list[tuple[str, int, dict[str, Any]]], descriptors: list[dict]) -> None:
    """External or inline, what is left out, descriptor corrections; every fix recorded."""
    plan, log = survey.plan, survey.log
    reasons = survey.reasons
    shapes = set(survey.first_frame.values())
    if len(shapes) > 1:
        detail = {r: f"{s} {d}" for r, (s, d) in survey.first_frame.items()}
        raise FramesDisagree(
            f"Stream {plan.stream!r}, key {plan.key!r}: the frames differ between resources ({detail}); "
            "they cannot be written without reinterpreting them. Fix or split the run in the source, "
            "or leave it out of the job.", stream=plan.stream, key=plan.key, frames=detail,
        )
    if shapes:
        ((shape, dtype),) = shapes
        plan.shape, plan.dtype = shape, dtype
    irregular = _irregular_row(survey, rows)
    bad = [row for row, reason in enumerate(reasons) if reason is not None]
    cut = min([*bad, *([irregular] if irregular is not None else [])], default=None)
    readable = survey.check_files and plan.shape is not None and all(
        reason is not None or frames.is_supported(plan.resources.get(ref) or {})
        for reason, (ref, _) in zip(reasons, survey.points, strict=True)
    )
    if cut is not None and not (irregular is None and bad == list(range(cut, len(rows)))):
        if readable:
            plan.inline = True
        else:  # cannot be read here: keep the frames up to the first gap, never shift the rest
            for row in range(cut, len(rows)):
                if reasons[row] is None:
                    reasons[row] = (f"left out after seq_num {rows[cut][1]}: its frames cannot be read here "
                                    "to keep them with their events")
    for row, reason in enumerate(reasons):
        if reason is not None:
            desc_uid, seq, _ = rows[row]
            plan.missing[seq] = reason
            plan.left_out.add((desc_uid, seq))
    if plan.inline:
        plan.first_use.clear()
    _correct_descriptors(plan, descriptors, log)
    if plan.missing:
        _note_missing(plan, log)


def _correct_descriptors(plan: KeyPlan, descriptors: list[dict], log: FixLog) -> None:
    import numpy

    if plan.shape is None or plan.dtype is None:
        return
    where = f"{plan.stream}/{plan.key}"
    resource = next((r for r in plan.resources.values() if r is not None), {})
    multiplier = frames.frame_per_point(resource) if "frame_per_point" in (resource.get("resource_kwargs") or {}) else None
    dtype = numpy.dtype(plan.dtype)
    spec = descriptors[0]["data_keys"][plan.key]
    declared = list(spec.get("shape") or [])
    declared_dtype = spec.get("dtype_numpy") or spec.get("dtype_str")
    if plan.inline:
        plan.fill = fill_value(dtype)
        log.add(INLINE, f"{where}: written inline (an array node holding every frame, read from the files) so that "
                f"each event keeps its own frame; shape {list(plan.shape)}, dtype {dtype.name}; missing frames read "
                f"as {_shown(plan.fill)}", stream=plan.stream, key=plan.key, fill=_shown(plan.fill))
    for desc in descriptors:
        spec = desc["data_keys"].get(plan.key)
        if spec is None:
            continue
        if plan.inline:
            spec.pop("external", None)
            spec.update(dtype="array", shape=list(plan.shape), dtype_numpy=dtype.str)
            spec.pop("dtype_str", None)
            continue
        if _squeezed(writer_datum_shape(spec.get("shape") or [], multiplier)) != _squeezed(plan.shape):
            spec["shape"] = list(plan.shape)
        effective = spec.get("dtype_numpy") or spec.get("dtype_str") or "<f8"
        if numpy.dtype(effective) != dtype:
            spec["dtype_numpy"] = dtype.str
            spec.pop("dtype_str", None)
    if list(plan.shape) != declared and _squeezed(writer_datum_shape(declared, multiplier)) != _squeezed(plan.shape):
        log.add(SHAPE, f"{where}: declared shape {declared}, the files hold frames of shape {list(plan.shape)}; "
                "the descriptor says what the files hold", stream=plan.stream, key=plan.key,
                declared=declared, files=list(plan.shape))
    effective = declared_dtype or "<f8"
    if numpy.dtype(effective) != dtype:
        gave = repr(declared_dtype) if declared_dtype else "none"
        log.add(DTYPE, f"{where}: dtype_numpy {dtype.str!r} ({dtype.name}) from the files; the descriptor gave {gave}, "
                f"so frames would have come back as {numpy.dtype(effective).name}", stream=plan.stream, key=plan.key,
                declared=declared_dtype, files=dtype.str)


def _note_missing(plan: KeyPlan, log: FixLog) -> None:
    by_reason: dict[str, list[int]] = {}
    for seq, reason in plan.missing.items():
        by_reason.setdefault(reason, []).append(seq)
    parts = [f"{reason} (seq_num {describe_seq_nums(seqs)})" for reason, seqs in by_reason.items()]
    reads = f"those events read as {_shown(plan.fill)}" if plan.inline else "those events have no frame (read as None)"
    log.add(
        MISSING_FRAMES,
        f"{plan.stream}/{plan.key} arrived without {len(plan.missing)} of {plan.rows} frames: "
        f"{'; '.join(parts)}; {reads}",
        stream=plan.stream, key=plan.key, seq_nums=sorted(plan.missing),
        frames=plan.rows, fill=_shown(plan.fill) if plan.inline else None,
        reasons={reason: sorted(seqs) for reason, seqs in by_reason.items()},
    )
