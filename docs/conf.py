"""Sphinx configuration: MyST pages, and an API reference from the numpydoc docstrings."""

import os
import sys

# Document this checkout (installed editable or not): its package, not another copy.
sys.path.insert(0, os.path.abspath(".."))

project = "databroker-compat"
author = "databroker-compat developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]
source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- API reference (docs/api.md) -------------------------------------------------------
# Objects are documented by their public import paths (databroker_compat.Broker,
# databroker_compat.migration.migrate): the modules behind them are private and move.
# The summary tables link to entries on the same page: no stub pages are generated.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# numpydoc renders Parameters/Returns/Examples; autodoc's :members: lists the members.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
