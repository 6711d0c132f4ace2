"""The one redactor: every secret shape the config and migration copies knew, and the ones they missed."""

from __future__ import annotations

import pytest

from databroker_compat._redact import MASK, redact


@pytest.mark.parametrize(
    "text, expected",
    [
        # URI passwords, any scheme
        ("mongodb://u:p@h", "mongodb://u:***@h"),
        ("mongodb://user:pa55@host:27017/mds", "mongodb://user:***@host:27017/mds"),
        ("mongodb://user:pw@host/db", "mongodb://user:***@host/db"),
        (
            "mongodb+srv://u:p%40ss@cluster.example/db?authSource=admin",
            "mongodb+srv://u:***@cluster.example/db?authSource=admin",
        ),
        ("http://u:p@h", "http://u:***@h"),
        ("https://alice:s3cret@tiled.example.org/api/v1", "https://alice:***@tiled.example.org/api/v1"),
        ("postgresql://tiled:pw@127.0.0.1:5432/catalog", "postgresql://tiled:***@127.0.0.1:5432/catalog"),
        ("mongodb://:only-a-password@h/db", "mongodb://:***@h/db"),
        # a password with an unescaped "/" is masked whole, not left half visible
        ("mongodb://u:pa/ss@h/db", "mongodb://u:***@h/db"),
        # secret query values, any case
        ("http://h:8000/api/v1?api_key=secret", "http://h:8000/api/v1?api_key=***"),
        ("failed: http://t:8000/api/v1?api_key=secret123&x=1", "failed: http://t:8000/api/v1?api_key=***&x=1"),
        ("http://h/?apikey=k1", "http://h/?apikey=***"),
        ("http://h/?token=t0k&page=2", "http://h/?token=***&page=2"),
        ("http://h/?access_token=abc.def", "http://h/?access_token=***"),
        ("password=hunter2", "password=***"),
        ("passwd=hunter2", "passwd=***"),
        ("pwd=hunter2", "pwd=***"),
        ("secret=xyz", "secret=***"),
        ("API_KEY=abc", "API_KEY=***"),
        ("ApiKey=abc", "ApiKey=***"),
        ("Token=abc", "Token=***"),
        ("PASSWORD=abc", "PASSWORD=***"),
        ("Access_Token=abc", "Access_Token=***"),
        ("uri='http://h/?api_key=abc'", "uri='http://h/?api_key=***'"),
        # environment references are kept as written, in query values and in URIs
        ("api_key=${TILED_API_KEY}", "api_key=${TILED_API_KEY}"),
        ("token=$TOKEN", "token=$TOKEN"),
        ('api_key={{ env("TILED_API_KEY") }}', 'api_key={{ env("TILED_API_KEY") }}'),
        (
            "mongodb://admin:${DBC_MONGO_PW}@mongo.example.org/csx",
            "mongodb://admin:${DBC_MONGO_PW}@mongo.example.org/csx",
        ),
        ("mongodb://admin:$PW@mongo/csx", "mongodb://admin:$PW@mongo/csx"),
        ("mongodb://admin:{{env('PW')}}@mongo/csx", "mongodb://admin:{{env('PW')}}@mongo/csx"),
        # several secrets in one string
        ("two mongodb://a:b@h1/x and mongodb://c:d@h2/y", "two mongodb://a:***@h1/x and mongodb://c:***@h2/y"),
        (
            "mongodb://u:p@h/db?authSource=admin&password=x http://t/?api_key=k&token=t",
            "mongodb://u:***@h/db?authSource=admin&password=*** http://t/?api_key=***&token=***",
        ),
        ("password=hunter2 api_key=${TILED_API_KEY}", "password=*** api_key=${TILED_API_KEY}"),
        ('api_key={{ env("X") }}&token=abc', 'api_key={{ env("X") }}&token=***'),
        # no secret: unchanged
        ("mongodb://host:27017/mds", "mongodb://host:27017/mds"),
        (
            "http://127.0.0.1:8000/api/v1/metadata/raw?page[offset]=10",
            "http://127.0.0.1:8000/api/v1/metadata/raw?page[offset]=10",
        ),
        ("http://h:8000/x?owner=alice@example.org", "http://h:8000/x?owner=alice@example.org"),
        ("migrated: 2, skipped: 0 (keys: token_count=3)", "migrated: 2, skipped: 0 (keys: token_count=3)"),
        ("mytoken=abc", "mytoken=abc"),
        ("", ""),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_nothing_secret_survives():
    text = "mongodb://op:hunter2@mongo/iss http://tiled/api?api_key=k3y&token=t0k password=pw secret=shh"
    out = redact(text)
    for secret in ("hunter2", "k3y", "t0k", "=pw", "shh"):
        assert secret not in out
    assert out.count(MASK) == 5


def test_any_object_is_redacted_as_its_str():
    class Uri:
        def __str__(self) -> str:
            return "mongodb://u:p@h/db"

    assert redact(Uri()) == "mongodb://u:***@h/db"
    assert redact(42) == "42"
    assert redact({"uri": "http://h/?api_key=k"}) == "{'uri': 'http://h/?api_key=***'}"


def test_redacting_twice_changes_nothing_more():
    once = redact("mongodb://u:p@h/db?token=t")
    assert redact(once) == once
