"""The demo: record a few runs into an embedded Tiled server, then use the v1 API on them."""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .broker import temp

if TYPE_CHECKING:
    from tiled.client.container import Container


def record_demo_runs(client: Container, data_dir: pathlib.Path) -> list[str]:
    """Record a count, a scan with a baseline stream and an image run through ``TiledWriter``.

    Returns the uids, oldest first. Image files are written into ``data_dir``.
    """
    import bluesky.plans as bp
    import numpy
    from bluesky import RunEngine
    from bluesky.preprocessors import SupplementalData
    from bluesky_tiled_plugins import TiledWriter
    from ophyd.sim import SynSignalWithRegistry, det, det1, motor, motor1

    RE = RunEngine({}, call_returns_result=False)
    RE.subscribe(TiledWriter(client))
    img = SynSignalWithRegistry(
        func=lambda: numpy.arange(64, dtype="float64").reshape(8, 8) * numpy.random.random(),
        name="img",
        labels={"detectors"},
        save_path=str(data_dir),
    )
    uids: list[str] = []

    def record(plan: Any, **md: Any) -> None:
        # With call_returns_result=False the RunEngine returns the tuple of run uids.
        uids.extend(RE(plan, **md))  # type: ignore[arg-type]

    record(bp.count([det], 3), sample="demo sample", purpose="demo")
    sd = SupplementalData(baseline=[det1, motor1])
    RE.preprocessors.append(sd)
    record(bp.scan([det], motor, -1, 1, 5), sample={"name": "Si", "thickness_mm": 0.5})
    RE.preprocessors.clear()
    record(bp.count([img, det], 4), sample="demo sample")
    return uids


def run_demo(echo: Callable[[str], Any] = print) -> None:
    """Start an embedded server, record runs, and show databroker v1 calls on them."""
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="databroker-compat-demo-"))
    db = temp(readable_storage=[data_dir])
    try:
        echo(f"Embedded Tiled server: {db}")
        uids = record_demo_runs(db.v2, data_dir)
        echo(f"Recorded {len(uids)} runs with a RunEngine through TiledWriter.\n")

        h = db[-1]
        echo(">>> h = db[-1]")
        echo(repr(h))
        echo(">>> h.start.plan_name, h.stop['exit_status'], h.stream_names")
        echo(repr((h.start.plan_name, h.stop["exit_status"], h.stream_names)))
        echo(">>> h.table()  # image fields show datum ids unless fill=True")
        echo(h.table().to_string())
        echo(">>> h.table(fill=True)['img'][1].shape")
        echo(repr(h.table(fill=True)["img"].iloc[0].shape))

        scan = db[uids[1]]
        echo(f"\n>>> db['{uids[1][:8]}']  # uid prefix")
        echo(repr(scan))
        echo(">>> db[-2].table()")
        echo(scan.table().to_string())
        echo(">>> db[-2].table('baseline')")
        echo(scan.table("baseline").to_string())
        echo(">>> db[-2].config_data('det')")
        echo(repr(scan.config_data("det")))
        echo(">>> [h.start['scan_id'] for h in db[-3:]]")
        echo(repr([x.start["scan_id"] for x in db[-3:]]))
        echo(f">>> db[1].uid == '{uids[0]}'")
        echo(repr(db[1].uid == uids[0]))
    finally:
        db.close()
