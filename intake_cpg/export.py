"""Stream a dask dataframe into one local table file, partition by partition, atomically.

:func:`export_table` computes one partition at a time (one more in flight when a
``distributed`` client is given), appends it to a temporary file next to the target with the
writer of the output format (Parquet, CSV or Arrow/Feather, see :mod:`intake_cpg.writers`),
and renames the temporary file onto the target only when every partition is written
(:func:`export_parquet` is the Parquet case). On any error, ``KeyboardInterrupt`` or ``SystemExit`` the
temporary file is removed, so an interrupted export never leaves a partial output.

>>> import os, tempfile, pandas as pd, dask.dataframe as dd
>>> ddf = dd.from_pandas(pd.DataFrame({"Metadata_Plate": ["A", "A", "B"], "x": [1.0, 2.0, 3.0]}),
...                      npartitions=2)
>>> out = os.path.join(tempfile.mkdtemp(), "t.parquet")
>>> export_parquet(ddf, out).rows
3
>>> pd.read_parquet(out).x.tolist()
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import OutOfMemoryError, ParameterError, SchemaMismatchError
from .writers import format_for

log = logging.getLogger(__name__)

__all__ = ["EXPORT_PARTITION_BYTES", "ExportResult", "export_parquet", "export_table",
           "streaming_partitions"]  # fmt: skip

#: The partition size ``intake-cpg export`` loads with: half the default
#: (:data:`~intake_cpg.parquet_engine.PARTITION_BYTES`). A partition's read holds several times
#: its size while it runs; streamed one partition at a time, 500 plates grew the process by
#: 236 MiB with these, 321 MiB with the default (``benchmarks/notes.md``, memory).
EXPORT_PARTITION_BYTES = 16 * 2**20


def streaming_partitions() -> contextlib.AbstractContextManager[Any]:
    """Make the dask dataframes created inside the ``with`` block (``to_dask()``) with
    partitions of :data:`EXPORT_PARTITION_BYTES`, for a consumer that streams them one at a
    time (:func:`export_table`), as ``intake-cpg export`` does. A size the user set in the
    dask config (:data:`~intake_cpg.parquet_engine.PARTITION_SIZE_KEY`, also as the
    environment variable ``DASK_INTAKE_CPG__PARTITION_SIZE``) is kept.

    >>> import intake_cpg.parquet_engine as engine
    >>> with streaming_partitions():
    ...     engine.partition_target() == EXPORT_PARTITION_BYTES
    True
    >>> engine.partition_target() == engine.PARTITION_BYTES
    True
    """
    import dask

    from .parquet_engine import PARTITION_SIZE_KEY

    if dask.config.get(PARTITION_SIZE_KEY, None) is not None:
        return contextlib.nullcontext()
    return dask.config.set({PARTITION_SIZE_KEY: EXPORT_PARTITION_BYTES})


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_parquet` wrote: the file, its rows, partitions and bytes."""

    path: str
    rows: int
    partitions: int
    bytes: int


def _conform(table: Any, schema: Any, index: int) -> Any:
    """``table`` with the columns, order and types of ``schema`` (missing columns as nulls)."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    wanted = set(schema.names)
    have = set(table.column_names)
    extra = [n for n in table.column_names if n not in wanted]
    if extra:
        raise SchemaMismatchError(
            f"partition {index} has column(s) {extra[:5]} that partition 0 lacks; "
            "select the shared columns with columns=[...] or load with schema='union'"
        )
    arrays = []
    for field in schema:
        if field.name in have:
            arrays.append(table[field.name])
        else:
            arrays.append(pa.nulls(len(table), type=field.type))
    aligned = pa.Table.from_arrays(arrays, names=schema.names)
    try:
        return aligned.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise SchemaMismatchError(
            f"partition {index} does not fit the schema of partition 0: {exc}; "
            "select the shared columns with columns=[...]"
        ) from exc


def _worker_died(
    exc: BaseException,
    i: int,
    total: int,
    client: Any,
    describe_partition: Callable[[int], str] | None,
) -> OutOfMemoryError:
    what = f" ({describe_partition(i)})" if describe_partition is not None else ""
    limits = set()
    try:
        limits = {w.get("memory_limit") for w in client.scheduler_info()["workers"].values()}
    except Exception:  # the limit only makes the message better
        pass
    limit = next(iter(limits)) if len(limits) == 1 and None not in limits else None
    has = f" (each worker may use {int(limit):,} bytes)" if limit else ""
    return OutOfMemoryError(
        f"a dask worker died while computing partition {i + 1} of {total}{what}: {exc}. A "
        f"worker is killed when it goes over its memory limit{has}, so this partition most "
        "likely needed more memory than a worker has. Load fewer columns (--columns / "
        "columns=[...]) or give the workers more memory (memory_limit=)."
    )


def export_parquet(
    df: Any,
    path: str | os.PathLike[str],
    *,
    client: Any = None,
    on_partition: Callable[[int, int, int], None] | None = None,
    delay: float = 0.0,
    compression: str = "zstd",
    row_group_bytes: int = 64 * 2**20,
    describe_partition: Callable[[int], str] | None = None,
) -> ExportResult:
    """Write the dask dataframe ``df`` to the local Parquet file ``path`` (see
    :func:`export_table`).

    Column statistics are written for the non-float columns only (``Metadata_*`` and other
    identifiers, which is what filters use): for a 4,765-column plate the per-column
    statistics of every row group would otherwise stay in the writer's memory until the file
    is closed, about 4 MB per row group, and make the footer large.
    """
    return export_table(
        df, path, format="parquet", client=client, on_partition=on_partition, delay=delay,
        compression=compression, row_group_bytes=row_group_bytes,
        describe_partition=describe_partition,
    )  # fmt: skip


def export_table(
    df: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    client: Any = None,
    on_partition: Callable[[int, int, int], None] | None = None,
    delay: float = 0.0,
    compression: str | None = None,
    row_group_bytes: int = 64 * 2**20,
    describe_partition: Callable[[int], str] | None = None,
) -> ExportResult:
    """Write the dask dataframe ``df`` to the local file ``path``, one partition at a time.

    Args:
        df: a dask dataframe (e.g. ``source.to_dask()``).
        path: local output file; its folder must exist. Replaced atomically when complete.
        format: ``"parquet"``, ``"csv"`` or ``"arrow"`` (``"feather"``); default from the
            extension of ``path`` (``.parquet``, ``.csv``, ``.csv.gz``, ``.arrow``,
            ``.feather``).
        client: a ``distributed.Client``; partitions are computed on its workers, the next one
            while the current one is written.
        on_partition: called as ``on_partition(done, total, rows_so_far)`` after each partition.
        delay: seconds to sleep after each partition (a test hook for interruptions).
        compression: the codec (default: zstd for Parquet and Arrow, gzip for ``.csv.gz``).
        row_group_bytes: partitions are gathered into writes of about this many bytes
            (in memory, before compression), so a wide Parquet table gets few row groups.
        describe_partition: ``i -> text`` naming what partition ``i`` reads (its file and
            size), for the error raised when a dask worker dies computing it.

    Every partition is cast to the schema of the first one; a partition with columns the first
    lacks raises :class:`~intake_cpg.errors.SchemaMismatchError`. Memory holds one row group
    plus one partition (two with a client); make ``df`` inside :func:`streaming_partitions`
    for smaller partitions. A worker that dies computing a partition (what
    the nanny does to a worker over its memory limit) raises
    :class:`~intake_cpg.errors.OutOfMemoryError` naming the partition.
    """
    import pyarrow as pa

    fmt = format_for(os.fspath(path), format)
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise ParameterError(f"cannot write {os.fspath(path)!r}: it is a folder; name a file")
    if not os.path.isdir(folder):
        raise ParameterError(
            f"cannot write {os.fspath(path)!r}: the folder {folder!r} does not exist; create it first"
        )
    total = int(df.npartitions)
    codec = fmt.compression(target, compression)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part")
    os.close(fd)
    log.debug("exporting %d partition(s) to %s (%s) via %s", total, target, fmt.name, tmp)
    writer = None
    rows = 0
    buffered: list[Any] = []
    buffered_bytes = 0

    # One graph optimisation for all partitions: ``df.partitions[i]`` would optimise the whole
    # graph again for every partition (quadratic in the number of plates).
    parts = df.to_delayed(optimize_graph=True)

    def fetch(i: int) -> Any:
        return client.compute(parts[i]) if client is not None else parts[i]

    try:
        pending = fetch(0) if total else None
        for i in range(total):
            try:
                frame = pending.result() if client is not None else pending.compute()
            except Exception as exc:
                if type(exc).__name__ != "KilledWorker":
                    raise
                raise _worker_died(exc, i, total, client, describe_partition) from exc
            parts[i] = None  # drop the finished task so its graph can be freed
            pending = fetch(i + 1) if i + 1 < total else None
            table = pa.Table.from_pandas(frame, preserve_index=False)
            del frame
            if writer is None:
                schema = table.schema
                writer = fmt.open(tmp, schema, codec)
            else:
                table = _conform(table, schema, i)
            buffered.append(table)
            buffered_bytes += table.nbytes
            rows += table.num_rows
            del table
            if buffered_bytes >= row_group_bytes or i + 1 == total:
                writer.write_table(pa.concat_tables(buffered))
                buffered, buffered_bytes = [], 0
            if on_partition is not None:
                on_partition(i + 1, total, rows)
            if delay:
                time.sleep(delay)
        if writer is None:  # no partitions: an empty file with the frame's columns
            empty = pa.Table.from_pandas(df._meta, preserve_index=False)
            writer = fmt.open(tmp, empty.schema, codec)
        writer.close()
        writer = None
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    size = os.path.getsize(target)
    log.info("wrote %s: %d rows from %d partition(s), %d bytes", target, rows, total, size)
    return ExportResult(target, rows, total, size)
