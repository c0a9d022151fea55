"""External metadata: the JUMP ``datasets`` repository tables, pinned and checksummed.

* :mod:`~intake_cpg.metadata.pins`: the pinned release (a packaged data table: file, size,
  sha256, git blob id) and the raw-file URLs of its commit (pure);
* :mod:`~intake_cpg.metadata.tables`: join keys per table and the column rule (every column
  a string) (pure);
* :mod:`~intake_cpg.metadata.store`: :class:`JumpMetadata`, fetching through pooch into a
  local cache, verifying on every use, mirrors (``metadata_root``) and ``metadata_verify``.

>>> default_release().tables  # doctest: +NORMALIZE_WHITESPACE
('cellprofiler_version', 'compound', 'compound_source', 'crispr', 'microscope_config',
 'microscope_filter', 'orf', 'perturbation_control', 'plate', 'well')
"""

from .pins import Pin, Release, default_release, read_pin_table
from .store import CACHE_ENV, JumpMetadata, default_cache_dir
from .tables import TABLE_SPECS, USUAL_TABLES, TableSpec, decode_table

__all__ = [
    "CACHE_ENV",
    "JumpMetadata",
    "Pin",
    "Release",
    "TABLE_SPECS",
    "TableSpec",
    "USUAL_TABLES",
    "decode_table",
    "default_cache_dir",
    "default_release",
    "read_pin_table",
]
