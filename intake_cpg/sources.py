"""Intake data sources: gallery tables as lazy dask dataframes.

:class:`ProfilesSource` (driver ``cpg_profiles``, so ``intake.open_cpg_profiles(...)``) loads
per-plate profiles, deep-learning profiles, assembled profiles, ``load_data`` tables,
per-object ``analysis`` CSVs, platemaps and backend CSVs. Reading, dtype rules and schema
alignment live in :mod:`intake_cpg.readers`; this module only lists the files, plans the
partitions and builds the dask graph.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import dask
import dask.dataframe as dd
import fsspec
import pandas as pd
from intake.source.base import DataSource, Schema

from . import readers
from .entries import ANALYSIS_FILES_PER_PARTITION, ENTRY_TABLE, partition_refs
from .errors import ParameterError
from .footer_cache import resolve_footer_cache
from .outputs import TableOutputs
from .planner import ReadOptions, plan_read
from .readers import SCHEMA_MODES, FileSchema, ReadPlan
from .refs import FileRef, ref_from_url
from .storage import filesystem

log = logging.getLogger(__name__)

__all__ = ["ProfilesSource", "ANALYSIS_FILES_PER_PARTITION"]

#: Concurrent footer/header reads for ``schema="union"``/``"intersection"``.
SCHEMA_READ_THREADS = 16
_GLOB_CHARS = set("*?[")


def _grouped(product: str) -> bool:
    """Whether the entry table groups a product's files into partitions (e.g. analysis)."""
    row = ENTRY_TABLE.for_product(product)
    if row is None:
        return False
    return row.partitioning.group is not None or row.partitioning.files_per_partition > 1


def _as_collection_meta(meta: pd.DataFrame) -> dd.DataFrame:
    """``meta`` (an empty frame) as ``from_map``'s ``meta=``: a dask collection of no
    partitions holding a copy of it.

    ``dd.from_map`` passes a pandas ``meta`` through ``make_meta``, which builds one Series
    per column to replace its Arrow-backed arrays: 50-65 ms for a plate's 4,766 columns,
    before any read can start. For a dask collection ``make_meta`` returns the collection's
    own meta instead. The copy is made here (0.2 ms), so the collection shares no column
    with the source's frame.
    """
    return dd.from_graph({}, meta.iloc[:0].copy(deep=True), (None,), [], "cpg-meta")


class PartitionReader:
    """The function dask calls on a worker: file references in, one pandas partition out.

    It carries file references, storage options and the :class:`~intake_cpg.readers.ReadPlan` only, never
    data. It supports dask's column projection, so ``ddf[["a", "b"]]`` reads two columns.
    """

    def __init__(self, plan: ReadPlan, origins: Mapping[str, str]) -> None:
        self.plan = plan
        self.origins = dict(origins)  # output column -> file column it comes from

    @property
    def columns(self) -> list[str]:
        cols = list(self.plan.meta.columns)
        return [c for c in cols if c != self.plan.index]

    def project_columns(self, columns: Sequence[str]) -> PartitionReader:
        """A reader that reads and returns only ``columns`` (and the index)."""
        keep = [c for c in columns if c in self.plan.meta.columns]
        if list(keep) == self.columns:
            return self
        if self.plan.index and self.plan.index not in keep:
            keep.append(self.plan.index)
        needed = {self.origins.get(c, c) for c in keep}
        expected = tuple(c for c in self.plan.expected if c in needed)
        plan = replace(
            self.plan,
            meta=self.plan.meta[keep],
            expected=expected,
            check_extra=False,
            list_widths={k: v for k, v in self.plan.list_widths.items() if k in needed},
            path_columns=tuple(c for c in self.plan.path_columns if c in keep),
        )
        return PartitionReader(plan, {c: self.origins.get(c, c) for c in keep})

    def __call__(
        self, refs: Sequence[FileRef], columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Read the partition of ``refs``; dask passes ``columns`` when it projects."""
        if columns is not None and list(columns) != self.columns:
            return self.project_columns(columns)(refs)
        return readers.read_partition(refs, self.plan)

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        p = self.plan
        # the columns, dtypes and expected names as one string: dask tokenizes one string
        # fast, and 3 x 4,765 items of lists one by one
        names = [p.meta.columns.tolist(), list(readers.dtype_names(p.meta).values()), p.expected]
        return tokenize(
            type(self).__name__,
            json.dumps(names, default=str),
            p.mode,
            repr(p.storage_options),
            p.format,
            repr(p.filters),
            p.path_columns,
            dict(p.list_widths),
            p.check_extra,
            p.index,
            p.pin_etags,
        )


class ProfilesSource(TableOutputs, DataSource):
    """A gallery table (or many files of one table) as a lazy dask dataframe.

    Parameters
    ----------
    urlpath:
        One URL, a list of URLs, or a glob (``s3://bucket/.../*/*.parquet``; expanded once,
        on the client). A list of :class:`~intake_cpg.refs.FileRef` (what the catalog's
        selectors return) is taken as it is.
    columns:
        Columns to load (names as in the file, plus path-derived ``Metadata_*``). Only these
        columns' bytes are transferred and decoded.
    filters:
        Row filters in pyarrow's DNF form (``[("Metadata_Well", "in", ["A01", "B02"])]``).
        Parquet row groups whose statistics cannot match are not read; rows are filtered exactly.
    index:
        A column to make the index of every partition (divisions stay unknown).
    engine:
        ``"pyarrow"`` (the only engine; kept for intake-parquet compatibility).
    storage_options:
        fsspec options; S3 is read anonymously unless credentials are given.
    metadata:
        Intake metadata of the source.
    schema:
        What to do when files have different columns (different feature sets between sources):

        * ``"strict"`` (default): the first file's columns. Each partition checks its file's
          columns against them at no extra cost (the footer or header is read anyway) and
          raises :class:`~intake_cpg.errors.SchemaMismatchError` naming the file and the
          missing and extra columns. ``discover()`` reads one footer.
        * ``"first"``: the first file's columns; missing ones become NaN of the right dtype,
          extra ones are dropped with a logged WARNING naming the file and columns. One footer.
        * ``"union"``: every column of every file, missing values NaN; numeric types widen.
          Reads *every* footer/header up front (concurrently): about 3 MB per 4,765-column
          cpg0016 plate, so 2,500 plates cost ~7.5 GB of footers; use with care.
        * ``"intersection"``: only the columns every file has. Same up-front cost as
          ``"union"``.
    path_metadata:
        Add ``Metadata_Source``, ``Metadata_Batch``, ``Metadata_Plate`` from each file's gallery
        path when the table lacks them (strings). ``False`` turns this off.
    expand_embeddings:
        Expand every list-typed (embedding) column ``name`` into float columns
        ``name_0 .. name_{k-1}``, with ``k`` from the first file's first row (one extra read
        of that row group's list columns).
    files_per_partition:
        Files read into one partition. Default: 1, except per-object ``analysis`` CSVs, which
        are grouped by plate and compartment, up to :data:`ANALYSIS_FILES_PER_PARTITION`.
        Files of different plates or compartments are never mixed.
    format:
        ``"parquet"``, ``"csv"``, ``"csv.gz"``, ``"tsv"``, ``"txt"``; default from the extension
        (``.txt``/``.tsv`` are tab separated).
    footer_cache:
        Keep parquet footers (over 1 MB for a full-width plate) between reads: ``True`` in
        memory, a folder path in memory and on disk (shared by processes and sessions), or a
        :class:`~intake_cpg.footer_cache.FooterCache`. Keyed by URL, ETag and size, so a
        replaced file is read afresh. Default ``None``: no cache.
    pin_etags:
        Make every read of a file conditional on the ETag of its reference (what
        ``verify=True`` checked against a manifest): an object replaced since is an
        :class:`~intake_cpg.errors.EtagMismatchError` naming it, on any worker.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "1053601756.csv")
    >>> pd.DataFrame({"Metadata_Plate": ["1053601756"], "Cells_Area": [3]}).to_csv(p, index=False)
    >>> src = ProfilesSource(p)
    >>> src.discover()["npartitions"]
    1
    >>> df = src.read()
    >>> df["Metadata_Plate"].tolist(), str(df["Metadata_Plate"].dtype)
    (['1053601756'], 'string')
    """

    container = "dataframe"
    name = "cpg_profiles"
    version = "0.1.0"
    partition_access = True

    def __init__(
        self,
        urlpath: str | list[str] | list[FileRef],
        columns: list[str] | None = None,
        filters: Any = None,
        index: str | None = None,
        engine: str = "pyarrow",
        storage_options: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        schema: str = "strict",
        path_metadata: bool = True,
        expand_embeddings: bool = False,
        files_per_partition: int | None = None,
        format: str | None = None,
        footer_cache: Any = None,
        pin_etags: bool = False,
        **kwargs: Any,
    ) -> None:
        refs: list[FileRef] | None = None
        if isinstance(urlpath, str):
            urls = [urlpath]
        elif isinstance(urlpath, Sequence) and urlpath and all(isinstance(u, str) for u in urlpath):
            urls = list(urlpath)
        elif (
            isinstance(urlpath, Sequence)
            and urlpath
            and all(isinstance(u, FileRef) for u in urlpath)
        ):
            refs = list(dict.fromkeys(urlpath))
            urls = [r.url for r in refs]
        else:
            raise ParameterError(
                f"urlpath must be a URL, a glob or a non-empty list of URLs, got {urlpath!r}"
            )
        if schema not in SCHEMA_MODES:
            raise ParameterError(
                f"unknown schema={schema!r}; expected one of {', '.join(SCHEMA_MODES)}"
            )
        if engine not in ("pyarrow", "auto", None):
            raise ParameterError(
                f"engine={engine!r} is not supported; intake-cpg reads with 'pyarrow'"
            )
        if files_per_partition is not None and (
            not isinstance(files_per_partition, int) or files_per_partition < 1
        ):
            raise ParameterError(
                f"files_per_partition must be a positive integer, got {files_per_partition!r}"
            )
        if columns is not None and (
            isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
        ):
            raise ParameterError(f"columns must be a list of column names, got {columns!r}")
        if format is not None:
            readers.detect_format("x", format)  # validates
        readers.filter_columns(filters)  # validates the DNF shape
        if kwargs:
            log.warning("ProfilesSource ignores unsupported arguments: %s", sorted(kwargs))
        super().__init__(metadata=metadata)
        self.urlpath = urls
        self.columns = list(columns) if columns is not None else None
        self.filters = filters
        self.index = index or None
        self.engine = "pyarrow"
        self.storage_options = dict(storage_options or {})
        self.schema_mode = schema
        self.path_metadata = bool(path_metadata)
        self.expand_embeddings = bool(expand_embeddings)
        self.files_per_partition = files_per_partition
        self.format = format
        from .parquet_engine import WarmCache

        # footer_cache= names the warm cache of the read engine (S3 parquet) too; a WarmCache
        # given directly is used as is (and no footer cache for the other paths)
        self.warm_cache = footer_cache if isinstance(footer_cache, WarmCache) else None
        self.footer_cache = None if self.warm_cache else resolve_footer_cache(footer_cache)
        self.pin_etags = bool(pin_etags)
        self._refs: list[FileRef] | None = refs
        self._parts: list[tuple[FileRef, ...]] | None = None
        self._reader: PartitionReader | None = None
        self._meta: pd.DataFrame | None = None

    # -- files and partitions -----------------------------------------------------------
    def _expand(self) -> list[FileRef]:
        """The files, as references made once here (globs expanded, URLs parsed)."""
        if self._refs is not None:
            return self._refs
        out: list[str] = []
        for url in self.urlpath:
            if not (_GLOB_CHARS & set(url.split("?versionId=", 1)[0])):  # a version: no glob
                out.append(url)
                continue
            fs, path = filesystem(url, self.storage_options)
            protocol = fsspec.core.split_protocol(url)[0]
            hits = sorted(fs.glob(path))
            if not hits:
                raise ParameterError(
                    f"no files match {url!r}; check the pattern (and storage_options)"
                )
            out.extend(f"{protocol}://{h}" if protocol else h for h in hits)
        self._refs = [ref_from_url(u) for u in dict.fromkeys(out)]
        return self._refs

    def _pieces(
        self, refs: list[FileRef], columns: Sequence[str] | None, per_file: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Parquet files on S3 of ungrouped rows: partitions by bytes (see
        :func:`parquet_engine.plan_pieces`); ``[]`` keeps the entry table's grouping."""
        from . import parquet_engine

        if self.files_per_partition or not refs:
            return []
        # one name per extension the layout parsed (2,525 plates: 1 format check, not 2,525)
        names = {f"x.{r.path.extension}" if r.path and r.path.extension else r.url for r in refs}
        if any(readers.detect_format(n, self.format).kind != "parquet" for n in names):
            return []
        if any(_grouped(p) for p in {r.path.product for r in refs if r.path is not None}):
            return []
        fs = parquet_engine.engine_fs(refs[0].url, self.storage_options)
        if fs is None:
            return []
        return parquet_engine.plan_pieces(fs, refs, columns, per_file=per_file)

    # -- schema -------------------------------------------------------------------------
    def _read_schemas(self, refs: list[FileRef]) -> list[FileSchema]:
        kw = {"format": self.format, "footer_cache": self.footer_cache}

        def schema(ref: FileRef, **more: Any) -> FileSchema:
            return readers.read_schema(ref.url, self.storage_options, ref=ref, **kw, **more)

        first = schema(refs[0], list_widths=self.expand_embeddings)
        header_only = (
            first.num_rows == 0 and readers.detect_format(refs[0].url, self.format).kind == "text"
        )
        if self.schema_mode in ("strict", "first") or len(refs) == 1:
            if header_only:  # no rows tell the dtypes: take them from the next file with rows
                later = (schema(r) for r in refs[1:])
                donor = next((s for s in later if s.num_rows != 0), None)
                first = first if donor is None else readers.typed_like(first, donor)
            return [first]
        with ThreadPoolExecutor(min(SCHEMA_READ_THREADS, len(refs) - 1)) as pool:
            rest = list(pool.map(schema, refs[1:]))
        if header_only:
            donor = next((s for s in rest if s.num_rows != 0), None)
            first = first if donor is None else readers.typed_like(first, donor)
        return [first, *rest]

    def _get_schema(self) -> Schema:
        if self._schema is not None and self._reader is not None:  # planned once (a wrapper
            return self._schema  # may call _get_schema directly, then to_dask plans again)
        refs = self._expand()
        parts = partition_refs(refs, self.files_per_partition)
        schemas = self._read_schemas(refs)
        options = ReadOptions(
            columns=tuple(self.columns) if self.columns is not None else None,
            filters=self.filters,
            index=self.index,
            schema=self.schema_mode,
            path_metadata=self.path_metadata,
            expand_embeddings=self.expand_embeddings,
            format=self.format,
            storage_options=self.storage_options,
            footer_cache=self.footer_cache,
            pin_etags=self.pin_etags,
        )
        planned = plan_read(schemas, refs[0].path, len(refs), options)
        plan = planned.plan
        if self.warm_cache is not None:
            plan = replace(plan, warm_cache=self.warm_cache)
        per_file = None
        if schemas[0].num_rows:  # in-memory bytes of the chosen columns, from the first file
            per_file = schemas[0].num_rows * sum(
                getattr(plan.expected_dtypes[c], "itemsize", 16) or 16 for c in plan.expected
            )
        columns = plan.expected if self.columns is not None else None
        parts = self._pieces(refs, columns, per_file) or parts
        self._parts = parts
        self._reader = PartitionReader(plan, planned.origins)
        self._meta = planned.meta
        self._schema = Schema(
            datashape=None,
            dtype=readers.dtype_names(self._meta),
            shape=(planned.num_rows, len(self._meta.columns)),
            npartitions=len(parts),
            extra_metadata={},
        )
        return self._schema

    # -- loading ------------------------------------------------------------------------
    def to_dask(self) -> dd.DataFrame:
        """The lazy dask dataframe: small files batched into partitions by bytes, large ones
        split by row groups (:func:`intake_cpg.parquet_engine.plan_pieces`)."""
        self._load_metadata()
        assert self._reader is not None and self._parts is not None
        # String columns are string[pyarrow] already; dask's own object->string conversion
        # would turn list-typed embedding columns into their text, so it is switched off here.
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.from_map(
                self._reader,
                self._parts,
                meta=_as_collection_meta(self._meta),
                label="cpg-profiles",
                enforce_metadata=False,
            )

    def _get_partition(self, i: int) -> pd.DataFrame:
        self._load_metadata()
        assert self._reader is not None and self._parts is not None
        return self._reader(self._parts[i])

    def read(self) -> pd.DataFrame:
        """Every partition, concatenated into one pandas dataframe."""
        return self.to_dask().compute()

    def head(self, n: int = 5, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The first ``n`` rows (of ``columns``), reading only what they need.

        Files are read in order and only their first batches: a parquet file's first row
        group(s), not whole partitions.
        """
        self._load_metadata()
        assert self._reader is not None and self._parts is not None
        reader = self._reader if columns is None else self._reader.project_columns(columns)
        plan = reader.plan
        frames, got = [], 0
        from .parquet_engine import ref_of

        files = dict.fromkeys(ref_of(r) for part in self._parts for r in part)  # pieces: once
        for ref in files:
            if got >= n:
                break
            frames.append(readers.read_one(ref, plan, limit=n - got))
            got += len(frames[-1])
        out = pd.concat(frames, ignore_index=True).head(n) if frames else plan.meta.iloc[:0]
        return out.set_index(plan.index) if plan.index else out

    def _close(self) -> None:
        self._reader = None
        self._schema = None
