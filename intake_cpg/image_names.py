"""Raw image names: plate folders and the microscopes' file-name schemes, as a table (pure).

Raw images live at ``<project>/<source>/images/<batch>/images/<plate folder>/**/<file>``. The
plate folder of a PerkinElmer Phenix/Opera export carries the measurement:
``BR00117037__2021-05-13T13_37_20-Measurement1``; :func:`plate_of_folder` gives the plate
(``BR00117037``) and keeps the full folder name apart. The file name says well, site and
channel in one of three schemes, one row each in :data:`IMAGE_SCHEMES`:

=========== ========================================= ======================================
scheme      example                                   well / site / channel
=========== ========================================= ======================================
phenix      ``r01c01f01p01-ch1sk1fk1fl1.tiff``        row 01 column 01 (A01), field 1, ch1
yokogawa    ``BR1_A01_T0001F001L01A01Z01C01.tif``     A01, F001, C01
imagexpress ``Plate1_A01_s1_w1D2E3F.tif``             A01, s1, w1
=========== ========================================= ======================================

Sites and channels are given without leading zeros (``"1"``), wells as a row letter and two
digits (``"A01"``), all strings.

>>> image_fields("BR00117037__2021-05-13T13_37_20-Measurement1", "r02c03f04p01-ch5sk1fk1fl1.tiff")
{'plate': 'BR00117037', 'plate_folder': 'BR00117037__2021-05-13T13_37_20-Measurement1', 'scheme': 'phenix', 'well': 'B03', 'site': '4', 'channel': '5'}
>>> image_fields("CP-CC9-R1-04", "CP-CC9-R1-04_P24_T0001F009L01A02Z01C02.tif")["well"]
'P24'
>>> image_fields("Plate1", "notes.txt")["scheme"] is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ImageScheme", "IMAGE_SCHEMES", "plate_of_folder", "image_fields"]

_PLATE_FOLDER = re.compile(
    r"(?P<plate>.+?)__(?:\d{4}-\d{2}-\d{2}T\d{2}[_:]\d{2}[_:]\d{2}(?:\.\d+)?-)?Measurement\s?\d+"
)


@dataclass(frozen=True)
class ImageScheme:
    """One microscope's file-name scheme: a regex with ``well`` (or ``row``/``col``), ``site``
    and ``channel`` groups."""

    name: str
    pattern: re.Pattern[str]
    example: str


IMAGE_SCHEMES: tuple[ImageScheme, ...] = (
    ImageScheme(
        "phenix",
        re.compile(
            r"r(?P<row>\d{2})c(?P<col>\d{2})f(?P<site>\d+)p\d+-ch(?P<channel>\d+)"
            r"sk\d+fk\d+fl\d+\.tiff?",
            re.IGNORECASE,
        ),
        "r01c01f01p01-ch1sk1fk1fl1.tiff",
    ),
    ImageScheme(
        "yokogawa",
        re.compile(
            r".+_(?P<well>[A-Za-z]{1,2}\d{2})_T\d+F(?P<site>\d+)L\d+A\d+Z\d+C(?P<channel>\d+)\.tiff?",
            re.IGNORECASE,
        ),
        "BR00117037_A01_T0001F001L01A01Z01C01.tif",
    ),
    ImageScheme(
        "imagexpress",
        re.compile(
            r"(?:.+_)?(?P<well>[A-Za-z]{1,2}\d{2})_s(?P<site>\d+)_w(?P<channel>\d+)"
            r"[^/]*\.tiff?",
            re.IGNORECASE,
        ),
        "Plate1_A01_s1_w1D2E3F.tif",
    ),
)


def plate_of_folder(folder: str) -> str:
    """The plate a raw-image plate folder belongs to (the folder without its measurement suffix).

    >>> plate_of_folder("BR00117037__2021-05-13T13_37_20-Measurement1"), plate_of_folder("1053601756")
    ('BR00117037', '1053601756')
    """
    m = _PLATE_FOLDER.fullmatch(folder)
    return m.group("plate") if m else folder


def _row_letters(row: int) -> str:
    letters = ""
    while row > 0:
        row, rem = divmod(row - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def image_fields(plate_folder: str, filename: str) -> dict[str, str | None]:
    """Plate, plate folder, scheme, well, site and channel of one raw image file.

    Files that fit no scheme (thumbnails, ``Index.idx.xml``, ...) get ``scheme``, ``well``,
    ``site`` and ``channel`` None.
    """
    out: dict[str, str | None] = {
        "plate": plate_of_folder(plate_folder),
        "plate_folder": plate_folder,
        "scheme": None,
        "well": None,
        "site": None,
        "channel": None,
    }
    for scheme in IMAGE_SCHEMES:
        m = scheme.pattern.fullmatch(filename)
        if m is None:
            continue
        g = m.groupdict()
        if g.get("well"):
            well = g["well"].upper()
        else:
            well = f"{_row_letters(int(g['row']))}{int(g['col']):02d}"
        out.update(
            scheme=scheme.name,
            well=well,
            site=str(int(g["site"])),
            channel=str(int(g["channel"])),
        )
        break
    return out
