"""intake-cpg: the Cell Painting Gallery as an Intake catalog.

>>> import intake_cpg
>>> intake_cpg.parse_key("cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet").plate
'BR00117037'

Names are imported lazily, so ``import intake_cpg`` stays cheap (Intake imports every
registered driver's module when it starts).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The bogus warning intake 2.0.9 gives for every plain string parameter default of a YAML
#: catalog, although nothing asked for a shell (intake issue 887).
SHELL_WARNING = "Shell command not executed due to getshell=False"


def silence_shell_warning() -> None:
    """Ignore intake's bogus shell-command warning (only that message, only from
    ``intake.catalog.utils``; shell expansion itself stays off). ``import intake_cpg`` does it."""
    warnings.filterwarnings(
        "ignore", message=SHELL_WARNING, category=UserWarning, module=r"intake\.catalog\.utils"
    )


silence_shell_warning()

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "CPGError": "errors",
    "GalleryPathError": "errors",
    "ParameterError": "errors",
    "ManifestError": "errors",
    "EtagMismatchError": "errors",
    "SchemaMismatchError": "errors",
    "DataReadError": "errors",
    "StorageError": "errors",
    "OutOfMemoryError": "errors",
    "ProductNotFoundError": "errors",
    # layout
    "GalleryPath": "layout",
    "ProductSpec": "layout",
    "PRODUCTS": "layout",
    "parse_key": "layout",
    "format_key": "layout",
    # storage
    "Storage": "storage",
    # manifests and etags
    "ManifestRecord": "manifest",
    "read_manifest": "manifest",
    "parse_manifest": "manifest",
    "compute_etag": "etag",
    "verify_object": "etag",
    "verify_manifest": "etag",
    # intake classes
    "GalleryCatalog": "catalog",
    "GallerySource": "gallery_source",
    "open_gallery": "catalog",
    "ManifestCatalog": "manifest_catalog",
    "ProfilesSource": "sources",
    # export
    "export_parquet": "export",
    "ExportResult": "export",
    # demo
    "build_demo": "demo",
    "DemoGallery": "demo",
}

__all__ = [
    "__version__",
    "CPGError",
    "GalleryPathError",
    "ParameterError",
    "ManifestError",
    "EtagMismatchError",
    "SchemaMismatchError",
    "DataReadError",
    "StorageError",
    "ProductNotFoundError",
    "GalleryPath",
    "ProductSpec",
    "PRODUCTS",
    "parse_key",
    "format_key",
    "Storage",
    "ManifestRecord",
    "read_manifest",
    "parse_manifest",
    "compute_etag",
    "verify_object",
    "verify_manifest",
    "GalleryCatalog",
    "GallerySource",
    "open_gallery",
    "ManifestCatalog",
    "ProfilesSource",
    "export_parquet",
    "ExportResult",
    "build_demo",
    "DemoGallery",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'intake_cpg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .catalog import GalleryCatalog, open_gallery
    from .demo import DemoGallery, build_demo
    from .errors import (
        CPGError,
        DataReadError,
        EtagMismatchError,
        GalleryPathError,
        ManifestError,
        ParameterError,
        ProductNotFoundError,
        SchemaMismatchError,
        StorageError,
    )
    from .etag import compute_etag, verify_manifest, verify_object
    from .export import ExportResult, export_parquet
    from .gallery_source import GallerySource
    from .layout import PRODUCTS, GalleryPath, ProductSpec, format_key, parse_key
    from .manifest import ManifestRecord, parse_manifest, read_manifest
    from .manifest_catalog import ManifestCatalog
    from .sources import ProfilesSource
    from .storage import Storage
