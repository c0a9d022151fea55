"""What the JUMP metadata tables are keyed by and how they are decoded (pure rules, one table).

:data:`TABLE_SPECS` says, per table of the ``datasets`` repository, the columns that identify a
row (the join key), which other table must be joined first to provide that key, the group
whose missing matches are counted together, and whether ``annotate=True`` includes it.

Column rule: every column of a metadata table is read as a string (``string[pyarrow]``, the
dtype of every ``Metadata_*`` column in intake-cpg), so the plate ``1053601756`` and the gene id
``9`` stay strings; only empty fields are missing (``"NA"`` and ``"None"`` are kept as text).

>>> spec = TABLE_SPECS["compound"]
>>> spec.keys, spec.needs, spec.group
(('Metadata_JCP2022',), 'well', 'perturbation')
>>> USUAL_TABLES
('well', 'plate', 'perturbation_control', 'compound', 'orf', 'crispr')
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..readers import STRING_DTYPE

__all__ = ["TableSpec", "TABLE_SPECS", "USUAL_TABLES", "decode_table"]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one metadata table joins: key columns, the table that provides them, its group.

    ``keys`` is empty for a table that is not unique on any key a profile carries
    (``compound_source``: one row per compound and source), which cannot annotate rows.
    """

    name: str
    keys: tuple[str, ...]
    needs: str | None
    group: str
    usual: bool


_W = ("Metadata_Source", "Metadata_Plate", "Metadata_Well")
_J = ("Metadata_JCP2022",)
#: One row per table: (name, join keys, table that provides the keys, group, in annotate=True).
#: Order is join order and precedence: a column two tables share keeps the value of the
#: earlier one and is filled from the later one only where it is missing.
TABLE_SPECS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec("well", _W, None, "well", True),
        TableSpec("plate", _W[:2], None, "plate", True),
        # the curated control labels (negcon/poscon/empty) win over the ORF table's pert_type
        TableSpec("perturbation_control", _J, "well", "perturbation", True),
        TableSpec("compound", _J, "well", "perturbation", True),
        TableSpec("orf", _J, "well", "perturbation", True),
        TableSpec("crispr", _J, "well", "perturbation", True),
        TableSpec("microscope_config", ("Metadata_Source",), None, "microscope_config", False),
        TableSpec(
            "microscope_filter",
            ("Metadata_Filter_Configuration",),
            "microscope_config",
            "microscope_filter",
            False,
        ),
        TableSpec(
            "cellprofiler_version", ("Metadata_Source",), None, "cellprofiler_version", False
        ),
        TableSpec("compound_source", (), None, "compound_source", False),
    )
}
#: The tables ``annotate=True`` joins: wells to JCP2022 ids, plates to batch and plate type,
#: then every perturbation table (the microscope and CellProfiler tables are per-source
#: constants, asked for by name).
USUAL_TABLES: tuple[str, ...] = tuple(s.name for s in TABLE_SPECS.values() if s.usual)


def decode_table(source: str | Path | bytes, name: str = "") -> pd.DataFrame:
    """Read a metadata CSV (plain or ``.gz``: a path, or bytes named ``name``) with every column
    a string; only empty fields are missing.

    >>> import gzip
    >>> data = gzip.compress(b"Metadata_Source,Metadata_Plate,Metadata_PlateType\\nsource_2,1053601756,\\n")
    >>> df = decode_table(data, "plate.csv.gz")
    >>> df.Metadata_Plate.tolist(), str(df.Metadata_Plate.dtype), df.Metadata_PlateType.isna().tolist()
    (['1053601756'], 'string', [True])
    """
    if isinstance(source, bytes):
        data = source
    else:
        name = str(source)
        data = Path(source).read_bytes()
    gz = name.endswith(".gz")
    first = gzip.GzipFile(fileobj=io.BytesIO(data)).readline() if gz else data.split(b"\n", 1)[0]
    header = next(csv.reader(io.StringIO(first.decode("utf-8"))), [])
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    stream = pa.BufferReader(data)
    table = pacsv.read_csv(
        pa.CompressedInputStream(stream, "gzip") if gz else stream, convert_options=convert
    )
    return table.to_pandas(types_mapper={pa.string(): STRING_DTYPE}.get)
