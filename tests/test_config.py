"""Named brokers: v1 YAML files, Tiled profiles, intake catalogs, from_config/get_config, mongo_sources."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from databroker_compat import (
    Broker,
    ConfigError,
    ConfigNotFound,
    MongoConfigNeedsMigration,
    RunNotFound,
    ServerUnavailable,
    list_configs,
    lookup_config,
    temp_config,
)
from databroker_compat.config import (
    Opened,
    config_for_client,
    config_search_path,
    intake_search_path,
    mongo_sources,
    open_config,
)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """An isolated search path: HOME, XDG_CONFIG_HOME, XDG_DATA_HOME and Tiled's profile directory."""
    import tiled.profiles

    home = tmp_path / "home"
    xdg = tmp_path / "xdg"
    data = tmp_path / "xdg_data"
    profiles = tmp_path / "tiled_profiles"
    for d in (home, xdg / "databroker", data / "intake", profiles):
        d.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.delenv("DATABROKER_CONFIG_PATH", raising=False)
    monkeypatch.setattr(tiled.profiles, "paths", [profiles])
    tiled.profiles.load_profiles.cache_clear()
    yield {"user": xdg / "databroker", "intake": data / "intake", "profiles": profiles, "root": tmp_path}
    tiled.profiles.load_profiles.cache_clear()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def split_key(uri: str) -> tuple[str, str]:
    base, _, key = uri.partition("?api_key=")
    assert key, f"the test servers give an api_key in their uri: {uri}"
    return base, key


def assert_reads_run(db: Broker, run) -> None:
    h = db[run.uid]
    assert h.start["uid"] == run.start["uid"]
    assert h.start["plan_name"] == run.start["plan_name"]
    assert h.start["scan_id"] == run.start["scan_id"]


# -- the routes, against every server mode ----------------------------------------------------


def test_search_path_honours_xdg(dirs, monkeypatch):
    extra = dirs["root"] / "extra"
    monkeypatch.setenv("DATABROKER_CONFIG_PATH", str(extra))
    paths = config_search_path()
    assert paths[0] == extra
    assert paths[1] == dirs["user"]
    assert paths[-2:] == [Path(__import__("sys").prefix) / "etc" / "databroker", Path("/etc/databroker")]
    assert intake_search_path()[0] == dirs["intake"]


def test_named_v1_yaml(served, dirs):
    name = unique("beamline")
    write(dirs["user"] / f"{name}.yml", f"""
        description: test beamline
        timezone: UTC
        tiled:
          uri: {served.uri}
        """)
    db = Broker.named(name)
    assert db.name == name
    assert db.timezone == "UTC"
    assert_reads_run(db, served.runs["scan"])
    assert db.get_config()["tiled"]["uri"] == served.uri
    assert name in list_configs()


def test_named_key_from_environment(served, dirs, monkeypatch):
    name = unique("secret")
    base, key = split_key(served.uri)
    variable = "DBC_TEST_TILED_KEY"
    write(dirs["user"] / f"{name}.yaml", f"""
        tiled:
          uri: {base}
          api_key: ${{{variable}}}
        """)
    monkeypatch.setenv(variable, key)
    db = Broker.named(name)
    assert_reads_run(db, served.runs["count"])
    # get_config gives the file as written: the secret stays a reference.
    assert db.get_config()["tiled"]["api_key"] == "${DBC_TEST_TILED_KEY}"
    assert lookup_config(name)["tiled"]["api_key"] == "${DBC_TEST_TILED_KEY}"

    monkeypatch.delenv(variable)
    with pytest.raises(ConfigError, match=r"environment variable DBC_TEST_TILED_KEY, which is not set"):
        Broker.named(name)


def test_named_tiled_profile(served, dirs, monkeypatch):
    name = unique("profile")
    base, key = split_key(served.uri)
    monkeypatch.setenv("DBC_TEST_PROFILE_KEY", key)
    # Tiled expands ${ENV} in its own profiles.
    write(dirs["profiles"] / "mine.yml", f"""
        {name}:
          uri: {base}?api_key=${{DBC_TEST_PROFILE_KEY}}
        """)
    db = Broker.named(name)
    assert db.name == name
    assert_reads_run(db, served.runs["grid"])
    assert db.get_config() == {"tiled": {"profile": name}}
    assert name in list_configs()
    # The same profile through a v1-style file.
    alias = unique("alias")
    write(dirs["user"] / f"{alias}.yml", f"tiled:\n  profile: {name}\n")
    assert_reads_run(Broker.named(alias), served.runs["grid"])


def test_named_intake_catalog_entry(served, dirs):
    name = unique("intake")
    base, key = split_key(served.uri)
    write(dirs["intake"] / "facility.yml", f"""
        sources:
          {name}:
            description: Tiled-backed
            driver: databroker-compat
            args:
              uri: {base}
              api_key: {key}
              path: bluesky
              timezone: UTC
          legacy_one:
            driver: bluesky-mongo-normalized-catalog
            args:
              metadatastore_db: mongodb://localhost:27017/mds
              asset_registry_db: mongodb://localhost:27017/assets
        """)
    db = Broker.named(name)
    assert db.timezone == "UTC"
    # path: the CatalogOfBlueskyRuns child holds only "count" and "scan".
    assert_reads_run(db, served.runs["scan"])
    with pytest.raises(RunNotFound):
        db[served.runs["grid"].uid]
    assert {name, "legacy_one"} <= set(list_configs())


def test_intake_public_api(served, tmp_path):
    intake = pytest.importorskip("intake")
    from intake.readers.datatypes import TiledService

    from databroker_compat.intake_catalog import BrokerReader

    base, key = split_key(served.uri)
    path = write(tmp_path / "catalog.yml", f"""
        sources:
          csx:
            driver: databroker-compat
            args:
              uri: {base}
              api_key: {key}
        """)
    catalog = intake.open_catalog(str(path))
    assert "csx" in list(catalog)
    db = catalog["csx"].read()
    assert isinstance(db, Broker)
    assert db.name == "csx"
    assert_reads_run(db, served.runs["count"])
    assert "databroker-compat" in intake.registry  # the entry point registers the driver

    reader = BrokerReader(TiledService(base, options={"api_key": key}))
    db2 = reader.read()
    assert isinstance(db2, Broker)
    assert_reads_run(db2, served.runs["scan"])


# -- precedence, from_config, get_config, temp ------------------------------------------------


def test_precedence(served, dirs, monkeypatch):
    name = unique("prec")
    uri = served.uri
    system = dirs["root"] / "system"
    monkeypatch.setenv("DATABROKER_CONFIG_PATH", f"{dirs['root'] / 'empty'}:{system}")
    # A legacy MongoDB file earlier in the path does not hide a Tiled one later on.
    write(dirs["root"] / "empty" / f"{name}.yml", """
        metadatastore:
          module: databroker.headersource.mongo
          class: MDS
          config: {host: localhost, port: 27017, database: mds, timezone: US/Eastern}
        """)
    write(system / f"{name}.yml", f"tiled:\n  uri: {uri}\n  path: bluesky\n")
    write(dirs["user"] / f"{name}.yml", f"tiled:\n  uri: {uri}\n")
    db = Broker.named(name)
    assert db.get_config() == {"tiled": {"uri": uri, "path": "bluesky"}}
    # A Tiled profile comes first of all.
    write(dirs["profiles"] / "p.yml", f"{name}:\n  uri: {uri}\n")
    assert Broker.named(name).get_config() == {"tiled": {"profile": name}}


def test_from_config_and_get_config(served):
    config = {"description": "x", "timezone": "Europe/Paris", "tiled": {"uri": served.uri}}
    db = Broker.from_config(config, name="paris")
    assert (db.name, db.timezone) == ("paris", "Europe/Paris")
    assert db.get_config() == config
    assert db.get_config() is not config
    assert_reads_run(db, served.runs["count"])
    # A broker built from a client describes itself, without the key.
    plain = served.broker(timezone="UTC")
    built = plain.get_config()
    assert built["timezone"] == "UTC"
    assert "api_key" not in str(built)
    assert built["tiled"]["uri"].rstrip("/") == split_key(served.uri)[0].rstrip("/")
    with_key = {**built, "tiled": {**built["tiled"], "api_key": split_key(served.uri)[1]}}
    assert_reads_run(Broker.from_config(with_key), served.runs["scan"])
    special = Broker(served.special())
    assert special.get_config()["tiled"]["path"] == "bluesky"


def test_open_config_gives_a_client_and_the_config_as_written(served, monkeypatch):
    base, key = split_key(served.uri)
    monkeypatch.setenv("DBC_TEST_OPEN_KEY", key)
    config = {"timezone": "UTC", "tiled": {"uri": base, "api_key": "${DBC_TEST_OPEN_KEY}"}}
    opened = open_config(config, name="direct")
    assert isinstance(opened, Opened)
    assert (opened.name, opened.timezone, opened.close) == ("direct", "UTC", None)
    assert opened.config == config and opened.config is not config
    assert opened.client[served.runs["scan"].uid].metadata["start"]["uid"] == served.runs["scan"].uid
    described = config_for_client(opened.client, timezone="UTC")
    assert described["timezone"] == "UTC"
    assert described["tiled"]["uri"].rstrip("/") == base.rstrip("/")
    assert "path" not in described["tiled"]  # the root has no path
    assert config_for_client(served.special())["tiled"]["path"] == "bluesky"


def test_open_config_needs_a_way_to_start_an_embedded_server():
    with pytest.raises(ConfigError, match="runs an embedded Tiled server, and no way to start one was given"):
        open_config(temp_config())


TEMP_SCRIPT = """
import json
from urllib.parse import urlsplit

import httpx

from databroker_compat import Broker, temp_config

def answers(uri):
    try:
        httpx.get(uri, timeout=5)
    except httpx.TransportError:
        return False
    return True

out = {}
with Broker.from_config(temp_config()) as db:
    out["config"] = db.get_config()
    uri = str(db.v2.context.api_uri)
    out["runs"] = len(list(db.v2))
    out["name"] = db.name
    # The broker owns an embedded server: one in this process, on this machine...
    local = urlsplit(uri).hostname in ("127.0.0.1", "localhost")
    serving = answers(uri)
# ... which closing the broker stops.
out["embedded"] = local and serving and not answers(uri)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_temp_config_matches_temp(dirs):
    # In a subprocess: a second in-process Tiled server replaces the process-wide API key
    # of the session's servers (tiled keeps server settings in one global object).
    import json
    import subprocess
    import sys

    assert lookup_config("temp") == temp_config()
    assert temp_config()["tiled"] == {"embedded": {"directory": None}}
    result = subprocess.run([sys.executable, "-c", TEMP_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {
        "config": temp_config(),
        "embedded": True,
        "runs": 0,
        "name": "temp",
    }


# -- errors --------------------------------------------------------------------------------------


def test_legacy_v1_config_points_at_migration(dirs):
    write(dirs["user"] / "csx.yml", """
        description: heavyweight shared database
        metadatastore:
          module: databroker.headersource.mongo
          class: MDS
          config: {host: mongo.example.org, port: 27017, database: csx_mds, timezone: US/Eastern}
        assets:
          module: databroker.assets.mongo
          class: Registry
          config: {host: mongo.example.org, port: 27017, database: csx_assets}
        """)
    with pytest.raises(MongoConfigNeedsMigration) as info:
        Broker.named("csx")
    message = str(info.value)
    assert "points at MongoDB (metadatastore mongodb://mongo.example.org:27017/csx_mds)" in message
    assert "databroker-migrate run --from-config csx --tiled-uri TILED_URI" in message
    assert "csx" in list_configs()
    assert isinstance(info.value, ValueError)
    # from_config of the same content says the same.
    with pytest.raises(MongoConfigNeedsMigration) as info:
        Broker.from_config(lookup_config("csx"))
    assert (
        "databroker-migrate run --metadatastore-uri mongodb://mongo.example.org:27017/csx_mds "
        "--assets-uri mongodb://mongo.example.org:27017/csx_assets --tiled-uri TILED_URI"
    ) in str(info.value)


def test_legacy_intake_config_points_at_migration(dirs):
    write(dirs["user"] / "catalogs.yml", """
        sources:
          chx:
            driver: bluesky-mongo-normalized-catalog
            args:
              metadatastore_db: mongodb://user:hunter2@mongo:27017/chx_mds
              asset_registry_db: mongodb://user:hunter2@mongo:27017/chx_assets
        """)
    with pytest.raises(MongoConfigNeedsMigration) as info:
        Broker.named("chx")
    message = str(info.value)
    assert "databroker-migrate run --from-config chx" in message
    assert "mongodb://user:***@mongo:27017/chx_mds" in message
    assert "hunter2" not in message


def test_not_found(dirs):
    with pytest.raises(ConfigNotFound) as info:
        Broker.named("nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "No configuration named 'nowhere'" in message
    assert str(dirs["user"]) in message
    assert "tiled profile create --name nowhere" in message


@pytest.mark.parametrize(
    "config, pattern",
    [
        ({"tiled": {"uri": "http://x", "user": "me"}}, r"unknown keys \['user'\] in 'tiled'"),
        ({"tiled": {"uri": "http://x", "profile": "p"}}, r"exactly one of 'uri', 'profile' or 'embedded'"),
        ({"tiled": {}}, r"exactly one of 'uri', 'profile' or 'embedded'; it has none"),
        ({"tiled": "http://x"}, r"'tiled' must be a mapping"),
        ({"timezone": "UTC"}, r"has no 'tiled' section"),
        ({"sources": {"a": {}}}, r"is an intake catalog, not a broker configuration"),
        ("http://x", r"must be a dict, not str"),
    ],
)
def test_bad_configs(config, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Broker.from_config(config)


def test_wrong_key(served):
    base, key = split_key(served.uri)
    with pytest.raises(ConfigError, match=r"answered HTTP 401\. Check the api_key") as info:
        Broker.from_config({"tiled": {"uri": base, "api_key": "wrong" + key}})
    assert key not in str(info.value)


def test_unreachable_server():
    import stamina  # tiled's retry library: one attempt instead of retrying for 45 s

    from servers import free_port

    with stamina.set_testing(True, attempts=1):
        with pytest.raises(ServerUnavailable, match=r"at http://127.0.0.1:\d+/api/v1\?api_key=\*\*\* did not answer"):
            Broker.from_config({"tiled": {"uri": f"http://127.0.0.1:{free_port()}/api/v1?api_key=s3cret"}})


def test_bad_path(served):
    with pytest.raises(ConfigError, match=r"no node 'nope/inside'"):
        Broker.from_config({"tiled": {"uri": served.uri, "path": "nope/inside"}})


# -- mongo_sources, for the migration -------------------------------------------------------------


def test_mongo_sources_v1(dirs, monkeypatch):
    write(dirs["user"] / "csx.yml", """
        metadatastore:
          module: databroker.headersource.mongo
          class: MDS
          config: {host: mongo.example.org, port: 27018, database: csx_mds, timezone: US/Eastern}
        assets:
          module: databroker.assets.mongo
          class: Registry
          config: {uri: "mongodb://admin:${DBC_MONGO_PW}@mongo.example.org/csx_assets"}
        root_map: {/old: /new}
        """)
    monkeypatch.setenv("DBC_MONGO_PW", "pw")
    found = mongo_sources("csx")
    assert found["metadatastore_uri"] == "mongodb://mongo.example.org:27018/csx_mds"
    assert found["assets_uri"] == "mongodb://admin:pw@mongo.example.org/csx_assets"
    assert found["timezone"] == "US/Eastern"
    assert found["root_map"] == {"/old": "/new"}
    assert found["layout"] == "mongo_normalized"
    assert found["path"] == str(dirs["user"] / "csx.yml")
    assert mongo_sources("csx", expand=False)["assets_uri"].endswith("${DBC_MONGO_PW}@mongo.example.org/csx_assets")
    # A file path works as well as a name.
    assert mongo_sources(dirs["user"] / "csx.yml") == found


def test_mongo_sources_v1_single_database(tmp_path):
    path = write(tmp_path / "one.yml", """
        metadatastore:
          module: databroker.headersource.mongo
          class: MDS
          config: {host: db, database: everything, username: u, password: p, authsource: admin}
        """)
    found = mongo_sources(path)
    assert found["metadatastore_uri"] == "mongodb://u:p@db:27017/everything?authSource=admin"
    assert found["assets_uri"] == found["metadatastore_uri"]


def test_mongo_sources_intake(dirs):
    path = write(dirs["intake"] / "site.yml", """
        sources:
          xpd:
            driver: bluesky-mongo-normalized-catalog
            args:
              metadatastore_db: mongodb://mongo/xpd_mds
              asset_registry_db: mongodb://mongo/xpd_assets
              handler_registry: {AD_TIFF: area_detector_handlers.handlers:AreaDetectorTiffHandler}
          iss:
            driver: bluesky-mongo-embedded-catalog
            args: {datastore_db: mongodb://mongo/iss}
          csv:
            driver: csv
            args: {urlpath: x.csv}
        """)
    found = mongo_sources("xpd")
    assert found["metadatastore_uri"] == "mongodb://mongo/xpd_mds"
    assert found["assets_uri"] == "mongodb://mongo/xpd_assets"
    assert found["handler_registry"] == {"AD_TIFF": "area_detector_handlers.handlers:AreaDetectorTiffHandler"}
    assert found["driver"] == "bluesky-mongo-normalized-catalog"
    embedded = mongo_sources(path, source="iss")
    assert embedded["layout"] == "mongo_embedded"
    assert embedded["metadatastore_uri"] == "mongodb://mongo/iss"
    with pytest.raises(ConfigError, match=r"several MongoDB sources \['iss', 'xpd'\]; say which one"):
        mongo_sources(path)
    with pytest.raises(ConfigError, match=r"has no MongoDB source 'csv'"):
        mongo_sources(path, source="csv")


def test_mongo_sources_errors(dirs, tmp_path):
    write(dirs["user"] / "modern.yml", "tiled:\n  uri: http://x\n")
    with pytest.raises(ConfigNotFound, match=r"No MongoDB configuration named 'modern'.*found only: tiled in"):
        mongo_sources("modern")
    with pytest.raises(ConfigError, match=r"already points at Tiled"):
        mongo_sources(dirs["user"] / "modern.yml")
    with pytest.raises(ConfigNotFound, match=r"No configuration file"):
        mongo_sources(tmp_path / "absent.yml")
    sqlite = write(tmp_path / "lite.yml", """
        metadatastore:
          module: databroker.headersource.sqlite
          class: MDS
          config: {directory: /tmp/x}
        """)
    with pytest.raises(ConfigError, match=r"uses databroker.headersource.sqlite, not MongoDB"):
        mongo_sources(sqlite)


# -- databroker-migrate --from-config ---------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy_wire(recorded):
    """The recorded "count" and "scan" runs in a mongomock database served over a real socket."""
    import mongomock

    from migration_source import insert_recorded
    from mongo_wire import MongoWireServer

    client = mongomock.MongoClient()
    insert_recorded(client["csx_mds"], recorded, names=("count", "scan"))
    server = MongoWireServer(client)
    yield server
    server.close()


def test_migrate_from_config(served, dirs, legacy_wire):
    from typer.testing import CliRunner

    from databroker_compat.migration.cli import app

    mongo = f"mongodb://127.0.0.1:{legacy_wire.port}/csx_mds?directConnection=true&serverSelectionTimeoutMS=5000"
    name = unique("legacy")
    write(dirs["user"] / f"{name}.yml", f"""
        metadatastore:
          module: databroker.headersource.mongo
          class: MDS
          config: {{uri: "{mongo}", timezone: US/Eastern}}
        """)
    # The error Broker.named gives is the command that works.
    with pytest.raises(MongoConfigNeedsMigration, match=f"databroker-migrate run --from-config {name} "):
        Broker.named(name)
    base, key = split_key(served.uri)
    node = unique("from-config-")
    served.client.create_container(node)
    runner = CliRunner()
    args = ["run", "--from-config", name, "--tiled-uri", f"{base}/metadata/{node}", "--no-progress"]
    state = ["--state", str(dirs["root"] / "state.jsonl"), "--report", str(dirs["root"] / "report.json")]
    result = runner.invoke(app, args + state, env={"TILED_API_KEY": key})
    assert result.exit_code == 0, result.output
    assert "migrated: 2" in result.output
    db = Broker(served.client[node])
    for run in (served.runs["count"], served.runs["scan"]):
        assert_reads_run(db, run)
        assert list(db[run.uid].table().index) == [e["seq_num"] for e in run.events("primary")]

    missing = runner.invoke(app, ["run", "--from-config", "nowhere-" + name, "--tiled-uri", "http://127.0.0.1:1"])
    assert missing.exit_code == 2
    assert f"--from-config nowhere-{name}: No MongoDB configuration named 'nowhere-{name}'" in missing.output

    embedded = write(dirs["root"] / "embedded.yml", """
        sources:
          iss:
            driver: bluesky-mongo-embedded-catalog
            args: {datastore_db: "mongodb://op:hunter2@mongo/iss"}
        """)
    refused = runner.invoke(app, ["verify", "--from-config", str(embedded), "--tiled-uri", "http://127.0.0.1:1"])
    assert refused.exit_code == 2
    assert "the mongo_embedded layout is not supported" in refused.output
    assert "hunter2" not in refused.output
