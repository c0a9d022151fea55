"""Raw images as a table: one row per image file of the chosen plates, with its parsed fields.

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

from .errors import not_found
from .frame_source import FrameSource
from .image_names import image_fields, plate_of_folder
from .readers import STRING_DTYPE
from .resolve import ALL, match_names
from .storage import DEFAULT_ROOT, get_storage

__all__ = ["ImagesSource", "IMAGE_COLUMNS"]

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
        self.batch, self.plate = batch or ALL, plate or ALL
        self.all_files = bool(all_files)
        self.storage = get_storage(
            urlpath, storage_options, listing_ttl=listing_ttl, cache_dir=cache_dir or None
        )
        super().__init__(metadata={"project": project, "source": source, **(metadata or {})})

    def _make_frame(self) -> pd.DataFrame:
        base = f"{self.project}/{self.source}/images"
        where = f"{self.project}/{self.source}/images"
        batches = [e.name for e in self.storage.ls(base) if e.is_dir]
        chosen = match_names(self.batch, batches)
        if not chosen:
            raise not_found("batch", self.batch, batches, where)
        folders: dict[str, tuple[str, str]] = {}
        for batch in chosen:
            for e in self.storage.ls(f"{base}/{batch}/images"):
                if not e.is_dir:
                    continue
                plate = plate_of_folder(e.name)
                if match_names(self.plate, [plate]) or match_names(self.plate, [e.name]):
                    folders[f"{base}/{batch}/images/{e.name}"] = (batch, e.name)
        if not folders:
            raise not_found("plate", self.plate, [], f"{where} ({', '.join(chosen)})")
        rows = []
        for prefix, entries in self.storage.find_many(sorted(folders)).items():
            batch, folder = folders[prefix]
            for e in entries:
                name = e.key.rsplit("/", 1)[-1]
                f = image_fields(folder, name)
                if f["scheme"] is None and not self.all_files:
                    continue
                rows.append(
                    (
                        self.storage.url(e.key),
                        e.key,
                        e.size,
                        self.source,
                        batch,
                        f["plate"],
                        folder,
                        f["scheme"],
                        f["well"],
                        f["site"],
                        f["channel"],
                    )
                )
        df = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
        strings = [c for c in IMAGE_COLUMNS if c != "size"]
        return df.astype(dict.fromkeys(strings, STRING_DTYPE)).sort_values("key", ignore_index=True)
