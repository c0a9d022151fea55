"""Raw images as a table: one row per image file of the chosen plates, with its parsed fields.

A source's ``images`` entry (a row of :data:`~intake_cpg.entries.ENTRY_TABLE`, driver
:class:`ImagesSource`) is listed wherever the source has an ``images/`` folder, which the
source's own listing shows: telling raw-image batches (``images/<batch>/images/``) from those
holding only illumination functions (``images/<batch>/illum/``) costs a listing per batch, paid
when the entry is described or read, never when the source is listed. A chosen batch without
raw images is a :class:`~intake_cpg.errors.ProductNotFoundError` naming the batches that have
them.

:class:`ImagesSource` lists ``<project>/<source>/images/<batch>/images/<plate folder>/**`` for
the batches and plates asked for (names or globs; a plate matches its folder with or without
the microscope's ``__<timestamp>-Measurement<N>`` suffix), keeps the files whose ``well``,
``site`` and ``channel`` match (names or globs) and returns a dataframe with the columns of
:data:`IMAGE_COLUMNS`: ``url``, ``key``, ``size``, ``etag`` (from the listing), then
``Metadata_Source``, ``Metadata_Batch``, ``Metadata_Plate``, ``plate_folder``, ``scheme``,
``Metadata_Well``, ``Metadata_Site``, ``channel`` (see :mod:`intake_cpg.image_names`), so
images can be chosen without a ``load_data`` table.

>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> folder = os.path.join(root, "cpg0016-jump/source_4/images/B1/images/BR1__2021-05-13T13_37_20-Measurement1/Images")
>>> os.makedirs(folder)
>>> for name in ("r01c02f03p01-ch1sk1fk1fl1.tiff", "r01c02f03p01-ch2sk1fk1fl1.tiff", "Index.idx.xml"):
...     open(os.path.join(folder, name), "wb").close()
>>> df = ImagesSource(root, "cpg0016-jump", "source_4", channel="1").read()
>>> df[["Metadata_Plate", "Metadata_Well", "Metadata_Site", "channel"]].values.tolist()
[['BR1', 'A02', '3', '1']]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .entries import ENTRY_TABLE, SourceView, validate_params
from .errors import ParameterError
from .frame_source import FrameSource
from .image_names import image_fields
from .readers import STRING_DTYPE
from .refs import FileRef
from .resolve import ALL, Gallery
from .storage import DEFAULT_ROOT, get_storage

__all__ = ["ImagesSource", "IMAGE_COLUMNS", "select_images"]

IMAGE_COLUMNS = (
    "url",
    "key",
    "size",
    "etag",
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "plate_folder",
    "scheme",
    "Metadata_Well",
    "Metadata_Site",
    "channel",
)

#: The entry-table row this source reads.
_ROW = ENTRY_TABLE["images"]

#: Catalog-wide options every source-level entry is given; raw images take no annotation.
_IGNORED_OPTIONS = ("metadata_root", "metadata_verify", "metadata_release")


def select_images(view: SourceView, params: dict[str, Any]) -> list[FileRef]:
    """The image files the ``images`` row selects (see :data:`intake_cpg.entries.ENTRY_TABLE`)."""
    assert _ROW.select is not None
    return _ROW.select(view, params)


class ImagesSource(FrameSource):
    """The image files of a source's chosen plates, one row each (files of no known scheme,
    such as ``Index.idx.xml``, are left out unless ``all_files=True``)."""

    name = "cpg_images"

    def __init__(
        self,
        urlpath: str = DEFAULT_ROOT,
        project: str = "",
        source: str = "",
        storage_options: dict[str, Any] | None = None,
        *,
        batch: str = ALL,
        plate: str = ALL,
        well: str = ALL,
        site: str = ALL,
        channel: str = ALL,
        all_files: bool = False,
        product: str = "images",
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - set(_IGNORED_OPTIONS)
        if unknown or product != _ROW.name:
            raise ParameterError(
                f"unknown option(s) {sorted(unknown) or [f'product={product!r}']} for "
                f"{project}/{source}/images; it takes batch, plate, well, site, channel, "
                f"all_files, cache_dir and listing_ttl"
            )
        self.project, self.source = project, source
        filters = {"batch": batch, "plate": plate, "well": well, "site": site, "channel": channel}
        validate_params({"project": project, "source": source, **filters})
        self.params: dict[str, Any] = {
            **{k: v or ALL for k, v in filters.items()},
            "all_files": bool(all_files),
        }
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir or None
        )
        super().__init__(metadata={"project": project, "source": source, **(metadata or {})})

    def file_refs(self) -> list[FileRef]:
        """The image files, with what their listing said."""
        view = SourceView(Gallery(self.storage), self.project, self.source)
        return select_images(view, self.params)

    def _make_frame(self) -> pd.DataFrame:
        rows = []
        for ref in self.file_refs():
            p = ref.path
            assert p is not None
            rows.append(
                (
                    ref.url,
                    ref.key,
                    ref.size,
                    ref.etag,
                    p.source,
                    p.batch,
                    p.plate,
                    p.plate_folder,
                    image_fields(p.plate_folder or "", p.filename or "")["scheme"],
                    p.well,
                    p.site,
                    p.channel,
                )
            )
        df = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
        strings = [c for c in IMAGE_COLUMNS if c != "size"]
        return df.astype(dict.fromkeys(strings, STRING_DTYPE)).sort_values("key", ignore_index=True)
