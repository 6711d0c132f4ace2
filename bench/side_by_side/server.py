"""The server of the side-by-side table: ``tiled serve config`` in a subprocess.

SQLite catalog, DuckDB tables, the detector files' directory as readable storage, and
bluesky-tiled-plugins' ``application/json-seq`` exporter registered for ``BlueskyRun``
(databroker 2.x's ``documents()`` and ``BlueskyRun.documents()`` need it; a plain
``tiled serve catalog`` answers 406). Start-up, waiting, logging and stopping are the
test harness's (``tests/servers.py``); only the command differs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import _common  # noqa: F401  (puts tests/ on sys.path)
from servers import TiledProcess

EXPORTERS = {"BlueskyRun": {"application/json-seq": "bluesky_tiled_plugins.exporters:json_seq_exporter"}}


class ExporterServer(TiledProcess):
    """``tiled serve config`` over ``directory`` with the json-seq exporter; ``.uri``, ``.close()``."""

    def __init__(self, directory: Path, readable: Path):
        (directory / "data").mkdir(parents=True, exist_ok=True)
        writable = [str(directory / "data"), f"duckdb:///{directory / 'storage.duckdb'}"]
        super().__init__(f"sqlite:///{directory / 'catalog.db'}", writable, [str(readable)], directory)

    def config(self) -> dict:
        """The server configuration (``tiled serve config`` reads JSON as the YAML it is)."""
        tree = {
            "uri": self.catalog,
            "writable_storage": self.writable,
            "readable_storage": self.readable,
            "init_if_not_exists": self.init,
        }
        return {
            "authentication": {"single_user_api_key": self.api_key},
            "trees": [{"path": "/", "tree": "catalog", "args": tree}],
            "media_types": EXPORTERS,
        }

    def command(self) -> list[str]:
        path = self.directory / "config.yml"
        path.write_text(json.dumps(self.config(), indent=2))
        tiled = shutil.which("tiled") or str(Path(sys.executable).with_name("tiled"))
        return [tiled, "serve", "config", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
