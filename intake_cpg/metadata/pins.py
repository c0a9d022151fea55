"""The pinned release of the JUMP ``datasets`` repository: one row per metadata file (pure).

The pin table is data, written once: ``intake_cpg/data/jump_metadata_pins.csv`` holds, for the
release intake-cpg is pinned to, each file of the repository's ``metadata/`` folder with its
size, its sha256 and its git blob id, all read from the git tree of the pinned commit.

A file is checked by one of two digests, an explicit per-file state (:attr:`Pin.check`):

* ``"sha256"``: the sha256 of the file's bytes (recorded whenever the bytes were available);
* ``"git-blob"``: the git blob id (SHA-1 of ``b"blob <size>\\0" + bytes``), which the
  commit's tree records for every file. It is used where the sha256 could not be recorded
  because the snapshot the table was built from did not hold the file's bytes (in v0.13 the
  two large files ``well.csv.gz`` and ``compound.csv.gz``). It still pins the exact bytes.

A row with neither digest is refused when the table is loaded: no file is ever unverified
unless the user says so (``metadata_verify=False``).

>>> release = default_release()
>>> release.name, release.commit[:7]
('v0.13', '99c34b6')
>>> release.pin("plate").check, release.pin("well").check
('sha256', 'git-blob')
>>> release.raw_url("plate")
'https://raw.githubusercontent.com/jump-cellpainting/datasets/99c34b66f51c5971c85417c02e191f43057c22a8/metadata/plate.csv.gz'
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from ..errors import ParameterError, not_found

__all__ = [
    "Pin",
    "Release",
    "RAW_BASE",
    "default_release",
    "read_pin_table",
    "write_pin_table",
    "file_digests",
    "git_blob_id",
]

#: Where GitHub serves a file of a commit: ``{RAW_BASE}/{repository}/{commit}/{path}``.
RAW_BASE = "https://raw.githubusercontent.com"
_PIN_TABLE = "jump_metadata_pins.csv"
_COLUMNS = ("release", "repository", "commit", "table", "file", "size", "sha256", "git_blob")
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "git_blob": re.compile(r"[0-9a-f]{40}")}
_TABLE_NAME = re.compile(r"[A-Za-z0-9_]+")
_FILE_NAME = re.compile(r"[A-Za-z0-9_]+\.(csv|csv\.gz|parquet)")


@dataclass(frozen=True, slots=True)
class Pin:
    """One pinned file: table name, file name, size and digests (``None`` where unknown)."""

    table: str
    file: str
    size: int | None
    sha256: str | None
    git_blob: str | None

    @property
    def check(self) -> str:
        """How the file is verified: ``"sha256"`` or ``"git-blob"`` (see the module text)."""
        return "sha256" if self.sha256 else "git-blob"

    @property
    def expected(self) -> str:
        """The expected digest, as ``"sha256:<hex>"`` or ``"git-blob:<hex>"``."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git-blob:{self.git_blob}"


@dataclass(frozen=True, slots=True)
class Release:
    """A named release of ``jump-cellpainting/datasets`` at one commit, and its pinned files.

    ``raw_base`` is the host the pinned files are fetched from (GitHub's raw-file host; tests
    point it at a loopback server laid out the same way).
    """

    name: str
    repository: str
    commit: str
    pins: Mapping[str, Pin] = field(repr=False)
    raw_base: str = RAW_BASE

    @property
    def tables(self) -> tuple[str, ...]:
        """Table names (file names without their extension), sorted."""
        return tuple(sorted(self.pins))

    def pin(self, table: str) -> Pin:
        """The pin of ``table``; an unknown name names the tables of the release."""
        try:
            return self.pins[table]
        except (KeyError, TypeError):
            raise not_found(
                "metadata table", str(table), self.pins, f"{self.repository} release {self.name}"
            ) from None

    def raw_url(self, table: str) -> str:
        """The HTTPS URL of ``table``'s file at the pinned commit."""
        pin = self.pin(table)
        return f"{self.raw_base.rstrip('/')}/{self.repository}/{self.commit}/metadata/{pin.file}"

    def with_raw_base(self, raw_base: str) -> Release:
        """The same release fetched from another host laid out like GitHub's raw-file host."""
        return replace(self, raw_base=raw_base)

    def describe(self) -> str:
        """``"jump-cellpainting/datasets v0.13 (commit 99c34b6...)"``."""
        return f"{self.repository} {self.name} (commit {self.commit})"


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data``: SHA-1 of ``b"blob <len>\\0" + data``.

    >>> git_blob_id(b"hello\\n")  # what `git hash-object` prints for a file holding "hello"
    'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    h = hashlib.sha1(f"blob {len(data)}\0".encode(), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def file_digests(path: str | Path, chunk: int = 1 << 20) -> tuple[str, str, int]:
    """``(sha256, git blob id, size)`` of a local file, read once in chunks."""
    p = Path(path)
    size = p.stat().st_size
    sha = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with p.open("rb") as f:
        while block := f.read(chunk):
            sha.update(block)
            blob.update(block)
    return sha.hexdigest(), blob.hexdigest(), size


def _digest(row: Mapping[str, str], name: str, where: str) -> str | None:
    value = (row.get(name) or "").strip().lower()
    if not value:
        return None
    if not _HEX[name].fullmatch(value):
        raise ParameterError(f"{where}: {name} {value!r} is not a hex digest of the right length")
    return value


def read_pin_table(text: str, source: str = "pin table") -> Release:
    """Parse a pin table (CSV with columns ``release, repository, commit, table, file, size,
    sha256, git_blob``; one release) into a :class:`Release`.

    >>> text = ("release,repository,commit,table,file,size,sha256,git_blob\\n"
    ...         "v9,o/r," + "a" * 40 + ",plate,plate.csv.gz,3,," + "b" * 40 + "\\n")
    >>> read_pin_table(text).pin("plate").check
    'git-blob'
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != _COLUMNS:
        got = tuple(rows[0]) if rows else ()
        raise ParameterError(
            f"{source}: expected a CSV with columns {', '.join(_COLUMNS)} and at least one row, "
            f"got columns {', '.join(got) or '(none)'}"
        )
    heads = {(r["release"], r["repository"], r["commit"]) for r in rows}
    if len(heads) != 1:
        raise ParameterError(f"{source}: rows name {len(heads)} releases; expected exactly one")
    name, repository, commit = heads.pop()
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ParameterError(f"{source}: commit {commit!r} is not a 40-hex git commit id")
    pins: dict[str, Pin] = {}
    for i, row in enumerate(rows, start=2):
        where = f"{source} line {i}"
        table, file = row["table"], row["file"]
        if not _TABLE_NAME.fullmatch(table) or not _FILE_NAME.fullmatch(file):
            raise ParameterError(f"{where}: table {table!r} / file {file!r} is not a plain name")
        if table in pins:
            raise ParameterError(f"{where}: table {table!r} is listed twice")
        sha256, blob = _digest(row, "sha256", where), _digest(row, "git_blob", where)
        if sha256 is None and blob is None:
            raise ParameterError(
                f"{where}: {file} has neither a sha256 nor a git blob id; every pinned file "
                "needs one (use metadata_verify=False to read files without checks)"
            )
        size = row["size"].strip()
        pins[table] = Pin(table, file, int(size) if size else None, sha256, blob)
    return Release(name=name, repository=repository, commit=commit, pins=pins)


def write_pin_table(release: Release) -> str:
    """The pin table text of ``release`` (what :func:`read_pin_table` reads back).

    >>> release = default_release()
    >>> read_pin_table(write_pin_table(release)) == release
    True
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for table in release.tables:
        pin = release.pin(table)
        writer.writerow(
            [
                release.name,
                release.repository,
                release.commit,
                table,
                pin.file,
                "" if pin.size is None else pin.size,
                pin.sha256 or "",
                pin.git_blob or "",
            ]
        )
    return buf.getvalue()


@functools.cache
def default_release() -> Release:
    """The release intake-cpg is pinned to (from the packaged pin table)."""
    text = resources.files("intake_cpg").joinpath("data", _PIN_TABLE).read_text()
    return read_pin_table(text, _PIN_TABLE)
