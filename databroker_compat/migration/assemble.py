"""Document assembly: one legacy run as valid event-model documents, in emission order.

:class:`LegacyDocuments` reads a run's records from a
:class:`~databroker_compat.migration.records.LegacyRecords` store, page by page, and
yields the documents the RunEngine would have emitted: start, descriptors, then the
events of all streams merged by time, each resource and datum just before the first
event that needs it, stop last. Every fix it applies comes from :mod:`.legacy` and is
listed in its ``warnings``.
"""

from __future__ import annotations

import glob
import heapq
import logging
import operator
import os
import posixpath
from collections.abc import Iterator
from typing import Any

from . import legacy
from .records import LegacyRecords
from .writer import LEGACY_SPEC_TO_MIMETYPE

logger = logging.getLogger(__name__)

__all__ = ["LegacyDocuments", "SeqNums", "files_exist"]

Doc = dict[str, Any]
# (time, rank, name, doc): what the per-stream generators yield and heapq merges.
Item = tuple[float, int, str, Doc]


class SeqNums:
    """The ``seq_num`` values seen in a stream, in one bit each (a run of a million events
    costs 125 kB, not the ~60 MB of a set of ints); odd values (negative, huge, not an
    int) go to a set.

    >>> seen = SeqNums()
    >>> seen.add(3); 3 in seen, 4 in seen, "x" in seen
    (True, False, False)
    """

    _LIMIT = 1 << 32

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set[Any] = set()

    @classmethod
    def _bit(cls, value: Any) -> int | None:
        """The bit of ``value`` (3, 3.0, numpy.int64(3) share one), or None for the set."""
        if isinstance(value, float):
            if not value.is_integer():
                return None
            value = int(value)
        try:
            number = operator.index(value)
        except TypeError:
            return None
        return number if 0 <= number < cls._LIMIT else None

    def __contains__(self, value: Any) -> bool:
        bit = self._bit(value)
        if bit is not None:
            byte = bit >> 3
            return byte < len(self._bits) and bool(self._bits[byte] & (1 << (bit & 7)))
        return value in self._other

    def add(self, value: Any) -> None:
        """Remember ``value``."""
        bit = self._bit(value)
        if bit is not None:
            byte = bit >> 3
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            self._bits[byte] |= 1 << (bit & 7)
        else:
            self._other.add(value)


def files_exist(resource: Doc) -> bool:
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
        Extra resource spec -> MIME type entries; resources of other unknown specs are
        left out, with a warning.
    check_files : bool
        Leave out (with a warning) the resources whose files cannot be seen from here.

    Attributes
    ----------
    uid : str
    warnings : list of str
        Every fix applied, one line each, complete once iteration has ended.
    event_counts : dict
        Stream name -> events yielded (complete once iteration has ended).
    """

    def __init__(
        self,
        records: LegacyRecords,
        uid: str,
        *,
        close_open_runs: bool,
        spec_to_mimetype: dict[str, str] | None = None,
        check_files: bool = True,
    ) -> None:
        from bluesky_tiled_plugins.writing.tiled_writer import MIMETYPE_LOOKUP

        self.records = records
        self.uid = uid
        self.close_open_runs = close_open_runs
        self.check_files = check_files
        self._known_specs = {**MIMETYPE_LOOKUP, **LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})}
        self.warnings: list[str] = []
        self.event_counts: dict[str, int] = {}
        self._names: dict[str, str] = {}  # descriptor uid -> stream name
        self._emitted_resources: dict[Any, str | None] = {}  # stored ref -> written uid (None: unusable)
        self._emitted_datums: set[str] = set()
        self._bad_datums: set[str] = set()
        self._iterator = self._generate()

    def __iter__(self) -> LegacyDocuments:
        return self

    def __next__(self) -> tuple[str, Doc]:
        return next(self._iterator)

    # ------------------------------------------------------------------------------
    def _generate(self) -> Iterator[tuple[str, Doc]]:
        records = self.records
        uid = self.uid
        start_raw = records.start_record(uid)
        start = legacy.normalise_start(start_raw, self.warnings)

        streams = []
        for rec in records.descriptor_records(uid, start_raw["_id"]):
            pages = records.event_pages(uid, rec)
            first = next(pages, [])
            first_values: dict[str, Any] = {}
            for ev in first:
                for key, value in (ev.get("data") or {}).items():
                    if "timestamps" not in ev and isinstance(value, (list, tuple)) and len(value) == 2:
                        value = value[0]
                    if key not in first_values and value is not None:
                        first_values[key] = value
            desc = legacy.normalise_descriptor(rec, uid, first_values, self.warnings)
            streams.append((desc, first, pages))

        yield "start", start
        for desc, _, _ in streams:
            yield "descriptor", desc

        counters: dict[str, int] = {}
        last_time = None
        per_stream = [self._stream_items(desc, first, pages, counters) for desc, first, pages in streams]
        descriptors = [desc for desc, _, _ in streams]
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
            self.warnings.append(f"{n} event(s): {label}")
        for desc in descriptors:
            self.event_counts.setdefault(desc["name"], 0)

        stop = legacy.final_stop(
            uid,
            records.stop_record(uid, start_raw["_id"]),
            close_open_runs=self.close_open_runs,
            last_event_time=last_time,
            start_time=start["time"],
            num_events=self.event_counts,
            warnings=self.warnings,
        )
        if stop is not None:
            yield "stop", stop
        for line in self.warnings:
            logger.info("run %s: %s", uid, line)
        records.drop_prefetched([uid])

    def _stream_items(
        self, desc: Doc, first: list[Doc] | None, pages: Iterator[list[Doc]], counters: dict[str, int]
    ) -> Iterator[Item]:
        """(time, rank, name, doc) of one descriptor: assets (rank 0) before its events."""
        self._names[desc["uid"]] = desc["name"]
        external = [k for k, v in desc["data_keys"].items() if "external" in v]
        seen_seq = SeqNums()
        page, first = first, None  # the generator must not keep the first page alive
        while page:
            if external:
                yield from self._assets_for(page, external, counters)
            for raw in page:
                seq = raw.get("seq_num")
                if seq in seen_seq:
                    label = "duplicate seq_num dropped (the first by time is kept)"
                    counters[label] = counters.get(label, 0) + 1
                    continue
                seen_seq.add(seq)
                event = legacy.normalise_event(raw, desc, counters)
                for key in external:
                    if key in event["data"] and event["data"][key] in self._bad_datums:
                        del event["data"][key]
                        event["timestamps"].pop(key, None)
                        event.get("filled", {}).pop(key, None)
                        label = f"external value of {key!r} left out (datum, resource or file missing)"
                        counters[label] = counters.get(label, 0) + 1
                yield (event["time"], 1, "event", event)
            page = None  # drop this page before the next is read
            page = next(pages, None)

    def _assets_for(self, page: list[Doc], external: list[str], counters: dict[str, int]) -> Iterator[Item]:
        """Resources and datums the events of ``page`` need and that were not yet written."""
        ids = []
        for raw in page:
            data = raw.get("data") or {}
            for key in external:
                value = data.get(key)
                if isinstance(value, (list, tuple)) and "timestamps" not in raw and len(value) == 2:
                    value = value[0]
                if isinstance(value, str) and value not in self._emitted_datums:
                    if value not in self._bad_datums:
                        ids.append(value)
        if not ids:
            return
        when = page[0].get("time") or 0.0
        ids = list(dict.fromkeys(ids))
        found = self.records.datum_records(ids)
        for datum_id in ids:
            rec = found.get(datum_id)
            if rec is None:
                self._bad_datums.add(datum_id)
                self.warnings.append(f"datum {datum_id!r}: not found")
                continue
            ref = rec.get("resource")
            if ref not in self._emitted_resources:
                resource = self._resource(ref)
                self._emitted_resources[ref] = resource["uid"] if resource is not None else None
                if resource is not None:
                    yield (when, 0, "resource", resource)
            resource_uid = self._emitted_resources[ref]
            if resource_uid is None:
                self._bad_datums.add(datum_id)
                continue
            self._emitted_datums.add(datum_id)
            yield (when, 0, "datum", legacy.normalise_datum(rec, resource_uid))

    def _resource(self, ref: Any) -> Doc | None:
        rec = self.records.resource_record(ref, self.uid)
        if rec is None:
            self.warnings.append(f"resource {legacy.plain(ref)!r}: not found; its datums' values are left out")
            return None
        resource = legacy.normalise_resource(rec, self.uid)
        spec = resource["spec"].upper()
        if spec not in self._known_specs:
            self.warnings.append(
                f"resource {resource['uid']}: spec {resource['spec']!r} has no MIME type; "
                "its values are left out (give spec_to_mimetype={spec: mimetype} to migrate them)"
            )
            return None
        if self.check_files and not files_exist(resource):
            where = posixpath.join(resource["root"], resource["resource_path"].lstrip("/"))
            self.warnings.append(f"resource {resource['uid']}: files missing at {where!r}; its values are left out")
            return None
        return resource
