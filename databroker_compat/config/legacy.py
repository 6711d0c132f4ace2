"""Legacy MongoDB configurations: where their data lives, and how to migrate it.

databroker v1 files (``metadatastore:`` / ``assets:`` sections) and databroker v2 era
intake catalogs (``bluesky-mongo-normalized-catalog`` sources) name MongoDB databases.
databroker-compat does not read them; :func:`mongo_sources` tells the migration where
the data is, and :func:`needs_migration` is the error a broker raises when asked to
open one, with the ``databroker-migrate`` command that moves the data into Tiled.

>>> migrate_command("csx")
'databroker-migrate run --from-config csx --tiled-uri TILED_URI'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from .._redact import redact
from ..exceptions import ConfigError, ConfigNotFound, MongoConfigNeedsMigration
from . import environment
from .discovery import (
    MONGO_EMBEDDED_DRIVERS,
    MONGO_NORMALIZED_DRIVERS,
    Found,
    config_search_path,
    iter_found,
    kind_of_source,
    kind_of_v1,
    read_yaml,
)

__all__ = ["migrate_command", "mongo_sources", "needs_migration", "root_map_of"]

PathLike = Union[str, Path]

_LEGACY_KINDS = ("legacy-v1", "intake-mongo")


def migrate_command(name: str) -> str:
    """The command that migrates the MongoDB data a configuration names into Tiled.

    >>> migrate_command("csx")
    'databroker-migrate run --from-config csx --tiled-uri TILED_URI'
    """
    return f"databroker-migrate run --from-config {name} --tiled-uri TILED_URI"


def needs_migration(found: Found) -> MongoConfigNeedsMigration:
    """The error for opening a configuration that still names MongoDB, with the command to migrate it.

    The command names the configuration when it is a file, or its (redacted) URIs when
    it was given as a dict; ``err.command`` holds it, ``err.name`` and ``err.where``
    say which configuration it is.

    >>> found = Found("csx", "legacy-v1", Path("/etc/databroker/csx.yml"),
    ...               {"metadatastore": {"config": {"uri": "mongodb://u:pw@h/mds"}}})
    >>> err = needs_migration(found)
    >>> err.command
    'databroker-migrate run --from-config csx --tiled-uri TILED_URI'
    >>> "u:***@h" in str(err), "pw" in str(err)
    (True, False)
    """
    try:
        sources = _mongo_sources_of(found)
    except ConfigError:
        sources = {}
    mds = sources.get("metadatastore_uri")
    detail = f" (metadatastore {redact(mds)})" if mds else ""
    if found.path is not None or not mds:
        command = migrate_command(found.name)
    else:  # a dict given in memory: there is no name the migration could look up
        assets = sources.get("assets_uri")
        command = f"databroker-migrate run --metadatastore-uri {redact(mds)}"
        if assets and assets != mds:
            command += f" --assets-uri {redact(assets)}"
        command += " --tiled-uri TILED_URI"
    label = found.name if found.path is not None else "this configuration"
    return MongoConfigNeedsMigration(
        f"Configuration {found.name!r} in {found.where} points at MongoDB{detail}. "
        "databroker-compat reads Tiled servers only: the data must be migrated into Tiled first. Run\n"
        f"    {command}\n"
        f"then point {label} at that server, e.g. a Tiled profile "
        f"(tiled profile create --name NAME TILED_URI) or a file NAME.yml with\n"
        "    tiled:\n      uri: TILED_URI\n      api_key: ${TILED_API_KEY}",
        name=found.name,
        where=found.where,
        command=command,
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
        A configuration name (looked up as ``Broker.named`` does) or a YAML file.
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
        ``description`` when the configuration has them. ``root_map`` (where v1 found
        the files of old path prefixes) is a ``{old: new}`` dict of strings; the
        migration's ``--from-config`` uses it as its root map.

    Raises
    ------
    ConfigNotFound
        No MongoDB configuration of that name, or no such file.
    ConfigError
        The file names no MongoDB database (it points at Tiled, uses another backend,
        or holds several MongoDB sources and ``source`` is not given), or its
        ``root_map`` is not a mapping of paths.

    >>> mongo_sources("csx")["metadatastore_uri"]          # doctest: +SKIP
    'mongodb://mongo.example.org:27017/csx_metadatastore'
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yml", ".yaml") or candidate.is_file():
        found = _found_in_file(candidate, source)
    else:
        name = str(name_or_path)
        matches = [f for f in iter_found(name) if f.kind in _LEGACY_KINDS]
        if not matches:
            others = [f"{f.kind} in {f.where}" for f in iter_found(name)]
            raise ConfigNotFound(
                f"No MongoDB configuration named {name!r} in {[str(p) for p in config_search_path()]} "
                f"or the intake catalog directories{'; found only: ' + ', '.join(others) if others else ''}.",
                name=name,
            )
        found = matches[0]
    sources = _mongo_sources_of(found)
    sources = environment.expand(sources, found.where) if expand else sources
    if "root_map" in sources:
        sources["root_map"] = root_map_of(sources["root_map"], found.where)
    return sources


def root_map_of(value: Any, where: str = "the configuration") -> dict[str, str]:
    """A configuration's ``root_map`` as a ``{old: new}`` dict of path strings.

    databroker v1 configurations (and intake catalogs) write it as a mapping; a list of
    ``{old: new}`` mappings is merged in order. Anything else raises :class:`ConfigError`.

    >>> root_map_of({"/GPFS/xf11id": "/nsls2/data/chx/legacy"})
    {'/GPFS/xf11id': '/nsls2/data/chx/legacy'}
    >>> root_map_of(["/a"], "csx.yml")
    Traceback (most recent call last):
    ...
    databroker_compat.exceptions.ConfigError: csx.yml: root_map must map old path prefixes to new ones ({OLD: NEW}), not ['/a'].
    """
    if value is None:
        return {}
    items = value if isinstance(value, list) else [value]
    merged: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in item.items()):
            raise ConfigError(
                f"{where}: root_map must map old path prefixes to new ones ({{OLD: NEW}}), not {value!r}.",
                where=where,
                root_map=value,
            )
        merged.update(item)
    return merged


def _found_in_file(path: Path, source: str | None) -> Found:
    if not path.is_file():
        raise ConfigNotFound(f"No configuration file {path}.", path=path)
    content = read_yaml(path)
    kind = kind_of_v1(content)
    if kind == "legacy-v1":
        return Found(path.stem, kind, path, content)
    if kind == "tiled":
        raise ConfigError(f"{path} already points at Tiled; it names no MongoDB to migrate from.", path=path)
    if isinstance(content, dict) and isinstance(content.get("sources"), dict):
        mongo = {k: v for k, v in content["sources"].items() if kind_of_source(v) == "intake-mongo"}
        if source is not None:
            if source not in mongo:
                raise ConfigError(
                    f"{path} has no MongoDB source {source!r}; it has {sorted(mongo)}.", path=path, source=source
                )
            return Found(source, "intake-mongo", path, mongo[source])
        if len(mongo) == 1:
            ((only, entry),) = mongo.items()
            return Found(only, "intake-mongo", path, entry)
        if not mongo:
            raise ConfigError(
                f"{path} has no source with a MongoDB driver ({sorted(MONGO_NORMALIZED_DRIVERS)}).", path=path
            )
        raise ConfigError(
            f"{path} has several MongoDB sources {sorted(mongo)}; say which one (source=...).",
            path=path,
            sources=sorted(mongo),
        )
    raise ConfigError(f"{path} is neither a databroker v1 configuration nor an intake catalog.", path=path)


def _mongo_sources_of(found: Found) -> dict:
    content = found.content
    result: dict[str, Any] = {"name": found.name, "path": found.where}
    if found.kind == "legacy-v1":
        result["layout"] = "mongo_normalized"
        result["metadatastore_uri"] = _v1_section_uri(content.get("metadatastore"), "metadatastore", found)
        assets = content.get("assets")
        result["assets_uri"] = _v1_section_uri(assets, "assets", found) if assets else result["metadatastore_uri"]
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
        if driver in MONGO_EMBEDDED_DRIVERS:
            result["layout"] = "mongo_embedded"
            uri = args.pop("datastore_db", None)
            result["metadatastore_uri"] = result["assets_uri"] = uri
        else:
            result["layout"] = "mongo_normalized"
            result["metadatastore_uri"] = args.pop("metadatastore_db", None)
            result["assets_uri"] = args.pop("asset_registry_db", None) or result["metadatastore_uri"]
        if not result["metadatastore_uri"]:
            raise ConfigError(
                f"Source {found.name!r} in {found.where} has no metadatastore_db argument.",
                name=found.name,
                where=found.where,
            )
        result["driver"] = driver
        if "description" in content:
            result["description"] = content["description"]
        result.update(args)  # handler_registry, root_map, transforms, ... as the catalog has them
        return result
    raise ConfigError(
        f"Configuration {found.name!r} in {found.where} names no MongoDB database.",
        name=found.name,
        where=found.where,
    )


def _v1_section_uri(section: Any, label: str, found: Found) -> str:
    if not isinstance(section, dict):
        raise ConfigError(f"{found.where}: the {label!r} section is missing or not a mapping.", where=found.where)
    module = str(section.get("module", ""))
    config = section.get("config") or {}
    if module and "mongo" not in module:
        raise ConfigError(
            f"{found.where}: the {label!r} section uses {module}, not MongoDB; "
            "only MongoDB-backed v1 configurations can be migrated.",
            where=found.where,
            module=module,
        )
    if config.get("uri"):
        return str(config["uri"])
    if not config.get("database"):
        raise ConfigError(
            f"{found.where}: the {label!r} section names neither a 'uri' nor a 'database'.", where=found.where
        )
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
