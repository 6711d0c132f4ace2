"""Small, explicit access to a Tiled server over its public HTTP API.

The Tiled client classes do several requests where one is enough, and its dataframe
path can turn small array columns into their string form. The read path here talks to
the same documented endpoints (``/search``, ``/table/full``, ``/array/full``) through
the client's own authenticated ``httpx`` client, so every request is counted and chosen.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Iterator
from urllib.parse import quote

import httpx
from tiled.client.container import Container
from tiled.client.utils import handle_error

from .exceptions import ServerUnavailable

logger = logging.getLogger(__name__)

MSGPACK = "application/x-msgpack"
ARROW = "application/vnd.apache.arrow.file"
OCTET = "application/octet-stream"


def is_transient(error: BaseException) -> bool:
    """Whether a failed request may succeed if sent again: the one HTTP retry rule.

    Tiled's own client rule (``tiled.client.utils.should_retry``): HTTP 5xx and 429,
    and transport errors other than a malformed URL or request. Our
    :class:`~databroker_compat.exceptions.ServerUnavailable` (a transport error we
    already wrapped) counts too.

    >>> is_transient(httpx.ConnectError("refused")), is_transient(ValueError("x"))
    (True, False)
    """
    from tiled.client.utils import should_retry

    if isinstance(error, ServerUnavailable):
        return True
    if isinstance(error, httpx.HTTPError):
        return bool(should_retry(error))
    return False


def as_container(client: Any) -> Container:
    """A plain ``Container`` view of ``client`` (special clients override lookups).

    Specialised clients such as ``CatalogOfBlueskyRuns`` reinterpret ``[]`` and
    ``search``; the broker needs Tiled's generic behaviour, whatever spec the node has.
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
    """Only the children that are Bluesky runs (a catalog may hold other nodes too)."""
    from tiled.queries import SpecsQuery

    return container.search(SpecsQuery(include=["BlueskyRun"]))


def _url_path(*parts: str) -> str:
    return "/".join(quote(str(p), safe="") for p in parts)


def node_path(item: dict) -> list[str]:
    """The path segments of a node, from its item."""
    return [*item["attributes"].get("ancestors", []), item["id"]]


def _get(context, url: str, *, params: dict | None = None, accept: str = MSGPACK) -> httpx.Response:
    try:
        try:
            response = context.http_client.get(url, params=params or {}, headers={"Accept": accept})
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A kept-alive connection the server closed (it does so after a 500): a GET
            # is safe to send once more, on a fresh connection.
            logger.debug("Connection to %s was closed by the server; retrying once.", url)
            response = context.http_client.get(url, params=params or {}, headers={"Accept": accept})
    except httpx.TransportError as err:
        raise ServerUnavailable(
            f"The Tiled server at {context.api_uri} did not answer ({err!r}). "
            "Check that it is running and reachable, then try again."
        ) from err
    return response


def get_json(context, url: str, *, params: dict | None = None) -> dict:
    """GET a JSON/msgpack endpoint and return the decoded body (errors raised)."""
    response = handle_error(_get(context, url, params=params))
    return response.json()


def iter_children(context, item: dict, *, page_size: int = 100, metadata: bool = True) -> Iterator[dict]:
    """Yield the items of the children of ``item``, one request per page."""
    url = item["links"]["search"]
    params = {"page[offset]": 0, "page[limit]": page_size}
    if not metadata:
        params["select_metadata"] = False
    while url is not None:
        body = get_json(context, url, params=params)
        yield from body["data"]
        url = body["links"].get("next")
        params = {}  # the next link carries its own parameters


def read_table(context, path: list[str], columns: list[str] | None = None):
    """Read a whole table node as a ``pyarrow.Table``; ``None`` if it does not exist."""
    import pyarrow

    url = f"{context.api_uri}table/full/{_url_path(*path)}"
    params = {"format": ARROW}
    if columns is not None:
        params["column"] = list(columns)
    response = _get(context, url, params=params, accept=ARROW)
    if response.status_code == 404:
        return None
    handle_error(response)
    return pyarrow.ipc.open_file(io.BytesIO(response.content)).read_all()


def read_array(context, path: list[str], *, slice_: str | None = None, dtype=None, shape=None):
    """Read (part of) an array node as a numpy array.

    ``slice_`` is Tiled's slice syntax (``"3:5,:,:"``); ``dtype`` and ``shape`` (of the
    result) come from the node's structure, which the caller already holds.
    """
    import numpy

    url = f"{context.api_uri}array/full/{_url_path(*path)}"
    params = {}
    if slice_:
        params["slice"] = slice_
    response = handle_error(_get(context, url, params=params, accept=OCTET))
    return numpy.frombuffer(response.content, dtype=dtype).reshape(shape)


def numpy_dtype(data_type: dict):
    """The numpy dtype of a Tiled array structure's ``data_type``."""
    import numpy

    endianness = {"little": "<", "big": ">", "not_applicable": "|"}[data_type["endianness"]]
    return numpy.dtype(f"{endianness}{data_type['kind']}{data_type['itemsize']}")


def data_source(context, path: list[str]) -> dict | None:
    """The first data source of a node (its MIME type, parameters and file assets)."""
    url = f"{context.api_uri}metadata/{_url_path(*path)}"
    body = get_json(context, url, params={"include_data_sources": True})
    sources = body["data"]["attributes"].get("data_sources") or []
    return sources[0] if sources else None
