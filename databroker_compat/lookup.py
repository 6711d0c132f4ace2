"""Turn a ``db[...]`` key into runs: with server-side queries, or over runs already listed.

The key is parsed by :func:`databroker_compat.keys.parse_key` (the same keys, rules and
messages both ways). :func:`runs_for_key` answers it on the server:

========================  =====================================================
``db[-1]``, ``db[-N]``    N-th newest by ``start.time`` (one request)
``db[-3:]``, slices       newest runs by ``start.time``, one page
``db[42]``                most recent run with ``scan_id == 42`` (one request)
``db["a1b2c3..."]``       full uid (equality query) or a prefix of >= 5 chars
``db[[k1, k2]]``          a list (tuple, set) of the above
========================  =====================================================

``db[-N]`` past the oldest run raises :class:`~databroker_compat.exceptions.NotEnoughRuns`,
both the ``KeyError`` of a missing run and the ``IndexError`` v1 raised.

:func:`runs_in_list` answers it over a list of runs already checked on the client
(search results the server could not filter exactly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tiled.queries import Key, Like

from .exceptions import AmbiguousKey, NotEnoughRuns, RunNotFound
from .keys import NewestSlice, Recent, ScanId, Several, Uid, parse_key
from .layout import RUN_SPEC, spec_names

if TYPE_CHECKING:
    from tiled.client.base import BaseClient
    from tiled.client.container import Container

__all__ = ["CATALOG", "SEARCH_RESULTS", "TIME_KEY", "newest_first", "oldest_first", "runs_for_key", "runs_in_list"]

#: The metadata key runs are ordered by.
TIME_KEY = "start.time"
#: How messages name a whole catalog, and search results.
CATALOG = "this catalog"
SEARCH_RESULTS = "these search results"


def newest_first(container: Container) -> Container:
    """The runs of ``container``, newest ``start.time`` first (a server-side sort)."""
    return container.sort((TIME_KEY, -1))


def oldest_first(container: Container) -> Container:
    """The runs of ``container``, oldest ``start.time`` first (a server-side sort)."""
    return container.sort((TIME_KEY, 1))


# -- the messages both resolvers give ------------------------------------------------
def _no_scan_id(key: ScanId, where: str) -> RunNotFound:
    return RunNotFound(
        f"No run with scan_id {key.scan_id} in {where}. "
        "Negative integers count back from the newest run (db[-1]); "
        "positive integers are scan_ids.",
        key=key.scan_id,
    )


def _no_prefix(text: str, where: str) -> RunNotFound:
    return RunNotFound(f"No run whose uid starts with {text!r} in {where}.", key=text)


def _ambiguous(text: str, uids: list[str], many: str) -> AmbiguousKey:
    return AmbiguousKey(
        f"The uid prefix {text!r} matches {many} runs ({', '.join(uids)}); give more characters.",
        key=text,
        candidates=uids,
    )


def _not_enough(index: int, count: int, where: str) -> NotEnoughRuns:
    return NotEnoughRuns(
        f"No run at index {index}: {count} runs in {where} (fewer than {-index} runs).",
        key=index,
        count=count,
    )


def _by_recency(container: Container, key: Recent, where: str) -> BaseClient:
    items = newest_first(container).values()
    try:
        return items[-key.index - 1]
    except IndexError:
        pass
    raise _not_enough(key.index, len(container), where)  # one more request, on the error path only


def _by_scan_id(container: Container, key: ScanId, where: str) -> BaseClient:
    found = newest_first(container.search(Key("start.scan_id") == key.scan_id)).values()
    try:
        return found[0]
    except IndexError:
        raise _no_scan_id(key, where) from None


def _start_uid(run: BaseClient) -> str:
    return run.metadata["start"]["uid"]


def _by_uid(container: Container, key: Uid, children: Container | None, where: str) -> BaseClient:
    text = key.text
    if children is not None and key.is_full and "/" not in text:
        try:
            run = children[text]
        except KeyError:
            run = None
        if run is not None and RUN_SPEC in spec_names(run.item) and run.metadata.get("start", {}).get("uid") == text:
            return run
    exact = container.search(Key("start.uid") == text).values()
    if key.is_full:
        try:
            return exact[0]
        except IndexError:
            raise RunNotFound(f"No run with uid {text!r} in {where}.", key=text) from None
    # A prefix. LIKE reads '_' and '%' as wildcards (and SQLite ignores case, and its
    # LIKE has no default escape character), so the server's answer is a superset:
    # confirm each candidate on the client.
    candidates = container.search(Like("start.uid", text + "%")).values().page_size(20)
    matches = []
    for run in candidates:
        if _start_uid(run).startswith(text):
            matches.append(run)
            if len(matches) == 3:
                break
    if not matches:
        raise _no_prefix(text, where)
    if len(matches) > 1:
        raise _ambiguous(text, [_start_uid(run) for run in matches], "at least 3" if len(matches) == 3 else "2")
    return matches[0]


def _slice(container: Container, key: NewestSlice) -> list:
    needed = key.newest_needed
    if needed is None:
        ascending = list(oldest_first(container).values())
    else:
        if needed <= 0:
            return []
        ascending = list(reversed(newest_first(container).values()[:needed]))
    return key.of(ascending)


def runs_for_key(
    container: Container, key: Any, children: Container | None = None, *, where: str = CATALOG, subject: str = "db"
) -> Any:
    """The run client (or list of them) that ``db[key]`` names, found with server-side queries.

    Parameters
    ----------
    container : tiled.client.container.Container
        The runs to look in (a catalog's runs, or search results).
    key
        Any key :func:`~databroker_compat.keys.parse_key` takes.
    children : Container, optional
        The unfiltered container the runs live in, when a full uid may address a run
        by its key directly (one plain GET, cheaper on the server than a search).
    where, subject : str
        How messages name ``container`` ("this catalog") and what is indexed ("db").

    >>> runs_for_key(db.run_container, -1).metadata["start"]["uid"]   # doctest: +SKIP
    """
    parsed = parse_key(key, subject=subject)
    if isinstance(parsed, Recent):
        return _by_recency(container, parsed, where)
    if isinstance(parsed, ScanId):
        return _by_scan_id(container, parsed, where)
    if isinstance(parsed, Uid):
        return _by_uid(container, parsed, children, where)
    if isinstance(parsed, NewestSlice):
        return _slice(container, parsed)
    return [runs_for_key(container, k, children, where=where, subject=subject) for k in parsed.items]


def runs_in_list(runs: list, key: Any, *, where: str = SEARCH_RESULTS, subject: str = "results") -> Any:
    """``db[key]`` over runs already listed oldest first (search results checked on the client).

    The same keys and messages as :func:`runs_for_key`; uids are matched on the client.

    >>> runs_in_list(list_of_run_clients, -1)   # doctest: +SKIP
    """
    parsed = parse_key(key, subject=subject)
    if isinstance(parsed, Recent):
        if -parsed.index > len(runs):
            raise _not_enough(parsed.index, len(runs), where)
        return runs[parsed.index]
    if isinstance(parsed, ScanId):
        for run in reversed(runs):
            if run.metadata["start"].get("scan_id") == parsed.scan_id:
                return run
        raise _no_scan_id(parsed, where)
    if isinstance(parsed, Uid):
        text = parsed.text
        found = [run for run in runs if _start_uid(run).startswith(text)]
        exact = [run for run in found if _start_uid(run) == text]
        if exact:
            return exact[0]
        if not found:
            raise _no_prefix(text, where)
        if len(found) > 1:
            raise _ambiguous(text, [_start_uid(run) for run in found], str(len(found)))
        return found[0]
    if isinstance(parsed, NewestSlice):
        return parsed.of(runs)
    assert isinstance(parsed, Several)
    return [runs_in_list(runs, k, where=where, subject=subject) for k in parsed.items]
