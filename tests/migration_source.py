"""Legacy MongoDB sources for the migration tests, built from real RunEngine documents.

``record_source_runs`` records a few plans with a RunEngine and ``ophyd.sim`` devices;
``insert_mongo_normalized`` stores documents the way databroker v1's ``mongo_normalized``
layout held them (collections ``run_start``, ``run_stop``, ``event_descriptor``,
``event``, ``resource``, ``datum``; event and datum pages unpacked; a Mongo ``_id`` on
every document). ``synthetic_runs`` makes many small or one long run quickly, for the
scale cases, from a template of real documents.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from recorded import RecordedRun, _Collector

COLLECTIONS = ("run_start", "run_stop", "event_descriptor", "event", "resource", "datum")
_TARGET = {
    "start": "run_start",
    "stop": "run_stop",
    "descriptor": "event_descriptor",
    "event": "event",
    "resource": "resource",
    "datum": "datum",
}


def record_source_runs(data_dir) -> dict[str, RecordedRun]:
    """Record the runs the migration tests move: scalars, baseline, images, config, no stop."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    import numpy
    from bluesky import RunEngine
    from ophyd.sim import SynGauss, SynSignalWithRegistry, det, det1, det2, motor, motor1

    RE = RunEngine({}, call_returns_result=False)
    collect = _Collector()
    RE.subscribe(collect)
    img = SynSignalWithRegistry(
        func=lambda: numpy.arange(36, dtype="float64").reshape(6, 6),
        name="img",
        save_path=str(data_dir),
    )
    det_cfg = SynGauss("det_cfg", motor, "motor", center=0, Imax=2, sigma=1)

    collect.begin("count")
    RE(bp.count([det1, det2], 4), sample="Cu foil", operator="alice")

    collect.begin("scan")
    RE.preprocessors.append(bpp.SupplementalData(baseline=[det1, motor1]))
    RE(bp.scan([det], motor, -1, 1, 6), sample={"name": "Si", "thickness_mm": 0.5})
    RE.preprocessors.clear()

    def reconfigured():
        yield from bps.open_run(md={"plan_name": "reconfigured_count"})
        for sigma in (1, 2):
            yield from bps.configure(det_cfg, {"sigma": sigma})
            yield from bps.trigger_and_read([det_cfg])
        yield from bps.close_run()

    collect.begin("config")
    RE(reconfigured())

    collect.begin("images")
    RE(bp.count([img, det], 3), sample="image sample")

    collect.begin("nostop", written_without_stop=True)
    RE(bp.count([det], 2), sample="interrupted")
    return collect.runs


def _unpacked(docs: Iterable[tuple[str, dict]]):
    from event_model import unpack_datum_page, unpack_event_page

    for name, doc in docs:
        if name == "event_page":
            for event in unpack_event_page(doc):
                yield "event", event
        elif name == "datum_page":
            for datum in unpack_datum_page(doc):
                yield "datum", datum
        else:
            yield name, doc


def insert_mongo_normalized(database, docs: Iterable[tuple[str, dict]], *, without_stop: bool = False) -> None:
    """Store one run's documents in ``database`` as the v1 ``mongo_normalized`` layout did.

    No unique indexes are created: mongomock scans the whole collection on each insert
    into a uniquely indexed collection, which is quadratic at migration sizes.
    """
    batches: dict[str, list[dict]] = {}
    for name, doc in _unpacked(docs):
        if name == "stop" and without_stop:
            continue
        batches.setdefault(_TARGET[name], []).append(copy.deepcopy(dict(doc)))
    for collection, documents in batches.items():
        database[collection].insert_many(documents)


def insert_recorded(database, runs: dict[str, RecordedRun], names=None) -> None:
    for name, run in runs.items():
        if names is not None and name not in names:
            continue
        insert_mongo_normalized(database, run.docs, without_stop=run.written_without_stop)


def _uid(rng: random.Random | None) -> str:
    return str(uuid.uuid4() if rng is None else uuid.UUID(int=rng.getrandbits(128), version=4))


def synthetic_run(
    template: RecordedRun, n_events: int, *, time0: float, scan_id: int, rng: random.Random | None = None
) -> list[tuple[str, dict]]:
    """A new run shaped like ``template`` (one stream, scalar keys) with ``n_events`` events.

    Values are a deterministic function of the sequence number, so a reader can check them;
    with ``rng`` the uids are too (the same seed gives the same run in any process).
    """
    start = copy.deepcopy(template.start)
    start.update(uid=_uid(rng), time=time0, scan_id=scan_id)
    descriptor = copy.deepcopy(template.descriptors("primary")[0])
    descriptor.update(uid=_uid(rng), run_start=start["uid"], time=time0 + 0.01)
    keys = list(descriptor["data_keys"])
    docs: list[tuple[str, dict]] = [("start", start), ("descriptor", descriptor)]
    for i in range(1, n_events + 1):
        t = time0 + 0.01 + i * 1e-3
        docs.append(
            (
                "event",
                {
                    "uid": _uid(rng),
                    "descriptor": descriptor["uid"],
                    "seq_num": i,
                    "time": t,
                    "data": {k: float(i) * (j + 1) for j, k in enumerate(keys)},
                    "timestamps": {k: t for k in keys},
                    "filled": {},
                },
            )
        )
    stop = copy.deepcopy(template.stop)
    stop.update(
        uid=_uid(rng),
        run_start=start["uid"],
        time=time0 + 0.02 + n_events * 1e-3,
        num_events={"primary": n_events},
    )
    docs.append(("stop", stop))
    return docs


def fill_synthetic(
    database, template: RecordedRun, *, runs: int, events: int, time0: float = 1.6e9, seed: int | None = None
) -> list[str]:
    """Insert ``runs`` synthetic runs of ``events`` events each; returns their uids, oldest first."""
    rng = None if seed is None else random.Random(seed)
    uids = []
    for r in range(runs):
        docs = synthetic_run(template, events, time0=time0 + r * 10.0, scan_id=100_000 + r, rng=rng)
        insert_mongo_normalized(database, docs)
        uids.append(docs[0][1]["uid"])
    return uids


@dataclass(frozen=True)
class SyntheticSource:
    """A picklable source spec: each process that opens it builds the same mongomock database.

    Stands in for a MongoDB server that every worker of a distributed job connects to
    (no MongoDB server can be installed here): the template documents and the seed make
    the runs, uids included, identical in every process.
    """

    template_json: str
    runs: int
    events: int
    time0: float
    seed: int

    @classmethod
    def of(cls, template: RecordedRun, **kwargs) -> "SyntheticSource":
        return cls(json.dumps(template.docs), **kwargs)

    def template(self) -> RecordedRun:
        return RecordedRun("template", [tuple(pair) for pair in json.loads(self.template_json)])

    def build(self):
        """(mongomock database, uids oldest first)."""
        import mongomock

        db = mongomock.MongoClient()[f"synthetic_{self.seed}"]
        uids = fill_synthetic(db, self.template(), runs=self.runs, events=self.events, time0=self.time0, seed=self.seed)
        return db, uids

    def __call__(self):
        from databroker_compat.migration import LegacySource

        db, _ = self.build()
        return LegacySource(db, check_files=False)
