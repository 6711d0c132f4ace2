"""Document assembly: one legacy run as valid event-model documents, in emission order.

:class:`LegacyDocuments` reads a run's records from a
:class:`~databroker_compat.migration.records.LegacyRecords` store, page by page, and
yields the documents the RunEngine would have emitted: start, descriptors, then the
events of all streams merged by time, each resource and datum just before the first
event that needs it, stop last. Before the first document it surveys the external keys
of each stream against their files (:mod:`.survey`), so that every event keeps its own
frame. Every fix it applies is recorded (:mod:`.fixes`): ``warnings`` has one line per
fix, ``fixes`` the fixes themselves, ``missing_frames`` the events that arrived without
their frame.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from typing import Any

from . import descriptors, frames, legacy
from .fixes import EVENT, VALUE, Fix, FixLog
from .records import LegacyRecords
from .seqnums import SeqNums
from .survey import FramesDisagree, KeyPlan, survey_stream
from .values import conversion_note
from .writer import LEGACY_SPEC_TO_MIMETYPE, WriterSettings

logger = logging.getLogger(__name__)

__all__ = ["LegacyDocuments", "SeqNums"]

Doc = dict[str, Any]
# (time, rank, name, doc): what the per-stream generators yield and heapq merges.
Item = tuple[float, int, str, Doc]


class LegacyDocuments:
    """The documents of one legacy run; iterate once (see ``LegacySource.documents``).

    Parameters
    ----------
    records : LegacyRecords
        Where the run's records are read.
    uid : str
        The start uid.
    close_open_runs : bool
        A run with no stop document gets one with ``exit_status="unknown"``; otherwise
        it stays open.
    spec_to_mimetype : dict, optional
        Extra resource spec -> MIME type entries; frames of resources of other unknown
        specs are missing frames.
    check_files : bool
        Check each datum's files (after ``root_map``) and read each resource's first
        frame; off, only the databases are checked.
    root_map : RootMap, optional
        Where the files of old path prefixes are now (the paths written to Tiled).
    read_frames : bool
        Read the frames of keys written inline (a dry run does not: their values are None).

    Attributes
    ----------
    uid : str
    warnings : list of str
        Every fix applied, one line each, complete once iteration has ended.
    fixes : list of Fix
        The same fixes, with their kind, stream, key and ``seq_num`` values.
    missing_frames : dict
        Stream -> key -> sorted ``seq_num`` values of the events that arrived without their
        frame (complete before the first document is yielded).
    inline_keys : dict
        Stream -> key -> fill value, for the external keys written inline (their frames in
        the events, an array node in Tiled); a missing frame of such a key reads as an array
        of the fill value. A missing frame of a key not listed here reads as None.
    event_counts : dict
        Stream name -> events yielded (complete once iteration has ended).
    writer_settings : WriterSettings
        What the writer of this run must be told (see :func:`~.writer.write_run`).
    """

    def __init__(
        self,
        records: LegacyRecords,
        uid: str,
        *,
        close_open_runs: bool,
        spec_to_mimetype: dict[str, str] | None = None,
        check_files: bool = True,
        root_map: frames.RootMap | None = None,
        read_frames: bool = True,
    ) -> None:
        from bluesky_tiled_plugins.writing.tiled_writer import MIMETYPE_LOOKUP

        self.records = records
        self.uid = uid
        self.close_open_runs = close_open_runs
        self.check_files = check_files
        self.root_map = root_map if root_map is not None else frames.RootMap()
        self.read_frames = read_frames
        self._known_specs = {**MIMETYPE_LOOKUP, **LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})}
        self.log = FixLog()
        self.warnings: list[str] = self.log.lines
        self.missing_frames: dict[str, dict[str, list[int]]] = {}
        self.inline_keys: dict[str, dict[str, Any]] = {}
        self.event_counts: dict[str, int] = {}
        self.writer_settings = WriterSettings(root_map=self.root_map)
        self._plans: dict[str, dict[str, KeyPlan]] = {}  # stream -> key -> plan
        self._absent: dict[str, dict[str, Any]] = {}  # descriptor uid -> what a lacking event holds
        self._seen: dict[str, int] = {}  # value conversions in events
        self._names: dict[str, str] = {}  # descriptor uid -> stream name
        self._emitted_resources: set[Any] = set()  # stored refs whose resource was yielded
        self._emitted_datums: set[str] = set()
        self._iterator = self._generate()

    @property
    def fixes(self) -> list[Fix]:
        """Every fix applied so far (complete once iteration has ended)."""
        return self.log.fixes

    def __iter__(self) -> LegacyDocuments:
        return self

    def __next__(self) -> tuple[str, Doc]:
        return next(self._iterator)

    # ------------------------------------------------------------------------------
    def _generate(self) -> Iterator[tuple[str, Doc]]:
        records = self.records
        uid = self.uid
        start_raw = records.start_record(uid, self.log)
        start = legacy.normalise_start(start_raw, self.log)

        streams = []
        for rec in records.descriptor_records(uid, start_raw["_id"], self.log):
            pages = records.event_pages(uid, rec)
            first = next(pages, [])
            first_values: dict[str, Any] = {}
            for ev in first:
                for key, value in (ev.get("data") or {}).items():
                    if "timestamps" not in ev and isinstance(value, (list, tuple)) and len(value) == 2:
                        value = value[0]
                    if key not in first_values and value is not None:
                        first_values[key] = value
            desc = descriptors.normalise_descriptor(rec, uid, first_values, self.log)
            streams.append((desc, first, pages, rec))
        self._survey(streams)

        yield "start", start
        for desc, _, _, _ in streams:
            yield "descriptor", desc

        counters: dict[str, int] = {}
        last_time = None
        per_stream = [self._stream_items(desc, first, pages, counters) for desc, first, pages, _ in streams]
        descriptor_docs = [desc for desc, _, _, _ in streams]
        # Only the stream generators hold the first pages now, and drop each once read.
        streams.clear()
        del first
        merged = heapq.merge(*per_stream, key=lambda item: (item[0], item[1]))
        del per_stream
        for _, _, name, doc in merged:
            if name == "event":
                stream = self._names[doc["descriptor"]]
                self.event_counts[stream] = self.event_counts.get(stream, 0) + 1
                last_time = doc["time"] if last_time is None else max(last_time, doc["time"])
            yield name, doc
        for label, n in counters.items():
            self.log.add(EVENT, f"{n} event(s): {label}")
        line = conversion_note("events", self._seen)
        if line is not None:
            self.log.add(VALUE, line)
        for desc in descriptor_docs:
            self.event_counts.setdefault(desc["name"], 0)

        stop = legacy.final_stop(
            uid,
            records.stop_record(uid, start_raw["_id"]),
            close_open_runs=self.close_open_runs,
            last_event_time=last_time,
            start_time=start["time"],
            num_events=self.event_counts,
            warnings=self.log,
        )
        if stop is not None:
            yield "stop", stop
        for line in self.warnings:
            logger.info("run %s: %s", uid, line)
        records.drop_prefetched([uid])

    def _survey(self, streams: list[tuple[Doc, Any, Any, Doc]]) -> None:
        """Plan every external key of every stream (see :mod:`.survey`); the descriptors are corrected."""
        by_name: dict[str, list[tuple[Doc, Doc]]] = {}
        for desc, _, _, rec in streams:
            by_name.setdefault(desc["name"], []).append((desc, rec))
        settings = self.writer_settings
        for name, group in by_name.items():
            plans = survey_stream(
                self.records, self.uid, group, root_map=self.root_map, check_files=self.check_files,
                known_specs=self._known_specs, log=self.log,
            )
            self._plans[name] = plans
            for key, plan in plans.items():
                if plan.missing:
                    self.missing_frames.setdefault(name, {})[key] = sorted(plan.missing)
                if plan.inline:
                    self.inline_keys.setdefault(name, {})[key] = plan.fill
                    settings.inline_frame_bytes += plan.frame_bytes
                    if not descriptors.stored_as_array(group[0][0]["data_keys"][key]):
                        settings.max_array_size = 0  # small frames would go to the table otherwise
        for desc, _, _, _ in streams:
            absent = descriptors.absent_values(desc)
            for key in self._plans.get(desc["name"], {}):
                absent.pop(key, None)
            self._absent[desc["uid"]] = absent

    def _stream_items(
        self, desc: Doc, first: list[Doc] | None, pages: Iterator[list[Doc]], counters: dict[str, int]
    ) -> Iterator[Item]:
        """(time, rank, name, doc) of one descriptor: assets (rank 0) before its events."""
        self._names[desc["uid"]] = desc["name"]
        plans = self._plans.get(desc["name"], {})
        external = [k for k, p in plans.items() if not p.inline]
        inline = [k for k, p in plans.items() if p.inline]
        unplanned = [k for k, v in desc["data_keys"].items() if "external" in v and k not in plans]
        absent = self._absent.get(desc["uid"])
        seen_seq = SeqNums()
        page, first = first, None  # the generator must not keep the first page alive
        while page:
            kept = []
            for raw in page:
                seq = raw.get("seq_num")
                if seq in seen_seq:
                    label = "duplicate seq_num dropped (the first by time is kept)"
                    counters[label] = counters.get(label, 0) + 1
                    continue
                seen_seq.add(seq)
                event = legacy.normalise_event(raw, desc, counters, absent=absent, seen=self._seen)
                for key in unplanned:  # an external key the stream's first descriptor lacks: the writer drops it
                    if _drop(event, key):
                        label = f"values of external key {key!r}, declared only by a later descriptor, dropped"
                        counters[label] = counters.get(label, 0) + 1
                kept.append(event)
            page = None  # drop this page before the next is read
            if kept and external:
                yield from self._assets_for(desc, kept, plans, external)
            if kept and inline:
                self._fill_inline(desc, kept, plans, inline)
            for event in kept:
                yield (event["time"], 1, "event", event)
            kept = []
            page = next(pages, None)

    def _assets_for(self, desc: Doc, kept: list[Doc], plans: dict[str, KeyPlan], keys: list[str]) -> Iterator[Item]:
        """Resources and datums the events of ``kept`` need and that were not yet written."""
        wanted: list[tuple[str, KeyPlan]] = []
        for event in kept:
            for key in keys:
                plan = plans[key]
                if (desc["uid"], event["seq_num"]) in plan.left_out:
                    _drop(event, key)
                    continue
                value = event["data"].get(key)
                if isinstance(value, str) and value not in self._emitted_datums:
                    wanted.append((value, plan))
        if not wanted:
            return
        when = kept[0]["time"]
        found = self.records.datum_records(list(dict.fromkeys(datum_id for datum_id, _ in wanted)))
        for datum_id, plan in wanted:
            if datum_id in self._emitted_datums:
                continue
            rec = found.get(datum_id)
            resource = plan.resources.get(rec.get("resource")) if rec is not None else None
            if rec is None or resource is None:
                raise FramesDisagree(
                    f"Datum {datum_id!r} of {plan.stream}/{plan.key} was found when the run's files were surveyed "
                    "and is gone now: the source changed during the migration; migrate the run again.",
                    stream=plan.stream, key=plan.key, datum=datum_id,
                )
            ref = rec.get("resource")
            if ref not in self._emitted_resources:
                self._emitted_resources.add(ref)
                yield (when, 0, "resource", resource)
            datum = legacy.normalise_datum(rec, resource["uid"])
            first_use = plan.first_use.get((resource["uid"], desc["uid"]))
            if first_use is not None and self.read_frames:
                self.writer_settings.datum_rows[datum_id] = first_use + frames.datum_point(datum["datum_kwargs"])
            self._emitted_datums.add(datum_id)
            yield (when, 0, "datum", datum)

    def _fill_inline(self, desc: Doc, kept: list[Doc], plans: dict[str, KeyPlan], keys: list[str]) -> None:
        """Put each event's frame (read from the files) or the fill value in its data."""
        for key in keys:
            plan = plans[key]
            ids = [event["data"].get(key) for event in kept if (desc["uid"], event["seq_num"]) not in plan.left_out]
            found = self.records.datum_records(list(dict.fromkeys(ids))) if self.read_frames and ids else {}
            fill = plan.fill_frame() if self.read_frames else None
            for event in kept:
                value = None
                if (desc["uid"], event["seq_num"]) in plan.left_out:
                    value = fill
                elif self.read_frames:
                    value = self._read_frame(plan, found.get(event["data"].get(key)), event["seq_num"])
                event["data"][key] = value
                event["timestamps"].setdefault(key, event["time"])
                event.get("filled", {}).pop(key, None)

    def _read_frame(self, plan: KeyPlan, rec: Doc | None, seq_num: int) -> Any:
        resource = plan.resources.get(rec.get("resource")) if rec is not None else None
        if rec is None or resource is None:
            raise FramesDisagree(
                f"The datum of {plan.stream}/{plan.key} seq_num {seq_num} was found when the run's files were "
                "surveyed and is gone now: the source changed during the migration; migrate the run again.",
                stream=plan.stream, key=plan.key, seq_num=seq_num,
            )
        frame = frames.read_datum(resource, legacy.plain(rec.get("datum_kwargs") or {}), self.root_map)
        if tuple(frame.shape) != plan.shape or frame.dtype.str != plan.dtype:
            raise FramesDisagree(
                f"{plan.stream}/{plan.key} seq_num {seq_num}: a frame of shape {tuple(frame.shape)} and dtype "
                f"{frame.dtype.str}, where the first frame of each resource has {plan.shape} {plan.dtype}; "
                "the frames cannot be written without reinterpreting them.",
                stream=plan.stream, key=plan.key, seq_num=seq_num,
            )
        return frame


def _drop(event: Doc, key: str) -> bool:
    """Remove ``key`` from an event (data, timestamps, filled); whether it was there."""
    if key not in event["data"]:
        return False
    del event["data"][key]
    event["timestamps"].pop(key, None)
    event.get("filled", {}).pop(key, None)
    return True
