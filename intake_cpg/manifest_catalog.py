"""A manifest as an Intake catalog (placeholder; replaced by the manifest issue)."""

from __future__ import annotations

from intake.catalog import Catalog


class ManifestCatalog(Catalog):
    """One entry per manifest record."""

    name = "cpg_manifest"
    version = "0.1.0"
