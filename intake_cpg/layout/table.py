"""The gallery's folder convention as data: one row per product, its path templates.

This is the table :mod:`intake_cpg.layout.templates` compiles into the parser and formatter;
adding a product kind means adding a row here (the template syntax is described in
:mod:`intake_cpg.layout`).

>>> [row.name for row in PRODUCT_TABLE][:3]
['images', 'illum', 'analysis']
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FIELDS", "FIELD_PATTERNS", "PARSED_FIELDS", "PRODUCTS", "PRODUCT_TABLE", "ProductRow"]

#: Value patterns for fields that have a fixed shape (used when parsing and formatting).
FIELD_PATTERNS: Mapping[str, str] = types.MappingProxyType(
    {"well": r"[A-Za-z]+[0-9]+", "site": r"[0-9]+"}
)
_VERSION_PATTERN = r"[vV][0-9]+(?:\.[0-9]+)*[A-Za-z]?"


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductRow:
    """One row of :data:`PRODUCT_TABLE`: a product and its path templates with options."""

    name: str
    tier: int
    description: str
    layouts: tuple[tuple[str, dict[str, Any]], ...]


def _row(name: str, tier: int, description: str, *layouts: str | tuple[str, dict]) -> ProductRow:
    norm = tuple((lay, {}) if isinstance(lay, str) else lay for lay in layouts)
    return ProductRow(name, tier, description, norm)


def _image_parts(found: dict[str, Any]) -> dict[str, Any]:
    """Raw images: ``plate`` without the microscope's measurement suffix (the folder as
    ``plate_folder``), ``well``, ``site`` and ``channel`` from the file name's scheme
    (:mod:`intake_cpg.image_names`; None for files of no known scheme)."""
    from ..image_names import image_fields

    f = image_fields(found["plate"], found["filename"])
    return {**found, **{k: f[k] for k in ("plate", "plate_folder", "well", "site", "channel")}}


#: The gallery's folder convention: one row per product, the first layout of a row is its
#: canonical one (used for ``template``, ``base`` and ``levels``). Layout options:
#: ``fixed`` (fields a literal folder implies), ``legacy`` (parse only), ``patterns`` (extra
#: value patterns for this layout only), ``refine`` (fields read from the matched ones, e.g.
#: a raw image's well and channel from its file name).
PRODUCT_TABLE: tuple[ProductRow, ...] = (
    _row(
        "images",
        1,
        "raw microscope images, below the full plate folder in an imager-specific structure",
        ("images/{batch}/images/{plate}/**/{filename}", {"refine": _image_parts}),
    ),
    _row(
        "illum",
        1,
        "illumination correction functions, one .npy per channel (variant: IllumDNA, ...)",
        "images/{batch}/illum/{plate}/{plate}_{variant}.{extension}",
    ),
    _row(
        "analysis",
        1,
        "CellProfiler measurements per site, well or plate (variant: Cells, Nuclei, Image, ...)",
        "workspace/analysis/{batch}/{plate}/analysis/{plate}[-{well}[-{site}]]/**/{variant}.{extension}",
    ),
    _row(
        "backend",
        1,
        "single-cell SQLite and well-aggregated CSV per plate",
        "workspace/backend/{batch}/{plate}/{plate}[_{variant}].{extension}",
    ),
    _row(
        "load_data",
        1,
        "CellProfiler LoadData tables per plate (version 'orig': the pre-2025 load_data_csv_orig)",
        "workspace/load_data_csv/{batch}/{plate}/load_data[_{variant}].{extension}",
        (
            "workspace/load_data_csv_orig/{batch}/{plate}/load_data[_{variant}].{extension}",
            {"fixed": {"version": "orig"}},
        ),
    ),
    _row(
        "barcode_platemap",
        1,
        "plate barcode to platemap name, per batch",
        "workspace/metadata/platemaps/{batch}/barcode_platemap.{extension}",
    ),
    _row(
        "platemap",
        1,
        "well-level perturbation layout of one platemap (variant: the platemap name)",
        "workspace/metadata/platemaps/{batch}/platemap/{variant}.{extension}",
    ),
    _row(
        "external_metadata",
        1,
        "perturbation annotations shared by the project (variant: the file stem)",
        "workspace/metadata/external_metadata/**/{variant}.{extension}",
    ),
    _row(
        "profiles",
        1,
        "well-level profiles per plate, one file per processing stage (variant)",
        "workspace/profiles/{batch}/{plate}/{plate}[_{variant}].{extension}",
    ),
    _row(
        "profiles_assembled",
        2,
        "profiles assembled across plates: subset, version and processing pipeline (variant)",
        "workspace/profiles_assembled/{subset}/{version}/{variant}.{extension}",
        (
            "workspace/profiles/{version}/{subset}/{_pipeline}/{variant}.{extension}",
            {"legacy": True},
        ),
        (
            "workspace/profiles/{subset}/{version}/{variant}.{extension}",
            {"legacy": True, "patterns": {"version": _VERSION_PATTERN}},
        ),
    ),
    _row(
        "dl_profiles",
        2,
        "well-level deep-learning profiles per plate and model",
        "workspace_dl/profiles/{model}/{batch}/{plate}/{plate}[_{variant}].{extension}",
    ),
    _row(
        "embeddings",
        2,
        "single-cell deep-learning embeddings per site and model",
        "workspace_dl/embeddings/{model}/{batch}/{plate}/{well}-{site}/embedding.{extension}",
        "workspace_dl/embeddings/{model}/{batch}/{plate}/{plate}/{well}/embedding.{extension}",
        "workspace_dl/embeddings/{model}/{batch}/{plate}/{well}/{site}/embedding.{extension}",
    ),
    _row(
        "quality_control",
        1,
        "quality-control figures per plate (subset: the kind, e.g. heatmap)",
        "workspace/quality_control/{subset}/{batch}/{plate}/{plate}[_{variant}].{extension}",
    ),
    _row(
        "pipelines",
        1,
        "CellProfiler .cppipe/.cpproj files used for a batch",
        "workspace/pipelines/{batch}/**/{filename}",
        "workspace/pipelines/{filename}",
    ),
    _row(
        "segmentation",
        2,
        "segmentations made outside the analysis pipeline (model: <software>_<hash>)",
        "workspace/segmentation/{model}/objects/{batch}/{plate}/**/{filename}",
        "workspace/segmentation/{model}/{subset}/**/{filename}",
    ),
)

#: Every product name :func:`parse_key` can return.
PRODUCTS: tuple[str, ...] = (*(row.name for row in PRODUCT_TABLE), "other")

#: Fields of a :class:`GalleryPath` that parsing reads and formatting does not take (raw
#: images: format them with ``plate=`` the plate folder as named).
PARSED_FIELDS: tuple[str, ...] = ("plate_folder", "channel")

#: The fields of a :class:`GalleryPath` that formatting accepts (besides ``product``).
FIELDS: tuple[str, ...] = (
    "project",
    "source",
    "batch",
    "plate",
    "well",
    "site",
    "subset",
    "version",
    "variant",
    "model",
    "filename",
    "extension",
)
