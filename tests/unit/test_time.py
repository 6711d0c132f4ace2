"""The one time parser (``_time.to_timestamp``) and its zone rule; searches read times through it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from databroker_compat import QueryNotSupported
from databroker_compat._time import TIME_FORMATS, local_zone, to_timestamp, zone
from databroker_compat.exceptions import BadTime, DatabrokerCompatError
from databroker_compat.queries import TIME_FORMATS as QUERY_TIME_FORMATS
from databroker_compat.queries import normalize_time, time_range


def _utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024", _utc(2024, 1, 1)),
        ("2024-02", _utc(2024, 2, 1)),
        ("2024-02-03", _utc(2024, 2, 3)),
        ("2024-02-03 10", _utc(2024, 2, 3, 10)),
        ("2024-02-03 10:30", _utc(2024, 2, 3, 10, 30)),
        ("2024-02-03 10:30:05", _utc(2024, 2, 3, 10, 30, 5)),
        ("2024-02-03 10:30:05.5", _utc(2024, 2, 3, 10, 30, 5, 500000)),
        ("  2024-02-03  ", _utc(2024, 2, 3)),
        ("2024-02-03T10:30:05", _utc(2024, 2, 3, 10, 30, 5)),
    ],
)
def test_the_formats_v1_accepted(text, expected):
    assert to_timestamp(text, "UTC") == expected


def test_a_time_that_names_its_zone_ignores_the_given_one():
    assert to_timestamp("2024-02-03T10:30:05+01:00", "Asia/Tokyo") == _utc(2024, 2, 3, 9, 30, 5)
    assert to_timestamp("2024-02-03T10:30:05+00:00", None) == _utc(2024, 2, 3, 10, 30, 5)
    aware = datetime(2024, 1, 1, 12, tzinfo=ZoneInfo("America/New_York"))
    assert to_timestamp(aware, "Asia/Kolkata") == _utc(2024, 1, 1, 17)


def test_naive_times_are_read_in_the_given_zone_with_daylight_saving():
    assert to_timestamp("2024-07-01", "Europe/Paris") == _utc(2024, 6, 30, 22)
    assert to_timestamp("2024-01-01", "Europe/Paris") == _utc(2023, 12, 31, 23)
    assert to_timestamp(datetime(2024, 1, 1), "Europe/Paris") == _utc(2023, 12, 31, 23)
    assert to_timestamp(date(2024, 1, 1), "Europe/Paris") == _utc(2023, 12, 31, 23)
    assert to_timestamp("2019-01-01", "America/New_York") == _utc(2019, 1, 1, 5)


def test_without_a_zone_naive_times_are_local():
    local = local_zone()
    assert to_timestamp("2019-01-01") == datetime(2019, 1, 1, tzinfo=local).timestamp()
    assert to_timestamp(datetime(2019, 6, 1, 12)) == datetime(2019, 6, 1, 12, tzinfo=local).timestamp()
    assert zone(None) == local


def test_numbers_are_timestamps_in_any_zone():
    assert to_timestamp(1700000000, "UTC") == 1700000000.0
    assert to_timestamp(1700000000.25, "Asia/Tokyo") == 1700000000.25
    assert isinstance(to_timestamp(1700000000), float)


@pytest.mark.parametrize("value", ["yesterday", "03/02/2024", "2024-13-01", "", True, None, [2024], object()])
def test_what_is_not_a_time_raises_bad_time(value):
    with pytest.raises(BadTime) as info:
        to_timestamp(value, "UTC", name="--since")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DatabrokerCompatError)
    assert info.value.value is value
    assert "--since" in str(info.value)


def test_a_bad_string_lists_the_formats_that_work():
    with pytest.raises(BadTime, match="%Y-%m-%d") as info:
        to_timestamp("yesterday", "UTC", name="since")
    assert "since='yesterday'" in str(info.value)
    assert "ISO 8601" in str(info.value)


def test_an_unknown_zone_raises_bad_time():
    with pytest.raises(BadTime, match="Unknown time zone 'Mars/Olympus'") as info:
        to_timestamp("2024-01-01", "Mars/Olympus")
    assert info.value.value == "Mars/Olympus"
    assert zone("UTC") == ZoneInfo("UTC")


# -- one reading for searches and the migration (issue 13: the drifted rule) -------------------

SAME_STRINGS = [
    "2019-01-01",
    "2019-01",
    "2019",
    "2019-01-01 10:30",
    "2019-03-10 02:30:00",  # inside New York's spring-forward gap
    "2019-11-03 01:30",  # New York's repeated hour
    "2019-01-01T10:30:00+05:30",
    "2019-01-01T10:30:00",
]


@pytest.mark.parametrize("zone_name", [None, "UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("text", SAME_STRINGS)
def test_searches_read_a_string_as_to_timestamp_does(text, zone_name):
    expected = to_timestamp(text, zone_name)
    assert normalize_time(text, zone_name) == expected
    assert time_range(since=text, timezone=zone_name) == {"start.time": {"$gte": expected}}
    assert time_range(until=text, timezone=zone_name) == {"start.time": {"$lt": expected}}


def test_a_month_is_accepted_and_means_its_first_midnight():
    assert to_timestamp("2019-01", "UTC") == to_timestamp("2019-01-01 00:00:00", "UTC") == _utc(2019, 1, 1)
    assert time_range(since="2019-01", until="2019-02", timezone="UTC") == {
        "start.time": {"$gte": _utc(2019, 1, 1), "$lt": _utc(2019, 2, 1)}
    }
    assert to_timestamp("2019-02", "UTC") - to_timestamp("2019-01", "UTC") == timedelta(days=31).total_seconds()


def test_searches_and_the_parser_share_the_formats():
    assert QUERY_TIME_FORMATS is TIME_FORMATS
    assert "%Y-%m" in TIME_FORMATS


def test_a_bad_time_in_a_search_is_a_query_not_supported_caused_by_bad_time():
    with pytest.raises(QueryNotSupported, match="%Y-%m-%d") as info:
        time_range(since="yesterday", timezone="UTC")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, BadTime)
    assert info.value.value == "yesterday"
    assert "since='yesterday'" in str(info.value)
    with pytest.raises(QueryNotSupported, match="until='03/02/2024'"):
        time_range(until="03/02/2024")
    with pytest.raises(QueryNotSupported, match="Unknown time zone"):
        time_range(since="2024-01-01", timezone="Nowhere/Special")


def test_skipped_and_repeated_local_times_take_the_offset_before_the_change():
    assert to_timestamp("2019-03-10 02:30", "America/New_York") == _utc(2019, 3, 10, 7, 30)
    assert to_timestamp("2019-11-03 01:30", "America/New_York") == _utc(2019, 11, 3, 5, 30)
