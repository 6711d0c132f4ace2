"""The operations of the side-by-side table, as data: one ``Operation`` per row.

Each operation has a label, what its answer is (the value compared across sides), and
one callable per side taking that side's ``Side``:

- ``ours``: ``databroker_compat.Broker(client)``;
- ``raw``: what a user writes by hand with ``tiled.client`` and ``tiled.queries``;
- ``db2``: ``databroker.v1.Broker(client)`` from ``databroker[back-compat]`` 2.0.x.

Where ours and databroker 2.x run the same v1 code, both name the same function: the
v1 expression is the point of the comparison. Labels and notes are ``str.format``
templates over the fields of ``Targets`` (the sizes and what the operations look up).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy
from tiled.queries import Comparison, Key, Like

import bench_search
from _common import frame_value

from .catalog import CATALOG, T0, Written

BY_TIME = ("start.time", 1)
NEWEST_FIRST = ("start.time", -1)


@dataclass(frozen=True)
class Targets:
    """What the operations look up, fixed before the clock starts, and the catalog's sizes."""

    uid: str
    prefix: str
    scan_id: int
    count: int
    since: str
    until: str
    since_time: float
    until_time: float
    uid_of_500: str
    long_uid: str
    image_uid: str
    k: int
    expected_frame: int
    long_events: int
    frames: int
    mongo_runs: int
    mongo_events: int
    archive: Any  # the mongomock database the migration row reads


@dataclass
class Side:
    """One side: its own client (so its requests are counted alone) and what its code starts from.

    ``db`` is a ``Broker`` for ours and databroker 2.x, the catalog container for raw.
    """

    name: str
    client: Any
    db: Any
    targets: Targets
    runs: dict[str, Any] = field(default_factory=dict)

    def run(self, which: str):
        """The ``"long"`` or ``"image"`` run as this side holds it (``db[uid]``), fetched once, on first use.

        As a script holds ``h``: later calls reuse it (its lookup is in the first call's requests).
        """
        if which not in self.runs:
            self.runs[which] = self.db[{"long": self.targets.long_uid, "image": self.targets.image_uid}[which]]
        return self.runs[which]


SideCall = Callable[[Side], Any]


@dataclass(frozen=True)
class Operation:
    """One row: ``repeat`` is ``"quick"`` (median of ``--repeat``), ``"once"`` (heavy) or ``"search"``."""

    label: str
    measures: str
    ours: SideCall
    raw: SideCall
    db2: SideCall
    repeat: str = "quick"
    note: str = ""


# -- lookups ----------------------------------------------------------------------------


def v1_last(s: Side) -> str:
    return s.db[-1].start["uid"]


def raw_last(s: Side) -> str:
    return s.db.sort(BY_TIME).values().last().metadata["start"]["uid"]


def v1_uid(s: Side) -> str:
    return s.db[s.targets.uid].start["uid"]


def raw_uid(s: Side) -> str:
    return s.db[s.targets.uid].metadata["start"]["uid"]


def v1_prefix(s: Side) -> str:
    return s.db[s.targets.prefix].start["uid"]


def raw_prefix(s: Side) -> str:
    found = s.db.search(Like("start.uid", s.targets.prefix + "%")).values().head(2)
    if len(found) != 1:
        raise KeyError(s.targets.prefix)
    return found[0].metadata["start"]["uid"]


def v1_scan_id(s: Side) -> str:
    return s.db[s.targets.scan_id].start["uid"]


def raw_scan_id(s: Side) -> str:
    found = s.db.search(Key("start.scan_id") == s.targets.scan_id).sort(BY_TIME)
    return found.values().last().metadata["start"]["uid"]


# -- tables -----------------------------------------------------------------------------


def v1_long_table(s: Side) -> int:
    return len(s.run("long").table())


def raw_long_table(s: Side) -> int:
    return s.run("long")["primary"].read().sizes["time"]


def v1_newest_tables(s: Side) -> int:
    return sum(len(h.table()) for h in s.db[-s.targets.count:])


def raw_newest_tables(s: Side) -> int:
    runs = list(s.db.sort(NEWEST_FIRST).values()[: s.targets.count])
    return sum(r["primary"].read().sizes["time"] for r in reversed(runs))


def v1_range_tables(s: Side) -> int:
    return sum(len(h.table()) for h in s.db(since=s.targets.since, until=s.targets.until))


def raw_range_tables(s: Side) -> int:
    found = s.db.search(Comparison("ge", "start.time", s.targets.since_time))
    found = found.search(Comparison("lt", "start.time", s.targets.until_time))
    return sum(r["primary"].read().sizes["time"] for r in found.sort(BY_TIME).values())


# -- documents, images ------------------------------------------------------------------


def events_in(docs) -> int:
    """How many events a document stream holds (events and event pages alike)."""
    events = 0
    for name, doc in docs:
        if name == "event":
            events += 1
        elif name == "event_page":
            events += len(doc["seq_num"])
    return events


def long_documents(s: Side) -> int:
    return events_in(s.run("long").documents())


def frame_sum(image) -> int:
    return int(numpy.asarray(image).astype("uint64").sum())


def v1_frame(s: Side) -> int:
    return frame_sum(s.db.get_images(s.run("image"), "det_image")[s.targets.k])


def raw_frame(s: Side) -> int:
    return frame_sum(s.run("image")["primary"]["det_image"][s.targets.k])


def v1_filled(s: Side) -> tuple[int, int]:
    n = corner = 0
    for event in s.db.get_events(s.run("image"), fill=True):
        n += 1
        corner += int(numpy.asarray(event["data"]["det_image"])[0, 1])
    return n, corner


def raw_filled(s: Side) -> tuple[int, int]:
    images = s.run("image")["primary"].read()["det_image"]
    return len(images), int(images.values[:, 0, 1].astype("int64").sum())


# -- migration of the Mongo archive -------------------------------------------------------


def ours_migration(s: Side) -> tuple[int, int]:
    from databroker_compat.migration import LegacySource, migrate

    target = s.client.create_container("migrated-ours-" + uuid.uuid4().hex)
    result = migrate(LegacySource(s.targets.archive), target, progress=False)
    if not result.ok:
        raise RuntimeError(result.summary())
    return len(result.migrated), result.events


def raw_migration(s: Side) -> tuple[int, int]:
    """What one writes without a migration tool: each run's documents, in time order, into TiledWriter."""
    from bluesky_tiled_plugins import TiledWriter

    database, container = s.targets.archive, s.client.create_container("migrated-raw-" + uuid.uuid4().hex)
    runs = events = 0
    for start in database["run_start"].find({}, sort=[("time", 1)]):
        writer = TiledWriter(container, batch_size=10_000)
        writer("start", without_id(start))
        descriptors = list(database["event_descriptor"].find({"run_start": start["uid"]}, sort=[("time", 1)]))
        for desc in descriptors:
            writer("descriptor", without_id(desc))
        for event in database["event"].find({"descriptor": {"$in": [d["uid"] for d in descriptors]}},
                                            sort=[("time", 1)]):
            writer("event", without_id(event))
            events += 1
        stop = database["run_stop"].find_one({"run_start": start["uid"]})
        if stop is not None:
            writer("stop", without_id(stop))
        runs += 1
    return runs, events


def without_id(record: dict) -> dict:
    """A Mongo record as the document it stores (without Mongo's ``_id``)."""
    doc = dict(record)
    doc.pop("_id", None)
    return doc


def db2_migration(s: Side) -> tuple[int, int]:
    """databroker 2.x takes no v1 Mongo configuration and ships no Mongo -> TiledWriter copy: its error is its answer."""
    import databroker.v1

    mongo = {"host": "localhost", "port": 27017, "database": "bench_archive"}
    config = {"metadatastore": {"module": "databroker.headersource.mongo", "class": "MDS",
                                "config": {**mongo, "timezone": "UTC"}},
              "assets": {"module": "databroker.assets.mongo", "class": "Registry", "config": mongo}}
    databroker.v1.Broker.from_config(config)
    raise RuntimeError("databroker 2.x has no migration into Tiled")


# -- the table ----------------------------------------------------------------------------

OPERATIONS: tuple[Operation, ...] = (
    Operation("db[-1]", "the newest run's uid", v1_last, raw_last, v1_last),
    Operation("db[uid]", "the run's uid", v1_uid, raw_uid, v1_uid),
    Operation("db[uid prefix] (8 characters)", "the uid the prefix starts", v1_prefix, raw_prefix, v1_prefix),
    Operation("db[scan_id]", "the uid of the newest run with that scan_id", v1_scan_id, raw_scan_id, v1_scan_id),
    Operation("h.table() ({long_events:,} events)", "rows of the long run's primary table",
              v1_long_table, raw_long_table, v1_long_table, repeat="once",
              note="raw: run['primary'].read(), an xarray Dataset"),
    Operation("db[-{count}:] then h.table() each", "rows over the newest runs' tables",
              v1_newest_tables, raw_newest_tables, v1_newest_tables, repeat="once",
              note="raw: newest-first sort, first {count}, then run['primary'].read() each"),
    Operation("db(since, until): {count} headers, h.table() each", "rows over the tables of the runs in the range",
              v1_range_tables, raw_range_tables, v1_range_tables, repeat="once",
              note="since={since!r}, until={until!r} (UTC)"),
    Operation("h.documents() ({long_events:,} events)", "events re-emitted",
              long_documents, long_documents, long_documents, repeat="once",
              note="raw: BlueskyRun.documents() (the server's json-seq exporter); answer: events re-emitted"),
    Operation("db.get_images(h, 'det_image')[k]", "the pixel sum of frame k", v1_frame, raw_frame, v1_frame,
              note="k={k}; the written frame sums to {expected_frame}"),
    Operation("db.get_events(h, fill=True) ({frames:,} frames)", "events and the sum of one pixel over the frames",
              v1_filled, raw_filled, v1_filled, repeat="once",
              note="raw: run['primary'].read(), the whole stream at once; answer: events and a pixel sum"),
    Operation("migrate Mongo archive ({mongo_runs} runs x {mongo_events:,} events)", "runs and events written",
              ours_migration, raw_migration, db2_migration, repeat="once",
              note="ours also verifies every run after writing, raw only writes; answer: runs and events"),
)


def v1_search(s: Side, positional: tuple, kwargs: dict) -> list[str]:
    return sorted(bench_search.v1_uids(s.db, positional, kwargs))


def raw_search(s: Side, chain: list) -> list[str]:
    return sorted(bench_search.raw_uids(s.db, chain))


def search_operations(uid_of_500: str) -> list[Operation]:
    """The 20 typical searches of ``bench_search.py``; answers compared as sets (databroker 2.x does not sort)."""
    operations = []
    for label, (positional, kwargs), chain in bench_search.searches(uid_of_500):
        v1 = partial(v1_search, positional=positional, kwargs=kwargs)
        operations.append(Operation(label.replace("{", "{{").replace("}", "}}"), "the uids found",
                                    v1, partial(raw_search, chain=chain), v1, repeat="search"))
    return operations


# -- the sides ----------------------------------------------------------------------------


def targets_for(written: Written, archive, args) -> Targets:
    """What the operations look up in the catalog ``fill_catalog`` wrote."""
    small = written.small
    count = min(100, len(small))
    since_time, until_time = T0 + 600 * (len(small) - count) - 1, T0 + 600 * len(small)
    uid = small[len(small) // 2]
    k = args.frames // 2
    return Targets(
        uid=uid, prefix=uid[:8], scan_id=len(small) // 2 + 1,  # bench_search: scan_id = i + 1
        count=count, since=utc(since_time), until=utc(until_time), since_time=since_time, until_time=until_time,
        uid_of_500=small[min(500, len(small) - 1)], long_uid=written.long, image_uid=written.image,
        k=k, expected_frame=int(frame_value(k, args.frame_size).astype("uint64").sum()),
        long_events=args.long_events, frames=args.frames, mongo_runs=args.mongo_runs,
        mongo_events=args.mongo_events, archive=archive,
    )


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def open_sides(uri: str, targets: Targets) -> list[Side]:
    """The three sides over the catalog at ``uri``, each through its own client, databroker 2.x last.

    databroker 2.x's ``Header`` calls ``BlueskyRun.v2``, which (bluesky-tiled-plugins 2.0.12)
    copies the client dispatch table shallowly and so switches *every* Tiled client in the
    process to the v2 run class; measuring it last keeps that out of the other two sides.
    """
    import databroker
    import databroker.v1
    from tiled.client import from_uri

    from databroker_compat import Broker

    clients = {name: from_uri(uri) for name in ("ours", "raw", "db2")}
    catalogs = {name: client[CATALOG] for name, client in clients.items()}
    db2 = databroker.v1.Broker(catalogs["db2"])
    print(f"databroker {databroker.__version__}: {type(db2).__module__}.{type(db2).__name__} over "
          f"{type(catalogs['db2']).__name__}", flush=True)
    return [
        Side("ours", clients["ours"], Broker(catalogs["ours"], timezone="UTC"), targets),
        Side("raw", clients["raw"], catalogs["raw"], targets),
        Side("db2", clients["db2"], db2, targets),
    ]
