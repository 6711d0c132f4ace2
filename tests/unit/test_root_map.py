"""The root map: parsing, matching, where it comes from (CLI, job file, v1 configuration), where it goes."""

from __future__ import annotations

import pickle

import mongomock
import pytest

from databroker_compat.exceptions import BadArgument, ConfigError
from databroker_compat.migration.cli import _root_map
from databroker_compat.migration.frames import RootMap, resource_directory
from databroker_compat.migration.options import MigrationOptions
from databroker_compat.migration.source import LegacySource, MongoSpec
from databroker_compat.migration.writer import WriterSettings, writer_patches


def test_parse_and_apply():
    m = RootMap.parse(["/GPFS/xf11id/=/nsls2/chx/", "/GPFS=/archive"])
    assert m.pairs == (("/GPFS/xf11id", "/nsls2/chx"), ("/GPFS", "/archive"))
    assert m.apply("/GPFS/xf11id/2016/a.npy") == "/nsls2/chx/2016/a.npy"  # first match wins
    assert m.apply("/GPFS/xf11idb/a.npy") == "/archive/xf11idb/a.npy"  # whole components only
    assert m.apply("/GPFS") == "/archive"
    assert m.apply("/elsewhere/a") == "/elsewhere/a"
    assert RootMap.parse({"/old": "/new"}) == RootMap.parse(["/old=/new"])
    assert not RootMap.parse(None) and not RootMap()
    assert RootMap.parse(["/=/mnt/old"]).apply("/data/x") == "/mnt/old/data/x"


@pytest.mark.parametrize("entry", ["no-equals-sign", "relative=/new", "/old=relative", "=/new"])
def test_bad_entries_say_what_to_write(entry):
    with pytest.raises(BadArgument, match="absolute|OLD=NEW") as caught:
        RootMap.parse([entry])
    assert caught.value.option == "root_map"


def test_options_take_only_a_root_map_and_stay_picklable():
    options = MigrationOptions(root_map=RootMap.parse(["/a=/b"]))
    assert pickle.loads(pickle.dumps(options)) == options
    with pytest.raises(BadArgument, match="RootMap.parse"):
        MigrationOptions(root_map=["/a=/b"])  # type: ignore[arg-type]


def test_the_cli_takes_the_first_root_map_given():
    config = {"root_map": {"/from/job": "/x"}}
    assert _root_map(["/cli=/y"], config).pairs == (("/cli", "/y"),)
    assert _root_map(None, config).pairs == (("/from/job", "/x"),)
    assert _root_map(None, {"root_map": ["/a=/b"]}).pairs == (("/a", "/b"),)
    assert not _root_map(None, {})
    with pytest.raises(ValueError, match="root_map must be a mapping"):
        _root_map(None, {"root_map": "/a=/b"})


def test_a_v1_configuration_root_map(tmp_path):
    from databroker_compat.config import mongo_sources
    from databroker_compat.config.legacy import root_map_of

    path = tmp_path / "chx.yml"
    path.write_text(
        "metadatastore:\n  module: databroker.headersource.mongo\n  config:\n    uri: mongodb://h/mds\n"
        "assets:\n  module: databroker.assets.mongo\n  config:\n    uri: mongodb://h/assets\n"
        "root_map:\n  /GPFS/xf11id: /nsls2/chx\n"
    )
    assert mongo_sources(path)["root_map"] == {"/GPFS/xf11id": "/nsls2/chx"}
    assert root_map_of([{"/a": "/b"}, {"/c": "/d"}]) == {"/a": "/b", "/c": "/d"}
    path.write_text(path.read_text().replace("root_map:\n  /GPFS/xf11id: /nsls2/chx\n", "root_map: /GPFS\n"))
    with pytest.raises(ConfigError, match=r"root_map must map old path prefixes"):
        mongo_sources(path)


def test_the_writer_registers_the_mapped_paths():
    patches = writer_patches(WriterSettings(root_map=RootMap.parse(["/GPFS/old=/nsls2/new"])))
    npy = patches["resource"]({"spec": "NPY_SEQ", "root": "/GPFS/old", "resource_path": "2016/stem", "resource_kwargs": {}})
    assert (npy["root"], npy["resource_path"], npy["resource_kwargs"]) == ("", "/nsls2/new/2016/stem", {"template": "%s_%d.npy"})
    v0 = patches["resource"]({"spec": "AD_TIFF", "root": "", "resource_path": "/GPFS/old/cam"})  # filestore v0: root joined
    assert v0["resource_path"] == "/nsls2/new/cam/"
    unmapped = patches["resource"]({"spec": "AD_HDF5", "root": "/data", "resource_path": "a.h5"})
    assert (unmapped["root"], unmapped["resource_path"]) == ("/data", "a.h5")
    assert resource_directory({"root": "/GPFS/old", "resource_path": "x"}, RootMap.parse(["/GPFS/old=/n"])) == "/n/x"


def test_a_source_hands_its_root_map_to_the_processes_that_reopen_it():
    db = mongomock.MongoClient()["mds"]
    db["run_start"].insert_one({"uid": "u", "time": 1.0})
    source = LegacySource(db)
    source.spec = MongoSpec("mongodb://h/mds", options=(("page_size", 10),))
    mapping = RootMap.parse(["/old=/new"])
    source.set_root_map(mapping)
    assert source.root_map == mapping
    assert dict(source.spec.options) == {"page_size": 10, "root_map": mapping}
    assert source.documents("u").root_map == mapping
    with pytest.raises(BadArgument):
        LegacySource(db, root_map={"/old": "/new"})  # type: ignore[arg-type]


def test_the_example_job_file_is_valid():
    from pathlib import Path

    from databroker_compat.migration.cli import load_config

    config = load_config(Path(__file__).parents[2] / "migration" / "job.example.yaml")
    assert _root_map(None, config).apply("/GPFS/xf11id/2016/img_0.npy") == "/nsls2/data/chx/legacy/2016/img_0.npy"
    assert _root_map(None, config).apply("/GPFS/other/x") == "/nsls2/data/archive/other/x"
    assert (config["allow_missing_files"], config["verify_data"]) == (False, "sample")
