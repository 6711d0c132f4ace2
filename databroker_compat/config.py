"""Named brokers: v1 YAML configurations, intake catalog YAML and Tiled profiles.

``Broker.named(name)`` looks for ``name`` in this order and opens the first
route that leads to a Tiled server:

1. ``"temp"``: a new embedded server, as :func:`databroker_compat.temp` (v1 did the same);
2. a Tiled profile called ``name`` (``tiled profile list``; tiled's own search path);
3. a v1-style YAML file ``<name>.yml`` / ``<name>.yaml`` with a ``tiled:`` section, in
   the configuration search path (:func:`config_search_path`);
4. a source called ``name`` in an intake catalog YAML file (in the same directories and
   in the intake data directories) whose driver opens Tiled (``databroker-compat`` or
   intake's ``tiled_cat``).

When nothing leads to Tiled but a legacy configuration of that name still names MongoDB
(a v1 ``metadatastore:``/``assets:`` file, or an intake source with driver
``bluesky-mongo-normalized-catalog``), :class:`MongoConfigNeedsMigration` explains that
the data must be migrated and prints the ``databroker-migrate`` command to do it.

The v1-style schema (every string value may use ``${ENV_VAR}``)::

    description: CSX raw data                      # optional, free text
    timezone: US/Eastern                           # optional, as v1's setting
    tiled:
      uri: https://tiled.example.org/api/v1        # or: profile: csx
      api_key: ${TILED_API_KEY}                    # optional
      path: raw/csx                                # optional: a node inside the server
      verify: true                                 # optional: TLS verification
      headers: {X-Extra: value}                    # optional: extra HTTP headers

``mongo_sources(name_or_path)`` reads the same files for the migration: the URIs of the
legacy databases a configuration names.

>>> from databroker_compat.config import config_search_path
>>> any(str(p).endswith("databroker") for p in config_search_path())
True
"""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

from .exceptions import ConfigError, ConfigNotFound, MongoConfigNeedsMigration, ServerUnavailable

logger = logging.getLogger(__name__)

__all__ = [
    "TILED_KEYS",
    "config_search_path",
    "from_config",
    "get_config",
    "intake_search_path",
    "list_configs",
    "lookup_config",
    "migrate_command",
    "mongo_sources",
    "named",
    "redact",
    "temp_config",
]

PathLike = Union[str, Path]

#: Keys allowed in a configuration's ``tiled:`` section.
TILED_KEYS = frozenset({"uri", "api_key", "profile", "path", "verify", "headers", "embedded"})

#: The environment variable that puts extra directories first in the search path.
SEARCH_PATH_ENV = "DATABROKER_CONFIG_PATH"

#: intake drivers that open a Tiled-backed Broker (ours) or a Tiled node (intake's own).
_OUR_DRIVERS = {
    "databroker-compat",
    "databroker_compat.intake_catalog.BrokerSource",
    "databroker_compat.intake_catalog:BrokerSource",
}
_INTAKE_TILED_DRIVERS = {"tiled_cat", "tiled", "intake.source.tiled.TiledCatalog"}
#: intake drivers of the databroker v2 era that read MongoDB (normalized: one document
#: per collection row; embedded: one MongoDB document per run).
_MONGO_NORMALIZED_DRIVERS = {
    "bluesky-mongo-normalized-catalog",
    "databroker._drivers.mongo_normalized.BlueskyMongoCatalog",
    "databroker.mongo_normalized.BlueskyMongoCatalog",
    "databroker._drivers.mongo_normalized:BlueskyMongoCatalog",
}
_MONGO_EMBEDDED_DRIVERS = {
    "bluesky-mongo-embedded-catalog",
    "databroker._drivers.mongo_embedded.BlueskyMongoCatalog",
    "databroker._drivers.mongo_embedded:BlueskyMongoCatalog",
}

_ENV_PATTERN = re.compile(
    r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}"  # ${NAME}
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"  # $NAME
    # intake's {{ env("NAME") }}
    r"""|\{\{\s*env\(\s*["']?(?P<jinja>[A-Za-z_][A-Za-z0-9_]*)["']?\s*\)\s*\}\}"""
)
_SECRET_IN_URI = re.compile(r"(api_key=)[^&\s'\"]+|(://[^:/@\s]+:)[^@/\s]+(@)")


# -- search paths -------------------------------------------------------------------


def config_search_path() -> list[Path]:
    """The directories searched for configuration files, first match first.

    The order is v1's: the user's directory (``$XDG_CONFIG_HOME/databroker``, by
    default ``~/.config/databroker``), then ``<sys.prefix>/etc/databroker``, then
    ``/etc/databroker``. Directories listed in ``$DATABROKER_CONFIG_PATH``
    (``os.pathsep``-separated) come before all of them.

    >>> config_search_path()[-1]
    PosixPath('/etc/databroker')
    """
    paths: list[Path] = []
    extra = os.environ.get(SEARCH_PATH_ENV, "")
    paths += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        paths.append(Path(xdg).expanduser() / "databroker")
    paths.append(Path.home() / ".config" / "databroker")
    paths.append(Path(sys.prefix) / "etc" / "databroker")
    paths.append(Path("/etc/databroker"))
    return _unique(paths)


def intake_search_path() -> list[Path]:
    """Directories where databroker v2 era intake catalog files were installed.

    ``$XDG_DATA_HOME/intake`` (default ``~/.local/share/intake``),
    ``<sys.prefix>/share/intake``, ``/usr/local/share/intake``, ``/usr/share/intake``;
    they are searched after :func:`config_search_path`.

    >>> intake_search_path()[-1]
    PosixPath('/usr/share/intake')
    """
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return _unique(
        [
            Path(data_home).expanduser() / "intake",
            Path(sys.prefix) / "share" / "intake",
            Path("/usr/local/share/intake"),
            Path("/usr/share/intake"),
        ]
    )


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


# -- what a name can resolve to -------------------------------------------------------


@dataclass
class _Found:
    """One configuration found for a name."""

    name: str
    kind: str  # "tiled", "legacy-v1", "intake-tiled", "intake-mongo", "other"
    path: Path | None
    content: dict = field(default_factory=dict)

    @property
    def opens_tiled(self) -> bool:
        return self.kind in ("tiled", "intake-tiled", "profile", "temp")

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"


def _read_yaml(path: Path) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    with open(path) as file:
        return yaml.load(file, Loader=loader)  # noqa: S506 - a safe loader


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())


def _kind_of_v1(content: Any) -> str | None:
    """What a v1-style file holds: ``tiled``, ``legacy-v1`` or ``None`` (not a v1 config)."""
    if not isinstance(content, dict):
        return None
    if "tiled" in content:
        return "tiled"
    if "metadatastore" in content or "assets" in content:
        return "legacy-v1"
    return None


def _kind_of_source(entry: Any) -> str:
    driver = entry.get("driver") if isinstance(entry, dict) else None
    if isinstance(driver, dict):  # intake's {name: {class: ...}} form
        driver = next(iter(driver.values()), {}).get("class")
    if driver in _OUR_DRIVERS or driver in _INTAKE_TILED_DRIVERS:
        return "intake-tiled"
    if driver in _MONGO_NORMALIZED_DRIVERS or driver in _MONGO_EMBEDDED_DRIVERS:
        return "intake-mongo"
    return "other"


def _iter_found(name: str | None) -> Iterator[_Found]:
    """Every configuration of ``name`` (all names if ``None``), in search order."""
    config_dirs = config_search_path()
    # v1-style files named after the configuration.
    for directory in config_dirs:
        for path in _yaml_files(directory):
            if name is not None and path.stem != name:
                continue
            content = _safe_read(path)
            kind = _kind_of_v1(content)
            if kind is not None:
                yield _Found(path.stem, kind, path, content)
    # intake catalog files: sources by name.
    for directory in [*config_dirs, *intake_search_path()]:
        for path in _yaml_files(directory):
            content = _safe_read(path)
            if not isinstance(content, dict) or not isinstance(content.get("sources"), dict):
                continue
            for source_name, entry in content["sources"].items():
                if name is None or source_name == name:
                    yield _Found(source_name, _kind_of_source(entry), path, entry)


def _safe_read(path: Path) -> Any:
    try:
        return _read_yaml(path)
    except Exception as err:  # a broken unrelated file must not stop the search
        logger.warning("Skipping %s: not readable as YAML (%s)", path, err)
        return None


def _tiled_profiles() -> dict[str, Path]:
    try:
        from tiled.profiles import list_profiles
    except ImportError:  # pragma: no cover - tiled is a dependency
        return {}
    try:
        return dict(list_profiles())
    except Exception as err:  # a broken profile file must not hide the other routes
        logger.warning("Could not read Tiled profiles: %s", err)
        return {}


def list_configs() -> list[str]:
    """The names :meth:`Broker.named` can find, sorted (as v1's ``list_configs``).

    Includes v1-style YAML files (Tiled or legacy MongoDB), sources of intake catalog
    files and Tiled profiles.

    >>> from databroker_compat import list_configs
    >>> "temp" in list_configs()
    True
    """
    names = {found.name for found in _iter_found(None) if found.kind != "other"}
    names.update(_tiled_profiles())
    names.add("temp")
    return sorted(names)


def lookup_config(name: str) -> dict:
    """The configuration :meth:`Broker.named` would use for ``name``, as a dict.

    A v1-style file gives its parsed content, an intake source the catalog entry
    (``{"driver": ..., "args": ...}``), a Tiled profile ``{"tiled": {"profile": name}}``.
    Environment variables are not expanded here. A legacy MongoDB configuration is
    returned too (the migration reads it); opening it raises.

    Raises
    ------
    ConfigNotFound
        Nothing of that name in any search directory or Tiled profile.

    >>> lookup_config("temp")
    {'description': 'temporary embedded Tiled server', 'tiled': {'embedded': {'directory': None}}}
    """
    return copy.deepcopy(_resolve(name).content)


def _resolve(name: str) -> _Found:
    """The route ``named`` takes for ``name`` (the legacy one only if nothing opens Tiled)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A configuration name must be a non-empty string, not {name!r}.")
    if name == "temp":
        return _Found("temp", "temp", None, temp_config())
    profiles = _tiled_profiles()
    if name in profiles:
        return _Found(name, "profile", Path(profiles[name]), {"tiled": {"profile": name}})
    legacy: _Found | None = None
    for found in _iter_found(name):
        if found.opens_tiled:
            return found
        if legacy is None and found.kind in ("legacy-v1", "intake-mongo"):
            legacy = found
    if legacy is not None:
        return legacy
    searched = "\n  ".join(str(p) for p in [*config_search_path(), *intake_search_path()])
    raise ConfigNotFound(
        f"No configuration named {name!r}. Looked for a Tiled profile ({_profile_paths()}), "
        f"for {name}.yml in\n  {searched}\n(intake catalog files in the same directories). "
        f"Found: {list_configs()}. Write {name}.yml with a 'tiled: {{uri: ...}}' section "
        f"in one of these directories, or create a Tiled profile: tiled profile create --name {name} URI"
    )


def _profile_paths() -> str:
    try:
        from tiled.profiles import paths
    except ImportError:  # pragma: no cover
        return "tiled not installed"
    return ", ".join(str(p) for p in paths)


# -- opening -----------------------------------------------------------------------------


def named(name: str, *, timezone: str | None = None):
    """Open the broker configured under ``name`` (see the module docstring for the order).

    Parameters
    ----------
    name : str
        A Tiled profile, a ``<name>.yml`` in the search path, or an intake source name;
        ``"temp"`` gives a new embedded server.
    timezone : str, optional
        Overrides the configuration's ``timezone``.

    Raises
    ------
    ConfigNotFound
        No configuration of that name.
    MongoConfigNeedsMigration
        The only configuration of that name points at MongoDB.
    ConfigError
        The configuration is malformed (unknown keys, unset environment variables).

    >>> db = Broker.named("csx")      # doctest: +SKIP
    """
    found = _resolve(name)
    logger.info("Configuration %r: %s from %s", name, found.kind, found.where)
    if found.kind == "temp":
        db = from_config(found.content, name="temp")
    elif found.kind == "profile":
        db = from_config(found.content, name=name)
    elif found.kind == "tiled":
        db = from_config(found.content, name=name, _where=found.where)
    elif found.kind == "intake-tiled":
        db = from_config(_intake_entry_as_config(found), name=name, _where=found.where)
        db._config = copy.deepcopy(found.content)
    else:
        raise _needs_migration(found)
    if timezone is not None:
        db.timezone = timezone
    return db


def _intake_entry_as_config(found: _Found) -> dict:
    args = dict(found.content.get("args") or {})
    timezone = args.pop("timezone", None)
    if "server" in args:  # intake's own tiled_cat driver
        args["uri"] = args.pop("server")
        if isinstance(args["uri"], str) and args["uri"].startswith("tiled"):
            args["uri"] = args["uri"].replace("tiled", "http", 1)
    config: dict = {"tiled": args}
    if timezone is not None:
        config["timezone"] = timezone
    if "description" in found.content:
        config["description"] = found.content["description"]
    return config


def from_config(config: dict, auto_register: bool = True, name: str | None = None, *, _where: str = ""):
    """A :class:`Broker` from a configuration dict (the v1-style schema).

    Parameters
    ----------
    config : dict
        ``{"tiled": {"uri": ..., "api_key": ...}, "timezone": ...}``; see the module
        docstring. ``${ENV}`` references are expanded when the broker is built.
    auto_register : bool
        Accepted for v1 compatibility; handlers are not registered (the Tiled server
        reads detector files itself).
    name : str, optional
        Becomes ``db.name``.

    >>> db = Broker.from_config({"tiled": {"uri": "http://localhost:8000"}})   # doctest: +SKIP
    >>> db.get_config()["tiled"]["uri"]                                          # doctest: +SKIP
    'http://localhost:8000'
    """
    from .broker import Broker

    where = _where or "(configuration dict)"
    if not isinstance(config, dict):
        raise ConfigError(f"A configuration must be a dict, not {type(config).__name__}.")
    kind = _kind_of_v1(config)
    if kind == "legacy-v1":
        raise _needs_migration(_Found(name or "<config>", "legacy-v1", None, config))
    if kind is None:
        if "sources" in config:
            raise ConfigError(
                f"{where} is an intake catalog, not a broker configuration; open one of its sources "
                f"by name with Broker.named(...) (sources: {sorted(config['sources'])})."
            )
        raise ConfigError(
            f"{where} has no 'tiled' section. A configuration looks like "
            "{'tiled': {'uri': 'http://host:8000', 'api_key': '${TILED_API_KEY}'}, 'timezone': 'US/Eastern'}."
        )
    section = config["tiled"]
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: 'tiled' must be a mapping with a 'uri' or 'profile', not {section!r}.")
    unknown = set(section) - TILED_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} in 'tiled'; allowed: {sorted(TILED_KEYS)}."
        )
    routes = [k for k in ("uri", "profile", "embedded") if k in section]
    if len(routes) != 1:
        raise ConfigError(
            f"{where}: 'tiled' needs exactly one of 'uri', 'profile' or 'embedded'; "
            f"it has {routes or 'none'}."
        )
    if auto_register and config.get("handlers"):
        logger.info("Ignoring 'handlers' of %s: the Tiled server reads detector files itself", where)
    expanded = _expand(section, where)
    timezone = _expand(config.get("timezone"), where)
    if "embedded" in section:
        from .embedded import temp

        options = expanded["embedded"] or {}
        db = temp(
            options.get("directory"), readable_storage=options.get("readable_storage"), timezone=timezone
        )
        db.name = name or db.name
    else:
        client = _open_client(expanded, where)
        db = Broker(client, timezone=timezone, name=name)
    db._config = copy.deepcopy(config)
    return db


def _open_client(section: dict, where: str):
    import httpx
    from tiled.client import from_profile, from_uri

    options: dict = {}
    for key in ("api_key", "verify", "headers"):
        if section.get(key) is not None:
            options[key] = section[key]
    target = section.get("uri") or f"profile {section.get('profile')!r}"
    try:
        if "profile" in section:
            from tiled.profiles import load_profiles

            load_profiles.cache_clear()  # profiles written since the last call count too
            client = from_profile(section["profile"], **options)
        else:
            client = from_uri(section["uri"], **options)
    except httpx.TransportError as err:
        raise ServerUnavailable(
            f"{where}: the Tiled server at {redact(str(target))} did not answer ({type(err).__name__}). "
            "Check that it runs and that the uri is right."
        ) from err
    except httpx.HTTPStatusError as err:
        status = err.response.status_code
        hint = " Check the api_key (or the environment variable it names)." if status in (401, 403) else ""
        raise ConfigError(
            f"{where}: the Tiled server at {redact(str(target))} answered HTTP {status}.{hint}"
        ) from err
    path = section.get("path")
    if path:
        parts = path.strip("/").split("/") if isinstance(path, str) else list(path)
        try:
            client = client[tuple(parts)] if len(parts) > 1 else client[parts[0]]
        except KeyError as err:
            raise ConfigError(
                f"{where}: the server has no node {'/'.join(parts)!r} (the 'path' setting)."
            ) from err
    return client


def _expand(value: Any, where: str) -> Any:
    """Expand ``${NAME}``, ``$NAME`` and ``{{ env("NAME") }}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_expand(v, where) for v in value)
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        variable = match.group("braced") or match.group("bare") or match.group("jinja")
        if variable not in os.environ:
            raise ConfigError(
                f"{where} refers to the environment variable {variable}, which is not set. "
                f"Set it (export {variable}=...) before opening the broker."
            )
        return os.environ[variable]

    return _ENV_PATTERN.sub(substitute, value)


def redact(text: str) -> str:
    """``text`` with API keys and passwords in URIs replaced by ``***``.

    >>> redact("http://h:8000/api/v1?api_key=secret")
    'http://h:8000/api/v1?api_key=***'
    >>> redact("mongodb://user:pw@host/db")
    'mongodb://user:***@host/db'
    """

    def mask(match: re.Match) -> str:
        if match.group(1):
            return match.group(1) + "***"
        return match.group(2) + "***" + match.group(3)

    return _SECRET_IN_URI.sub(mask, text)


def get_config(db) -> dict:
    """The configuration ``db`` was built from, or one that rebuilds it.

    For a broker built from a client directly, ``{"tiled": {"uri": ...}}`` with the
    server's address (the API key is left out).

    >>> Broker.from_config(cfg).get_config() == cfg     # doctest: +SKIP
    True
    """
    config = getattr(db, "_config", None)
    if config is not None:
        return copy.deepcopy(config)
    uri = str(db.v2.context.api_uri)
    built: dict = {"tiled": {"uri": uri.split("?")[0]}}
    path = getattr(db.v2, "path_parts", None)
    if path:
        built["tiled"]["path"] = "/".join(path)
    if db.timezone is not None:
        built["timezone"] = db.timezone
    return built


def temp_config() -> dict:
    """The configuration of a new embedded server: ``Broker.from_config(temp_config())``
    gives what :func:`databroker_compat.temp` gives.

    >>> temp_config()["tiled"]
    {'embedded': {'directory': None}}
    """
    return {"description": "temporary embedded Tiled server", "tiled": {"embedded": {"directory": None}}}


# -- legacy MongoDB configurations ---------------------------------------------------------


def migrate_command(name: str) -> str:
    """The command that migrates the MongoDB data a configuration names into Tiled.

    >>> migrate_command("csx")
    'databroker-migrate run --from-config csx --tiled-uri TILED_URI'
    """
    return f"databroker-migrate run --from-config {name} --tiled-uri TILED_URI"


def _needs_migration(found: _Found) -> MongoConfigNeedsMigration:
    try:
        sources = _mongo_sources_of(found)
    except ConfigError:
        sources = {}
    mds = sources.get("metadatastore_uri")
    detail = f" (metadatastore {redact(str(mds))})" if mds else ""
    if found.path is not None or not mds:
        command = migrate_command(found.name)
    else:  # a dict given in memory: there is no name the migration could look up
        assets = sources.get("assets_uri")
        command = f"databroker-migrate run --metadatastore-uri {redact(str(mds))}"
        if assets and assets != mds:
            command += f" --assets-uri {redact(str(assets))}"
        command += " --tiled-uri TILED_URI"
    label = found.name if found.path is not None else "this configuration"
    return MongoConfigNeedsMigration(
        f"Configuration {found.name!r} in {found.where} points at MongoDB{detail}. "
        "databroker-compat reads Tiled servers only: the data must be migrated into Tiled first. Run\n"
        f"    {command}\n"
        f"then point {label} at that server, e.g. a Tiled profile "
        f"(tiled profile create --name NAME TILED_URI) or a file NAME.yml with\n"
        "    tiled:\n      uri: TILED_URI\n      api_key: ${TILED_API_KEY}"
    )


def mongo_sources(name_or_path: PathLike, source: str | None = None, *, expand: bool = True) -> dict:
    """Where the legacy MongoDB data of a configuration lives.

    Reads a databroker v1 YAML file (``metadatastore:`` / ``assets:`` sections, with
    ``uri`` or ``host``/``port``/``database``) or an intake catalog YAML file (sources
    with driver ``bluesky-mongo-normalized-catalog`` and friends, args
    ``metadatastore_db`` / ``asset_registry_db``).

    Parameters
    ----------
    name_or_path : str or Path
        A configuration name (looked up as :meth:`Broker.named` does) or a YAML file.
    source : str, optional
        For an intake catalog file with several Mongo sources: which one.
    expand : bool
        Expand ``${ENV}`` references (unset ones raise :class:`ConfigError`). Secrets
        are otherwise returned as the configuration has them, for connecting.

    Returns
    -------
    dict
        ``metadatastore_uri`` and ``assets_uri`` (the same URI when one database held
        both), ``layout`` (``"mongo_normalized"`` or ``"mongo_embedded"``), ``name``,
        ``path`` (the file), and ``timezone``, ``root_map``, ``handlers``,
        ``description`` when the configuration has them.

    >>> mongo_sources("csx")["metadatastore_uri"]          # doctest: +SKIP
    'mongodb://mongo.example.org:27017/csx_metadatastore'
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yml", ".yaml") or candidate.is_file():
        found = _found_in_file(candidate, source)
    else:
        name = str(name_or_path)
        matches = [f for f in _iter_found(name) if f.kind in ("legacy-v1", "intake-mongo")]
        if not matches:
            others = [f"{f.kind} in {f.where}" for f in _iter_found(name)]
            raise ConfigNotFound(
                f"No MongoDB configuration named {name!r} in {[str(p) for p in config_search_path()]} "
                f"or the intake catalog directories{'; found only: ' + ', '.join(others) if others else ''}."
            )
        found = matches[0]
    sources = _mongo_sources_of(found)
    return _expand(sources, found.where) if expand else sources


def _found_in_file(path: Path, source: str | None) -> _Found:
    if not path.is_file():
        raise ConfigNotFound(f"No configuration file {path}.")
    content = _read_yaml(path)
    kind = _kind_of_v1(content)
    if kind == "legacy-v1":
        return _Found(path.stem, kind, path, content)
    if kind == "tiled":
        raise ConfigError(f"{path} already points at Tiled; it names no MongoDB to migrate from.")
    if isinstance(content, dict) and isinstance(content.get("sources"), dict):
        mongo = {k: v for k, v in content["sources"].items() if _kind_of_source(v) == "intake-mongo"}
        if source is not None:
            if source not in mongo:
                raise ConfigError(f"{path} has no MongoDB source {source!r}; it has {sorted(mongo)}.")
            return _Found(source, "intake-mongo", path, mongo[source])
        if len(mongo) == 1:
            ((only, entry),) = mongo.items()
            return _Found(only, "intake-mongo", path, entry)
        if not mongo:
            raise ConfigError(
                f"{path} has no source with a MongoDB driver ({sorted(_MONGO_NORMALIZED_DRIVERS)})."
            )
        raise ConfigError(f"{path} has several MongoDB sources {sorted(mongo)}; say which one (source=...).")
    raise ConfigError(f"{path} is neither a databroker v1 configuration nor an intake catalog.")


def _mongo_sources_of(found: _Found) -> dict:
    content = found.content
    result: dict = {"name": found.name, "path": found.where}
    if found.kind == "legacy-v1":
        result["layout"] = "mongo_normalized"
        result["metadatastore_uri"] = _v1_section_uri(content.get("metadatastore"), "metadatastore", found)
        assets = content.get("assets")
        result["assets_uri"] = (
            _v1_section_uri(assets, "assets", found) if assets else result["metadatastore_uri"]
        )
        mds_config = (content.get("metadatastore") or {}).get("config") or {}
        timezone = content.get("timezone", mds_config.get("timezone"))
        if timezone is not None:
            result["timezone"] = timezone
        for key in ("root_map", "handlers", "description"):
            if key in content:
                result[key] = content[key]
        return result
    if found.kind == "intake-mongo":
        args = dict(content.get("args") or {})
        driver = content.get("driver")
        if driver in _MONGO_EMBEDDED_DRIVERS:
            result["layout"] = "mongo_embedded"
            uri = args.pop("datastore_db", None)
            result["metadatastore_uri"] = result["assets_uri"] = uri
        else:
            result["layout"] = "mongo_normalized"
            result["metadatastore_uri"] = args.pop("metadatastore_db", None)
            result["assets_uri"] = args.pop("asset_registry_db", None) or result["metadatastore_uri"]
        if not result["metadatastore_uri"]:
            raise ConfigError(f"Source {found.name!r} in {found.where} has no metadatastore_db argument.")
        result["driver"] = driver
        if "description" in content:
            result["description"] = content["description"]
        result.update(args)  # handler_registry, root_map, transforms, ... as the catalog has them
        return result
    raise ConfigError(f"Configuration {found.name!r} in {found.where} names no MongoDB database.")


def _v1_section_uri(section: Any, label: str, found: _Found) -> str:
    if not isinstance(section, dict):
        raise ConfigError(f"{found.where}: the {label!r} section is missing or not a mapping.")
    module = str(section.get("module", ""))
    config = section.get("config") or {}
    if module and "mongo" not in module:
        raise ConfigError(
            f"{found.where}: the {label!r} section uses {module}, not MongoDB; "
            "only MongoDB-backed v1 configurations can be migrated."
        )
    if config.get("uri"):
        return str(config["uri"])
    if not config.get("database"):
        raise ConfigError(f"{found.where}: the {label!r} section names neither a 'uri' nor a 'database'.")
    host = config.get("host", "localhost")
    port = config.get("port", 27017)
    credentials = ""
    if config.get("username"):
        credentials = str(config["username"])
        if config.get("password"):
            credentials += ":" + str(config["password"])
        credentials += "@"
    uri = f"mongodb://{credentials}{host}:{port}/{config['database']}"
    if config.get("authsource"):
        uri += f"?authSource={config['authsource']}"
    return uri
