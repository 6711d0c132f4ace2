"""What the target already holds: which runs are present, complete or half-written; deleting one.

These answers are the facts the run decision (:mod:`.decide`) is taken from, by the
worker before it writes and by the dry run. "Complete" here is a quick look at the
documents and row counts; whether a run is equal to its source is for verification
(:mod:`.verify`) to say.

Deleting a half-written run (:func:`delete_run`) needs a server that allows deletes:
the API key (or user) must hold the ``delete:node`` and ``delete:revision`` scopes, which
the single-user ``--api-key`` servers and ``SimpleTiledServer`` grant.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import _tiled
from ..exceptions import MigrationError
from ..layout import INTERNAL_TABLE
from .batch import RunNode, find_streams
from .decide import TargetRun
from .expect import RunExpectation

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["delete_run", "inspect_run", "inspect_runs", "present_uids", "run_state"]


def present_uids(container: Container, uids: Iterable[str]) -> set[str]:
    """Which of ``uids`` are keys of the target container (one search, one page per 100 hits).

    >>> present_uids(client, ["9d5c...", "no-such-run"])   # doctest: +SKIP
    {'9d5c...'}
    """
    from tiled.queries import In

    uids = list(uids)
    if not uids:
        return set()
    # The search client sends the query with every page request; a hand-made listing
    # of the container's own search link would list all of its children instead.
    return set(container.search(In("start.uid", uids)).keys()) & set(uids)


def _plain(value: Any) -> Any:
    """Tiled metadata (DictView, tuples) as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(stored: Any, expected: dict) -> bool:
    from tiled.utils import safe_json_dump

    return _plain(stored) == json.loads(safe_json_dump(copy.deepcopy(expected)))


def _rows(stream_node: Any) -> int:
    """Rows of a stream's event table (a composite stream node's internal table)."""
    parts = getattr(stream_node, "base", stream_node)
    if INTERNAL_TABLE not in parts:
        return 0
    return len(parts[INTERNAL_TABLE].read(["seq_num"]))


def _table_rows(context: Any, stream_item: dict) -> int:
    """Rows of a stream's event table, from the stream's item: one read of ``seq_num``."""
    table = _tiled.read_table(context, [*_tiled.node_path(stream_item), INTERNAL_TABLE], columns=["seq_num"])
    return 0 if table is None else table.num_rows


def _state(
    uid: str, metadata: Any, children: Callable[[], set[str]], rows: Callable[[str], int], expected: RunExpectation
) -> str:
    """``"complete"`` or ``"partial"`` from a run's metadata, its children's names and its tables' rows."""
    stop = metadata.get("stop")
    if not _same(metadata.get("start", {}), expected.start):
        logger.info("run %s: start differs from the source", uid)
        return "partial"
    if expected.stop is None:  # left open on purpose: only start and streams can be checked
        return "partial" if stop else ("complete" if children() == set(expected.descriptors) else "partial")
    if not stop:
        logger.info("run %s: no stop document (a writer stopped before the end)", uid)
        return "partial"
    if not _same(stop, expected.stop):
        logger.info("run %s: stop differs from the source", uid)
        return "partial"
    streams = children()
    if streams != set(expected.descriptors):
        logger.info("run %s: streams %s, expected %s", uid, sorted(streams), sorted(expected.descriptors))
        return "partial"
    for stream, count in expected.event_counts.items():
        found = rows(stream)
        if found != count:
            logger.info("run %s: stream %s holds %d rows, expected %d", uid, stream, found, count)
            return "partial"
    return "complete"


def _state_of(uid: str, node: Any, expected: RunExpectation) -> str:
    """``"complete"`` or ``"partial"`` for the run node ``node`` (see :func:`run_state`)."""
    return _state(uid, node.metadata, lambda: set(node), lambda stream: _rows(node[stream]), expected)


def run_state(client: Container, uid: str, expected: RunExpectation) -> str:
    """Whether a run is in the target: ``"absent"``, ``"complete"`` or ``"partial"``.

    ``"complete"`` needs the same start and stop documents, the same streams and, per
    stream, as many table rows as ``expected.event_counts``. Anything else (no stop:
    the writer was killed before the end; different content) is ``"partial"``.

    This is a quick look (a few requests), not verification: equal row counts say
    nothing of the values or of the frames. The worker skips a complete run that this
    job began writing only once :func:`~databroker_compat.migration.verify.verify_run`
    passes; to check a run, verify it.

    >>> run_state(client, uid, source.expected(uid))   # doctest: +SKIP
    'absent'
    """
    if uid not in client:
        return "absent"
    return _state_of(uid, client[uid], expected)


def inspect_run(client: Container, uid: str, expected: RunExpectation) -> TargetRun:
    """The facts of :class:`~databroker_compat.migration.decide.TargetRun` for one run.

    ``complete`` is :func:`run_state`'s quick look (documents and row counts), not
    verification.

    >>> decide(inspect_run(client, uid, source.expected(uid))).action   # doctest: +SKIP
    'skip'
    """
    if uid not in client:
        return TargetRun(present=False)
    node = client[uid]
    complete = _state_of(uid, node, expected) == "complete"
    return TargetRun(present=True, complete=complete, has_stop=node.metadata.get("stop") is not None)


def _names(items: Mapping[str, dict]) -> Callable[[], set[str]]:
    return lambda: set(items)


def _counter(context: Any, items: Mapping[str, dict]) -> Callable[[str], int]:
    return lambda stream: _table_rows(context, items[stream]) if stream in items else 0


def inspect_runs(
    container: Container, expected: Mapping[str, RunExpectation], present: Mapping[str, dict]
) -> dict[str, TargetRun]:
    """:func:`inspect_run` for many present runs at once: one deep search, then row counts.

    ``present`` are the run items one search found (:func:`.batch.find_runs`: metadata
    with start and stop, and the run's child count); the stream nodes of all of them come
    from one deep search (:func:`.batch.find_streams`). The rows of each stream's table
    are read (``seq_num`` only) only for a run whose documents and streams already say
    "complete": no listing gives a table's row count (see :mod:`.batch`). A run the batch
    cannot tell (its streams not all found, a server without deep search) is inspected on
    its own with :func:`inspect_run`. Runs of ``expected`` not in ``present`` are absent.

    >>> inspect_runs(client, {uid: source.expected(uid)}, find_runs(client, [uid]))[uid].complete   # doctest: +SKIP
    True
    """
    found = {uid: item for uid, item in present.items() if uid in expected}
    descriptors = {uid: [u for uids in expected[uid].descriptors.values() for u in uids] for uid in found}
    streams = find_streams(container, found, descriptors)
    result: dict[str, TargetRun] = {uid: TargetRun(present=False) for uid in expected if uid not in found}
    for uid, item in found.items():
        node, items = RunNode(uid, item), streams.get(uid)
        if items is None:
            result[uid] = inspect_run(container, uid, expected[uid])
            continue
        metadata = node.metadata
        state = _state(uid, metadata, _names(items), _counter(container.context, items), expected[uid])
        result[uid] = TargetRun(present=True, complete=state == "complete", has_stop=metadata.get("stop") is not None)
    return result


def delete_run(client: Container, uid: str) -> None:
    """Remove a run (e.g. a partial one) and everything under it from the target.

    Files of detectors registered as external assets are not touched; the data the
    writer stored itself (tables, arrays) is deleted. The server must allow deletes
    (see this module's notes).

    Raises
    ------
    MigrationError
        The server refused (``err.uid`` names the run).

    >>> delete_run(client, uid)   # doctest: +SKIP
    """
    if uid not in client:
        return
    try:
        client.delete_contents(uid, recursive=True, external_only=False)
    except Exception as err:
        raise MigrationError(
            f"Could not delete run {uid} from the target ({err!r}); the API key needs the "
            "'delete:node' scope, or delete it by hand and run the job again.",
            uid=uid,
        ) from err
