"""Raw images as a table: one row per image file of the chosen plates, with its parsed fields.

:func:`select_images` chooses the files (one listing of each chosen plate folder) and every
field comes from the file's :class:`~intake_cpg.layout.GalleryPath` (``parse_key`` reads plate,
plate folder, well, site and channel of raw image keys). It is not a catalog entry: a source's
``images/`` folder also holds the illumination functions (``images/<batch>/illum/``), so
telling a source with raw images from one with only those would cost a listing per batch
every time a source is listed.

:class:`ImagesSource` lists ``<project>/<source>/images/<batch>/images/<plate folder>/**`` for
the batches and plates asked for (names or globs; a plate matches its folder with or without
the microscope's ``__<timestamp>-Measurement<N>`` suffix) and returns a dataframe with ``url``,
``key``, ``size``, ``Metadata_Source``, ``Metadata_Batch``, ``Metadata_Plate``,
``plate_folder``, ``scheme``, ``Metadata_Well``, ``Metadata_Site``, ``channel`` (see
:mod:`intake_cpg.image_names`), so images can be chosen without a ``load_data`` table.

>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> folder = os.path.join(root, "cpg0016-jump/source_4/images/B1/images/BR1__2021-05-13T13_37_20-Measurement1/Images")
>>> os.makedirs(folder)
>>> for name in ("r01c02f03p01-ch1sk1fk1fl1.tiff", "Index.idx.xml"):
...     open(os.path.join(folder, name), "wb").close()
>>> df = ImagesSource(root, "cpg0016-jump", "source_4").read()
>>> df[["Metadata_Plate", "Metadata_Well", "Metadata_Site", "channel"]].values.tolist()
[['BR1', 'A02', '3', '1']]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .entries import SourceView, validate_params
from .errors import not_found
from .frame_source import FrameSource
from .image_names import image_fields, plate_of_folder
from .readers import STRING_DTYPE
from .refs import FileRef
from .resolve import ALL, Gallery, match_names
from .storage import DEFAULT_ROOT, get_storage

__all__ = ["ImagesSource", "IMAGE_COLUMNS", "select_images"]

IMAGE_COLUMNS = (
    "url",
    "key",
    "size",
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "plate_folder",
    "scheme",
    "Metadata_Well",
    "Metadata_Site",
    "channel",
)

#: The layout product of raw images.
_PRODUCT = "images"


def select_images(view: SourceView, params: dict[str, Any]) -> list[FileRef]:
    """Raw image files of the chosen plates (a plate pattern matches the plate or its folder
    as named, e.g. with the microscope's measurement suffix); files of no known name scheme
    (``Index.idx.xml``, thumbnails) only with ``all_files``."""
    where = view.where("images")
    pp = view.plate_product(_PRODUCT)
    batch, plate = params.get("batch") or ALL, params.get("plate") or ALL
    batches = match_names(batch, pp.batches)
    if not batches:
        raise not_found("batch", batch, pp.batches, where)
    folders = [(b, f) for b in batches for f in pp.plates.get(b, ())]
    pairs = [
        (b, f)
        for b, f in folders
        if match_names(plate, [f]) or match_names(plate, [plate_of_folder(f)])
    ]
    if not pairs:
        raise not_found("plate", plate, sorted({plate_of_folder(f) for _, f in folders}), where)
    every = bool(params.get("all_files"))
    refs = view.gallery.subtree_files(
        pp, pairs, lambda r: every or (r.path is not None and r.path.channel is not None)
    )
    if not refs:
        raise not_found("image file", "*", [], f"{where} ({len(pairs)} plate folder(s))")
    return refs


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
        all_files: bool = False,
        cache_dir: str | None = None,
        listing_ttl: float = 3600.0,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.project, self.source = project, source
        self.params = {"batch": batch or ALL, "plate": plate or ALL, "all_files": bool(all_files)}
        validate_params({"project": project, "source": source, "batch": batch, "plate": plate})
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir or None
        )
        super().__init__(metadata={"project": project, "source": source, **(metadata or {})})

    def file_refs(self) -> list[Any]:
        """The image files, with what their listing said."""
        view = SourceView(Gallery(self.storage), self.project, self.source)
        return select_images(view, self.params)

    def _make_frame(self) -> pd.DataFrame:
        rows = []
        for ref in self.file_refs():
            p = ref.path
            rows.append(
                (
                    ref.url,
                    ref.key,
                    ref.size,
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
