"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import uuid

import numpy


def jsonable(obj):
    """What a document looks like after a JSON round trip (tuples -> lists, numpy -> Python)."""

    def default(o):
        if isinstance(o, numpy.ndarray):
            return o.tolist()
        if isinstance(o, numpy.generic):
            return o.item()
        raise TypeError(type(o))

    return json.loads(json.dumps(obj, default=default))


def new_container(client, prefix: str):
    """A fresh child container for a test's own runs (never the shared root)."""
    return client.create_container(f"{prefix}-{uuid.uuid4().hex[:8]}")


def synthetic_run(uid: str, start_time: float, scan_id: int, *, n_events: int = 2, **md):
    """Documents of a small run with a chosen uid and start time, built with event_model."""
    from event_model import compose_run

    bundle = compose_run(uid=uid, time=start_time, metadata={"scan_id": scan_id, **md})
    docs = [("start", bundle.start_doc)]
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"x": {"dtype": "number", "shape": [], "source": "synthetic", "object_name": "x"}},
        object_keys={"x": ["x"]},
        time=start_time + 0.1,
    )
    docs.append(("descriptor", desc.descriptor_doc))
    for i in range(n_events):
        t = start_time + 1 + i
        docs.append(("event", desc.compose_event(data={"x": float(i)}, timestamps={"x": t}, seq_num=i + 1, time=t)))
    docs.append(("stop", bundle.compose_stop(time=start_time + 10)))
    return docs


def write_docs(client, docs) -> None:
    from bluesky_tiled_plugins import TiledWriter

    writer = TiledWriter(client)
    for name, doc in docs:
        writer(name, doc)
