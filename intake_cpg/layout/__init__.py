"""The Cell Painting Gallery's folder convention, written down once as data.

Every kind of file in the gallery is a *product*. :data:`PRODUCT_TABLE` lists them, each with
one or more *layouts*: path templates relative to ``<project>/<source>/``. The parser
(:func:`parse_key`) and the formatter (:func:`format_key`) are both derived from that table,
so adding a product kind means adding a row.

The package has one module per job, and this one re-exports their public names:

* :mod:`intake_cpg.layout.table`: the rows (:data:`PRODUCT_TABLE`, :data:`FIELDS`);
* :mod:`intake_cpg.layout.templates`: the template compiler and matcher, :func:`parse_key`,
  :func:`format_key`, :class:`GalleryPath`, :class:`ProductSpec`;
* :mod:`intake_cpg.layout.names`: names and versions (:func:`validate_name`,
  :func:`version_key`) and URL helpers (:func:`split_url`, :func:`https_url`, :func:`s3_url`,
  :func:`split_ext`).

Template syntax (one template per layout, ``/`` separates folder segments):

* ``workspace`` - a literal folder name;
* ``{batch}`` - a whole segment bound to a :class:`GalleryPath` field; a field used twice
  (``{plate}/{plate}.parquet``) must hold the same value both times;
* ``{plate}[-{well}[-{site}]]`` - a segment made of fields and literal text, ``[...]`` optional;
  a segment may start with a field bound earlier (the plate folder), which is matched as a
  prefix, so plate names containing ``-`` or ``_`` split correctly;
* ``**`` - any number (zero or more) of extra folders, allowed just before the file name;
* the last segment is the file name: ``{filename}`` (any name), or a stem template followed by
  ``.{extension}``; the extension keeps compression suffixes (``csv.gz``).

Fields and their meaning in every product:

=========  ===================================================================================
project    top-level folder (``cpg0016-jump``)
source     the institution folder below it (``source_4``, ``broad``, ``source_all``)
batch      batch folder (``2021_04_26_Batch1``)
plate      plate folder; for raw ``images`` the full plate folder as it came off the microscope
well       well (``A01``), from ``<plate>-<well>[-<site>]`` folders and embeddings folders
site       site number (``1``)
subset     assembled-profile subset (``ORF``, ``compound``), the quality-control kind
           (``heatmap``) or the segmentation part (``model``, ``training``)
version    assembled-profile version (``v1.0a``); ``orig`` for ``load_data_csv_orig``
variant    which file inside its folder: what follows ``<plate>_`` (``normalized``,
           ``IllumDNA``) or ``load_data_`` (``with_illum``), else the file stem (``Cells``,
           ``profiles_var_mad_int_featselect_harmony``); None for a bare ``<plate>.<ext>``
model      deep-learning model or segmentation software folder
filename   the last segment (file name with extension)
extension  the file extension including compression suffixes (``csv.gz``), or None
=========  ===================================================================================

Legacy assembled-profile locations found in the real manifests parse as ``profiles_assembled``:

* ``workspace/profiles/<recipe-run>/<subset>/<pipeline>/<variant>.parquet`` (cpg0016 index
  v0.9/v0.10): ``version`` is the recipe-run folder (``jump-profiling-recipe_2024_a917fa7``), the
  pipeline folder is kept only in :attr:`GalleryPath.key`;
* ``workspace/profiles/<subset>/<version>/<variant>.parquet`` (cpg0042): recognised only when the
  version folder looks like a version (``v1.0``) and the file is not a per-plate file (a per-plate
  file's stem starts with its plate folder).

:func:`format_key` only writes the current layouts, never the legacy ones.

>>> p = parse_key("s3://cellpainting-gallery/cpg0016-jump/source_13/workspace/analysis/"
...               "20220914_Run1/CP-CC9-R1-04/analysis/CP-CC9-R1-04-B02-3/Nuclei.csv.gz")
>>> p.product, p.batch, p.plate, p.well, p.site, p.variant, p.extension
('analysis', '20220914_Run1', 'CP-CC9-R1-04', 'B02', '3', 'Nuclei', 'csv.gz')
>>> format_key("profiles", project="cpg0016-jump", source="source_4", batch="2021_04_26_Batch1",
...            plate="BR00117037", extension="parquet")
'cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet'
"""

from .names import (
    COMPRESSION_SUFFIXES,
    MAX_NAME_BYTES,
    has_glob,
    https_url,
    s3_url,
    split_ext,
    split_url,
    validate_name,
    version_key,
)
from .table import FIELD_PATTERNS, FIELDS, PARSED_FIELDS, PRODUCT_TABLE, PRODUCTS, ProductRow
from .templates import PRODUCT_SPECS, GalleryPath, Layout, ProductSpec, format_key, parse_key

__all__ = [
    "COMPRESSION_SUFFIXES",
    "FIELDS",
    "FIELD_PATTERNS",
    "MAX_NAME_BYTES",
    "PARSED_FIELDS",
    "PRODUCTS",
    "PRODUCT_SPECS",
    "PRODUCT_TABLE",
    "GalleryPath",
    "Layout",
    "ProductRow",
    "ProductSpec",
    "format_key",
    "has_glob",
    "https_url",
    "parse_key",
    "s3_url",
    "split_ext",
    "split_url",
    "validate_name",
    "version_key",
]
