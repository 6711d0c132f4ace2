"""Turn a ``db[...]`` key into runs, with server-side queries only.

Keys databroker v1 accepted, and how each is answered here:

========================  =====================================================
``db[-1]``, ``db[-N]``    N-th newest by ``start.time`` (one request)
``db[-3:]``, slices       newest runs by ``start.time``, one page
``db[42]``                most recent run with ``scan_id == 42`` (one request)
``db["a1b2c3..."]``       full uid (equality query) or a prefix of >= 5 chars
``db[[k1, k2]]``          a list of the above
========================  =====================================================
"""

from __future__ import annotations

import numbers
from typing import Any

from tiled.queries import Key, Like

from .exceptions import AmbiguousKey, BadKey, RunNotFound

TIME_KEY = "start.time"
UID_LENGTH = 36
MIN_PREFIX = 5


def newest_first(container):
    return container.sort((TIME_KEY, -1))


def oldest_first(container):
    return container.sort((TIME_KEY, 1))


def _describe(container) -> str:
    return "this catalog" if not getattr(container, "_queries", None) else "these search results"


def by_recency(container, index: int):
    """The run at negative ``index`` (-1 newest)."""
    items = newest_first(container).values()
    try:
        return items[-index - 1]
    except IndexError:
        raise RunNotFound(
            f"No run at index {index}: {_describe(container)} holds fewer than {-index} runs."
        ) from None


def by_scan_id(container, scan_id: int):
    """The most recent run whose start document has this ``scan_id``."""
    found = newest_first(container.search(Key("start.scan_id") == scan_id)).values()
    try:
        return found[0]
    except IndexError:
        raise RunNotFound(
            f"No run with scan_id {scan_id} in {_describe(container)}. "
            "Negative integers count back from the newest run (db[-1]); "
            "positive integers are scan_ids."
        ) from None


def _is_run(client) -> bool:
    return any(getattr(spec, "name", spec) == "BlueskyRun" for spec in client.specs or [])


def by_uid(container, key: str, children=None):
    """A run by full uid or by a uid prefix of at least 5 characters.

    ``children``: the unfiltered container the runs live in, when the lookup may address
    a run by its key directly (one plain GET, cheaper on the server than a search).
    """
    if len(key) < MIN_PREFIX:
        raise RunNotFound(
            f"{key!r} is too short to look up: give a full uid or a uid prefix of at least "
            f"{MIN_PREFIX} characters."
        )
    if children is not None and len(key) >= UID_LENGTH and "/" not in key:
        try:
            run = children[key]
        except KeyError:
            run = None
        if run is not None and _is_run(run) and run.metadata.get("start", {}).get("uid") == key:
            return run
    exact = container.search(Key("start.uid") == key).values()
    if len(key) >= UID_LENGTH:
        try:
            return exact[0]
        except IndexError:
            raise RunNotFound(f"No run with uid {key!r} in {_describe(container)}.") from None
    # A prefix. LIKE reads '_' and '%' as wildcards (and SQLite ignores case, and its
    # LIKE has no default escape character), so the server's answer is a superset:
    # confirm each candidate on the client.
    candidates = container.search(Like("start.uid", key + "%")).values().page_size(20)
    matches = []
    for run in candidates:
        if run.metadata["start"]["uid"].startswith(key):
            matches.append(run)
            if len(matches) == 3:
                break
    if not matches:
        raise RunNotFound(f"No run whose uid starts with {key!r} in {_describe(container)}.")
    if len(matches) > 1:
        uids = ", ".join(run.metadata["start"]["uid"] for run in matches)
        many = "at least 3" if len(matches) == 3 else "2"
        raise AmbiguousKey(f"The uid prefix {key!r} matches {many} runs ({uids}); give more characters.")
    return matches[0]


def _slice(container, key: slice) -> list:
    start, stop, step = key.start, key.stop, key.step
    step = 1 if step is None else step
    for bound in (start, stop, step):
        if bound is not None and not isinstance(bound, numbers.Integral):
            raise BadKey(f"Slice bounds must be integers, not {bound!r}.")
    if (start is not None and start >= 0) or (stop is not None and stop >= 0):
        raise ValueError(
            f"db[{start}:{stop}] is not supported: slices count back from the newest run and "
            "must use negative indices (db[-5:] for the newest five). Positive integers are "
            "scan_ids; to select by scan_id use db(scan_id={'$gte': a, '$lt': b})."
        )
    if step == 0:
        raise ValueError("slice step cannot be zero")
    # How many of the newest runs the slice can reach.
    if step > 0:
        needed = None if start is None else -start
    else:
        needed = None if stop is None else -stop - 1
    if needed is None:
        ascending = list(oldest_first(container).values())
    else:
        if needed <= 0:
            return []
        ascending = list(reversed(newest_first(container).values()[:needed]))
    return ascending[start:stop:step]


def runs_for_key(container, key: Any, children=None):
    """The run client (or list of them) that ``db[key]`` names (``children``: see by_uid)."""
    if isinstance(key, bool):
        raise BadKey("db[True/False] is not a run lookup; use an int, a uid, or a slice.")
    if isinstance(key, numbers.Integral):
        key = int(key)
        if key < 0:
            return by_recency(container, key)
        return by_scan_id(container, key)
    if isinstance(key, str):
        return by_uid(container, key, children)
    if isinstance(key, slice):
        return _slice(container, key)
    if isinstance(key, (list, tuple)):
        return [runs_for_key(container, k, children) for k in key]
    raise BadKey(
        f"Cannot look up a run with a {type(key).__name__} ({key!r}); use a negative index, "
        "a scan_id, a uid or uid prefix, a slice, or a list of these."
    )
