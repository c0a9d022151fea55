"""Sphinx configuration for the intake-cpg documentation.

Builds offline (no intersphinx): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
Pages are Markdown (MyST); API pages use autodoc on the installed ``intake_cpg`` package.
"""

from __future__ import annotations

import intake_cpg

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
html_static_path: list[str] = []
