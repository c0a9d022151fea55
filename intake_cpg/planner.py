"""The read planner: file schemas plus options in, a :class:`~intake_cpg.readers.ReadPlan` out.

Pure: it reads nothing and knows neither dask nor Intake. :class:`~intake_cpg.sources.ProfilesSource`
reads the schemas it needs (one footer, or every footer for ``union``/``intersection``) and
calls :func:`plan_read`; the plan then travels to the workers.

>>> import numpy as np
>>> from intake_cpg.layout import parse_key
>>> from intake_cpg.readers import FileSchema
>>> key = "cpg0016-jump/source_4/workspace/profiles/B1/P1/P1.parquet"
>>> s = FileSchema(key, {"Metadata_Well": "string", "Cells_Area": np.dtype("float32")}, num_rows=384)
>>> planned = plan_read([s], parse_key(key), 1, ReadOptions())
>>> list(planned.meta.columns)
['Metadata_Source', 'Metadata_Batch', 'Metadata_Plate', 'Metadata_Well', 'Cells_Area']
>>> planned.plan.expected, planned.num_rows
(('Metadata_Well', 'Cells_Area'), 384)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import ParameterError
from .layout import GalleryPath
from .readers import (
    PATH_COLUMNS,
    STRING_DTYPE,
    FileSchema,
    ReadPlan,
    combine_schemas,
    empty_frame,
    filter_columns,
    path_values,
    unknown_columns_error,
)

__all__ = ["PlannedRead", "ReadOptions", "plan_read"]


@dataclass(frozen=True)
class ReadOptions:
    """What the user asked for (see :class:`~intake_cpg.sources.ProfilesSource`)."""

    columns: tuple[str, ...] | None = None
    filters: Any = None
    index: str | None = None
    schema: str = "strict"
    path_metadata: bool = True
    expand_embeddings: bool = False
    format: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    footer_cache: Any = None
    pin_etags: bool = False


@dataclass(frozen=True)
class PlannedRead:
    """The plan, the file column each output column comes from, the output ``meta`` (index
    set) and the row count when every file's footer told it and no filter applies."""

    plan: ReadPlan
    origins: Mapping[str, str]
    meta: pd.DataFrame
    num_rows: int | None


def _output_columns(
    schemas: Sequence[FileSchema],
    file_dtypes: Mapping[str, Any],
    added: Sequence[str],
    opts: ReadOptions,
) -> tuple[dict[str, Any], dict[str, str], dict[str, int]]:
    """Output columns: path-derived first (when missing), then the file's, lists expanded."""
    first = schemas[0]
    widths: dict[str, int] = {}
    out: dict[str, Any] = dict.fromkeys(added, STRING_DTYPE)
    origins: dict[str, str] = {c: c for c in added}
    for c, dt in file_dtypes.items():
        if opts.expand_embeddings and c in first.list_widths:
            k = first.list_widths[c]
            if k is None:
                raise ParameterError(
                    f"cannot expand list column {c!r}: the first row of {first.url} is empty; "
                    "load with expand_embeddings=False"
                )
            widths[c] = k
            for j in range(k):
                out[f"{c}_{j}"] = first.list_dtypes.get(c, np.dtype("float64"))
                origins[f"{c}_{j}"] = c
        else:
            out[c] = dt
            origins[c] = c
    return out, origins, widths


def _selected(
    out: Mapping[str, Any], widths: Mapping[str, int], opts: ReadOptions, url: str
) -> list[str]:
    """The output columns asked for (a list column's name selects its expansion), index kept."""
    if opts.columns is None:
        selected = list(out)
    else:
        selected, unknown = [], []
        for c in opts.columns:
            if c in out:
                selected.append(c)
            elif c in widths:
                selected.extend(f"{c}_{j}" for j in range(widths[c]))
            else:
                unknown.append(c)
        if unknown:
            raise unknown_columns_error(unknown, list(out), url)
    if opts.index:
        if opts.index not in out:
            raise unknown_columns_error([opts.index], list(out), url)
        if opts.index not in selected:
            selected.append(opts.index)
    for col in filter_columns(opts.filters):
        if col not in out:
            raise unknown_columns_error([col], list(out), url)
    return selected


def plan_read(
    schemas: Sequence[FileSchema],
    first_path: GalleryPath | None,
    n_files: int,
    opts: ReadOptions,
) -> PlannedRead:
    """Plan reading ``n_files`` files whose (first, or every) schemas are ``schemas``.

    ``first_path`` is the first file's parsed gallery path: which ``Metadata_Source/Batch/Plate``
    columns the files' paths can add when the tables lack them.
    """
    file_dtypes = combine_schemas(schemas, opts.schema)
    derived = path_values(first_path) if opts.path_metadata else {}
    added = [c for c in PATH_COLUMNS if c in derived and c not in file_dtypes]
    path_columns = tuple(
        c for c in PATH_COLUMNS if c in added or (opts.path_metadata and c in file_dtypes)
    )
    out, origins, widths = _output_columns(schemas, file_dtypes, added, opts)
    selected = _selected(out, widths, opts, schemas[0].url)
    meta = empty_frame({c: out[c] for c in selected})
    needed = {origins[c] for c in selected}
    expected = tuple(c for c in file_dtypes if c in needed)
    plan = ReadPlan(
        meta=meta,
        expected=expected,
        mode=opts.schema,
        storage_options=dict(opts.storage_options),
        format=opts.format,
        filters=opts.filters or None,
        path_columns=tuple(c for c in path_columns if c in selected),
        list_widths={c: k for c, k in widths.items() if c in needed},
        expected_dtypes={c: file_dtypes[c] for c in expected},
        check_extra=opts.columns is None,
        index=opts.index,
        footer_cache=opts.footer_cache,
        pin_etags=opts.pin_etags,
    )
    rows = None
    if (
        not opts.filters
        and len(schemas) == n_files
        and all(s.num_rows is not None for s in schemas)
    ):
        rows = sum(s.num_rows for s in schemas)  # type: ignore[misc]
    return PlannedRead(
        plan=plan,
        origins={c: origins[c] for c in selected},
        meta=meta.set_index(opts.index) if opts.index else meta,
        num_rows=rows,
    )
