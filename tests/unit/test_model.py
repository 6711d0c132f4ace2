"""model.py: Document, and descriptors rebuilt from what TiledWriter keeps."""

from __future__ import annotations

import copy
import pickle

import pytest

from databroker_compat.model import Document, descriptors_from_stream, object_keys, sorted_by_time, to_plain

STREAM_METADATA = {
    "uid": "d1",
    "time": 10.0,
    "data_keys": {
        "det": {"dtype": "number", "shape": [], "source": "SIM:det", "object_name": "det", "dtype_numpy": "<f8"},
        "motor": {"dtype": "integer", "shape": [], "source": "SIM:m", "object_name": "motor", "dtype_numpy": "<f8"},
        "img": {"dtype": "array", "shape": [5, 5], "source": "x", "object_name": "det", "external": "FILESTORE:"},
    },
    "configuration": {
        "det": {"data": {"det_gain": 1}, "timestamps": {"det_gain": 9.0},
                "data_keys": {"det_gain": {"dtype": "integer", "shape": [], "source": "g", "dtype_numpy": "<i8"}}},
    },
    "hints": {"det": {"fields": ["det"]}},
    "object_classes": {"det": "SynGauss"},
    "_config_updates": [
        {"uid": "d2", "time": 20.0, "configuration": {"det": {"data": {"det_gain": 2}}}},
        {"uid": "d3", "time": 30.0},
    ],
}


def test_document_attribute_access_and_copies():
    d = Document({"plan_name": "scan", "sample": {"name": "Si"}, "list": [1]})
    assert d.plan_name == "scan" and d.sample.name == "Si" and isinstance(d.sample, Document)
    with pytest.raises(AttributeError, match="no key 'nope'"):
        _ = d.nope
    assert "plan_name" in dir(d)
    assert type(copy.copy(d)) is Document and copy.deepcopy(d) == d
    assert copy.deepcopy(d)["sample"] is not d["sample"]
    assert pickle.loads(pickle.dumps(d)) == d
    plain = d.to_dict()
    assert type(plain) is dict and type(plain["sample"]) is dict and plain == d


def test_to_plain_turns_views_into_dicts_and_lists():
    class View:  # a mapping view such as tiled's DictView
        def __init__(self, d):
            self._d = d

        def keys(self):
            return self._d.keys()

        def items(self):
            return self._d.items()

    assert to_plain(View({"a": (1, View({"b": [2, (3,)]}))})) == {"a": [1, {"b": [2, [3]]}]}


def test_first_descriptor_restored():
    first, *later = descriptors_from_stream("run1", "primary", STREAM_METADATA)
    assert first["name"] == "primary" and first["run_start"] == "run1" and first["uid"] == "d1"
    assert "_config_updates" not in first
    # dtype_numpy derived from dtype by the normaliser is dropped; a different one is kept.
    assert "dtype_numpy" not in first["data_keys"]["det"]
    assert first["data_keys"]["motor"]["dtype_numpy"] == "<f8"
    assert "dtype_numpy" not in first["configuration"]["det"]["data_keys"]["det_gain"]
    assert first["object_keys"] == {"det": ["det", "img"], "motor": ["motor"]}
    assert first["hints"] == STREAM_METADATA["hints"]


def test_configuration_updates_become_later_descriptors():
    first, second, third = descriptors_from_stream("run1", "primary", STREAM_METADATA)
    assert [d["uid"] for d in (second, third)] == ["d2", "d3"]
    assert second["configuration"]["det"]["data"] == {"det_gain": 2}
    assert second["configuration"]["det"]["timestamps"] == {"det_gain": 9.0}
    assert third["configuration"] == first["configuration"]
    assert second["data_keys"] == first["data_keys"] and second["data_keys"] is not first["data_keys"]


def test_descriptors_do_not_share_the_metadata():
    metadata = copy.deepcopy(STREAM_METADATA)
    first = descriptors_from_stream("r", "primary", metadata)[0]
    first["data_keys"]["det"]["shape"].append(1)
    assert metadata["data_keys"]["det"]["shape"] == []


def test_object_keys_and_time_order():
    assert object_keys({"a": {"object_name": "x"}, "b": {}, "c": {"object_name": "x"}}) == {"x": ["a", "c"]}
    docs = [{"uid": "b", "time": 2.0}, {"uid": "a", "time": 2.0}, {"uid": "c", "time": 1.0}, {"uid": "z"}]
    assert [d["uid"] for d in sorted_by_time(docs)] == ["z", "c", "a", "b"]


def test_nested_dicts_are_documents_stored_in_place():
    d = Document({"data": {"det": 1.0, "nested": {"x": 1}}, "seq": [{"plain": 1}]})
    assert d.data is d.data is d["data"] and isinstance(d["data"], Document)
    assert d.data.nested is d["data"]["nested"]
    d.data["norm"] = 2.0
    d.data.nested["y"] = 2
    assert d["data"]["norm"] == 2.0 and d["data"]["nested"] == {"x": 1, "y": 2}
    assert type(d["seq"][0]) is dict  # dicts inside lists stay as they are
    # A plain dict stored later becomes a Document in place on attribute access.
    d["later"] = {"a": 1}
    assert d.later is d["later"] and isinstance(d["later"], Document)
    # The caller's dict is not changed into a Document.
    source = {"inner": {"k": 1}}
    wrapped = Document(source)
    assert type(source["inner"]) is dict and wrapped.inner == source["inner"]


def test_nested_documents_survive_copies_and_pickling():
    d = Document({"data": {"det": 1.0}, "timestamps": {"det": 5.0}})
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(d, protocol=protocol))
        assert back == d and type(back) is Document and type(back["data"]) is Document
    shallow = copy.copy(d)
    assert shallow.data is d.data and shallow is not d
    deep = copy.deepcopy(d)
    assert deep.data is not d.data and type(deep.data) is Document and deep == d
    assert dict(d)["data"] is d.data
    plain = d.to_dict()
    assert type(plain["data"]) is dict and plain == {"data": {"det": 1.0}, "timestamps": {"det": 5.0}}
