"""Importing the entry points stays light: heavy packages load only where they are used.

(``import databroker_compat`` itself is pinned in tests/test_package.py.) Each import runs
in a fresh interpreter, so modules other tests loaded do not hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["pandas", "xarray", "dask", "pymongo", "numpy", "pyarrow", "event_model", "bluesky", "bluesky_tiled_plugins"]

# What each module's users get on import: the v1 facade's command line, and the migration
# API and command (``databroker-migrate --help`` loads neither MongoDB nor the writer).
LIGHT = ["databroker_compat.cli", "databroker_compat.migration", "databroker_compat.migration.cli"]


@pytest.mark.parametrize("module", LIGHT)
def test_import_is_light(module):
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == [], f"import {module} loaded heavy packages"
