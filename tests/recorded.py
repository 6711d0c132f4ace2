"""Runs recorded once per test session with a real RunEngine and ophyd.sim devices.

Each recorded run keeps the documents exactly as the RunEngine emitted them (deep
copies), so tests compare what comes back from Tiled with what went in.
"""

from __future__ import annotations

import copy
import pathlib
from dataclasses import dataclass, field

import numpy


@dataclass
class RecordedRun:
    """One run: its name in the fixture catalog, its uid and the emitted documents."""

    name: str
    docs: list[tuple[str, dict]] = field(default_factory=list)
    written_without_stop: bool = False

    @property
    def uid(self) -> str:
        return self.start["uid"]

    @property
    def start(self) -> dict:
        return self.first("start")

    @property
    def stop(self) -> dict | None:
        found = self.all("stop")
        return found[0] if found else None

    def first(self, name: str) -> dict:
        return next(doc for n, doc in self.docs if n == name)

    def all(self, name: str) -> list[dict]:
        return [doc for n, doc in self.docs if n == name]

    def descriptors(self, stream: str | None = None) -> list[dict]:
        return [d for d in self.all("descriptor") if stream is None or d["name"] == stream]

    def events(self, stream: str | None = None) -> list[dict]:
        """Events (event_pages unpacked), in emission order, optionally of one stream."""
        from event_model import unpack_event_page

        uids = {d["uid"] for d in self.descriptors(stream)}
        out = []
        for n, doc in self.docs:
            if n == "event" and doc["descriptor"] in uids:
                out.append(doc)
            elif n == "event_page" and doc["descriptor"] in uids:
                out.extend(unpack_event_page(doc))
        return out

    def documents_to_write(self):
        """What the writer receives: without the stop document for an interrupted run."""
        for n, doc in self.docs:
            if n == "stop" and self.written_without_stop:
                continue
            yield n, copy.deepcopy(doc)


class _Collector:
    def __init__(self):
        self.runs: dict[str, RecordedRun] = {}
        self.current: RecordedRun | None = None

    def begin(self, name: str, **kwargs) -> None:
        self.current = self.runs[name] = RecordedRun(name, **kwargs)

    def __call__(self, name, doc):
        if self.current is not None:
            self.current.docs.append((name, copy.deepcopy(doc)))


BIG_RUN_EVENTS = 5000


def record_catalog(data_dir: pathlib.Path) -> dict[str, RecordedRun]:
    """Record the fixture catalog; image files go into ``data_dir``. Oldest run first."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    from bluesky import RunEngine
    from ophyd import Signal
    from ophyd.sim import SynGauss, SynSignal, SynSignalWithRegistry, det, det1, det2, det4, motor, motor1, motor2

    RE = RunEngine({}, call_returns_result=False)
    collect = _Collector()
    RE.subscribe(collect)

    # det_cfg: a detector whose configuration changes mid-run (two descriptors).
    det_cfg = SynGauss("det_cfg", motor, "motor", center=0, Imax=2, sigma=1)
    spectrum = SynSignal(func=lambda: numpy.array([1.0, 2.0, 3.0]), name="spectrum")
    matrix = SynSignal(func=lambda: numpy.arange(20, dtype="float64").reshape(5, 4), name="matrix")
    img = SynSignalWithRegistry(
        func=lambda: numpy.arange(100, dtype="float64").reshape(10, 10),
        name="img",
        save_path=str(data_dir),
    )
    temperature = Signal(name="temperature", value=20.0)

    collect.begin("count")
    RE(bp.count([det1, det2], 3), sample="Cu foil", operator="alice", detectors_note="two")

    collect.begin("scan")
    RE.preprocessors.append(bpp.SupplementalData(baseline=[det1, motor1]))
    RE(bp.scan([det], motor, -1, 1, 5), sample={"name": "Si", "thickness_mm": 0.5}, operator="bob")
    RE.preprocessors.clear()

    collect.begin("grid")
    RE(bp.grid_scan([det4], motor1, -1, 1, 3, motor2, -2, 2, 4), sample="grid sample")

    def monitored():
        yield from bps.open_run(md={"plan_name": "monitored_count", "sample": "Cu foil"})
        yield from bps.monitor(temperature, name="temperature_monitor")
        for i in range(3):
            yield from bps.mv(temperature, 20.0 + i)
            yield from bps.trigger_and_read([det])
        yield from bps.unmonitor(temperature)
        yield from bps.close_run()

    collect.begin("monitor")
    RE(monitored())

    def reconfigured():
        yield from bps.open_run(md={"plan_name": "reconfigured_count"})
        for sigma in (1, 2, 3):
            yield from bps.configure(det_cfg, {"sigma": sigma})
            yield from bps.trigger_and_read([det_cfg])
            yield from bps.trigger_and_read([det_cfg])
        yield from bps.close_run()

    collect.begin("config")
    RE(reconfigured())

    def empty():
        yield from bps.open_run(md={"plan_name": "empty_run"})
        yield from bps.close_run()

    collect.begin("empty")
    RE(empty())

    def declared_only():
        yield from bps.open_run(md={"plan_name": "declared_only"})
        yield from bps.declare_stream(det, name="primary")
        yield from bps.close_run()

    collect.begin("declared")
    RE(declared_only())

    collect.begin("arrays")
    RE(bp.count([spectrum, matrix, det], 4), sample="arrays")

    collect.begin("images")
    RE(bp.count([img, det], 3), sample="image sample")

    collect.begin("nostop", written_without_stop=True)
    RE(bp.count([det], 2), sample="interrupted")

    collect.begin("big")
    RE(bp.count([det], BIG_RUN_EVENTS), sample="long count")

    # A later run that reuses the scan_id of "count": db[scan_id] gives the newest.
    RE.md["scan_id"] = collect.runs["count"].start["scan_id"] - 1
    collect.begin("count_again")
    RE(bp.count([det1], 2), sample="Cu foil", operator="alice")

    return collect.runs


def write_runs(client, runs, names=None, **writer_kwargs) -> None:
    """Feed recorded runs (all, or ``names``) to a TiledWriter on ``client``."""
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client, **writer_kwargs)
    for name, run in runs.items():
        if names is not None and name not in names:
            continue
        for n, doc in run.documents_to_write():
            writer(n, doc)
