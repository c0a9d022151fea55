"""Gallery tables as Arrow tables and polars frames, from the project's own read path.

A loaded source (:class:`~intake_cpg.gallery_source.GallerySource` or
:class:`~intake_cpg.sources.ProfilesSource`) plans its partitions once: the empty output frame
(``meta``), the file groups and the :class:`~intake_cpg.sources.PartitionReader` a dask worker
calls. Every output here reads through that same reader, so the dtype rules (``Metadata_*`` as
strings, list-typed embeddings kept as lists), schema checks and ETag-pinned reads are the ones
``to_dask()`` has; only the container differs:

* :func:`to_arrow` computes the partitions with dask (on the workers of a ``distributed``
  client when one is active), turns each into an Arrow table where it was read, and
  concatenates them;
* :func:`to_polars` is that table as a ``polars.DataFrame`` (no copy for most columns);
* :func:`scan_polars` is a ``polars.LazyFrame`` that reads nothing until collected, then
  reads partition by partition, only the columns the query uses, a few partitions ahead.

>>> import os, tempfile, pandas as pd
>>> from intake_cpg.sources import ProfilesSource
>>> p = os.path.join(tempfile.mkdtemp(), "1053601756.csv")
>>> pd.DataFrame({"Metadata_Plate": ["1053601756"], "Cells_Area": [3.5]}).to_csv(p, index=False)
>>> to_arrow(ProfilesSource(p)).schema.field("Metadata_Plate").type
DataType(large_string)
>>> to_polars(ProfilesSource(p))["Metadata_Plate"].to_list()
['1053601756']
>>> scan_polars(ProfilesSource(p)).select("Cells_Area").collect()["Cells_Area"].to_list()
[3.5]
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import polars as pl
    import pyarrow as pa

log = logging.getLogger(__name__)

__all__ = [
    "TableOutputs",
    "arrow_table",
    "partition_plan",
    "scan_polars",
    "to_arrow",
    "to_polars",
]

#: Partitions a :func:`scan_polars` frame reads ahead of the one it hands to polars.
SCAN_PREFETCH = 2


def partition_plan(source: Any) -> tuple[pd.DataFrame, list[tuple[str, ...]], Any]:
    """``(meta, parts, reader)`` of a loaded source: its output frame, file groups and reader.

    ``meta`` is the empty output frame (with its index, if ``index=`` was given); calling
    ``reader(parts[i])`` reads partition ``i`` as pandas, exactly as a dask worker would.
    """
    source._load_metadata()
    inner = source._loader() if hasattr(source, "_loader") else source
    if inner._reader is None or inner._parts is None:
        inner._get_schema()
    return inner._meta, list(inner._parts), inner._reader


def arrow_table(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """One pandas partition as an Arrow table (a named index becomes the first column)."""
    import pyarrow as pa

    if frame.index.name is not None:
        frame = frame.reset_index()
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    import pyarrow as pa

    # list-typed columns of an all-empty partition come out as Arrow ``null``; promoting
    # gives them the list type of the other partitions
    return pa.concat_tables(tables, promote_options="permissive")


def to_arrow(source: Any) -> pa.Table:
    """The whole table as one ``pyarrow.Table``, computed partition by partition with dask.

    Each partition becomes Arrow where it was read (on a worker, with a ``distributed``
    client), so the client receives Arrow buffers, not pandas objects.
    """
    import dask

    ddf = source.to_dask()
    parts = ddf.to_delayed(optimize_graph=True)
    tables = dask.compute(*[dask.delayed(arrow_table)(p) for p in parts])
    return _concat(tables)


def to_polars(source: Any) -> pl.DataFrame:
    """The whole table as one ``polars.DataFrame`` (see :func:`to_arrow`)."""
    import polars as pl

    out = pl.from_arrow(to_arrow(source))
    assert isinstance(out, pl.DataFrame)
    return out


def _arrow_schema(meta: pd.DataFrame, parts: Sequence[tuple[str, ...]], reader: Any) -> pa.Schema:
    """The Arrow schema of every partition, from ``meta``; list-typed columns (``object`` in
    pandas) are typed from the first partition, reading only those columns."""
    import pyarrow as pa

    flat = meta.reset_index() if meta.index.name is not None else meta
    schema = pa.Schema.from_pandas(flat, preserve_index=False)
    untyped = [f.name for f in schema if pa.types.is_null(f.type)]
    if untyped and parts:
        sample = arrow_table(reader.project_columns(untyped)(parts[0]))
        for name in untyped:
            typ = sample.schema.field(name).type
            schema = schema.set(schema.get_field_index(name), pa.field(name, typ))
    return schema


def scan_polars(source: Any, *, prefetch: int = SCAN_PREFETCH) -> pl.LazyFrame:
    """A ``polars.LazyFrame`` over the source: nothing is read until the frame is collected.

    Polars passes down the columns a query needs (only their bytes are read), its row filter
    and a row limit (reading stops once it is met). Partitions are read one after the other,
    ``prefetch`` of them ahead in threads, so memory holds a few partitions, not the table.
    Learning the schema reads nothing unless the table has list-typed columns; those are
    typed from the first partition (only those columns are read).
    """
    import polars as pl
    from polars.io.plugins import register_io_source

    meta, parts, reader = partition_plan(source)
    names = [*([meta.index.name] if meta.index.name is not None else []), *meta.columns]
    state: dict[str, Any] = {}

    def schema() -> Any:
        if "schema" not in state:
            arrow = _arrow_schema(meta, parts, reader)
            state["arrow"] = arrow
            state["schema"] = pl.from_arrow(arrow.empty_table()).schema
        return state["schema"]

    def io_source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        schema()
        wanted = list(with_columns) if with_columns is not None else names
        needed = list(wanted)
        if predicate is not None:
            needed += [c for c in predicate.meta.root_names() if c not in needed]
        part_reader = reader if needed == names else reader.project_columns(needed)
        arrow = state["arrow"]
        part_schema = _select(arrow, needed)
        left = n_rows
        for frame in _prefetched(part_reader, parts, prefetch):
            df = pl.from_arrow(arrow_table(frame, part_schema))
            assert isinstance(df, pl.DataFrame)
            if predicate is not None:
                df = df.filter(predicate)
            df = df.select(wanted)
            if left is not None:
                df = df.head(left)
                left -= df.height
            yield df
            if left is not None and left <= 0:
                return

    return register_io_source(
        io_source, schema=schema, explain_name="intake-cpg", explain_detail=f"{len(parts)} parts"
    )


def _select(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    """``schema`` with only the fields ``names``, in that order."""
    import pyarrow as pa

    return pa.schema([schema.field(n) for n in names])


def _prefetched(reader: Any, parts: Sequence[tuple[str, ...]], ahead: int) -> Iterator[Any]:
    """``reader(part)`` for each part in order, up to ``ahead`` parts read in advance."""
    if ahead <= 0 or len(parts) <= 1:
        for part in parts:
            yield reader(part)
        return
    pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="cpg-scan")
    pending: deque[Future[Any]] = deque()
    it = iter(parts)
    try:
        for part in it:
            pending.append(pool.submit(reader, part))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # polars may stop early (a row limit): drop what is not needed
        pool.shutdown(wait=True, cancel_futures=True)


class TableOutputs:
    """``to_polars()`` and ``to_arrow()`` for the v1 data sources (mixed into
    :class:`~intake_cpg.gallery_source.GallerySource` and
    :class:`~intake_cpg.sources.ProfilesSource`)."""

    def to_polars(self, lazy: bool = False) -> Any:
        """The table as a ``polars.DataFrame``; with ``lazy=True`` a ``polars.LazyFrame``
        that reads nothing until collected, then only the columns the query uses."""
        return scan_polars(self) if lazy else to_polars(self)

    def to_arrow(self) -> Any:
        """The table as one ``pyarrow.Table``."""
        return to_arrow(self)
