"""``LegacySource``: runs read from the legacy MongoDB layouts of databroker.

Two generations are read, and mixtures of them (facilities patched their databases):

- ``"mongo_normalized"``: databroker v1 / suitcase-mongo, collections ``run_start``,
  ``run_stop``, ``event_descriptor``, ``event`` (metadatastore) and ``resource``,
  ``datum`` (asset registry, the same or a separate database);
- ``"metadatastore_v0"``: descriptors and stops that point at the start's ObjectId
  (``run_start_id``), events that point at the descriptor's ObjectId
  (``descriptor_id``) and hold ``data={key: [value, timestamp]}``; with filestore v0
  assets (resources without ``uid``/``root``, datums keyed ``event_id`` whose
  ``resource`` is an ObjectId).

Reads never write to MongoDB, use no index the writers may not have created, and
page through every collection by ``(time, _id)`` ranges, so that a run of any size
streams in pages of ``page_size`` documents.
"""

from __future__ import annotations

import datetime
import glob
import heapq
import logging
import operator
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..exceptions import MigrationError, RunNotFound
from . import legacy

logger = logging.getLogger(__name__)

__all__ = ["LegacyDocuments", "LegacySource", "RunExpectation"]

_ASC = 1
_DESC = -1


@dataclass
class RunExpectation:
    """What a run should look like in Tiled once migrated.

    Attributes
    ----------
    uid : str
        The start uid.
    start : dict
        The start document as it is written (normalised).
    stop : dict or None
        The stop document as it is written (normalised or synthesised), ``None`` when the
        run has no stop and open runs are left open.
    descriptors : dict
        Stream name -> descriptor uids, in time order.
    event_counts : dict
        Stream name -> number of events written (duplicates of a ``seq_num`` removed).
    warnings : list of str
        What is known without reading the events: missing stop, duplicate events,
        defaulted stream names. The full list comes from :class:`LegacyDocuments`.
    """

    uid: str
    start: dict
    stop: dict | None
    descriptors: dict[str, list[str]]
    event_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def _epoch(value: Any, name: str) -> float | None:
    """``since``/``until`` as epoch seconds: numbers, datetimes, ISO strings (UTC if naive)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not a date; give an ISO 8601 string such as '2017-03-01' "
                "or '2017-03-01T12:00:00+00:00', a datetime, or epoch seconds."
            ) from None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    raise ValueError(f"{name}={value!r}: expected a date string, a datetime or epoch seconds.")


def _paged(collection, query: dict, page_size: int, projection: dict | None = None) -> Iterator[list[dict]]:
    """Pages of ``collection.find(query)`` in time order, by range queries.

    Each page is a new query ``time >= last time``, minus the ``_id`` already read at
    that time: a plain conjunction, which MongoDB serves from a ``time`` index when
    there is one and which mock databases evaluate quickly. No cursor stays open
    between pages, so a killed job leaves nothing behind on the server.
    """
    last_time = None
    seen_at_last: list = []
    while True:
        where = dict(query)
        if last_time is not None:
            after = {"time": {"$gte": last_time}, "_id": {"$nin": seen_at_last}}
            where = {"$and": [query, after]} if {"time", "_id", "$and"} & set(query) else {**query, **after}
        cursor = collection.find(where, projection).sort([("time", _ASC)]).limit(page_size)
        page = list(cursor)
        page.sort(key=lambda doc: (doc.get("time") or 0.0, doc["_id"]))  # ties in a stable order
        if not page:
            return
        yield page
        if len(page) < page_size:
            return
        time = page[-1].get("time")
        at_time = [doc["_id"] for doc in page if doc.get("time") == time]
        seen_at_last = (seen_at_last + at_time) if time == last_time else at_time
        last_time = time
        del page  # not alive while the next page is read: one page in memory at a time


class LegacySource:
    """Runs stored in MongoDB by databroker v0/v1 (metadatastore, filestore, asset registry).

    Parameters
    ----------
    metadatastore : pymongo.database.Database
        The database holding ``run_start``, ``run_stop``, ``event_descriptor``, ``event``
        (any pymongo-compatible object, e.g. ``mongomock``).
    assets : pymongo.database.Database, optional
        The database holding ``resource`` and ``datum``; by default ``metadatastore``.
    name : str, optional
        A label for reports and logs; by default the database name.
    page_size : int, optional
        Events per read (keyword only; default 10,000). Memory use grows with it; with
        ``mongomock`` larger pages are faster (each read scans the collection).
    check_files : bool, optional
        Check that the files of each resource exist before the resource is written
        (keyword only; default True). Turn it off only when the migrating machine cannot
        see the detector storage that the Tiled server reads.

    Examples
    --------
    >>> import mongomock                                            # doctest: +SKIP
    >>> source = LegacySource(mongomock.MongoClient()["mds"])        # doctest: +SKIP
    >>> for uid in source.find_run_uids(since="2017-01-01"):         # doctest: +SKIP
    ...     docs = list(source.documents(uid))
    """

    def __init__(
        self,
        metadatastore,
        assets=None,
        *,
        name: str | None = None,
        page_size: int = 10_000,
        check_files: bool = True,
    ):
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size!r}.")
        self._mds = metadatastore
        self._assets = metadatastore if assets is None else assets
        self.name = name or getattr(metadatastore, "name", "legacy")
        self.page_size = int(page_size)
        self.check_files = check_files
        # How another process opens this source (a ``MongoSpec``); None: only here.
        self.spec = None
        # Records read ahead by prefetch(), by start uid; documents() drops its run's.
        self._prefetched: dict[str, dict] = {}
        self.layout = self._detect_layout()
        logger.info("Legacy source %s: layout %s", self.name, self.layout)

    @classmethod
    def from_uris(
        cls, metadatastore_uri: str, assets_uri: str | None = None, *, name: str | None = None, **kwargs
    ) -> "LegacySource":
        """Connect with pymongo; each URI must name its database (``mongodb://host/mds``).

        >>> LegacySource.from_uris("mongodb://localhost:27017/metadatastore")   # doctest: +SKIP
        """
        import pymongo

        def database(uri: str):
            client = pymongo.MongoClient(uri)
            try:
                return client.get_database()
            except pymongo.errors.ConfigurationError:
                raise ValueError(
                    "The MongoDB URI names no database; add it to the path, e.g. "
                    "mongodb://host:27017/metadatastore"
                ) from None

        from .connect import MongoSpec

        mds = database(metadatastore_uri)
        assets = database(assets_uri) if assets_uri else None
        source = cls(mds, assets, name=name, **kwargs)
        # What a worker process of a distributed job opens its own connection from.
        source.spec = MongoSpec(metadatastore_uri, assets_uri, name, tuple(sorted(kwargs.items())))
        return source

    # -- layout -------------------------------------------------------------------
    def _detect_layout(self) -> str:
        names = set(self._mds.list_collection_names())
        if "run_start" not in names:
            if "begin_run_event" in names:
                raise MigrationError(
                    "This database holds the pre-2015 layout (begin_run_event/end_run_event); "
                    "convert it to the metadatastore layout first, this migration does not read it."
                )
            raise MigrationError(
                f"No 'run_start' collection in database {self.name!r} (collections: {sorted(names)}); "
                "give the metadatastore database of a databroker deployment."
            )
        sample = self._mds["event_descriptor"].find_one({"run_start_id": {"$exists": True}}, {"_id": 1})
        layout = "metadatastore_v0" if sample is not None else "mongo_normalized"
        if self._assets["resource"].find_one({"uid": {"$exists": False}}, {"_id": 1}) is not None:
            layout += "+filestore_v0"
        return layout

    # -- runs -----------------------------------------------------------------------
    def _run_query(self, since, until, query) -> dict:
        parts: list[dict] = []
        if query:
            if not isinstance(query, dict):
                raise TypeError(f"query must be a MongoDB filter dict, not {type(query).__name__}.")
            parts.append(dict(query))
        t0, t1 = _epoch(since, "since"), _epoch(until, "until")
        if t0 is not None:
            parts.append({"time": {"$gte": t0}})
        if t1 is not None:
            parts.append({"time": {"$lt": t1}})
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def find_run_uids(
        self, *, since=None, until=None, query: dict | None = None, page_size: int = 1000
    ) -> Iterator[str]:
        """Start uids, oldest first (``start.time``), each once, read in pages.

        ``since`` is inclusive, ``until`` exclusive; ``query`` is a MongoDB filter on the
        start documents.

        >>> list(source.find_run_uids(since="2016-01-01", until="2017-01-01"))   # doctest: +SKIP
        """
        seen: set[str] = set()
        where = self._run_query(since, until, query)
        for page in _paged(self._mds["run_start"], where, page_size, {"uid": 1, "time": 1}):
            for doc in page:
                uid = doc.get("uid")
                if uid is None:
                    logger.warning("run_start %s has no uid; skipped", doc["_id"])
                    continue
                if uid in seen:
                    continue
                seen.add(uid)
                yield uid

    def count_runs(self, *, since=None, until=None, query: dict | None = None) -> int:
        """The number of runs :meth:`find_run_uids` yields for the same arguments.

        >>> source.count_runs(since="2016-01-01")   # doctest: +SKIP
        """
        where = self._run_query(since, until, query)
        pipeline = [
            {"$match": where},
            {"$group": {"_id": "$uid"}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        try:
            result = list(self._mds["run_start"].aggregate(pipeline))
        except Exception:  # a server or mock without $group: count instead
            return sum(1 for _ in self.find_run_uids(since=since, until=until, query=query))
        return int(result[0]["n"]) if result else 0

    def event_estimates(self, uids: list[str]) -> dict[str, int | None]:
        """Events per run, for sizing partitions: cheap, and approximate on purpose.

        The stop document's ``num_events`` when it has them; otherwise one grouped count
        of the events of the runs' descriptors (one query for all of ``uids``). ``None``
        for a run whose size cannot be told this way (metadatastore v0 links).

        >>> source.event_estimates([uid])   # doctest: +SKIP
        {'9d5c...': 10}
        """
        sizes: dict[str, int | None] = {uid: None for uid in uids}
        if not uids:
            return sizes
        for stop in self._mds["run_stop"].find({"run_start": {"$in": list(uids)}}, {"run_start": 1, "num_events": 1}):
            counts = stop.get("num_events")
            if isinstance(counts, dict) and counts and stop.get("run_start") in sizes:
                try:
                    sizes[stop["run_start"]] = int(sum(int(v) for v in counts.values()))
                except (TypeError, ValueError):
                    pass
        unknown = [uid for uid, n in sizes.items() if n is None]
        if not unknown:
            return sizes
        owner = {}
        for desc in self._mds["event_descriptor"].find({"run_start": {"$in": unknown}}, {"uid": 1, "run_start": 1}):
            if desc.get("uid"):
                owner[desc["uid"]] = desc["run_start"]
        if not owner:
            return sizes
        pipeline = [{"$match": {"descriptor": {"$in": list(owner)}}}, {"$group": {"_id": "$descriptor", "n": {"$sum": 1}}}]
        try:
            grouped = list(self._mds["event"].aggregate(pipeline))
        except Exception:  # a server or mock without $group: leave the sizes unknown
            return sizes
        for uid in {owner[d] for d in owner}:
            sizes[uid] = 0
        for row in grouped:
            run = owner.get(row["_id"])
            if run is not None:
                sizes[run] = (sizes[run] or 0) + int(row["n"])
        return sizes

    def prefetch(self, uids: list[str], *, max_events: int | None = None) -> None:
        """Read the records of several runs in a few queries; their reads then come from memory.

        For a partition of small runs this replaces about five queries per run (start,
        descriptors, stop, events) by four for all of them, which is what a MongoDB
        server far away, or a mock that scans a collection per query, rewards. Events
        are read ahead only while the runs hold no more than ``max_events`` (default:
        ``page_size``) in all, so memory stays bounded. :meth:`documents` uses and then
        drops what was read for its run; runs not prefetched are read as usual.

        >>> source.prefetch(uids_of_small_runs)   # doctest: +SKIP
        """
        uids = [u for u in dict.fromkeys(uids) if u not in self._prefetched]
        if not uids:
            return
        max_events = self.page_size if max_events is None else max_events
        starts: dict[str, dict] = {}
        for rec in self._mds["run_start"].find({"uid": {"$in": uids}}):
            best = starts.get(rec["uid"])
            if best is None or str(rec["_id"]) < str(best["_id"]):
                starts[rec["uid"]] = rec
        by_link: dict[Any, str] = {}
        for uid, rec in starts.items():
            by_link[uid] = by_link[rec["_id"]] = uid
        links = list(by_link)
        where = {"$or": [{"run_start": {"$in": list(starts)}}, {"run_start_id": {"$in": links}}]}
        descriptors: dict[str, list[dict]] = {uid: [] for uid in starts}
        for rec in self._mds["event_descriptor"].find(where):
            uid = by_link.get(rec.get("run_start")) or by_link.get(rec.get("run_start_id"))
            if uid is not None:
                descriptors[uid].append(rec)
        stops: dict[str, list[dict]] = {uid: [] for uid in starts}
        for rec in self._mds["run_stop"].find(where):
            uid = by_link.get(rec.get("run_start")) or by_link.get(rec.get("run_start_id"))
            if uid is not None:
                stops[uid].append(rec)
        entries = {}
        for uid, start in starts.items():
            found = sorted(stops[uid], key=lambda d: (d.get("time") is not None, d.get("time") or 0.0, str(d["_id"])))
            entries[uid] = {"start": start, "descriptors": descriptors[uid], "stop": found[0] if found else None}
        # Events, for descriptors linked by uid (the v1 layout), when they are few enough.
        by_uid = {rec["uid"]: uid for uid in entries for rec in entries[uid]["descriptors"] if rec.get("uid") and "run_start" in rec}
        if by_uid and max_events > 0:
            query = {"descriptor": {"$in": list(by_uid)}}
            if self._mds["event"].count_documents(query) <= max_events:
                events: dict[str, list[dict]] = {d: [] for d in by_uid}
                for ev in self._mds["event"].find(query):
                    events[ev["descriptor"]].append(ev)
                for desc_uid, evs in events.items():
                    evs.sort(key=lambda doc: (doc.get("time") or 0.0, doc["_id"]))
                    entries[by_uid[desc_uid]].setdefault("events", {})[desc_uid] = evs
        self._prefetched.update(entries)

    def drop_prefetched(self, uids: list[str] | None = None) -> None:
        """Forget what :meth:`prefetch` read (for ``uids``, or all)."""
        if uids is None:
            self._prefetched.clear()
        for uid in uids or []:
            self._prefetched.pop(uid, None)

    def _prefetched_events(self, run_uid: str, desc: dict):
        """The events of ``desc`` read by :meth:`prefetch`, as one page, or None."""
        entry = self._prefetched.get(run_uid)
        if entry is None or "run_start_id" in desc or "run_start" not in desc:
            return None
        events = entry.get("events", {}).get(desc.get("uid"))
        return None if events is None else iter([events] if events else [])

    # -- one run ------------------------------------------------------------------
    def _start_record(self, uid: str) -> dict:
        entry = self._prefetched.get(uid)
        if entry is not None:
            return entry["start"]
        found = list(self._mds["run_start"].find({"uid": uid}).sort([("_id", _ASC)]).limit(1))
        if not found:
            raise RunNotFound(f"No run_start with uid {uid!r} in {self.name!r}.")
        return found[0]

    def _descriptor_records(self, uid: str, start_oid) -> list[dict]:
        entry = self._prefetched.get(uid)
        if entry is not None:
            records = list(entry["descriptors"])
        else:
            links = [{"run_start": uid}, {"run_start_id": start_oid}, {"run_start_id": uid}]
            records = list(self._mds["event_descriptor"].find({"$or": links}))
        records.sort(key=lambda d: (d.get("time") or 0.0, str(d["_id"])))
        out, seen = [], set()
        for rec in records:
            key = rec.get("uid") or str(rec["_id"])
            if key in seen:
                continue
            seen.add(key)
            if not rec.get("uid"):
                rec = dict(rec, uid=str(rec["_id"]))
            out.append(rec)
        return out

    def _stop_record(self, uid: str, start_oid) -> dict | None:
        entry = self._prefetched.get(uid)
        if entry is not None:
            return entry["stop"]
        links = [{"run_start": uid}, {"run_start_id": start_oid}, {"run_start_id": uid}]
        cursor = self._mds["run_stop"].find({"$or": links}).sort([("time", _ASC), ("_id", _ASC)])
        found = list(cursor.limit(1))
        return found[0] if found else None

    @staticmethod
    def _event_filter(desc: dict) -> dict:
        """Events of a descriptor: by uid, or by ObjectId for metadatastore v0 descriptors."""
        if "run_start_id" in desc and "run_start" not in desc:
            return {"descriptor_id": desc["_id"]}
        return {"descriptor": desc["uid"]}

    def _distinct_seq_nums(self, where: dict) -> int:
        try:
            return len(self._mds["event"].distinct("seq_num", where))
        except Exception:  # e.g. more distinct values than a 16 MB reply holds
            pass
        pipeline = [
            {"$match": where},
            {"$group": {"_id": "$seq_num"}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        try:
            result = list(self._mds["event"].aggregate(pipeline))
            return int(result[0]["n"]) if result else 0
        except Exception:
            seen = set()
            for page in _paged(self._mds["event"], where, self.page_size, {"seq_num": 1, "time": 1}):
                seen.update(doc.get("seq_num") for doc in page)
            return len(seen)

    def _last_event_time(self, where: dict) -> float | None:
        found = list(self._mds["event"].find(where, {"time": 1}).sort([("time", _DESC)]).limit(1))
        return float(found[0]["time"]) if found and isinstance(found[0].get("time"), (int, float)) else None

    def expected(self, uid: str, *, close_open_runs: bool = True) -> RunExpectation:
        """What :meth:`documents` writes for this run, computed with counting queries.

        >>> source.expected(uid).event_counts   # doctest: +SKIP
        {'primary': 5, 'baseline': 2}
        """
        warnings: list[str] = []
        start_raw = self._start_record(uid)
        start = legacy.normalise_start(start_raw, warnings)
        descriptors = self._descriptor_records(uid, start_raw["_id"])
        streams: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        stop_raw = self._stop_record(uid, start_raw["_id"])
        declared = (stop_raw or {}).get("num_events") or {}
        stored: dict[str, int] = {}
        wheres = []
        for desc in descriptors:
            name = desc.get("name") or "primary"
            streams.setdefault(name, []).append(desc["uid"])
            where = self._event_filter(desc)
            n_stored = self._mds["event"].count_documents(where)
            stored[name] = stored.get(name, 0) + n_stored
            wheres.append((name, desc["uid"], where, n_stored))
        last_time = None
        for name, desc_uid, where, n_stored in wheres:
            # Duplicates make the stored count exceed what the stop declared; only then
            # (or with no declaration) are the distinct seq_nums counted, a costlier query.
            n = n_stored if declared.get(name) == stored[name] else self._distinct_seq_nums(where)
            if n_stored != n:
                warnings.append(
                    f"descriptor {desc_uid}: {n_stored - n} duplicate events (repeated seq_num) dropped"
                )
            counts[name] = counts.get(name, 0) + n
            if stop_raw is None:  # the time of a synthesised stop
                t = self._last_event_time(where)
                if t is not None and (last_time is None or t > last_time):
                    last_time = t
        if stop_raw is not None:
            stop = legacy.normalise_stop(stop_raw, uid, warnings)
        elif close_open_runs:
            stop = legacy.closing_stop(uid, last_time if last_time is not None else start["time"], counts)
            warnings.append("no stop document; a stop with exit_status 'unknown' is written")
        else:
            stop = None
            warnings.append("no stop document; left open, so TiledWriter writes no events")
        return RunExpectation(uid, start, stop, streams, counts, warnings)

    def documents(
        self, uid: str, *, close_open_runs: bool = True, spec_to_mimetype: dict[str, str] | None = None
    ) -> "LegacyDocuments":
        """The run as valid event-model documents, in emission order, streamed in pages.

        Order: start, descriptors, then events of all streams merged by time, each
        resource and datum just before the first event that needs it, stop last.

        Parameters
        ----------
        uid : str
            The start uid.
        close_open_runs : bool, optional
            A run with no stop document gets one with ``exit_status="unknown"``
            (default). With False it stays open: TiledWriter then writes its start and
            descriptors but *no events* (it writes events only at the stop).
        spec_to_mimetype : dict, optional
            Extra resource spec -> MIME type entries (give the same to
            :func:`~databroker_compat.migration.writer.make_writer`). Resources whose
            spec has no MIME type are not written and their values are left out.

        Returns
        -------
        LegacyDocuments
            An iterator of ``(name, doc)``; its ``warnings`` list fills while iterating.

        >>> docs = source.documents(uid)              # doctest: +SKIP
        >>> [name for name, _ in docs][:2]            # doctest: +SKIP
        ['start', 'descriptor']
        """
        return LegacyDocuments(self, uid, close_open_runs=close_open_runs, spec_to_mimetype=spec_to_mimetype)

    # -- assets ----------------------------------------------------------------------
    def _datum_records(self, ids: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        if not ids:
            return found
        for rec in self._assets["datum"].find({"datum_id": {"$in": ids}}):
            found.setdefault(rec["datum_id"], rec)
        missing = [i for i in ids if i not in found]
        if missing:
            for rec in self._assets["datum"].find({"event_id": {"$in": missing}}):
                found.setdefault(rec["event_id"], rec)
        return found

    def _resource_record(self, ref, run_uid: str) -> dict | None:
        if legacy.is_objectid(ref):
            return self._assets["resource"].find_one({"_id": ref})
        candidates = list(self._assets["resource"].find({"uid": ref}).sort([("_id", _ASC)]))
        if not candidates:
            return None
        for rec in candidates:  # duplicate uids across runs: prefer this run's copy
            if rec.get("run_start") == run_uid:
                return rec
        return candidates[0]


class _SeqNums:
    """The ``seq_num`` values seen in a stream, in one bit each (a run of a million events
    costs 125 kB, not the ~60 MB of a set of ints); odd values (negative, huge, not an
    int) go to a set.

    >>> seen = _SeqNums()
    >>> seen.add(3); 3 in seen, 4 in seen, "x" in seen
    (True, False, False)
    """

    _LIMIT = 1 << 32

    def __init__(self) -> None:
        self._bits = bytearray()
        self._other: set = set()

    @classmethod
    def _bit(cls, value) -> int | None:
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

    def __contains__(self, value) -> bool:
        bit = self._bit(value)
        if bit is not None:
            byte = bit >> 3
            return byte < len(self._bits) and bool(self._bits[byte] & (1 << (bit & 7)))
        return value in self._other

    def add(self, value) -> None:
        bit = self._bit(value)
        if bit is not None:
            value, byte = bit, bit >> 3
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            self._bits[byte] |= 1 << (value & 7)
        else:
            self._other.add(value)


def _files_exist(resource: dict) -> bool:
    root = resource.get("root") or ""
    path = resource.get("resource_path") or ""
    full = posixpath.join(root, path.lstrip("/")) if root else path
    if not full:
        return False
    if os.path.exists(full):
        return True
    return bool(glob.glob(glob.escape(full.rstrip("/")) + "*"))


class LegacyDocuments:
    """The documents of one legacy run; iterate once. See :meth:`LegacySource.documents`.

    Attributes
    ----------
    uid : str
    warnings : list of str
        Every fix applied, one line each, complete once iteration has ended.
    event_counts : dict
        Stream name -> events yielded (complete once iteration has ended).
    """

    def __init__(self, source: LegacySource, uid: str, *, close_open_runs: bool, spec_to_mimetype=None):
        from bluesky_tiled_plugins.writing.tiled_writer import MIMETYPE_LOOKUP

        self.source = source
        self.uid = uid
        self.close_open_runs = close_open_runs
        self._known_specs = {**MIMETYPE_LOOKUP, **legacy.LEGACY_SPEC_TO_MIMETYPE, **(spec_to_mimetype or {})}
        self.warnings: list[str] = []
        self.event_counts: dict[str, int] = {}
        self._iterator = self._generate()

    def __iter__(self) -> "LegacyDocuments":
        return self

    def __next__(self) -> tuple[str, dict]:
        return next(self._iterator)

    # ------------------------------------------------------------------------------
    def _generate(self) -> Iterator[tuple[str, dict]]:
        src = self.source
        uid = self.uid
        start_raw = src._start_record(uid)
        start = legacy.normalise_start(start_raw, self.warnings)
        records = src._descriptor_records(uid, start_raw["_id"])

        streams = []
        for rec in records:
            pages = src._prefetched_events(uid, rec)
            if pages is None:
                pages = _paged(src._mds["event"], src._event_filter(rec), src.page_size)
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

        self._emitted_resources: dict[Any, str | None] = {}  # stored ref -> written uid (None: unusable)
        self._emitted_datums: set[str] = set()
        self._bad_datums: set[str] = set()
        counters: dict[str, int] = {}
        last_time = None
        per_stream = [self._stream_items(desc, first, pages, counters) for desc, first, pages in streams]
        descriptors = [desc for desc, _, _ in streams]
        # Only the stream generators hold the first pages now, and drop each once read.
        streams.clear()
        first = None
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

        stop_raw = src._stop_record(uid, start_raw["_id"])
        if stop_raw is not None:
            yield "stop", legacy.normalise_stop(stop_raw, uid, self.warnings)
        elif self.close_open_runs:
            self.warnings.append("no stop document; a stop with exit_status 'unknown' is written")
            end = last_time if last_time is not None else start["time"]
            yield "stop", legacy.closing_stop(uid, end, self.event_counts)
        else:
            self.warnings.append("no stop document; left open, so TiledWriter writes no events")
        for line in self.warnings:
            logger.info("run %s: %s", uid, line)
        src.drop_prefetched([uid])

    @property
    def _names(self) -> dict[str, str]:
        return self.__dict__.setdefault("_desc_names", {})

    def _stream_items(self, desc: dict, first: list[dict], pages, counters: dict[str, int]):
        """(time, rank, name, doc) of one descriptor: assets (rank 0) before its events."""
        self._names[desc["uid"]] = desc["name"]
        external = [k for k, v in desc["data_keys"].items() if "external" in v]
        seen_seq = _SeqNums()
        page, first = first, None  # the generator must not keep the first page alive
        while page:
            if external:
                yield from self._assets_for(page, external, desc, counters)
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

    def _assets_for(self, page: list[dict], external: list[str], desc: dict, counters):
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
        found = self.source._datum_records(ids)
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

    def _resource(self, ref) -> dict | None:
        rec = self.source._resource_record(ref, self.uid)
        if rec is None:
            self.warnings.append(
                f"resource {legacy.plain(ref)!r}: not found; its datums' values are left out"
            )
            return None
        resource = legacy.normalise_resource(rec, self.uid)
        spec = resource["spec"].upper()
        if spec not in self._known_specs:
            self.warnings.append(
                f"resource {resource['uid']}: spec {resource['spec']!r} has no MIME type; "
                "its values are left out (give spec_to_mimetype={spec: mimetype} to migrate them)"
            )
            return None
        if self.source.check_files and not _files_exist(resource):
            where = posixpath.join(resource["root"], resource["resource_path"].lstrip("/"))
            self.warnings.append(
                f"resource {resource['uid']}: files missing at {where!r}; its values are left out"
            )
            return None
        return resource
