"""A data source whose data is one small pandas frame, made once (metadata tables, plates, images).

Subclasses implement :meth:`FrameSource._make_frame`; ``read()`` gives a copy of the frame,
``to_dask()`` the frame as one partition, ``discover()`` its columns, dtypes and shape.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from intake.source.base import DataSource, Schema

from . import __version__
from .readers import dtype_names

__all__ = ["FrameSource"]


class FrameSource(DataSource):
    """Base class: one pandas frame, made on first use and kept."""

    container = "dataframe"
    version = __version__
    partition_access = True
    _frame: pd.DataFrame | None = None

    def _make_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def frame(self) -> pd.DataFrame:
        """The frame (made once; do not modify it, :meth:`read` gives a copy)."""
        if self._frame is None:
            self._frame = self._make_frame()
        return self._frame

    def _get_schema(self) -> Schema:
        df = self.frame()
        return Schema(
            datashape=None,
            dtype=dtype_names(df),
            shape=df.shape,
            npartitions=1,
            extra_metadata={},
        )

    def _get_partition(self, i: int) -> pd.DataFrame:
        return self.frame().copy()

    def read(self) -> pd.DataFrame:
        """The frame (a copy, so edits do not change later reads)."""
        return self.frame().copy()

    def to_dask(self) -> Any:
        """The frame as a one-partition dask dataframe."""
        import dask.dataframe as dd

        return dd.from_pandas(self.frame(), npartitions=1)

    def _close(self) -> None:
        self._frame = None
