"""Queries without a server: parsing, since/until, client-side evaluation (MongoDB semantics), translation.

Translation is tested on :class:`Translator` with a probe function standing for the
server's "does any run hold an array under this key" count (``plan_search`` passes a
real search there); the served tests in ``tests/test_search.py`` check the same rules
end to end against mongoquery.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import numpy as np
import pytest
from tiled.queries import Comparison, Contains, FullText, In, Key, KeyPresent, NotIn

from databroker_compat import QueryNotSupported
from databroker_compat.queries import (
    POSTGRESQL,
    SQLITE,
    STOP_KEYS,
    UNKNOWN,
    Cond,
    Group,
    Plan,
    Text,
    Translator,
    Where,
    matches,
    normalize_time,
    parse,
)
from query_cases import MIXED, MIXED_QUERIES, MIXED_TEXT

# -- parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, path",
    [
        ("plan_name", "start.plan_name"),
        ("sample.name", "start.sample.name"),
        ("start.plan_name", "start.plan_name"),
        ("stop.reason", "stop.reason"),
        ("exit_status", "stop.exit_status"),
        ("num_events.primary", "stop.num_events.primary"),
        ("stop", "start.stop"),
    ],
)
def test_keys_name_the_start_document_unless_they_say_otherwise(key, path):
    assert parse({key: 1}) == (Cond(path, "$eq", 1),)
    assert STOP_KEYS == ("exit_status", "num_events")


def test_operators_become_one_condition_each():
    assert parse({"scan_id": {"$gt": 2, "$lt": 6}}) == (
        Cond("start.scan_id", "$gt", 2),
        Cond("start.scan_id", "$lt", 6),
    )
    assert parse({"scan_id": {"$in": (1, 2)}}) == (Cond("start.scan_id", "$in", [1, 2]),)
    assert parse({"x": {"$exists": 0}}) == (Cond("start.x", "$exists", False),)
    assert parse({"x": {"$size": np.int64(3)}}) == (Cond("start.x", "$size", 3),)


def test_values_become_the_json_values_tiled_stores():
    (cond,) = parse({"x": {"$in": [np.int32(1), np.float64(2.5), (1, 2)]}})
    assert cond.value == [1, 2.5, [1, 2]]
    assert [type(v) for v in cond.value] == [int, float, list]
    assert parse({"x": {"a": np.int8(1)}}) == (Cond("start.x", "$eq", {"a": 1}),)


def test_groups_and_text():
    (group,) = parse({"$or": [{"plan_name": "scan"}, {"operator": "alice"}]})
    assert group == Group(
        "$or",
        (
            Group("$and", (Cond("start.plan_name", "$eq", "scan"),)),
            Group("$and", (Cond("start.operator", "$eq", "alice"),)),
        ),
    )
    # $and is flattened into the conditions that must all hold
    assert parse({"$and": [{"a": 1}, {"b": 2}]}) == (
        Group("$and", (Cond("start.a", "$eq", 1),)),
        Group("$and", (Cond("start.b", "$eq", 2),)),
    )
    assert parse({"$nor": [{"a": 1}]})[0].kind == "$nor"
    assert parse({}, "Cu foil cu") == (Text(("cu", "foil")),)
    assert parse({"$text": {"$search": "Si wafer"}}) == (Text(("si", "wafer")),)
    func = lambda start: True  # noqa: E731
    assert parse({"$where": func}) == (Where(func),)


def test_regex_and_not():
    (cond,) = parse({"sample": {"$regex": "^cu", "$options": "i"}})
    assert cond.op == "$regex" and cond.value.flags & re.IGNORECASE and cond.value.search("Cu foil")
    compiled = re.compile("x")
    assert parse({"s": {"$regex": compiled}}) == (Cond("start.s", "$regex", compiled),)
    assert parse({"s": {"$not": compiled}}) == (Cond("start.s", "$not", (Cond("start.s", "$regex", compiled),)),)
    assert parse({"n": {"$not": {"$gt": 3}}}) == (Cond("start.n", "$not", (Cond("start.n", "$gt", 3),)),)


@pytest.mark.parametrize(
    "query, message",
    [
        ({"scan_id": {"$foo": 1}}, "$foo"),
        ({"scan_id": {"$mod": [2, 0]}}, "$mod"),
        ({"$expr": {}}, "$expr"),
        ({"$where": "this.scan_id > 2"}, "JavaScript"),
        ({"scan_id": {"$in": 3}}, "takes a list"),
        ({"plan_name": {"$regex": "("}}, "Bad regular expression"),
        ({"plan_name": {"$regex": 3}}, "takes a string"),
        ({"plan_name": {"$regex": "a", "$options": "q"}}, "Unknown $options letter 'q'"),
        ({"plan_name": {"$options": "i"}}, "needs a $regex"),
        ({"plan_name": {"$not": "scan"}}, "takes an operator dict or a regex"),
        ({"x": {"$size": True}}, "takes an integer"),
        ({"x": {"$size": 1.5}}, "takes an integer"),
        ({"sample": {"$eq": "Si", "name": "Si"}}, "Cannot mix operators and plain keys"),
        ({"$or": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$text": "words"}, "$search"),
        ({"": 1}, "non-empty strings"),
        ({"time": datetime(2024, 1, 1)}, "Use since=/until="),
        ({"day": {"$gt": date(2024, 1, 1)}}, "Tiled stores times as numbers"),
    ],
)
def test_what_cannot_run_is_refused_by_name(query, message):
    with pytest.raises(QueryNotSupported, match=re.escape(message)) as info:
        parse(query)
    assert isinstance(info.value, ValueError)


def test_refusals_carry_their_context():
    with pytest.raises(QueryNotSupported) as info:
        parse({"scan_id": {"$mod": [2, 0]}})
    assert (info.value.operator, info.value.path) == ("$mod", "start.scan_id")
    with pytest.raises(QueryNotSupported, match="no words"):
        parse({}, "  ")
    with pytest.raises(QueryNotSupported, match="not list"):
        parse([("a", 1)])


# -- since / until (moved here from tests/test_search.py: it needs no server) -----------------


def _utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_since_and_until_formats_v1_accepted():
    utc = "UTC"
    assert normalize_time("2024", utc) == _utc(2024, 1, 1)
    assert normalize_time("2024-02", utc) == _utc(2024, 2, 1)
    assert normalize_time("2024-02-03", utc) == _utc(2024, 2, 3)
    assert normalize_time("2024-02-03 10", utc) == _utc(2024, 2, 3, 10)
    assert normalize_time("2024-02-03 10:30", utc) == _utc(2024, 2, 3, 10, 30)
    assert normalize_time("2024-02-03 10:30:05.5", utc) == _utc(2024, 2, 3, 10, 30, 5, 500000)
    # ISO 8601 with an offset ignores the broker's zone; naive strings use it (with DST).
    assert normalize_time("2024-02-03T10:30:05+01:00", "Asia/Tokyo") == _utc(2024, 2, 3, 9, 30, 5)
    assert normalize_time("2024-07-01", "Europe/Paris") == _utc(2024, 6, 30, 22)
    assert normalize_time("2024-01-01", "Europe/Paris") == _utc(2023, 12, 31, 23)
    assert normalize_time(datetime(2024, 1, 1), "Europe/Paris") == _utc(2023, 12, 31, 23)
    assert normalize_time(1700000000, utc) == 1700000000.0


# -- client-side evaluation: MongoDB semantics --------------------------------------------------


# The runs of test_search.py's "mixed" fixture, with the expectations the served searches
# must meet, and more cases the client-side evaluator decides alone.
@pytest.mark.parametrize(
    "query, expected",
    [
        *MIXED_QUERIES,
        ({"info.0.name": "Si"}, [2]),
        ({"tag": ["alpha", "beta"]}, [1]),
        ({"tag": {"$all": ["beta", "alpha"]}}, [1]),
        ({"tag": {"$all": []}}, []),
        ({"tag": {"$size": 1}}, [2]),
        ({"tag": None}, []),
        ({"flag": None}, [1, 2, 3]),
        ({"level": {"$not": {"$gt": 2}}}, [0, 3, 4]),
        ({"$or": [{"tag": "gamma"}, {"level": 0}]}, [2, 3]),
        ({"$nor": [{"tag": "alpha"}, {"level": 0}]}, [2, 4]),
        ({"tag": "alpha", "flag": {"$exists": True}}, [0]),
    ],
    ids=str,
)
def test_matches_follows_mongodb(query, expected):
    docs = [{"start": md, "stop": {}} for md in MIXED]
    assert [i for i, doc in enumerate(docs) if matches(parse(query), doc)] == expected


@pytest.mark.parametrize("text, expected", MIXED_TEXT)
def test_text_matches_whole_words_of_start_strings(text, expected):
    docs = [{"start": md, "stop": {}} for md in MIXED]
    assert [i for i, doc in enumerate(docs) if matches(parse({}, text), doc)] == expected


def test_stop_conditions_where_and_string_order():
    run = {"start": {"plan_name": "é", "n": 3}, "stop": {"exit_status": "success"}}
    assert matches(parse({"exit_status": "success"}), run)
    assert not matches(parse({"stop.exit_status": {"$exists": False}}), run)
    assert matches(parse({"stop.reason": {"$exists": False}}), {"start": {}, "stop": {}})
    assert matches(parse({"$where": lambda start: start["n"] % 2 == 1}), run)
    assert not matches(parse({"$where": lambda start: start["n"] > 5}), run)
    # strings order by their UTF-8 bytes, as MongoDB; values of other types never compare
    assert matches(parse({"plan_name": {"$gt": "z"}}), run)
    assert not matches(parse({"n": {"$gt": "a"}}), run)


# -- server-side translation --------------------------------------------------------------------


class Probe:
    """Stands for the server's count of runs holding ``[`` under a key; records what it is asked."""

    def __init__(self, *array_keys: str) -> None:
        self.array_keys = set(array_keys)
        self.asked: list[str] = []

    def __call__(self, key: str) -> bool:
        self.asked.append(key)
        return key in self.array_keys


def plan(query: dict, backend: str, *array_keys: str, text: str | None = None) -> Plan:
    translator = Translator(backend, Probe(*array_keys))
    out = Plan()
    for node in parse(query, text):
        translator.node(node, out)
    return out


@pytest.mark.parametrize(
    "query, backend, arrays, queries, exact",
    [
        ({"scan_id": 3}, SQLITE, (), [Key("start.scan_id") == 3], True),
        ({"scan_id": 3}, POSTGRESQL, (), [Key("start.scan_id") == 3], True),
        ({"num": 5}, SQLITE, (), [Key("start.num") == 5], True),
        # SQLite reads JSON true/false as 1/0: 1 and True need a client-side check there
        ({"num": 1}, SQLITE, (), [Key("start.num") == 1], False),
        ({"flag": True}, SQLITE, (), [Key("start.flag") == True], False),  # noqa: E712
        ({"flag": True}, POSTGRESQL, (), [Key("start.flag") == True], True),  # noqa: E712
        ({"note": "{json-like"}, SQLITE, (), [Key("start.note") == "{json-like"], False),
        ({"det": "d1"}, SQLITE, ("start.det",), [Contains("start.det", "d1")], False),
        ({"det": "d1"}, POSTGRESQL, ("start.det",), [KeyPresent("start.det")], False),
        ({"det": 'say "x"'}, SQLITE, ("start.det",), [KeyPresent("start.det")], False),
        ({"x": None}, SQLITE, (), [], False),
        ({"x": [1, 2]}, SQLITE, (), [KeyPresent("start.x")], False),
        ({"x": 2**60}, POSTGRESQL, (), [KeyPresent("start.x")], False),
        ({"x": {"$ne": 3}}, POSTGRESQL, (), [NotIn("start.x", [3])], True),
        ({"x": {"$ne": 3}}, SQLITE, (), [], False),
        ({"scan_id": {"$gt": 5}}, SQLITE, (), [Comparison("gt", "start.scan_id", 5)], True),
        ({"num": {"$lte": 5}}, POSTGRESQL, (), [Comparison("le", "start.num", 5)], False),
        ({"owner": {"$gte": "m"}}, SQLITE, (), [Comparison("ge", "start.owner", "m")], True),
        ({"sample": {"$lt": "m"}}, SQLITE, (), [Comparison("lt", "start.sample", "m")], False),
        ({"sample": {"$lt": "m"}}, POSTGRESQL, (), [KeyPresent("start.sample")], False),
        ({"num": {"$gt": 1}}, SQLITE, ("start.num",), [KeyPresent("start.num")], False),
        ({"x": {"$in": []}}, SQLITE, (), [In("start.x", [])], True),
        ({"x": {"$in": [1, None]}}, SQLITE, (), [], False),
        ({"x": {"$in": ["a", "b"]}}, POSTGRESQL, (), [In("start.x", ["a", "b"])], True),
        ({"x": {"$in": ["a", "b"]}}, SQLITE, (), [In("start.x", ["a", "b"])], True),
        ({"x": {"$in": [0, 5]}}, SQLITE, (), [In("start.x", [0, 5])], False),
        ({"x": {"$in": ["a", 5]}}, SQLITE, (), [KeyPresent("start.x")], False),
        ({"x": {"$in": ["a"]}}, SQLITE, ("start.x",), [KeyPresent("start.x")], False),
        ({"x": {"$nin": [1, 2]}}, POSTGRESQL, (), [NotIn("start.x", [1, 2])], True),
        ({"x": {"$nin": [1, 2]}}, SQLITE, (), [], False),
        ({"x": {"$nin": []}}, SQLITE, (), [], True),
        ({"x": {"$exists": True}}, SQLITE, ("start.x",), [KeyPresent("start.x", exists=True)], True),
        ({"x.y": {"$exists": False}}, SQLITE, (), [KeyPresent("start.x.y", exists=False)], True),
        ({"x.y": {"$exists": True}}, SQLITE, ("start.x",), [KeyPresent("start.x")], False),
        ({"x.y": {"$exists": False}}, SQLITE, ("start.x",), [], False),
        ({"x": {"$regex": "^a"}}, POSTGRESQL, (), [KeyPresent("start.x")], False),
        ({"x": {"$size": 2}}, SQLITE, (), [KeyPresent("start.x")], False),
        ({"x": {"$all": ["a"]}}, SQLITE, (), [KeyPresent("start.x")], False),
        ({"x": {"$all": []}}, SQLITE, (), [], False),
        ({"x": {"$not": {"$gt": 1}}}, SQLITE, (), [], False),
        ({"my-key": 1}, SQLITE, (), [], False),
        ({"scan_id": 3}, UNKNOWN, (), [], False),
        (
            {"$or": [{"plan_name": "a"}, {"plan_name": {"$in": ["b", "c"]}}]},
            POSTGRESQL,
            (),
            [In("start.plan_name", ["a", "b", "c"])],
            True,
        ),
        ({"$or": [{"plan_name": "a"}, {"operator": "b"}]}, POSTGRESQL, (), [], False),
        ({"$or": [{"n": {"$gt": 1}}, {"n": 0}]}, POSTGRESQL, (), [], False),
        ({"$nor": [{"plan_name": "a"}]}, POSTGRESQL, (), [], False),
        (
            {"$and": [{"scan_id": 1}, {"plan_name": "a"}]},
            POSTGRESQL,
            (),
            [Key("start.scan_id") == 1, Key("start.plan_name") == "a"],
            True,
        ),
        ({"$where": lambda start: True}, SQLITE, (), [], False),
    ],
    ids=str,
)
def test_translation(query, backend, arrays, queries, exact):
    result = plan(query, backend, *arrays)
    assert result.queries == queries
    assert result.exact is exact
    assert bool(result.reasons) is not exact


def test_text_search_runs_as_full_text_on_sqlite_only():
    sqlite = plan({}, SQLITE, text="Foil sheet")
    assert sqlite.queries == [FullText("foil OR nfoil OR tfoil OR rfoil OR sheet OR nsheet OR tsheet OR rsheet")]
    assert sqlite.exact is False
    assert plan({}, POSTGRESQL, text="foil").queries == []
    assert plan({}, SQLITE, text="café").queries == []  # FTS5 and non-ASCII words: the client decides


def test_one_probe_per_top_level_key_and_none_for_schema_keys():
    probe = Probe()
    translator = Translator(SQLITE, probe)
    out = Plan()
    for node in parse(
        {"sample.name": "Si", "sample.thickness": {"$gt": 1}, "scan_id": 2, "uid": "abc", "exit_status": "x"}
    ):
        translator.node(node, out)
    assert probe.asked == ["start.sample"]
    # comparisons on keys the schema does not type may meet other types: checked on the client
    assert out.reasons == ["$gt on start.sample.thickness"]


def test_the_plan_says_why_it_is_inexact():
    out = plan({"x": {"$regex": "a"}, "$where": lambda s: True}, SQLITE)
    assert out.reasons == ["$regex on start.x", "$where"]
    assert plan({"scan_id": 1}, SQLITE).reasons == []


# -- the keywords v1 read itself (issue 15, item 7) -------------------------------------------
def test_deprecated_time_names_are_renamed_with_a_warning():
    from databroker_compat import ConflictingArguments
    from databroker_compat.queries import DEPRECATED_NAMES, current_names

    assert DEPRECATED_NAMES == {"start_time": "since", "stop_time": "until"}
    with pytest.warns(DeprecationWarning, match=r"db\(start_time=\.\.\.\) is v1's deprecated spelling"):
        assert current_names({"start_time": 1, "plan_name": "scan"}) == {"plan_name": "scan", "since": 1}
    with pytest.warns(DeprecationWarning, match="until"):
        assert current_names({"stop_time": 2}) == {"until": 2}
    query = {"since": 1, "scan_id": 3}
    assert current_names(query) == query and current_names(query) is not query
    with pytest.raises(ConflictingArguments, match="not both") as err:
        current_names({"until": 1, "stop_time": 2})
    assert isinstance(err.value, TypeError) and (err.value.argument, err.value.deprecated) == ("until", "stop_time")


def test_data_key_is_a_node_of_its_own_never_a_start_condition():
    from databroker_compat.queries import DataKey, data_key_node

    assert data_key_node("det") == DataKey("det")
    for bad in (["det"], 3, ""):
        with pytest.raises(QueryNotSupported, match="one data key") as err:
            data_key_node(bad)
        assert isinstance(err.value, NotImplementedError) and isinstance(err.value, ValueError)
    with pytest.raises(QueryNotSupported, match=r"\[h for h in db\(\.\.\.\) if 'a.b' in h\.fields\(\)\]"):
        data_key_node("a.b")


class _Node:
    """What check_data_keys reads of a container: its item's links."""

    def __init__(self, links):
        self.item = {"links": links}


def test_a_server_without_deep_search_refuses_data_key_saying_what_to_write():
    from databroker_compat.queries import DataKey, check_data_keys, runs_declaring

    check_data_keys([DataKey("det")], _Node({"search": "s", "search_deep": "d"}))
    check_data_keys([Cond("start.plan_name", "$eq", "scan")], _Node({"search": "s"}))
    with pytest.raises(QueryNotSupported, match="would have to list every run") as err:
        check_data_keys([DataKey("det")], _Node({"search": "s"}))
    assert "'det' in h.fields()" in str(err.value) and err.value.data_key == "det"
    assert isinstance(err.value, NotImplementedError)
    with pytest.raises(QueryNotSupported, match="deep"):
        runs_declaring(_Node({"search": "s"}), "det")


def test_uid_queries_keep_urls_short():
    from databroker_compat.queries import UIDS_PER_QUERY, uid_queries

    uids = [f"{i:036d}" for i in range(2 * UIDS_PER_QUERY + 1)]
    queries = uid_queries(uids)
    assert [len(q.value) for q in queries] == [UIDS_PER_QUERY, UIDS_PER_QUERY, 1]
    assert all(q.key == "start.uid" for q in queries) and [u for q in queries for u in q.value] == uids
    assert uid_queries([]) == []
