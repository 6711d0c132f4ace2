"""Small, explicit access to a Tiled server over its public HTTP API: the only HTTP seam.

The Tiled client classes do several requests where one is enough, and its dataframe
path can turn small array columns into their string form. The read path here talks to
the same documented endpoints (``/metadata``, ``/search``, ``/table/full``,
``/array/full``) through the client's own authenticated ``httpx`` client, so every
request is counted and chosen.

Every GET goes through :func:`send_get`, the one retry policy of the package (built on
:func:`is_transient`, tiled's own rule of what may be retried).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import quote

import httpx
from tiled.client.container import Container
from tiled.client.utils import handle_error, should_retry

from .exceptions import ExternalDataUnavailable, ServerUnavailable

if TYPE_CHECKING:
    import numpy
    import pyarrow
    from tiled.client.context import Context

logger = logging.getLogger(__name__)

__all__ = [
    "ARROW",
    "GET_ATTEMPTS",
    "MSGPACK",
    "OCTET",
    "as_container",
    "check",
    "data_source",
    "get_json",
    "is_transient",
    "iter_children",
    "node_path",
    "numpy_dtype",
    "read_array_into",
    "read_table",
    "retry_once",
    "route_url",
    "runs_only",
    "send_get",
    "streaming_cache",
    "url_path",
    "webhooks",
    "websocket_url",
]

MSGPACK = "application/x-msgpack"
ARROW = "application/vnd.apache.arrow.file"
OCTET = "application/octet-stream"

#: The most times one GET is sent (the first try and one retry; see :func:`send_get`).
GET_ATTEMPTS = 2
# Transport errors that mean "the connection was closed under the request": a kept-alive
# connection the server dropped (as it does after a 500). A fresh connection succeeds.
_DROPPED = (httpx.ReadError, httpx.RemoteProtocolError)

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """Whether a failed request may succeed if sent again: the one HTTP retry rule.

    Tiled's own client rule (``tiled.client.utils.should_retry``): HTTP 5xx and 429,
    and transport errors other than a malformed URL or request. Our
    :class:`~databroker_compat.exceptions.ServerUnavailable` (a transport error we
    already wrapped) counts too.

    >>> is_transient(httpx.ConnectError("refused")), is_transient(ValueError("x"))
    (True, False)
    """
    if isinstance(error, ServerUnavailable):
        return True
    if isinstance(error, httpx.HTTPError):
        # should_retry answers True/False, or the Retry-After delay of a 429 as a float:
        # any delay, 0.0 included, means "send it again".
        verdict = should_retry(error)
        return verdict is not False and verdict is not None
    return False


def retry_once(error: BaseException) -> bool:
    """Whether :func:`send_get` sends a failed GET again at once: transient, and dropped.

    Only a request whose connection was closed under it is sent again right away (on a
    fresh connection); a refused connection or a timeout would fail the same way, and
    an HTTP error status is the server's answer. Callers that can wait (the migration)
    retry every :func:`is_transient` error later, with a back-off.

    >>> retry_once(httpx.ReadError("closed")), retry_once(httpx.ConnectError("refused"))
    (True, False)
    """
    return isinstance(error, _DROPPED) and is_transient(error)


def send_get(context: Context, send: Callable[[], T]) -> T:
    """Run ``send`` (one GET to the server of ``context``) under the retry policy.

    ``send`` is sent again once when :func:`retry_once` says so (at most
    :data:`GET_ATTEMPTS` times in all); a transport failure that remains becomes
    :class:`~databroker_compat.exceptions.ServerUnavailable` (a ``ConnectionError``)
    with ``uri`` set. HTTP error statuses are returned (or raised by ``send``) as they are.

    >>> send_get(context, lambda: context.http_client.get(url))   # doctest: +SKIP
    <Response [200 OK]>
    """
    for attempt in range(1, GET_ATTEMPTS + 1):
        try:
            return send()
        except httpx.TransportError as err:
            if attempt < GET_ATTEMPTS and retry_once(err):
                logger.debug("Connection to %s was closed by the server (%r); sending again.", context.api_uri, err)
                continue
            raise ServerUnavailable(
                f"The Tiled server at {context.api_uri} did not answer ({err!r}). "
                "Check that it is running and reachable, then try again.",
                uri=str(context.api_uri),
            ) from err
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def check(response: httpx.Response) -> httpx.Response:
    """Raise tiled's error for an error response (``handle_error``); return the response otherwise."""
    return handle_error(response)


def as_container(client: Any) -> Container:
    """A plain ``Container`` view of ``client`` (special clients override lookups).

    Specialised clients such as ``CatalogOfBlueskyRuns`` reinterpret ``[]`` and
    ``search``; the broker needs Tiled's generic behaviour, whatever spec the node has.

    >>> as_container(object())
    Traceback (most recent call last):
    ...
    TypeError: Broker needs a Tiled container client (e.g. tiled.client.from_uri(...)), not object.
    """
    if type(client) is Container:
        return client
    if not hasattr(client, "item") or not hasattr(client, "context"):
        raise TypeError(
            f"Broker needs a Tiled container client (e.g. tiled.client.from_uri(...)), "
            f"not {type(client).__name__}."
        )
    if client.item["attributes"]["structure_family"] != "container":
        raise TypeError(
            "Broker needs a Tiled *container* whose children are Bluesky runs; "
            f"this node is a {client.item['attributes']['structure_family']}."
        )
    return Container(client.context, item=client.item, structure_clients=client.structure_clients)


def runs_only(container: Container) -> Container:
    """Only the children that are Bluesky runs (a catalog may hold other nodes too).

    >>> runs = runs_only(as_container(client))   # doctest: +SKIP
    """
    from tiled.queries import SpecsQuery

    return container.search(SpecsQuery(include=["BlueskyRun"]))


def url_path(*parts: str) -> str:
    """Path segments joined for a URL, each one quoted.

    >>> url_path("run 1", "primary")
    'run%201/primary'
    """
    return "/".join(quote(str(p), safe="") for p in parts)


def node_path(item: dict) -> list[str]:
    """The path segments of a node, from its item.

    >>> node_path({"id": "primary", "attributes": {"ancestors": ["run"]}})
    ['run', 'primary']
    """
    return [*item["attributes"].get("ancestors", []), item["id"]]


def _get(context: Context, url: str, *, params: dict | None = None, accept: str = MSGPACK) -> httpx.Response:
    return send_get(context, lambda: context.http_client.get(url, params=params or {}, headers={"Accept": accept}))


def get_json(context: Context, url: str, *, params: dict | None = None) -> dict:
    """GET a JSON/msgpack endpoint and return the decoded body (errors raised).

    >>> get_json(client.context, client.item["links"]["self"])["data"]["id"]   # doctest: +SKIP
    """
    response = check(_get(context, url, params=params))
    return response.json()


def iter_children(context: Context, item: dict, *, page_size: int = 100, metadata: bool = True) -> Iterator[dict]:
    """Yield the items of the children of ``item``, one request per page.

    >>> [child["id"] for child in iter_children(run.context, run.item)]   # doctest: +SKIP
    ['primary', 'baseline']
    """
    url = item["links"]["search"]
    params: dict[str, Any] = {"page[offset]": 0, "page[limit]": page_size}
    if not metadata:
        params["select_metadata"] = False
    while url is not None:
        body = get_json(context, url, params=params)
        yield from body["data"]
        url = body["links"].get("next")
        params = {}  # the next link carries its own parameters


def read_table(context: Context, path: list[str], columns: list[str] | None = None) -> pyarrow.Table | None:
    """Read a whole table node as a ``pyarrow.Table``; ``None`` if it does not exist.

    >>> read_table(run.context, [uid, "primary", "internal"], ["seq_num"]).num_rows   # doctest: +SKIP
    3
    """
    import pyarrow

    url = f"{context.api_uri}table/full/{url_path(*path)}"
    params: dict[str, Any] = {"format": ARROW}
    if columns is not None:
        params["column"] = list(columns)
    response = _get(context, url, params=params, accept=ARROW)
    if response.status_code == 404:
        return None
    check(response)
    return pyarrow.ipc.open_file(io.BytesIO(response.content)).read_all()


def read_array_into(
    context: Context,
    path: tuple[str, ...] | list[str],
    selection: str,
    target: memoryview,
    *,
    label: str,
    unreadable: Callable[[int, str], BaseException],
) -> None:
    """Stream the bytes of ``selection`` (Tiled slice syntax) of an array node into ``target``.

    The response is written straight into ``target`` as it arrives, so a frame costs
    its own size in memory and no more. A 5xx, 404 or 410 answer (the server could not
    read the data) raises ``unreadable(status, text)``; other error statuses raise
    tiled's error. ``label`` names the data in the error when the byte count is not
    the ``len(target)`` the node's structure announces
    (:class:`~databroker_compat.exceptions.ExternalDataUnavailable`).

    >>> out = numpy.empty((2, 10, 10))                                            # doctest: +SKIP
    >>> read_array_into(ctx, path, "0:2,:,:", memoryview(out.reshape(-1).view("u1")),
    ...                 label="'img'", unreadable=lambda status, text: OSError(status))   # doctest: +SKIP
    """
    url = f"{context.api_uri}array/full/{url_path(*path)}"
    request = {"params": {"slice": selection}, "headers": {"Accept": OCTET}}

    def send() -> int:
        with context.http_client.stream("GET", url, **request) as response:
            if response.is_error:
                response.read()
                if response.status_code >= 500 or response.status_code in (404, 410):
                    raise unreadable(response.status_code, response.text)
                check(response)
            filled = 0
            for piece in response.iter_bytes():
                if filled + len(piece) > len(target):
                    raise ExternalDataUnavailable(
                        f"The server sent more than the {len(target)} bytes of "
                        f"{label}[{selection}] its structure announces.",
                        selection=selection,
                    )
                target[filled : filled + len(piece)] = piece
                filled += len(piece)
            return filled

    filled = send_get(context, send)
    if filled != len(target):
        raise ExternalDataUnavailable(
            f"The server sent {filled} bytes for {label}[{selection}], not the {len(target)} "
            "its structure announces; the files may have changed since the run was written.",
            selection=selection,
        )


def numpy_dtype(data_type: dict) -> numpy.dtype:
    """The numpy dtype of a Tiled array structure's ``data_type``.

    >>> numpy_dtype({"endianness": "little", "kind": "f", "itemsize": 8})
    dtype('float64')
    """
    import numpy

    endianness = {"little": "<", "big": ">", "not_applicable": "|"}[data_type["endianness"]]
    return numpy.dtype(f"{endianness}{data_type['kind']}{data_type['itemsize']}")


def data_source(context: Context, path: list[str]) -> dict | None:
    """The first data source of a node (its MIME type, parameters and file assets).

    >>> data_source(run.context, [uid, "primary", "img"])["mimetype"]   # doctest: +SKIP
    'application/x-hdf5'
    """
    url = f"{context.api_uri}metadata/{url_path(*path)}"
    body = get_json(context, url, params={"include_data_sources": True})
    sources = body["data"]["attributes"].get("data_sources") or []
    return sources[0] if sources else None


def route_url(node: Any, route: str) -> str:
    """The address of ``node`` under another API route (``"stream/single"``, ``"webhooks/target"``).

    Built from the node's own metadata address, so a server behind a path prefix works.

    >>> class Node: uri = "http://tiled.example/api/v1/metadata/raw/abc"
    >>> route_url(Node(), "webhooks/target")
    'http://tiled.example/api/v1/webhooks/target/raw/abc'
    >>> Node.uri = "http://tiled.example/api/v1/metadata"
    >>> route_url(Node(), "webhooks/target")
    'http://tiled.example/api/v1/webhooks/target/'
    """
    uri = str(node.uri)
    if "/metadata/" in uri:
        return uri.replace("/metadata/", f"/{route}/", 1)
    # the root node: ".../api/v1/metadata" without the trailing slash
    return uri.rstrip("/").removesuffix("/metadata") + f"/{route}/"


def websocket_url(node: Any) -> str:
    """The ``/stream/single`` websocket address of a node (``ws://`` or ``wss://``).

    Built from the node's own metadata address, so a server behind a path prefix works.

    >>> class Node: uri = "https://tiled.example/api/v1/metadata/raw/abc"
    >>> websocket_url(Node())
    'wss://tiled.example/api/v1/stream/single/raw/abc'
    """
    scheme, _, rest = route_url(node, "stream/single").partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest


def streaming_cache(node: Any, *, timeout: float = 10.0) -> bool | None:
    """Whether the server of ``node`` runs Tiled's streaming cache (websocket updates).

    Tiled says so nowhere in its ``/api/v1/`` description, so the server is asked the
    one way that tells: a websocket handshake at :func:`websocket_url` of ``node``.
    A server with a streaming cache (``tiled serve ... --cache redis://...``,
    ``--temp``, ``SimpleTiledServer``: their in-memory cache) accepts it and sends the
    node's schema; one without answers the handshake with HTTP 500 (and writes the
    error in its log) or 404 (a server with no websocket route). The connection is
    closed at once. One handshake, about 20 ms on loopback.

    Returns
    -------
    True (it streams), False (it does not) or None (it could not be told: no answer,
    refused credentials, a transport this probe does not know). Callers that would
    leave something out on False must treat None as True.

    >>> streaming_cache(client)   # doctest: +SKIP
    False
    """
    context = node.context
    url = websocket_url(node)
    http_client = context.http_client
    if getattr(http_client, "app", None) is not None:  # an ASGI test client: no socket
        try:
            with http_client.websocket_connect(url.replace("ws://", "http://", 1)):
                return True
        except AttributeError:  # the handler found no streaming cache
            return False
        except Exception as err:
            logger.debug("Could not tell whether %s streams: %r", url, err)
            return None
    import websockets.exceptions
    from websockets.sync.client import connect

    headers = {"Authorization": f"Apikey {context.api_key}"} if context.api_key else {}
    token = getattr(http_client, "headers", {}).get("authorization")
    if token and not headers:
        headers = {"Authorization": token}
    try:
        with connect(url, additional_headers=headers, open_timeout=timeout, close_timeout=1):
            return True
    except websockets.exceptions.InvalidStatus as err:
        status = err.response.status_code
        if status >= 500 or status == 404:
            return False
        logger.debug("Could not tell whether %s streams: HTTP %d", url, status)
        return None
    except Exception as err:
        logger.debug("Could not tell whether %s streams: %r", url, err)
        return None


def webhooks(node: Any, *, timeout: float = 10.0) -> bool | None:
    """Whether the server of ``node`` may dispatch webhooks (it mounts Tiled's webhook API).

    Tiled mounts ``/api/v1/webhooks`` only when its configuration has a ``webhooks:``
    section, and only such a server dispatches webhooks (``StreamClosed`` among them,
    sent when a writer closes a node's stream). One GET of the webhooks registered on
    ``node`` tells: the route's own "Not Found" (HTTP 404, ``{"detail": "Not Found"}``)
    means no webhook API; any answer of the route (a list, or a refusal for want of
    the ``read:webhooks`` scope) means there is one. Whether webhooks are registered
    now is not asked: one may be registered on any ancestor at any time.

    Returns
    -------
    True (webhook API mounted), False (not mounted) or None (it could not be told:
    no answer, a 5xx, an answer this probe does not know). Callers that would leave
    something out on False must treat None as True.

    >>> webhooks(client)   # doctest: +SKIP
    False
    """
    url = route_url(node, "webhooks/target")
    try:
        response = node.context.http_client.get(url, timeout=timeout)
    except Exception as err:
        logger.debug("Could not tell whether %s dispatches webhooks: %r", url, err)
        return None
    status = response.status_code
    if status == 404:
        try:
            detail = response.json().get("detail")
        except Exception:
            detail = None
        return None if detail is None else detail != "Not Found"
    if status < 300 or status in (401, 403):
        return True
    logger.debug("Could not tell whether %s dispatches webhooks: HTTP %d", url, status)
    return None
