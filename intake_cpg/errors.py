"""The exceptions intake-cpg raises.

Every error derives from :class:`CPGError` and from the builtin exception a caller would
naturally catch (``ValueError``, ``KeyError``, ``OSError``), so ``except KeyError`` keeps
working for code written against plain Intake catalogs.

Messages say what was given, what was expected and what to try.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CPGError",
    "DataReadError",
    "EtagMismatchError",
    "GalleryPathError",
    "ManifestError",
    "OutOfMemoryError",
    "ParameterError",
    "ProductNotFoundError",
    "SchemaMismatchError",
    "StorageError",
    "close_matches",
    # external metadata (intake_cpg.metadata, intake_cpg.annotate)
    "MetadataError",
    "ChecksumError",
    "MetadataUnavailableError",
]


class CPGError(Exception):
    """Base class of every error raised by intake-cpg."""


class GalleryPathError(CPGError, ValueError):
    """A key or URL does not fit the gallery's folder convention."""


class ParameterError(CPGError, ValueError):
    """A user parameter or name is not acceptable (bad value, or it would leave the gallery root)."""


class ManifestError(CPGError, ValueError):
    """A manifest file cannot be read or one of its records is invalid."""


class EtagMismatchError(CPGError, ValueError):
    """An object's ETag differs from the one a manifest recorded."""


class SchemaMismatchError(CPGError, ValueError):
    """Files loaded together do not share the columns the chosen schema mode requires."""


class DataReadError(CPGError, OSError):
    """A data file exists but cannot be decoded (corrupt, truncated, empty, wrong format)."""


class StorageError(CPGError, OSError):
    """The storage backend could not be reached or refused a request."""


class OutOfMemoryError(CPGError, MemoryError):
    """Reading or computing a table needed more memory than the process (or worker) had."""


class ProductNotFoundError(CPGError, KeyError):
    """A name (project, source, product, batch, plate, subset, ...) does not exist.

    ``str()`` gives the plain message (``KeyError`` would otherwise quote it).
    """

    def __init__(self, message: str, *, name: str | None = None, suggestions: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.name = name
        self.suggestions = list(suggestions)

    def __str__(self) -> str:
        return self.message


class MetadataError(CPGError, ValueError):
    """An external metadata table cannot be used (duplicate join keys, a bad pin table, ...)."""


class ChecksumError(MetadataError):
    """A metadata file's bytes differ from the checksum its pinned release records."""


class MetadataUnavailableError(CPGError, OSError):
    """A metadata file is missing or cannot be fetched (and no verified copy is cached)."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates that look like ``name`` (case-insensitive).

    >>> close_matches("source4", ["source_4", "source_5", "broad"])
    ['source_4', 'source_5']
    """
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def not_found(
    kind: str, name: str, candidates: Iterable[str], where: str = ""
) -> ProductNotFoundError:
    """Build a :class:`ProductNotFoundError` naming what exists and what looks close.

    >>> print(not_found("batch", "Batch9", ["Batch1", "Batch2"], "cpg0016-jump/source_4"))  # noqa: E501
    no batch named 'Batch9' in cpg0016-jump/source_4; did you mean 'Batch2' or 'Batch1'? Available: Batch1, Batch2.
    >>> print(not_found("plate", "XYZ", ["BR00117037"]))
    no plate named 'XYZ'. Available: BR00117037.
    """
    cands = sorted(candidates)
    suggestions = close_matches(name, cands)
    msg = f"no {kind} named {name!r}"
    if where:
        msg += f" in {where}"
    msg += (
        "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?" if suggestions else "."
    )
    if cands:
        shown = ", ".join(cands[:20]) + (f", ... ({len(cands)} in all)" if len(cands) > 20 else "")
        msg += f" Available: {shown}."
    else:
        msg += f" There are no {kind}s here."
    return ProductNotFoundError(msg, name=name, suggestions=suggestions)
