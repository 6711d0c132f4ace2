"""Finding configurations: the search path, what a name resolves to, ``list_configs``, ``lookup_config``.

A name resolves, in this order, to the first route that leads to a Tiled server:

1. ``"temp"``: a new embedded server (:func:`temp_config`), as v1 did;
2. a Tiled profile called ``name`` (``tiled profile list``; tiled's own search path);
3. a v1-style YAML file ``<name>.yml`` / ``<name>.yaml`` with a ``tiled:`` section, in
   the configuration search path (:func:`config_search_path`);
4. a source called ``name`` in an intake catalog YAML file (in the same directories and
   in the intake data directories, :func:`intake_search_path`) whose driver opens Tiled
   (``databroker-compat`` or intake's ``tiled_cat``).

When nothing leads to Tiled but a legacy configuration of that name still names MongoDB
(a v1 ``metadatastore:``/``assets:`` file, or an intake source with a
``bluesky-mongo-*-catalog`` driver), that one is the result, so that opening it can say
how to migrate (:mod:`databroker_compat.config.legacy`).

Nothing here opens a server or expands ``${ENV}`` references.

>>> resolve("temp").kind
'temp'
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..exceptions import ConfigError, ConfigNotFound

logger = logging.getLogger(__name__)

__all__ = [
    "INTAKE_TILED_DRIVERS",
    "MONGO_EMBEDDED_DRIVERS",
    "MONGO_NORMALIZED_DRIVERS",
    "OUR_DRIVERS",
    "SEARCH_PATH_ENV",
    "Found",
    "config_search_path",
    "intake_search_path",
    "iter_found",
    "kind_of_source",
    "kind_of_v1",
    "list_configs",
    "lookup_config",
    "read_yaml",
    "resolve",
    "temp_config",
]

#: The environment variable that puts extra directories first in the search path.
SEARCH_PATH_ENV = "DATABROKER_CONFIG_PATH"

#: intake drivers that open a Tiled-backed Broker (ours) or a Tiled node (intake's own).
OUR_DRIVERS = frozenset(
    {
        "databroker-compat",
        "databroker_compat.intake_catalog.BrokerSource",
        "databroker_compat.intake_catalog:BrokerSource",
    }
)
INTAKE_TILED_DRIVERS = frozenset({"tiled_cat", "tiled", "intake.source.tiled.TiledCatalog"})
#: intake drivers of the databroker v2 era that read MongoDB (normalized: one document
#: per collection row; embedded: one MongoDB document per run).
MONGO_NORMALIZED_DRIVERS = frozenset(
    {
        "bluesky-mongo-normalized-catalog",
        "databroker._drivers.mongo_normalized.BlueskyMongoCatalog",
        "databroker.mongo_normalized.BlueskyMongoCatalog",
        "databroker._drivers.mongo_normalized:BlueskyMongoCatalog",
    }
)
MONGO_EMBEDDED_DRIVERS = frozenset(
    {
        "bluesky-mongo-embedded-catalog",
        "databroker._drivers.mongo_embedded.BlueskyMongoCatalog",
        "databroker._drivers.mongo_embedded:BlueskyMongoCatalog",
    }
)


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
    out = []
    for path in paths:
        if path not in seen:
            seen.add(path)
            out.append(path)
    return out


# -- what a name can resolve to -------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One configuration found for a name.

    ``kind`` is one of ``"temp"`` (the embedded server), ``"profile"`` (a Tiled profile),
    ``"tiled"`` (a v1-style file with a ``tiled:`` section), ``"intake-tiled"`` (an
    intake source whose driver opens Tiled), ``"legacy-v1"`` (a v1 MongoDB file),
    ``"intake-mongo"`` (an intake source with a MongoDB driver) or ``"other"``.
    ``content`` is the file (or the intake entry) as written.

    >>> Found("csx", "tiled", None, {"tiled": {"uri": "http://h"}}).opens_tiled
    True
    """

    name: str
    kind: str
    path: Path | None
    content: dict = field(default_factory=dict)

    @property
    def opens_tiled(self) -> bool:
        """Whether this route leads to a Tiled server."""
        return self.kind in ("tiled", "intake-tiled", "profile", "temp")

    @property
    def where(self) -> str:
        """The file, for messages; ``"(in memory)"`` for a configuration given as a dict."""
        return str(self.path) if self.path is not None else "(in memory)"


def read_yaml(path: Path) -> Any:
    """The content of a YAML file, read with a safe loader (libyaml's when present).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.yml"; _ = p.write_text("tiled: {uri: http://h}")
    >>> read_yaml(p)
    {'tiled': {'uri': 'http://h'}}
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    with open(path) as file:
        return yaml.load(file, Loader=loader)  # noqa: S506 - a safe loader


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())


def kind_of_v1(content: Any) -> str | None:
    """What a v1-style file holds: ``"tiled"``, ``"legacy-v1"`` or ``None`` (not a v1 config).

    >>> kind_of_v1({"tiled": {}}), kind_of_v1({"metadatastore": {}}), kind_of_v1({"sources": {}})
    ('tiled', 'legacy-v1', None)
    """
    if not isinstance(content, dict):
        return None
    if "tiled" in content:
        return "tiled"
    if "metadatastore" in content or "assets" in content:
        return "legacy-v1"
    return None


def kind_of_source(entry: Any) -> str:
    """What an intake catalog entry opens: ``"intake-tiled"``, ``"intake-mongo"`` or ``"other"``.

    >>> kind_of_source({"driver": "bluesky-mongo-normalized-catalog"})
    'intake-mongo'
    """
    driver = entry.get("driver") if isinstance(entry, dict) else None
    if isinstance(driver, dict):  # intake's {name: {class: ...}} form
        first: Any = next(iter(driver.values()), {})
        driver = first.get("class") if isinstance(first, dict) else None
    if driver in OUR_DRIVERS or driver in INTAKE_TILED_DRIVERS:
        return "intake-tiled"
    if driver in MONGO_NORMALIZED_DRIVERS or driver in MONGO_EMBEDDED_DRIVERS:
        return "intake-mongo"
    return "other"


def iter_found(name: str | None) -> Iterator[Found]:
    """Every configuration file entry of ``name`` (of all names if ``None``), in search order.

    v1-style files named after the configuration come first (search path order), then
    sources of intake catalog files. Tiled profiles and ``"temp"`` are not files:
    :func:`resolve` handles them.

    >>> list(iter_found("no-such-configuration-anywhere"))
    []
    """
    config_dirs = config_search_path()
    for directory in config_dirs:
        for path in _yaml_files(directory):
            if name is not None and path.stem != name:
                continue
            content = _safe_read(path)
            kind = kind_of_v1(content)
            if kind is not None:
                yield Found(path.stem, kind, path, content)
    for directory in [*config_dirs, *intake_search_path()]:
        for path in _yaml_files(directory):
            content = _safe_read(path)
            if not isinstance(content, dict) or not isinstance(content.get("sources"), dict):
                continue
            for source_name, entry in content["sources"].items():
                if name is None or source_name == name:
                    yield Found(source_name, kind_of_source(entry), path, entry)


def _safe_read(path: Path) -> Any:
    try:
        return read_yaml(path)
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


def _profile_paths() -> str:
    try:
        from tiled.profiles import paths
    except ImportError:  # pragma: no cover
        return "tiled not installed"
    return ", ".join(str(p) for p in paths)


def temp_config() -> dict:
    """The configuration of a new embedded server: ``Broker.from_config(temp_config())``
    gives what :func:`databroker_compat.temp` gives.

    >>> temp_config()["tiled"]
    {'embedded': {'directory': None}}
    """
    return {"description": "temporary embedded Tiled server", "tiled": {"embedded": {"directory": None}}}


def list_configs() -> list[str]:
    """The names ``Broker.named`` can find, sorted (as v1's ``list_configs``).

    Includes v1-style YAML files (Tiled or legacy MongoDB), sources of intake catalog
    files and Tiled profiles.

    >>> from databroker_compat import list_configs
    >>> "temp" in list_configs()
    True
    """
    names = {found.name for found in iter_found(None) if found.kind != "other"}
    names.update(_tiled_profiles())
    names.add("temp")
    return sorted(names)


def lookup_config(name: str) -> dict:
    """The configuration ``Broker.named`` would use for ``name``, as a dict.

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
    return copy.deepcopy(resolve(name).content)


def resolve(name: str) -> Found:
    """The route ``Broker.named`` takes for ``name`` (the legacy one only if nothing opens Tiled).

    Raises
    ------
    ConfigError
        ``name`` is not a non-empty string.
    ConfigNotFound
        Nothing of that name (``err.name``, ``err.searched``: the directories).

    >>> resolve("temp").content == temp_config()
    True
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A configuration name must be a non-empty string, not {name!r}.", name=name)
    if name == "temp":
        return Found("temp", "temp", None, temp_config())
    profiles = _tiled_profiles()
    if name in profiles:
        return Found(name, "profile", Path(profiles[name]), {"tiled": {"profile": name}})
    legacy: Found | None = None
    for found in iter_found(name):
        if found.opens_tiled:
            return found
        if legacy is None and found.kind in ("legacy-v1", "intake-mongo"):
            legacy = found
    if legacy is not None:
        return legacy
    directories = [*config_search_path(), *intake_search_path()]
    searched = "\n  ".join(str(p) for p in directories)
    raise ConfigNotFound(
        f"No configuration named {name!r}. Looked for a Tiled profile ({_profile_paths()}), "
        f"for {name}.yml in\n  {searched}\n(intake catalog files in the same directories). "
        f"Found: {list_configs()}. Write {name}.yml with a 'tiled: {{uri: ...}}' section "
        f"in one of these directories, or create a Tiled profile: tiled profile create --name {name} URI",
        name=name,
        searched=directories,
    )
