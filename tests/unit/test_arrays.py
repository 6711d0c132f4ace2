"""arrays.py and the HTTP seam's retry policy, without a server."""

from __future__ import annotations

import httpx
import pytest

from databroker_compat import ServerUnavailable
from databroker_compat._tiled import GET_ATTEMPTS, is_transient, numpy_dtype, retry_once, send_get
from databroker_compat.arrays import ArrayNode, node_from_item, row_groups


class Address:
    """Just what the retry policy reads of a tiled Context: the server's address."""

    api_uri = "http://tiled.example:8000/api/v1/"


def failing(errors, answer="answer"):
    calls = []

    def send():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return answer

    return send, calls


def test_a_dropped_connection_is_sent_once_more():
    send, calls = failing([httpx.ReadError("closed")])
    assert send_get(Address(), send) == "answer" and len(calls) == 2
    send, calls = failing([httpx.RemoteProtocolError("closed")])
    assert send_get(Address(), send) == "answer" and len(calls) == 2


def test_retries_stop_after_the_second_attempt():
    send, calls = failing([httpx.ReadError("closed")] * 5)
    with pytest.raises(ServerUnavailable, match="did not answer") as err:
        send_get(Address(), send)
    assert len(calls) == GET_ATTEMPTS == 2
    assert err.value.uri == Address.api_uri and isinstance(err.value, ConnectionError)
    assert is_transient(err.value)


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_other_transport_errors_are_not_sent_again_at_once(error):
    send, calls = failing([error])
    with pytest.raises(ServerUnavailable):
        send_get(Address(), send)
    assert len(calls) == 1
    assert is_transient(error) and not retry_once(error)


def test_non_transport_errors_pass_through():
    send, calls = failing([KeyError("not HTTP")])
    with pytest.raises(KeyError):
        send_get(Address(), send)
    assert len(calls) == 1
    assert not is_transient(KeyError("x")) and not retry_once(httpx.UnsupportedProtocol("htps"))


def test_node_from_item_and_its_dtype():
    item = {
        "id": "img",
        "attributes": {
            "ancestors": ["run", "primary"],
            "structure": {"shape": [4, 3, 2], "chunks": [[2, 2], [3], [2]],
                          "data_type": {"endianness": "big", "kind": "i", "itemsize": 4}},
            "data_sources": [{"mimetype": "image/tiff", "assets": [
                {"data_uri": "file://localhost/d/b.tif", "num": 2}, {"data_uri": "file://localhost/d/a.tif", "num": 1}]}],
            "metadata": {"spec": "AD_TIFF"},
        },
    }
    node = node_from_item(None, item)
    assert node.path == ("run", "primary", "img") and node.shape == (4, 3, 2)
    assert node.dtype == numpy_dtype({"endianness": "big", "kind": "i", "itemsize": 4}) and node.dtype_str == ">i4"
    assert node.row_chunks == (2, 2) and node.frame_bytes == 24
    assert node.files == ("file://localhost/d/a.tif", "file://localhost/d/b.tif") and node.is_external
    error = node.unreadable(500, "boom", (0, 1))
    assert error.files == ["/d/a.tif", "/d/b.tif"] and error.key == "img" and "readable storage" in str(error)


def test_row_groups_follow_chunks():
    node = ArrayNode(None, "k", ("k",), (10, 1), "<u1", (3, 3, 4))
    assert row_groups(node, list(range(10))) == [(0, 0, 10)]
    # Into the next chunk only when all of it is wanted.
    assert row_groups(node, [1, 2, 3, 4, 5]) == [(0, 1, 6)]
    assert row_groups(node, [1, 2, 3, 4]) == [(0, 1, 3), (2, 3, 5)]
    assert row_groups(node, [0, 5, 9]) == [(0, 0, 1), (1, 5, 6), (2, 9, 10)]
    assert row_groups(node, []) == []


@pytest.mark.parametrize(
    ("status", "headers", "transient"),
    [
        (503, {}, True),
        (500, {}, True),
        (429, {}, True),
        (429, {"Retry-After": "0"}, True),  # a delay of 0 s is still "send it again"
        (429, {"Retry-After": "2.5"}, True),
        (404, {}, False),
        (401, {}, False),
    ],
)
def test_http_status_errors_follow_tiled_retry_rule(status, headers, transient):
    request = httpx.Request("GET", "http://127.0.0.1:1/api/v1/")
    response = httpx.Response(status, headers=headers, request=request)
    error = httpx.HTTPStatusError("status", request=request, response=response)
    assert is_transient(error) is transient
