"""The legacy record store: the MongoDB collections of databroker v0/v1, read and never written.

:class:`LegacyRecords` finds runs, sizes them, and hands out the stored records of one
run (start, descriptors, stop, pages of events, datums, resources) as they are in
MongoDB, ``_id`` included; turning them into event-model documents is
:mod:`.assemble`'s job, predicting what gets written :mod:`.expect`'s.

Two generations are read, and mixtures of them (facilities patched their databases):

- ``"mongo_normalized"``: databroker v1 / suitcase-mongo, collections ``run_start``,
  ``run_stop``, ``event_descriptor``, ``event`` (metadatastore) and ``resource``,
  ``datum`` (asset registry, the same or a separate database);
- ``"metadatastore_v0"``: descriptors and stops that point at the start's ObjectId
  (``run_start_id``), events that point at the descriptor's ObjectId
  (``descriptor_id``) and hold ``data={key: [value, timestamp]}``; with filestore v0
  assets (resources without ``uid``/``root``, datums keyed ``event_id`` whose
  ``resource`` is an ObjectId).

Reads use no index the writers may not have created, and page through every
collection by ``(time, _id)`` ranges (:func:`paged`), so that a run of any size streams
in pages of ``page_size`` documents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from .._time import to_timestamp
from ..exceptions import BadArgument, MigrationError, RunNotFound
from .fixes import DESCRIPTOR, START, Notes, note
from .values import is_objectid

logger = logging.getLogger(__name__)

__all__ = ["LegacyRecords", "paged"]

_ASC = 1
_DESC = -1

Record = dict[str, Any]


def paged(collection: Any, query: Record, page_size: int, projection: Record | None = None) -> Iterator[list[Record]]:
    """Pages of ``collection.find(query)`` in time order, by range queries.

    Each page is a new query ``time >= last time``, minus the ``_id`` already read at
    that time: a plain conjunction, which MongoDB serves from a ``time`` index when
    there is one and which mock databases evaluate quickly. No cursor stays open
    between pages, so a killed job leaves nothing behind on the server.

    >>> import mongomock                                              # doctest: +SKIP
    >>> [len(p) for p in paged(mongomock.MongoClient()["x"]["event"], {}, 100)]   # doctest: +SKIP
    []
    """
    last_time = None
    seen_at_last: list[Any] = []
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


def _links(uid: str, start_oid: Any) -> Record:
    """The filter of the records that point at a run: by start uid, or by the v0 ObjectId."""
    return {"$or": [{"run_start": uid}, {"run_start_id": start_oid}, {"run_start_id": uid}]}


class LegacyRecords:
    """The records of a legacy databroker deployment, read in pages.

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
        Events per read (default 10,000). Memory use grows with it; with ``mongomock``
        larger pages are faster (each read scans the collection).

    Raises
    ------
    MigrationError
        The database is not a databroker metadatastore (``err.database`` names it).
    BadArgument
        ``page_size`` below 1.
    """

    def __init__(self, metadatastore: Any, assets: Any = None, *, name: str | None = None, page_size: int = 10_000) -> None:
        if page_size < 1:
            raise BadArgument(f"page_size must be at least 1, not {page_size!r}.", option="page_size", value=page_size)
        self.metadatastore = metadatastore
        self.assets = metadatastore if assets is None else assets
        self.name: str = str(name or getattr(metadatastore, "name", None) or "legacy")
        self.page_size = int(page_size)
        # Records read ahead by prefetch(), by start uid; documents() drops its run's.
        self._prefetched: dict[str, Record] = {}
        self.layout = self._detect_layout()
        logger.info("Legacy source %s: layout %s", self.name, self.layout)

    # -- layout -------------------------------------------------------------------
    def _detect_layout(self) -> str:
        names = set(self.metadatastore.list_collection_names())
        if "run_start" not in names:
            if "begin_run_event" in names:
                raise MigrationError(
                    "This database holds the pre-2015 layout (begin_run_event/end_run_event); "
                    "convert it to the metadatastore layout first, this migration does not read it.",
                    database=self.name,
                )
            raise MigrationError(
                f"No 'run_start' collection in database {self.name!r} (collections: {sorted(names)}); "
                "give the metadatastore database of a databroker deployment.",
                database=self.name,
            )
        sample = self.metadatastore["event_descriptor"].find_one({"run_start_id": {"$exists": True}}, {"_id": 1})
        layout = "metadatastore_v0" if sample is not None else "mongo_normalized"
        if self.assets["resource"].find_one({"uid": {"$exists": False}}, {"_id": 1}) is not None:
            layout += "+filestore_v0"
        return layout

    # -- runs -----------------------------------------------------------------------
    @staticmethod
    def _run_query(since: Any, until: Any, query: Record | None, timezone: str | None) -> Record:
        parts: list[Record] = []
        if query:
            if not isinstance(query, dict):
                raise BadArgument(
                    f"query must be a MongoDB filter dict, not {type(query).__name__}.", option="query", value=query
                )
            parts.append(dict(query))
        if since is not None:
            parts.append({"time": {"$gte": to_timestamp(since, timezone, name="since")}})
        if until is not None:
            parts.append({"time": {"$lt": to_timestamp(until, timezone, name="until")}})
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def find_run_uids(
        self,
        *,
        since: Any = None,
        until: Any = None,
        query: Record | None = None,
        page_size: int = 1000,
        timezone: str | None = None,
    ) -> Iterator[str]:
        """Start uids, oldest first (``start.time``), each once, read in pages.

        ``since`` is inclusive, ``until`` exclusive; both are read as
        :func:`databroker_compat._time.to_timestamp` reads them (times without a zone in
        ``timezone``, this machine's zone by default), as ``db(since=...)`` does.
        ``query`` is a MongoDB filter on the start documents.

        >>> list(source.find_run_uids(since="2016-01", until="2017-01-01", timezone="UTC"))   # doctest: +SKIP
        """
        seen: set[str] = set()
        where = self._run_query(since, until, query, timezone)
        for page in paged(self.metadatastore["run_start"], where, page_size, {"uid": 1, "time": 1}):
            for doc in page:
                uid = doc.get("uid")
                if uid is None:
                    logger.warning("run_start %s has no uid; skipped", doc["_id"])
                    continue
                if uid in seen:
                    continue
                seen.add(uid)
                yield uid

    def count_runs(
        self, *, since: Any = None, until: Any = None, query: Record | None = None, timezone: str | None = None
    ) -> int:
        """The number of runs :meth:`find_run_uids` yields for the same arguments.

        >>> source.count_runs(since="2016-01-01")   # doctest: +SKIP
        """
        where = self._run_query(since, until, query, timezone)
        pipeline = [
            {"$match": where},
            {"$group": {"_id": "$uid"}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        try:
            result = list(self.metadatastore["run_start"].aggregate(pipeline))
        except Exception:  # a server or mock without $group: count instead
            return sum(1 for _ in self.find_run_uids(since=since, until=until, query=query, timezone=timezone))
        return int(result[0]["n"]) if result else 0

    def event_estimates(self, uids: list[str]) -> dict[str, int | None]:
        """Events per run, for sizing partitions: cheap, and approximate on purpose.

        The stop document's ``num_events`` when it has them; otherwise one grouped count
        of the events of the runs' descriptors (one query for all of ``uids``). ``None``
        for a run whose size cannot be told this way (metadatastore v0 links).

        >>> source.event_estimates([uid])   # doctest: +SKIP
        {'9d5c...': 10}
        """
        mds = self.metadatastore
        sizes: dict[str, int | None] = {uid: None for uid in uids}
        if not uids:
            return sizes
        for stop in mds["run_stop"].find({"run_start": {"$in": list(uids)}}, {"run_start": 1, "num_events": 1}):
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
        for desc in mds["event_descriptor"].find({"run_start": {"$in": unknown}}, {"uid": 1, "run_start": 1}):
            if desc.get("uid"):
                owner[desc["uid"]] = desc["run_start"]
        if not owner:
            return sizes
        pipeline = [{"$match": {"descriptor": {"$in": list(owner)}}}, {"$group": {"_id": "$descriptor", "n": {"$sum": 1}}}]
        try:
            grouped = list(mds["event"].aggregate(pipeline))
        except Exception:  # a server or mock without $group: leave the sizes unknown
            return sizes
        for uid in {owner[d] for d in owner}:
            sizes[uid] = 0
        for row in grouped:
            run = owner.get(row["_id"])
            if run is not None:
                sizes[run] = (sizes[run] or 0) + int(row["n"])
        return sizes

    # -- reading ahead ----------------------------------------------------------------
    def prefetch(self, uids: list[str], *, max_events: int | None = None) -> None:
        """Read the records of several runs in a few queries; their reads then come from memory.

        For a partition of small runs this replaces about five queries per run (start,
        descriptors, stop, events) by four for all of them, which is what a MongoDB
        server far away, or a mock that scans a collection per query, rewards. Events
        are read ahead only while the runs hold no more than ``max_events`` (default:
        ``page_size``) in all, so memory stays bounded. Reading a run's documents uses
        and then drops what was read for it; runs not prefetched are read as usual.

        >>> source.prefetch(uids_of_small_runs)   # doctest: +SKIP
        """
        mds = self.metadatastore
        uids = [u for u in dict.fromkeys(uids) if u not in self._prefetched]
        if not uids:
            return
        max_events = self.page_size if max_events is None else max_events
        starts: dict[str, Record] = {}
        copies: dict[str, int] = {}
        for rec in mds["run_start"].find({"uid": {"$in": uids}}):
            copies[rec["uid"]] = copies.get(rec["uid"], 0) + 1
            best = starts.get(rec["uid"])
            if best is None or str(rec["_id"]) < str(best["_id"]):
                starts[rec["uid"]] = rec
        by_link: dict[Any, str] = {}
        for uid, rec in starts.items():
            by_link[uid] = by_link[rec["_id"]] = uid
        links = list(by_link)
        where = {"$or": [{"run_start": {"$in": list(starts)}}, {"run_start_id": {"$in": links}}]}
        descriptors: dict[str, list[Record]] = {uid: [] for uid in starts}
        for rec in mds["event_descriptor"].find(where):
            owner = by_link.get(rec.get("run_start")) or by_link.get(rec.get("run_start_id"))
            if owner is not None:
                descriptors[owner].append(rec)
        stops: dict[str, list[Record]] = {uid: [] for uid in starts}
        for rec in mds["run_stop"].find(where):
            owner = by_link.get(rec.get("run_start")) or by_link.get(rec.get("run_start_id"))
            if owner is not None:
                stops[owner].append(rec)
        entries: dict[str, Record] = {}
        for uid in starts:
            found = sorted(stops[uid], key=lambda d: (d.get("time") is not None, d.get("time") or 0.0, str(d["_id"])))
            entries[uid] = {"start": starts[uid], "descriptors": descriptors[uid], "stop": found[0] if found else None,
                            "start_copies": copies.get(uid, 1)}
        # Events, for descriptors linked by uid (the v1 layout), when they are few enough.
        by_uid = {rec["uid"]: uid for uid in entries for rec in entries[uid]["descriptors"] if rec.get("uid") and "run_start" in rec}
        if by_uid and max_events > 0:
            query = {"descriptor": {"$in": list(by_uid)}}
            if mds["event"].count_documents(query) <= max_events:
                events: dict[str, list[Record]] = {d: [] for d in by_uid}
                for ev in mds["event"].find(query):
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

    # -- one run ------------------------------------------------------------------
    def start_record(self, uid: str, fixes: Notes | None = None) -> Record:
        """The ``run_start`` record of ``uid`` (the first stored, if it was stored twice: noted in ``fixes``).

        Raises
        ------
        RunNotFound
            No such run (a ``KeyError``; ``err.uid`` and ``err.source`` say which).
        """
        entry = self._prefetched.get(uid)
        if entry is not None:
            found, copies = [entry["start"]], entry.get("start_copies", 1)
        else:
            found = list(self.metadatastore["run_start"].find({"uid": uid}).sort([("_id", _ASC)]).limit(2))
            copies = len(found)
        if not found:
            raise RunNotFound(f"No run_start with uid {uid!r} in {self.name!r}.", uid=uid, source=self.name)
        if copies > 1 and fixes is not None:
            note(fixes, START, "start: stored more than once (a re-sent document inserted again); the earliest is read")
        return found[0]

    def descriptor_records(self, uid: str, start_oid: Any, fixes: Notes | None = None) -> list[Record]:
        """The run's ``event_descriptor`` records in time order, each once, each with a ``uid``.

        A descriptor stored several times is read once (the earliest), and noted in ``fixes``.
        """
        entry = self._prefetched.get(uid)
        if entry is not None:
            records = list(entry["descriptors"])
        else:
            records = list(self.metadatastore["event_descriptor"].find(_links(uid, start_oid)))
        records.sort(key=lambda d: (d.get("time") or 0.0, str(d["_id"])))
        out, seen = [], set()
        for rec in records:
            key = rec.get("uid") or str(rec["_id"])
            if key in seen:
                if fixes is not None:
                    note(fixes, DESCRIPTOR, f"descriptor {key}: stored more than once; the earliest is read")
                continue
            seen.add(key)
            if not rec.get("uid"):
                rec = dict(rec, uid=str(rec["_id"]))
            out.append(rec)
        return out

    def stop_record(self, uid: str, start_oid: Any) -> Record | None:
        """The run's ``run_stop`` record (the earliest, if several), or None."""
        entry = self._prefetched.get(uid)
        if entry is not None:
            return entry["stop"]
        cursor = self.metadatastore["run_stop"].find(_links(uid, start_oid)).sort([("time", _ASC), ("_id", _ASC)])
        found = list(cursor.limit(1))
        return found[0] if found else None

    @staticmethod
    def event_filter(desc: Record) -> Record:
        """Events of a descriptor: by uid, or by ObjectId for metadatastore v0 descriptors."""
        if "run_start_id" in desc and "run_start" not in desc:
            return {"descriptor_id": desc["_id"]}
        return {"descriptor": desc["uid"]}

    def event_pages(self, run_uid: str, desc: Record) -> Iterator[list[Record]]:
        """The ``event`` records of one descriptor of ``run_uid``, in time order, page by page."""
        entry = self._prefetched.get(run_uid)
        if entry is not None and "run_start_id" not in desc and "run_start" in desc:
            events = entry.get("events", {}).get(desc.get("uid"))
            if events is not None:
                return iter([events] if events else [])
        return paged(self.metadatastore["event"], self.event_filter(desc), self.page_size)

    def count_events(self, where: Record) -> int:
        """How many ``event`` records match ``where`` (an :meth:`event_filter`)."""
        return int(self.metadatastore["event"].count_documents(where))

    def distinct_seq_nums(self, where: Record) -> int:
        """How many distinct ``seq_num`` the events matching ``where`` hold."""
        events = self.metadatastore["event"]
        try:
            return len(events.distinct("seq_num", where))
        except Exception:  # e.g. more distinct values than a 16 MB reply holds
            pass
        pipeline = [
            {"$match": where},
            {"$group": {"_id": "$seq_num"}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        try:
            result = list(events.aggregate(pipeline))
            return int(result[0]["n"]) if result else 0
        except Exception:
            seen: set[Any] = set()
            for page in paged(events, where, self.page_size, {"seq_num": 1, "time": 1}):
                seen.update(doc.get("seq_num") for doc in page)
            return len(seen)

    def last_event_time(self, where: Record) -> float | None:
        """The latest ``time`` of the events matching ``where``, or None."""
        found = list(self.metadatastore["event"].find(where, {"time": 1}).sort([("time", _DESC)]).limit(1))
        return float(found[0]["time"]) if found and isinstance(found[0].get("time"), (int, float)) else None

    # -- assets ----------------------------------------------------------------------
    def datum_records(self, ids: list[str]) -> dict[str, Record]:
        """Datum id -> ``datum`` record, for the ids found (``datum_id``, or the v0 ``event_id``)."""
        found: dict[str, Record] = {}
        if not ids:
            return found
        for rec in self.assets["datum"].find({"datum_id": {"$in": ids}}):
            found.setdefault(rec["datum_id"], rec)
        missing = [i for i in ids if i not in found]
        if missing:
            for rec in self.assets["datum"].find({"event_id": {"$in": missing}}):
                found.setdefault(rec["event_id"], rec)
        return found

    def resource_record(self, ref: Any, run_uid: str) -> Record | None:
        """The ``resource`` record a datum points at (uid or v0 ObjectId), preferring ``run_uid``'s copy."""
        if is_objectid(ref):
            return self.assets["resource"].find_one({"_id": ref})
        candidates = list(self.assets["resource"].find({"uid": ref}).sort([("_id", _ASC)]))
        if not candidates:
            return None
        for rec in candidates:  # duplicate uids across runs: prefer this run's copy
            if rec.get("run_start") == run_uid:
                return rec
        return candidates[0]
