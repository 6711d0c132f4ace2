"""Opening a configuration: checking it, expanding ``${ENV}``, and connecting a Tiled client.

:func:`open_named` and :func:`open_config` give an :class:`Opened`: the client, the time
zone and name the broker takes, the configuration as written (for ``get_config``) and,
for an embedded server, the function that stops it. They build no Broker:
``Broker.named``, ``Broker.from_config`` and ``Broker.temp`` do, from what they return.

An embedded server (``tiled: {embedded: {...}}``, and the name ``"temp"``) is started by
the function given as ``start_embedded`` (the brokers pass
:func:`databroker_compat.embedded.start`), so this package needs no server parts.

>>> config_for_client.__name__
'config_for_client'
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from .._redact import redact
from ..exceptions import ConfigError, ServerUnavailable
from .discovery import Found, kind_of_v1, resolve
from .environment import expand
from .legacy import needs_migration

if TYPE_CHECKING:
    from tiled.client.container import Container

logger = logging.getLogger(__name__)

__all__ = ["TILED_KEYS", "Opened", "StartEmbedded", "config_for_client", "open_config", "open_named"]

#: Keys allowed in a configuration's ``tiled:`` section.
TILED_KEYS = frozenset({"uri", "api_key", "profile", "path", "verify", "headers", "embedded"})

PathLike = Union[str, "os.PathLike[str]"]


class StartEmbedded(Protocol):
    """Starts an embedded Tiled server: ``(client, close)``, as :func:`databroker_compat.embedded.start`."""

    def __call__(
        self, directory: PathLike | None = None, *, readable_storage: Any = None
    ) -> tuple[Container, Callable[[], None]]: ...


@dataclass(frozen=True)
class Opened:
    """What opening a configuration gives: everything a Broker is built from.

    Attributes
    ----------
    client : tiled.client.container.Container
        The connected Tiled node whose children are the runs.
    timezone : str or None
        The configuration's ``timezone`` (expanded), if it has one.
    name : str or None
        The broker's name (the configuration's name; ``"temp"`` for an embedded server).
    config : dict or None
        The configuration as written: secrets and ``${ENV}`` references unexpanded.
    close : callable or None
        Stops what opening started (an embedded server); ``None`` when nothing was started.

    >>> Opened(client=None, timezone="UTC", name="csx", config={"tiled": {"uri": "http://h"}}).close is None
    True
    """

    client: Container
    timezone: str | None = None
    name: str | None = None
    config: dict | None = None
    close: Callable[[], None] | None = None


def open_named(name: str, *, start_embedded: StartEmbedded | None = None) -> Opened:
    """Open the configuration called ``name`` (see :mod:`databroker_compat.config.discovery` for the order).

    Parameters
    ----------
    name : str
        A Tiled profile, a ``<name>.yml`` in the search path, or an intake source name;
        ``"temp"`` gives a new embedded server.
    start_embedded : callable, optional
        Starts an embedded server (for ``"temp"`` and ``embedded:`` sections).

    Raises
    ------
    ConfigNotFound
        No configuration of that name.
    MongoConfigNeedsMigration
        The only configuration of that name points at MongoDB.
    ConfigError
        The configuration is malformed (unknown keys, unset environment variables).

    >>> open_named("csx").client                 # doctest: +SKIP
    <Container {'scan_1', ...}>
    """
    found = resolve(name)
    logger.info("Configuration %r: %s from %s", name, found.kind, found.where)
    if found.kind == "temp":
        return open_config(found.content, name="temp", start_embedded=start_embedded)
    if found.kind == "profile":
        return open_config(found.content, name=name, start_embedded=start_embedded)
    if found.kind == "tiled":
        return open_config(found.content, name=name, where=found.where, start_embedded=start_embedded)
    if found.kind == "intake-tiled":
        opened = open_config(
            _intake_entry_as_config(found), name=name, where=found.where, start_embedded=start_embedded
        )
        return dataclasses.replace(opened, config=copy.deepcopy(found.content))
    raise needs_migration(found)


def _intake_entry_as_config(found: Found) -> dict:
    args = dict(found.content.get("args") or {})
    timezone = args.pop("timezone", None)
    if "server" in args:  # intake's own tiled_cat driver
        args["uri"] = args.pop("server")
        if isinstance(args["uri"], str) and args["uri"].startswith("tiled"):
            args["uri"] = args["uri"].replace("tiled", "http", 1)
    config: dict[str, Any] = {"tiled": args}
    if timezone is not None:
        config["timezone"] = timezone
    if "description" in found.content:
        config["description"] = found.content["description"]
    return config


def open_config(
    config: dict,
    *,
    name: str | None = None,
    auto_register: bool = True,
    where: str = "",
    start_embedded: StartEmbedded | None = None,
) -> Opened:
    """Open a configuration dict (the v1-style schema of :mod:`databroker_compat.config`).

    Parameters
    ----------
    config : dict
        ``{"tiled": {"uri": ..., "api_key": ...}, "timezone": ...}``. ``${ENV}``
        references are expanded here; :attr:`Opened.config` keeps them as written.
    name : str, optional
        Becomes :attr:`Opened.name` (``"temp"`` by default for an embedded server).
    auto_register : bool
        Accepted for v1 compatibility; handlers are not registered (the Tiled server
        reads detector files itself).
    where : str
        Where the configuration comes from (a file), for messages.
    start_embedded : callable, optional
        Starts an embedded server, for a ``tiled: {embedded: {...}}`` section.

    Raises
    ------
    MongoConfigNeedsMigration
        The configuration names MongoDB.
    ConfigError
        It is malformed, names an unset environment variable, or the server refused it.
    ServerUnavailable
        The server did not answer.

    >>> open_config({"tiled": {"uri": "http://localhost:8000"}}).config      # doctest: +SKIP
    {'tiled': {'uri': 'http://localhost:8000'}}
    >>> open_config({"tiled": {"url": "http://localhost:8000"}})
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.ConfigError: (configuration dict): unknown keys ['url'] in 'tiled'; \
allowed: ['api_key', 'embedded', 'headers', 'path', 'profile', 'uri', 'verify'].
    """
    where = where or "(configuration dict)"
    section = _checked_section(config, name, where)
    if auto_register and config.get("handlers"):
        logger.info("Ignoring 'handlers' of %s: the Tiled server reads detector files itself", where)
    expanded = expand(section, where)
    timezone = expand(config.get("timezone"), where)
    close: Callable[[], None] | None = None
    if "embedded" in section:
        if start_embedded is None:
            raise ConfigError(
                f"{where} runs an embedded Tiled server, and no way to start one was given: "
                "open it with Broker.from_config(...) or Broker.named(...).",
                where=where,
            )
        options = expanded["embedded"] or {}
        client, close = start_embedded(options.get("directory"), readable_storage=options.get("readable_storage"))
        name = name or "temp"
    else:
        client = _open_client(expanded, where)
    return Opened(client=client, timezone=timezone, name=name, config=copy.deepcopy(config), close=close)


def _checked_section(config: Any, name: str | None, where: str) -> dict:
    """The ``tiled`` section of a configuration, checked (not yet expanded)."""
    if not isinstance(config, dict):
        raise ConfigError(f"A configuration must be a dict, not {type(config).__name__}.", where=where)
    kind = kind_of_v1(config)
    if kind == "legacy-v1":
        raise needs_migration(Found(name or "<config>", "legacy-v1", None, config))
    if kind is None:
        if "sources" in config:
            raise ConfigError(
                f"{where} is an intake catalog, not a broker configuration; open one of its sources "
                f"by name with Broker.named(...) (sources: {sorted(config['sources'])}).",
                where=where,
            )
        raise ConfigError(
            f"{where} has no 'tiled' section. A configuration looks like "
            "{'tiled': {'uri': 'http://host:8000', 'api_key': '${TILED_API_KEY}'}, 'timezone': 'US/Eastern'}.",
            where=where,
        )
    section = config["tiled"]
    if not isinstance(section, dict):
        raise ConfigError(
            f"{where}: 'tiled' must be a mapping with a 'uri' or 'profile', not {redact(repr(section))}.",
            where=where,
        )
    unknown = set(section) - TILED_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} in 'tiled'; allowed: {sorted(TILED_KEYS)}.",
            where=where,
            unknown=sorted(unknown),
        )
    routes = [k for k in ("uri", "profile", "embedded") if k in section]
    if len(routes) != 1:
        raise ConfigError(
            f"{where}: 'tiled' needs exactly one of 'uri', 'profile' or 'embedded'; it has {routes or 'none'}.",
            where=where,
            routes=routes,
        )
    return section


def _open_client(section: dict, where: str) -> Container:
    import httpx
    from tiled.client import from_profile, from_uri

    options: dict[str, Any] = {}
    for key in ("api_key", "verify", "headers"):
        if section.get(key) is not None:
            options[key] = section[key]
    target = redact(section.get("uri") or f"profile {section.get('profile')!r}")
    try:
        if "profile" in section:
            from tiled.profiles import load_profiles

            load_profiles.cache_clear()  # profiles written since the last call count too
            client = from_profile(section["profile"], **options)
        else:
            client = from_uri(section["uri"], **options)
    except httpx.TransportError as err:
        raise ServerUnavailable(
            f"{where}: the Tiled server at {target} did not answer ({type(err).__name__}). "
            "Check that it runs and that the uri is right.",
            uri=target,
            where=where,
        ) from err
    except httpx.HTTPStatusError as err:
        status = err.response.status_code
        hint = " Check the api_key (or the environment variable it names)." if status in (401, 403) else ""
        raise ConfigError(
            f"{where}: the Tiled server at {target} answered HTTP {status}.{hint}",
            uri=target,
            where=where,
            status=status,
        ) from err
    path = section.get("path")
    if path:
        parts = path.strip("/").split("/") if isinstance(path, str) else list(path)
        try:
            client = client[tuple(parts)] if len(parts) > 1 else client[parts[0]]
        except KeyError as err:
            raise ConfigError(
                f"{where}: the server has no node {'/'.join(parts)!r} (the 'path' setting).",
                where=where,
                path="/".join(parts),
            ) from err
    return client


def config_for_client(client: Container, *, timezone: str | None = None) -> dict:
    """A configuration that opens ``client`` again: its server address, node path and ``timezone``.

    The API key is left out (write it as ``api_key: ${TILED_API_KEY}`` to use the result).

    >>> config_for_client(db.v2, timezone="UTC")        # doctest: +SKIP
    {'tiled': {'uri': 'http://localhost:8000/api/v1/'}, 'timezone': 'UTC'}
    """
    uri = str(client.context.api_uri)
    built: dict[str, Any] = {"tiled": {"uri": uri.split("?")[0]}}
    path = [part for part in getattr(client, "path_parts", None) or () if part]
    if path:  # a node inside the server (the root's parts are empty)
        built["tiled"]["path"] = "/".join(path)
    if timezone is not None:
        built["timezone"] = timezone
    return built
