"""Intake data sources (placeholder; replaced by the loading issue)."""

from __future__ import annotations

from intake.source.base import DataSource


class ProfilesSource(DataSource):
    """Profile tables as dask dataframes."""

    container = "dataframe"
    name = "cpg_profiles"
    version = "0.1.0"
    partition_access = True
