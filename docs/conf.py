"""Sphinx configuration for the intake-cpg documentation.

Builds offline (no intersphinx): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Pages are Markdown (MyST); API pages use autodoc on the installed ``intake_cpg`` package.
Every ``{cpg-example}`` block runs during the build against a freshly built demo gallery
(``_ext/cpg_docs.py``), and a failing example fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import intake_cpg

# Local extensions: cpg_docs runs the examples against a demo gallery built at builder-inited.
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "intake-cpg"
author = "intake-cpg contributors"
copyright = "2026, intake-cpg contributors"
release = intake_cpg.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "myst_parser",
    "cpg_docs",
    "cli_doc",  # the command line reference page, generated from intake_cpg.cli's parsers
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: ```{directive} fences plus ::: fences, and #-anchors for headings up to level 3 so
# pages can link to sections (`[text](page.md#section)`).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

nitpicky = False

html_theme = "alabaster"
html_title = f"intake-cpg {release}"
html_static_path = ["_static"]
