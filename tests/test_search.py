"""db(...) searches with v1/MongoDB semantics, checked against mongoquery, in every server mode.

The oracle is ``mongoquery`` evaluated on ``{"start": <start doc>, "stop": <stop doc>}``
of each recorded run, with the documents as Tiled keeps them (a JSON round trip; an
empty stop for the run written without one). Results must hold the same runs, in
start-time order.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import mongoquery
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databroker_compat import Broker, QueryNotSupported, Results, RunNotFound
from helpers import jsonable, new_container, synthetic_run, write_docs
from query_cases import MIXED, MIXED_QUERIES, MIXED_TEXT

# Query translation, key order and sorting differ between backends: every mode.
pytestmark = pytest.mark.backends

# (id, keyword arguments of db(...), the same query on {"start": ..., "stop": ...}, must match something)
QUERIES = [
    ("eq", {"plan_name": "count"}, {"start.plan_name": "count"}, True),
    ("eq-explicit", {"plan_name": {"$eq": "scan"}}, {"start.plan_name": {"$eq": "scan"}}, True),
    ("eq-nothing", {"plan_name": "no such plan"}, {"start.plan_name": "no such plan"}, False),
    ("eq-int", {"scan_id": 1}, {"start.scan_id": 1}, True),
    ("eq-int-as-float", {"scan_id": 2.0}, {"start.scan_id": 2.0}, True),
    ("ne-int", {"scan_id": {"$ne": 1}}, {"start.scan_id": {"$ne": 1}}, True),
    ("gt", {"scan_id": {"$gt": 5}}, {"start.scan_id": {"$gt": 5}}, True),
    ("gte", {"scan_id": {"$gte": 5}}, {"start.scan_id": {"$gte": 5}}, True),
    ("lt", {"scan_id": {"$lt": 3}}, {"start.scan_id": {"$lt": 3}}, True),
    ("lte", {"scan_id": {"$lte": 3}}, {"start.scan_id": {"$lte": 3}}, True),
    ("range", {"scan_id": {"$gt": 2, "$lt": 6}}, {"start.scan_id": {"$gt": 2, "$lt": 6}}, True),
    ("in-int", {"scan_id": {"$in": [1, 5, 9]}}, {"start.scan_id": {"$in": [1, 5, 9]}}, True),
    ("in-empty", {"scan_id": {"$in": []}}, {"start.scan_id": {"$in": []}}, False),
    ("nin-int", {"scan_id": {"$nin": [1, 5, 9]}}, {"start.scan_id": {"$nin": [1, 5, 9]}}, True),
    ("gt-user-key", {"num_points": {"$gt": 4}}, {"start.num_points": {"$gt": 4}}, True),
    ("lte-user-key", {"num_points": {"$lte": 5}}, {"start.num_points": {"$lte": 5}}, True),
    ("in-user-key", {"num_points": {"$in": [3, 5]}}, {"start.num_points": {"$in": [3, 5]}}, True),
    ("array-contains", {"detectors": "det"}, {"start.detectors": "det"}, True),
    ("array-contains-2", {"detectors": "det1"}, {"start.detectors": "det1"}, True),
    ("array-in", {"detectors": {"$in": ["det4", "img"]}},
     {"start.detectors": {"$in": ["det4", "img"]}}, True),
    ("array-all", {"detectors": {"$all": ["det1", "det2"]}},
     {"start.detectors": {"$all": ["det1", "det2"]}}, True),
    ("array-size", {"detectors": {"$size": 3}}, {"start.detectors": {"$size": 3}}, True),
    ("array-equal", {"detectors": ["det1", "det2"]}, {"start.detectors": ["det1", "det2"]}, True),
    # mongoquery's $ne compares a whole array with the value; MongoDB (and v1) exclude arrays holding it
    ("array-ne", {"detectors": {"$ne": "det"}}, {"$nor": [{"start.detectors": "det"}]}, True),
    ("array-nin", {"detectors": {"$nin": ["det", "det1"]}},
     {"start.detectors": {"$nin": ["det", "det1"]}}, True),
    ("array-of-motors", {"motors": "motor1"}, {"start.motors": "motor1"}, True),
    ("nested", {"sample.name": "Si"}, {"start.sample.name": "Si"}, True),
    ("nested-gt", {"sample.thickness_mm": {"$gt": 0.1}}, {"start.sample.thickness_mm": {"$gt": 0.1}}, True),
    ("nested-plan-args", {"plan_args.num": 3}, {"start.plan_args.num": 3}, True),
    ("string-eq", {"sample": "Cu foil"}, {"start.sample": "Cu foil"}, True),
    ("regex", {"sample": {"$regex": "^Cu"}}, {"start.sample": {"$regex": "^Cu"}}, True),
    # mongoquery ignores $options; it reads the options from /pattern/flags
    ("regex-options", {"sample": {"$regex": "SAMPLE", "$options": "i"}},
     {"start.sample": {"$regex": "/SAMPLE/i"}}, True),
    ("regex-end", {"plan_name": {"$regex": "count$"}}, {"start.plan_name": {"$regex": "count$"}}, True),
    ("not-regex", {"plan_name": {"$not": {"$regex": "count"}}},
     {"start.plan_name": {"$not": {"$regex": "count"}}}, True),
    ("not-gt", {"scan_id": {"$not": {"$gt": 3}}}, {"start.scan_id": {"$not": {"$gt": 3}}}, True),
    ("exists", {"operator": {"$exists": True}}, {"start.operator": {"$exists": True}}, True),
    ("not-exists", {"operator": {"$exists": False}}, {"start.operator": {"$exists": False}}, True),
    # mongoquery recurses forever on $exists through a string; skip strings first
    ("nested-exists", {"sample.name": {"$exists": True}},
     {"$and": [{"start.sample": {"$type": "object"}}, {"start.sample.name": {"$exists": True}}]}, True),
    ("deep-exists", {"hints.dimensions": {"$exists": True}},
     {"start.hints.dimensions": {"$exists": True}}, True),
    # MongoDB's {key: None} matches a missing key too; mongoquery needs it spelled out
    ("eq-none", {"operator": None},
     {"$or": [{"start.operator": {"$exists": False}}, {"start.operator": None}]}, True),
    ("ne-string", {"operator": {"$ne": "alice"}}, {"start.operator": {"$ne": "alice"}}, True),
    ("nin-string", {"plan_name": {"$nin": ["count", "scan"]}},
     {"start.plan_name": {"$nin": ["count", "scan"]}}, True),
    ("string-gt", {"plan_name": {"$gt": "m"}}, {"start.plan_name": {"$gt": "m"}}, True),
    ("string-lt-mixed-types", {"sample": {"$lt": "h"}}, {"start.sample": {"$lt": "h"}}, True),
    ("stop-key-bare", {"exit_status": "success"}, {"stop.exit_status": "success"}, True),
    ("stop-prefix-missing", {"stop.exit_status": {"$exists": False}},
     {"stop.exit_status": {"$exists": False}}, True),
    ("stop-nested", {"stop.num_events.primary": {"$gte": 4}}, {"stop.num_events.primary": {"$gte": 4}}, True),
    ("stop-bare-nested", {"num_events.primary": 3}, {"stop.num_events.primary": 3}, True),
    ("start-and-stop", {"start.plan_name": "count", "stop.exit_status": "success"},
     {"start.plan_name": "count", "stop.exit_status": "success"}, True),
    ("or-one-key", {"$or": [{"plan_name": "scan"}, {"plan_name": "grid_scan"}]},
     {"$or": [{"start.plan_name": "scan"}, {"start.plan_name": "grid_scan"}]}, True),
    ("or-across-keys", {"$or": [{"plan_name": "scan"}, {"operator": "alice"}]},
     {"$or": [{"start.plan_name": "scan"}, {"start.operator": "alice"}]}, True),
    ("and-explicit", {"$and": [{"plan_name": "count"}, {"operator": "alice"}]},
     {"$and": [{"start.plan_name": "count"}, {"start.operator": "alice"}]}, True),
    ("nor", {"$nor": [{"plan_name": "count"}, {"sample": "Cu foil"}]},
     {"$nor": [{"start.plan_name": "count"}, {"start.sample": "Cu foil"}]}, True),
    ("implicit-and", {"plan_name": "count", "sample": "Cu foil", "operator": "alice"},
     {"start.plan_name": "count", "start.sample": "Cu foil", "start.operator": "alice"}, True),
    ("in-and-gt", {"plan_name": {"$in": ["count", "scan"]}, "num_points": {"$gt": 2}},
     {"start.plan_name": {"$in": ["count", "scan"]}, "start.num_points": {"$gt": 2}}, True),
    ("plan-type", {"plan_type": "generator"}, {"start.plan_type": "generator"}, True),
    ("user-md", {"detectors_note": "two"}, {"start.detectors_note": "two"}, True),
    ("everything", {"time": {"$gt": 0}}, {"start.time": {"$gt": 0}}, True),
]


def as_stored(run) -> dict:
    """The start and stop documents as the fixture catalog holds them."""
    stop = {} if run.written_without_stop or run.stop is None else run.stop
    return {"start": jsonable(run.start), "stop": jsonable(stop)}


def expected_uids(served, predicate) -> list[str]:
    runs = sorted(served.runs.values(), key=lambda r: r.start["time"])
    return [r.uid for r in runs if predicate(as_stored(r))]


def test_table_is_large_enough():
    assert len(QUERIES) >= 40
    assert len({q[0] for q in QUERIES}) == len(QUERIES)


@pytest.mark.parametrize("kwargs,mongo,nonempty", [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES])
def test_query_matches_mongoquery(served, db, kwargs, mongo, nonempty):
    oracle = mongoquery.Query(mongo)
    expected = expected_uids(served, oracle.match)
    assert bool(expected) == nonempty
    results = db(**kwargs)
    assert [h.uid for h in results] == expected
    assert len(results) == len(expected)


def _words(doc) -> set[str]:
    found = set()

    def walk(value):
        if isinstance(value, str):
            found.update(w.lower() for w in re.findall(r"[A-Za-z0-9]+", value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc)
    return found


@pytest.mark.parametrize("text", ["foil", "FOIL", "Si", "sample", "interrupted long", "nothing_here_xyz"])
def test_text_search_any_word_of_the_start_document(served, db, text):
    words = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)}
    expected = expected_uids(served, lambda d: bool(words & _words(d["start"])))
    assert [h.uid for h in db(text)] == expected


def test_text_search_combines_with_conditions(served, db):
    expected = expected_uids(
        served, lambda d: "foil" in _words(d["start"]) and d["start"].get("operator") == "alice"
    )
    assert expected
    assert [h.uid for h in db("foil", operator="alice")] == expected


def test_where_takes_a_python_callable(served, db):
    expected = expected_uids(served, lambda d: d["start"].get("num_points", 0) % 2 == 1)
    assert expected
    assert [h.uid for h in db(**{"$where": lambda start: start.get("num_points", 0) % 2 == 1})] == expected


# -- since / until -------------------------------------------------------------
def _fmt(t: float, zone: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(t, ZoneInfo(zone)).strftime(fmt)


def test_since_until_floats(served, db):
    times = sorted(r.start["time"] for r in served.runs.values())
    since, until = times[2], times[7]
    expected = expected_uids(served, lambda d: since <= d["start"]["time"] < until)
    assert len(expected) == 5
    assert [h.uid for h in db(since=since, until=until)] == expected


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_since_until_strings_read_in_the_broker_time_zone(served, zone):
    db = served.broker(timezone=zone)
    times = sorted(r.start["time"] for r in served.runs.values())
    # whole seconds: the strings v1 users write
    since_text, until_text = _fmt(times[1], zone), _fmt(times[-1] + 1, zone)
    local = ZoneInfo(zone)
    since = datetime.strptime(since_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=local).timestamp()
    until = datetime.strptime(until_text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=local).timestamp()
    expected = expected_uids(served, lambda d: since <= d["start"]["time"] < until)
    assert expected
    assert [h.uid for h in db(since=since_text, until=until_text)] == expected


def test_bad_time_says_which_formats_work(simple_served):
    db = simple_served.broker()
    with pytest.raises(QueryNotSupported, match="%Y-%m-%d"):
        db(since="yesterday")
    with pytest.raises(ValueError):  # v1 callers catch ValueError
        db(until="03/02/2024")


# -- Results ------------------------------------------------------------------
def test_results_are_lazy_reusable_and_indexable(served, db, count_requests):
    with count_requests(served.client) as counter:
        res = db(plan_name="count")
    assert counter.count == 0  # nothing asked until used
    assert isinstance(res, Results)
    expected = expected_uids(served, lambda d: d["start"]["plan_name"] == "count")
    assert [h.uid for h in res] == expected
    assert [h.uid for h in res] == expected  # a second pass
    assert len(res) == len(expected)
    assert res[-1].uid == expected[-1]
    assert [h.uid for h in res[-2:]] == expected[-2:]
    count, again = served.runs["count"], served.runs["count_again"]
    assert res[count.start["scan_id"]].uid == again.uid  # the most recent match inside
    assert res[served.runs["images"].start["scan_id"]].uid == served.runs["images"].uid
    assert res[count.uid[:8]].uid == count.uid
    with pytest.raises(RunNotFound):
        res[served.runs["scan"].uid]  # a run outside the results
    with pytest.raises(RunNotFound, match="these search results"):
        res[served.runs["scan"].start["scan_id"]]


def test_results_on_the_client_side_path_index_the_same_way(served, db):
    res = db(sample={"$regex": "foil$"})
    expected = expected_uids(served, lambda d: str(d["start"].get("sample", "")).endswith("foil"))
    assert len(expected) >= 2
    assert [h.uid for h in res] == expected
    assert res[-1].uid == expected[-1]
    assert [h.uid for h in res[-2:]] == expected[-2:]
    assert res[served.runs["count"].start["scan_id"]].uid == served.runs["count_again"].uid
    with pytest.raises(RunNotFound, match="these search results"):
        res[-len(expected) - 1]


def test_search_within_results(served, db):
    expected = expected_uids(
        served, lambda d: d["start"].get("sample") == "Cu foil" and d["start"].get("operator") == "alice"
    )
    assert len(expected) == 2
    assert [h.uid for h in db(sample="Cu foil")(operator="alice")] == expected
    inner = db(detectors="det")(plan_name={"$regex": "^co"})
    assert [h.uid for h in inner] == expected_uids(
        served,
        lambda d: "det" in d["start"].get("detectors", []) and d["start"]["plan_name"].startswith("co"),
    )


def test_bluesky_child_node_never_appears(served, db):
    assert served.special() is not None
    everything = {h.uid for h in db()}
    assert everything == {r.uid for r in served.runs.values()}
    assert len(db()) == len(served.runs)


def test_client_side_filtering_is_logged(simple_served, caplog):
    db = simple_served.broker()
    with caplog.at_level(logging.INFO, logger="databroker_compat.queries"):
        list(db(plan_name={"$regex": "scan"}))
    assert any("on the client" in r.getMessage() and "$regex" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "query,name",
    [({"scan_id": {"$foo": 1}}, "$foo"), ({"scan_id": {"$mod": [2, 0]}}, "$mod"), ({"$expr": {}}, "$expr"),
     ({"$where": "this.scan_id > 2"}, "JavaScript")],
)
def test_unsupported_operator_is_named(simple_served, query, name):
    db = simple_served.broker()
    with pytest.raises(QueryNotSupported, match=re.escape(name)):
        db(**query)


def test_malformed_queries(simple_served):
    db = simple_served.broker()
    with pytest.raises(QueryNotSupported, match="takes a list"):
        db(scan_id={"$in": 3})
    with pytest.raises(QueryNotSupported, match="Bad regular expression"):
        db(plan_name={"$regex": "("})
    with pytest.raises(QueryNotSupported, match="no words"):
        db("  ")


# -- filters, aliases, stats ----------------------------------------------------
def test_filters_apply_to_searches_and_lookups(served):
    db = served.broker()
    db.add_filter(plan_name="scan")
    db.add_filter(plan_name="count")  # a key given again replaces its condition, as v1
    db.add_filter(operator="alice")
    assert db.filters == {"plan_name": "count", "operator": "alice"}
    expected = expected_uids(
        served, lambda d: d["start"]["plan_name"] == "count" and d["start"].get("operator") == "alice"
    )
    assert [h.uid for h in db()] == expected
    assert [h.uid for h in db(sample="Cu foil")] == expected
    assert db[-1].uid == expected[-1]
    assert db[-2].uid == expected[-2]
    with pytest.raises(RunNotFound):
        db[-3]
    db.clear_filters()
    assert db.filters == {}
    assert len(db()) == len(served.runs)


def test_aliases(served):
    db = served.broker()
    db.alias("counts", plan_name="count")
    db.dynamic_alias("big_ones", lambda: {"num_points": {"$gte": 100}})
    db.dynamic_alias("same_sample", lambda db: {"sample": db[-1].start["sample"]})
    assert set(db.aliases) == {"counts", "big_ones", "same_sample"}
    assert db.aliases["counts"] == {"plan_name": "count"}
    assert [h.uid for h in db.counts] == expected_uids(served, lambda d: d["start"]["plan_name"] == "count")
    assert [h.uid for h in db.big_ones] == [served.runs["big"].uid]
    newest_sample = max(served.runs.values(), key=lambda r: r.start["time"]).start["sample"]
    same = expected_uids(served, lambda d: d["start"].get("sample") == newest_sample)
    assert [h.uid for h in db.same_sample] == same
    with pytest.raises(ValueError, match="already an attribute"):
        db.alias("get_table", plan_name="x")
    with pytest.raises(AttributeError):
        _ = db.no_such_alias


def test_stats_and_stream_helpers(served, db):
    stats = db.stats()
    assert stats["runs"] == len(served.runs)
    assert stats["backend"] == {"simple": "sqlite", "sqlite": "sqlite", "postgres": "postgresql"}[served.mode]
    h = db[served.runs["scan"].uid]
    assert set(db.stream_names_given_header(h)) == {"primary", "baseline"}
    assert "det" in db.get_fields(h, "primary")


# -- keys that hold arrays in some runs only --------------------------------------
@pytest.fixture(scope="module")
def mixed(served):
    """Own runs (in a child container) where keys hold scalars in some runs, arrays in others."""
    container = new_container(served.client, "search-mixed")
    t0 = time.time() - 1000
    uids = []
    for i, md in enumerate(MIXED):
        run = synthetic_run(f"mixed-{i}-{served.mode}-{time.time_ns()}", t0 + i, 100 + i, **md)
        write_docs(container, run)
        uids.append(run[0][1]["uid"])
    return Broker(container), uids


# Expected by MongoDB semantics (see query_cases): an array matches when any element does; true is not 1.
@pytest.mark.parametrize("query,expected", MIXED_QUERIES, ids=str)
def test_mixed_arrays_and_scalars(mixed, query, expected):
    db, uids = mixed
    assert [h.uid for h in db(**query)] == [uids[i] for i in expected]


@pytest.mark.parametrize("text,expected", MIXED_TEXT)
def test_text_search_finds_words_next_to_escaped_characters(mixed, text, expected):
    db, uids = mixed
    assert [h.uid for h in db(text)] == [uids[i] for i in expected]


# -- random queries ----------------------------------------------------------------
_VALUES = {
    "plan_name": ["count", "scan", "grid_scan", "empty_run"],
    "scan_id": [1, 2, 5, 9, 11],
    "num_points": [3, 5, 12],
    "detectors": ["det", "det1", "img"],  # arrays: only operators mongoquery gets right on them
    "operator": ["alice", "bob"],
    "sample": ["Cu foil", "arrays"],
}
_OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"]
_ARRAY_OPS = ["$eq", "$in", "$nin", "$exists"]


@st.composite
def _queries(draw):
    keys = draw(st.lists(st.sampled_from(sorted(_VALUES)), min_size=1, max_size=3, unique=True))
    query = {}
    for key in keys:
        op = draw(st.sampled_from(_ARRAY_OPS if key == "detectors" else _OPS))
        if op in ("$in", "$nin"):
            value = draw(st.lists(st.sampled_from(_VALUES[key]), min_size=1, max_size=3, unique=True))
        elif op == "$exists":
            value = draw(st.booleans())
        else:
            value = draw(st.sampled_from(_VALUES[key]))
        if isinstance(value, str) and op in ("$gt", "$gte", "$lt", "$lte") and key == "scan_id":
            continue
        query[key] = value if op == "$eq" else {op: value}
    return query


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_queries())
def test_random_queries_match_mongoquery(simple_served, query):
    db = simple_served.broker()
    oracle = mongoquery.Query({f"start.{k}": v for k, v in query.items()})
    assert [h.uid for h in db(**query)] == expected_uids(simple_served, oracle.match)
