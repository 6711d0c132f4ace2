"""The package surface: public names, a light import, the console commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import databroker_compat

HEAVY = ["pandas", "xarray", "dask", "pymongo", "numpy", "pyarrow"]


def test_all_is_sorted_and_resolves():
    names = databroker_compat.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(databroker_compat, name), name
    assert {"ALL", "Broker", "Header", "RunNotFound", "temp", "__version__"} <= set(names)


def test_exceptions_subclass_the_builtins_v1_raised():
    from databroker_compat import AmbiguousKey, BadKey, DatabrokerCompatError, RunNotFound, UnknownField

    assert issubclass(RunNotFound, KeyError) and issubclass(RunNotFound, DatabrokerCompatError)
    assert issubclass(AmbiguousKey, ValueError) and issubclass(UnknownField, ValueError)
    assert issubclass(BadKey, TypeError)
    assert str(RunNotFound("No run with scan_id 4")) == "No run with scan_id 4"


def test_import_is_light():
    code = "import sys, json, databroker_compat; print(json.dumps([m for m in %r if m in sys.modules]))" % HEAVY
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_demo_command_runs_end_to_end(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "databroker_compat.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Recorded 3 runs" in out
    assert "('count', 'success', ['primary'])" in out
    assert "(8, 8)" in out  # a filled image frame
    assert "[1, 2, 3]" in out  # scan_ids of db[-3:]
    assert out.rstrip().endswith("True")  # db[1] is the first run
    assert "Traceback" not in result.stderr
