"""The ``intake-cpg`` command line: browse, inspect, load, export, verify and freeze the gallery.

Built on the public API only (:func:`intake.open_cpg`, catalog levels, sources'
``describe()``/``file_keys()``/``to_dask()``, :func:`intake_cpg.verify_manifest`,
:func:`intake_cpg.build_demo`, :func:`intake_cpg.export.export_table`); this module parses
arguments and prints, nothing more.

A PATH names a catalog level or an entry by slash-separated names from the root
(``cpg0016-jump/source_4/profiles``); below a table entry, further parts select its path
parameters in gallery order (``.../profiles/<batch>/<plate>``, ``.../dl_profiles/<model>/<batch>``,
``.../profiles_assembled/<subset>/<version>/<variant>``).

Exit status: 0 success, 1 verification failed, 2 usage or user error (unknown name, bad
parameter, unreachable storage, bad manifest), 3 unexpected error, 130/143 interrupted.

>>> print(render_table([{"name": "source_4", "plates": 4}, {"name": "broad", "plates": 12}]))
name      plates
--------  ------
source_4       4
broad         12
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import __version__
from .errors import CPGError, EtagMismatchError, ParameterError, not_found
from .storage import DEFAULT_ROOT, SecretFilter, scrub, secret_values

log = logging.getLogger(__name__)

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "build_parser",
    "command_parsers",
    "main",
    "parse_assignments",
    "render_table",
]

#: Environment variable giving the default ``--root``.
ROOT_ENV = "INTAKE_CPG_ROOT"
#: Test hook: seconds ``export`` sleeps after each partition (makes interruptions deterministic).
EXPORT_DELAY_ENV = "INTAKE_CPG_EXPORT_DELAY"

EXIT_FAILED = 1  # verification failed
EXIT_ERROR = 2  # usage or user error
EXIT_INTERNAL = 3  # unexpected error (a bug): rerun with -v and report it

_GLOB = set("*?[")


# =============================================================================================
# pure helpers
# =============================================================================================
def _cell(value: Any, max_width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else ""
    elif isinstance(value, float):
        text = format(value, ".6g")
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split()) if ("\n" in text or "\t" in text) else text
    if len(text) > max_width:
        text = text[: max_width - 3] + "..."
    return text


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    max_width: int = 60,
) -> str:
    """Render rows of dicts as an aligned plain-text table (numbers right-aligned).

    ``columns`` defaults to every key, in first-seen order; cells longer than ``max_width``
    are cut with ``...``; ``None`` and NaN print as blanks.

    >>> print(render_table([{"subset": "orf", "status": "ok"},
    ...                     {"subset": "crispr", "status": "mismatch", "found": "abc"}]))
    subset  status    found
    ------  --------  -----
    orf     ok
    crispr  mismatch  abc
    >>> render_table([])
    '(nothing to show)'
    """
    if not rows:
        return "(nothing to show)"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c), max_width) for c in columns] for row in rows]
    right = [all(_numeric(row.get(c)) or row.get(c) is None for row in rows) for c in columns]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def parse_value(text: str) -> Any:
    """A ``--storage-option`` value: JSON when it parses (``true``, ``3``, ``{...}``), else text.

    >>> parse_value("true"), parse_value("3"), parse_value("us-east-1"), parse_value('{"a": 1}')
    (True, 3, 'us-east-1', {'a': 1})
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(
    items: Iterable[str] | None, option: str, *, json_values: bool = False
) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values parsed as JSON with ``json_values``).

    The value of an item without ``=`` is never echoed in the error (it may be a secret).

    >>> parse_assignments(["batch=B1", "plate=P=1"], "-p")
    {'batch': 'B1', 'plate': 'P=1'}
    >>> parse_assignments(["anon=false"], "--storage-option", json_values=True)
    {'anon': False}
    """
    out: dict[str, Any] = {}
    for i, item in enumerate(items or (), 1):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(
                f"{option} expects NAME=VALUE, but its occurrence number {i} has no "
                "'NAME=' part; write e.g. "
                + ("--storage-option anon=false" if option.startswith("--s") else "-p batch=B1")
            )
        out[name] = parse_value(value) if json_values else value
    return out


def coerce(value: str, type_name: str, name: str) -> Any:
    """A ``-p`` value as the parameter's declared type (``str``, ``bool``, ``int``, ``float``).

    >>> coerce("yes", "bool", "verify"), coerce("3", "int", "n"), coerce("v1.0", "str", "version")
    (True, 3, 'v1.0')
    """
    if type_name == "bool":
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ParameterError(f"parameter {name!r} is true/false, got {value!r}; try {name}=true")
    if type_name in ("int", "float"):
        try:
            return int(value) if type_name == "int" else float(value)
        except ValueError:
            raise ParameterError(
                f"parameter {name!r} must be a number ({type_name}), got {value!r}"
            ) from None
    return value


def split_path(path: str | None) -> list[str]:
    """PATH as its names (``"a/b/"`` -> ``["a", "b"]``; ``""``/``"/"`` is the root).

    >>> split_path("cpg0016-jump/source_4/profiles/"), split_path("/")
    (['cpg0016-jump', 'source_4', 'profiles'], [])
    """
    return [p for p in (path or "").strip().split("/") if p]


def path_parameters(names: Sequence[str], entry: str | None = None) -> list[str]:
    """The parameters that extra PATH parts select, in gallery folder order.

    The order is the entry-table row's CLI path (``entry`` names the row; without it, the row
    whose path covers the most of ``names``), limited to the parameters the entry has.

    >>> path_parameters(["batch", "plate", "variant"])
    ['batch', 'plate']
    >>> path_parameters(["version", "variant", "verify"])
    ['version', 'variant']
    >>> path_parameters(["verify"])
    []
    """
    from .entries import ENTRY_TABLE

    rows = list(ENTRY_TABLE.values())
    if entry in ENTRY_TABLE:
        rows = [ENTRY_TABLE[entry]]
    orders = [[n for n in row.cli_path if n in names] for row in rows]
    return max(orders, key=len, default=[])


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# =============================================================================================
# options -> catalog
# =============================================================================================
def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """fsspec storage options from ``--storage-option``, ``--endpoint-url`` and ``--anon``."""
    opts = parse_assignments(args.storage_option, "--storage-option", json_values=True)
    if args.endpoint_url:
        client_kwargs = dict(opts.get("client_kwargs") or {})
        client_kwargs["endpoint_url"] = args.endpoint_url
        opts["client_kwargs"] = client_kwargs
    if args.anon is not None:
        opts["anon"] = args.anon
    return opts


def _secrets(args: argparse.Namespace) -> list[str]:
    """Secret values given on the command line (scrubbed from every message)."""
    try:
        opts = parse_assignments(args.storage_option, "--storage-option")
    except ParameterError:
        return []
    return sorted(secret_values(opts))


def open_root(args: argparse.Namespace) -> Any:
    """The gallery catalog the global options describe."""
    import intake

    cat = intake.open_cpg(
        urlpath=args.root,
        storage_options=storage_options(args) or None,
        cache_dir=args.cache_dir,
        metadata_root=args.metadata_root,
        metadata_release=args.metadata_release,
    )
    if args.refresh:  # forget cached listings, in memory and in --cache-dir, then list again
        cat.refresh()
    return cat


@dataclass
class Target:
    """What a PATH names: a catalog level, or a source entry plus the parts below it."""

    path: str
    node: Any
    extra: list[str] = field(default_factory=list)

    @property
    def is_catalog(self) -> bool:
        from intake.catalog import Catalog

        return isinstance(self.node, Catalog)


def resolve(root: Any, path: str | None) -> Target:
    """Walk PATH from the root catalog (unknown names raise ProductNotFoundError)."""
    from intake.catalog import Catalog

    parts = split_path(path)
    node = root
    for i, part in enumerate(parts):
        if not isinstance(node, Catalog):
            return Target("/".join(parts[:i]), node, parts[i:])
        node = node[part]
    return Target("/".join(parts), node)


def _parameters(source: Any) -> list[dict[str, Any]]:
    return list(source.describe().get("user_parameters") or [])


def _path_order(target: Target, names: Sequence[str]) -> list[str]:
    """The parameters extra PATH parts of ``target`` select (its entry row's CLI path)."""
    product = (target.node.describe().get("metadata") or {}).get("product")
    return path_parameters(names, product)


def bind(target: Target, assignments: Mapping[str, str]) -> dict[str, Any]:
    """Parameter values from the extra PATH parts and ``-p`` assignments, checked and typed."""
    params = {p["name"]: p for p in _parameters(target.node)}
    order = _path_order(target, list(params))
    if len(target.extra) > len(order):
        below = "/".join(target.extra[len(order) :])
        raise ParameterError(
            f"{target.path}: nothing below {'/'.join([target.path, *target.extra[: len(order)]])!r}"
            f" (got {below!r}); below this entry a path selects "
            + ("/".join(f"<{n}>" for n in order) if order else "nothing")
        )
    raw: dict[str, str] = dict(zip(order, target.extra, strict=False))
    for name, value in assignments.items():
        if name not in params:
            raise not_found("parameter", name, params, target.path)
        if name in raw and raw[name] != value:
            raise ParameterError(
                f"{name} is {raw[name]!r} in the path but {value!r} in -p; give it once"
            )
        raw[name] = value
    values: dict[str, Any] = {}
    for name, value in raw.items():
        spec = params[name]
        typed = coerce(value, spec.get("type") or "str", name)
        allowed = spec.get("allowed")
        if allowed and typed not in allowed and not (_GLOB & set(str(typed)) and "*" in allowed):
            raise not_found(name, str(typed), [str(a) for a in allowed], target.path)
        values[name] = typed
    return values


def _configured(target: Target, values: Mapping[str, Any]) -> Any:
    return target.node(**values) if values else target.node


def _need_entry(target: Target, command: str) -> None:
    if target.is_catalog:
        names = list(target.node)
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ParameterError(
            f"{target.path or 'the root'} is a catalog level, not a table; {command} needs a "
            f"table entry below it ({shown})"
        )


# =============================================================================================
# output helpers
# =============================================================================================
class Progress:
    """A one-line progress bar on a terminal (and nothing at all elsewhere)."""

    def __init__(self, label: str, total: int, stream: TextIO, enabled: bool) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.enabled = enabled and total > 0
        self._lock = threading.Lock()
        self._shown = False

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        with self._lock:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}".rstrip())
            self.stream.flush()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


def _progress(args: argparse.Namespace, label: str, total: int) -> Progress:
    return Progress(label, total, sys.stderr, sys.stderr.isatty() and not args.quiet)


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _emit_json(value: Any) -> None:
    """Print strict JSON: NaN and infinities (which JSON has no words for) become null."""
    _emit(json.dumps(_finite(value), indent=2, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _records(frame: Any) -> list[dict[str, Any]]:
    """Rows of a pandas frame as plain Python values (NaN, NA and infinities -> None)."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: _finite(None if _is_missing(v) else _plain(v)) for k, v in row.items()})
    return out


def _is_missing(v: Any) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    return type(v).__name__ in ("NAType", "NaTType")


def _plain(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    return v


# =============================================================================================
# ls
# =============================================================================================
_PATH_COLUMNS = ("project", "source", "product")
_URL_COLUMNS = ("url", "url_pattern")


def _level_rows(catalog: Any) -> list[dict[str, Any]]:
    df = getattr(catalog, "df", None)
    if df is None:
        return [{"name": n} for n in catalog]
    rows = _records(df)
    drop = {c for c in _PATH_COLUMNS if c in df.columns}
    for c in df.columns:  # columns that only repeat the name
        if c != "name" and all(r.get(c) == r.get("name") for r in rows):
            drop.add(c)
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _group_refs(refs: Sequence[Any], level: str) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for ref in refs:
        value = getattr(ref.path, level, None) or "?"
        counts[value] = counts.get(value, 0) + 1
    return [{"name": n, "kind": level, "files": c} for n, c in sorted(counts.items())]


def entry_rows(target: Target, assignments: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """Rows for ``ls`` below a table entry, and notes on its other parameters."""
    params = {p["name"]: p for p in _parameters(target.node)}
    order = _path_order(target, list(params))
    values = bind(target, assignments)
    depth = len(target.extra)
    notes = []
    for name, spec in params.items():
        if name in order or name in values:
            continue
        allowed = spec.get("allowed")
        default = spec.get("default")
        choices = (
            ", ".join(repr(a) for a in allowed[:12]) + (", ..." if len(allowed) > 12 else "")
            if allowed
            else ""
        )
        notes.append(
            f"-p {name}=...  default {default!r}" + (f"; one of {choices}" if choices else "")
        )
    level = order[depth] if depth < len(order) else "file"
    spec = params.get(level)
    # levels the entry lists cheaply: allowed values (for the default model), with the default
    # marked; deeper levels come from the files the selection resolves to
    default_model = params.get("model", {}).get("default")
    if (
        spec is not None
        and spec.get("allowed")
        and values.get("model", default_model) == (default_model)
    ):
        rows = [
            {"name": a, "kind": level, "default": a == spec.get("default")}
            for a in spec["allowed"]
            if a != "*"
        ]
        if not any(r["default"] for r in rows):
            rows = [{k: v for k, v in r.items() if k != "default"} for r in rows]
        return rows, notes
    refs = _configured(target, values).file_refs()
    if level == "file":
        return [{"name": r.path.filename, "kind": "file", "key": r.key} for r in refs], notes
    return _group_refs(refs, level), notes


def cmd_ls(args: argparse.Namespace) -> int:
    target = resolve(open_root(args), args.path)
    assignments = parse_assignments(args.param, "-p")
    if target.is_catalog:
        if assignments:
            raise ParameterError("-p applies to table entries; this PATH is a catalog level")
        rows, notes = _level_rows(target.node), []
    else:
        rows, notes = entry_rows(target, assignments)
    if args.json:
        _emit_json(rows)
        return 0
    # the table leaves out full URLs (long, and `describe` shows them); --json keeps them
    _emit(render_table([{k: v for k, v in r.items() if k not in _URL_COLUMNS} for r in rows]))
    if notes and not args.quiet:
        _emit("\nother parameters:\n" + "\n".join("  " + n for n in notes))
    return 0


# =============================================================================================
# describe
# =============================================================================================
def _allowed_text(allowed: Sequence[Any] | None, limit: int = 8) -> str:
    if not allowed:
        return ""
    shown = ", ".join(repr(a) for a in allowed[:limit])
    return shown + (f", ... ({len(allowed)} in all)" if len(allowed) > limit else "")


def describe_entry(target: Target, values: Mapping[str, Any]) -> dict[str, Any]:
    """What ``describe`` shows for a table entry (no storage options: they may hold secrets)."""
    d = target.node.describe()
    md = dict(d.get("metadata") or {})
    out: dict[str, Any] = {
        "path": "/".join([target.path, *target.extra]),
        "name": d.get("name"),
        "description": d.get("description"),
        "container": d.get("container"),
        "template": md.get("template"),
        "location": md.get("url") or md.get("url_pattern") or md.get("prefix"),
        "parameters": [
            {
                "name": p["name"],
                "type": p.get("type"),
                "default": p.get("default"),
                "allowed": p.get("allowed"),
                "description": p.get("description"),
                **({"value": values[p["name"]]} if p["name"] in values else {}),
            }
            for p in d.get("user_parameters") or []
        ],
        "provenance": md.get("provenance"),
        "metadata": {k: v for k, v in md.items() if k not in ("provenance", "files")},
    }
    if values:
        keys = _configured(target, values).file_keys()
        out["files"] = {"count": len(keys), "keys": keys[:20]}
    return out


def describe_level(target: Target) -> dict[str, Any]:
    """What ``describe`` shows for a catalog level."""
    cat = target.node
    names = list(cat)
    return {
        "path": target.path,
        "name": cat.name,
        "description": cat.description,
        "kind": cat.metadata.get("level"),
        "root": cat.metadata.get("root"),
        "entries": names,
        "metadata": {k: v for k, v in cat.metadata.items() if k not in ("root", "level")},
    }


def cmd_describe(args: argparse.Namespace) -> int:
    target = resolve(open_root(args), args.path)
    assignments = parse_assignments(args.param, "-p")
    if target.is_catalog:
        info = describe_level(target)
    else:
        info = describe_entry(target, bind(target, assignments))
    if args.json:
        _emit_json(info)
        return 0
    lines = []
    for key in ("path", "name", "kind", "description", "container", "root", "template"):
        if info.get(key):
            lines.append(f"{key + ':':13}{info[key]}")
    if info.get("location"):
        lines.append(f"{'location:':13}{info['location']}")
    if "entries" in info:
        lines.append(f"{'entries:':13}{len(info['entries'])}: " + ", ".join(info["entries"][:30]))
    if info.get("parameters"):
        lines.append("\nparameters:")
        rows = [
            {
                "name": p["name"],
                "type": p["type"],
                "default": repr(p["default"]),
                **({"value": repr(p["value"])} if "value" in p else {}),
                "allowed": _allowed_text(p["allowed"]),
                "description": p["description"],
            }
            for p in info["parameters"]
        ]
        lines.append(render_table(rows, max_width=70))
    if info.get("files"):
        files = info["files"]
        lines.append(f"\nfiles ({files['count']}):")
        lines.extend("  " + k for k in files["keys"])
        if files["count"] > len(files["keys"]):
            lines.append(f"  ... ({files['count'] - len(files['keys'])} more)")
    if info.get("provenance"):
        lines.append("\nprovenance:")
        lines.extend(f"  {k}: {v}" for k, v in info["provenance"].items())
    extra = {
        k: v
        for k, v in (info.get("metadata") or {}).items()
        if k not in ("template", "url", "url_pattern", "prefix", "project", "source", "product")
        and k != "catalog_dir"
    }
    if extra:
        lines.append("\nmetadata:")
        lines.extend(f"  {k}: {_cell(v, 100)}" for k, v in extra.items())
    _emit("\n".join(lines))
    return 0


# =============================================================================================
# head / export
# =============================================================================================
def _source(args: argparse.Namespace) -> tuple[Target, Any, Any, list[str] | None]:
    """The entry at PATH with its parameters: target, source, dask frame, chosen columns."""
    target = resolve(open_root(args), args.path)
    _need_entry(target, args.command)
    values = bind(target, parse_assignments(args.param, "-p"))
    source = _configured(target, values)
    ddf = source.to_dask()
    wanted = None
    if args.columns:
        wanted = [c.strip() for c in args.columns.split(",") if c.strip()]
        have = [str(c) for c in ddf.columns]
        for c in wanted:
            if c not in have:
                raise not_found("column", c, have, target.path)
        ddf = ddf[wanted]
    return target, source, ddf, wanted


def _check_output(path: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ParameterError(
            f"cannot write {path!r}: it is a folder; name the file to write inside it, e.g. "
            f"{os.path.join(path, 'table.parquet')!r}"
        )
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise ParameterError(f"cannot write {path!r}: the folder {folder!r} does not exist")


def cmd_head(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.n < 0:
        raise ParameterError(f"-n must be 0 or more, got {args.n}")
    _, source, ddf, wanted = _source(args)
    if hasattr(source, "head"):  # reads only the first rows of the first files
        frame = source.head(args.n, wanted)
    else:
        parts, got = [], 0
        for i in range(ddf.npartitions):  # only as many partitions as the rows need
            if got >= args.n:
                break
            parts.append(ddf.partitions[i].compute().head(args.n - got))
            got += len(parts[-1])
        frame = pd.concat(parts) if parts else ddf._meta
    frame = frame.reset_index(drop=True)
    if args.format == "csv":
        _emit(frame.to_csv(index=False))
    elif args.format == "json":
        _emit_json(_records(frame))
    else:
        _emit(render_table(_records(frame), [str(c) for c in frame.columns], max_width=24))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_table, streaming_partitions

    delay = float(os.environ.get(EXPORT_DELAY_ENV) or 0)
    _check_output(args.output)
    with streaming_partitions():
        _, source, ddf, _ = _source(args)
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler, timeout="20s")
    bar = _progress(args, "export", ddf.npartitions)
    try:
        result = export_table(
            ddf,
            args.output,
            format=args.format,
            client=client,
            on_partition=lambda done, total, rows: bar.update(done, f"{rows:,} rows"),
            delay=delay,
            row_group_bytes=int(args.row_group_mb * 2**20),
            describe_partition=_partition_files(source, ddf.npartitions),
        )
    finally:
        bar.close()
        if client is not None:
            client.close()
    if not args.quiet:
        _emit(
            f"wrote {args.output}: {result.rows:,} rows x {len(ddf.columns)} columns "
            f"from {result.partitions} partition(s), {result.bytes:,} bytes"
        )
    return 0


def _partition_files(source: Any, total: int) -> Callable[[int], str] | None:
    """``i -> "the file ... (N bytes)"`` when the source reads one file per partition."""
    keys = source.file_keys() if hasattr(source, "file_keys") else []
    if len(keys) != total:
        return None

    def describe(i: int) -> str:
        try:
            size = f"{int(source.storage.info(keys[i])['size']):,} bytes"
        except Exception:  # the size only makes the message better
            size = "size unknown"
        return f"{source.storage.url(keys[i])} ({size})"

    return describe


# =============================================================================================
# verify / freeze / demo
# =============================================================================================
_FAILED = ("mismatch", "missing", "error")


def cmd_verify(args: argparse.Namespace) -> int:
    import pandas as pd

    import intake_cpg

    opts = storage_options(args)
    root = args.root if args.root_given else None
    manifest = args.manifest
    if "://" not in manifest and not os.path.exists(manifest) and root:
        manifest = root.rstrip("/") + "/" + manifest.lstrip("/")
    records = intake_cpg.read_manifest(manifest, opts or None)
    bar = _progress(args, "verify", len(records))
    done = [0]
    lock = threading.Lock()

    def check(record: Any) -> Any:
        frame = intake_cpg.verify_manifest(
            [record], root=root, storage_options=opts or None, deep=args.deep, max_workers=1
        )
        with lock:
            done[0] += 1
            bar.update(done[0])
        return frame

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            frames = list(pool.map(check, records))
    finally:
        bar.close()
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rows = _records(frame)
    failed = [r for r in rows if r.get("status") in _FAILED]
    if args.json:
        _emit_json(rows)
    else:
        _emit(render_table(rows, ["subset", "status", "expected", "found", "message"]))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        _emit(f"\n{len(rows)} object(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if failed:
        sys.stderr.write(
            f"intake-cpg: {len(failed)} of {len(rows)} object(s) do not match {args.manifest}\n"
        )
        return EXIT_FAILED
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    _check_output(args.output)
    target = resolve(open_root(args), args.path)
    if not target.is_catalog:
        raise ParameterError(
            f"{target.path} is a table entry; freeze writes a catalog level "
            f"(try {'/'.join(split_path(target.path)[:-1]) or '/'})"
        )
    target.node.save(args.output)  # serialised first, then written whole (temp file + rename)
    if not args.quiet:
        n = len(list(target.node))
        _emit(
            f"wrote {args.output}: {n} entries of {target.path or 'the gallery root'}\n"
            f"open it with: intake.open_catalog({args.output!r})"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import build_from_args

    demo = build_from_args(args, storage_options(args) or None)
    flags = f" --endpoint-url {args.endpoint_url}" if args.endpoint_url else ""
    root = demo.root.removeprefix("file://")
    _emit(
        demo.summary()
        + "\n\nopen it with:\n"
        + f"  intake-cpg --root {root}{flags} ls\n"
        + f"  intake-cpg --root {root}{flags} head cpg0016-jump/source_4/profiles -n 5\n"
        + f'  python -c "import intake; print(list(intake.open_cpg({root!r})))"'
    )
    return 0


# =============================================================================================
# the parser
# =============================================================================================
_EPILOG = """\
PATH names a catalog level or an entry by slash-separated names from the root, e.g.
cpg0016-jump/source_4/profiles; below a table entry, further names select its path parameters
(.../profiles/<batch>/<plate>, .../profiles_assembled/<subset>/<version>/<variant>).

Environment: INTAKE_CPG_ROOT sets the default --root.
Exit status: 0 ok, 1 verification failed, 2 usage or user error, 3 unexpected error,
130/143 interrupted."""

_COMMANDS: dict[str, dict[str, str]] = {
    "ls": {
        "help": "list what is at a level of the gallery",
        "description": "List the projects, sources, products, batches, plates, subsets, versions "
        "or variants at PATH as a table (--json for scripts).",
        "epilog": "examples:\n"
        "  intake-cpg ls\n"
        "  intake-cpg ls cpg0016-jump/source_4\n"
        "  intake-cpg ls cpg0016-jump/source_4/profiles              # batches\n"
        "  intake-cpg ls cpg0016-jump/source_4/profiles/2021_04_26_Batch1   # plates\n"
        "  intake-cpg ls cpg0016-jump-assembled/source_all/profiles_assembled/COMPOUND --json",
    },
    "describe": {
        "help": "show an entry's parameters, allowed values, URL template and provenance",
        "description": "Describe a catalog level or a table entry: parameters (type, default, "
        "allowed values), URL template, location and, for manifest-backed entries, provenance.",
        "epilog": "examples:\n"
        "  intake-cpg describe cpg0016-jump/source_4/profiles\n"
        "  intake-cpg describe cpg0016-jump/source_4/profiles/2021_04_26_Batch1   # + its files\n"
        "  intake-cpg describe cpg0016-jump-assembled/source_all/profiles_assembled/COMPOUND",
    },
    "head": {
        "help": "print the first rows of a table",
        "description": "Print the first N rows of a table entry, reading only the partitions "
        "those rows need.",
        "epilog": "examples:\n"
        "  intake-cpg head cpg0016-jump/source_4/profiles/2021_04_26_Batch1/BR00117037 -n 3\n"
        "  intake-cpg head cpg0016-jump/source_4/profiles -p plate=BR00117037 \\\n"
        "      --columns Metadata_Plate,Metadata_Well --format csv",
    },
    "export": {
        "help": "stream a table into a local Parquet, CSV or Arrow/Feather file",
        "description": "Write a table entry to one local file (Parquet, CSV or Arrow IPC, which "
        "is Feather v2; chosen by the file's extension or --format), one partition at a time "
        "(bounded memory), with a progress bar on a terminal. The file appears only when "
        "complete: an interrupted or failed export leaves no partial output.",
        "epilog": "examples:\n"
        "  intake-cpg export cpg0016-jump/source_4/profiles -p batch=2021_04_26_Batch1 \\\n"
        "      -o batch1.parquet\n"
        "  intake-cpg export cpg0016-jump/source_4/profiles -p plate=BR00117037 -o plate.feather\n"
        "  intake-cpg export cpg0016-jump/source_4/profiles -p plate=BR00117037 -o plate.csv.gz\n"
        "  intake-cpg export cpg0016-jump/source_4/profiles -o all.parquet \\\n"
        "      --columns Metadata_Plate,Metadata_Well --scheduler tcp://10.0.0.5:8786\n\n"
        f"{EXPORT_DELAY_ENV}=SECONDS (test hook) sleeps after each partition.",
    },
    "verify": {
        "help": "check a manifest's ETags against the objects it points at",
        "description": "Check every record of a manifest (JSON or CSV; local path, s3:// or "
        "https:// URL) against its object's ETag, concurrently. Prints a table; exits 1 when "
        "any object is missing or differs. With --root, the objects are looked up under that "
        "mirror (same keys), and a MANIFEST that is neither a URL nor a local file is read "
        "from that root.",
        "epilog": "examples:\n"
        "  intake-cpg verify https://raw.githubusercontent.com/jump-cellpainting/datasets/"
        "main/manifests/profile_index.json\n"
        "  intake-cpg verify manifest.json --root /data/mirror --deep",
    },
    "freeze": {
        "help": "write a catalog level as a static YAML catalog",
        "description": "Write the catalog level at PATH, with every entry's parameters and "
        "allowed values resolved, as a YAML file that intake.open_catalog reads without "
        "listing the bucket. Secrets are never written.",
        "epilog": "examples:\n"
        "  intake-cpg freeze cpg0016-jump/source_4 -o source_4.yaml\n"
        "  python -c \"import intake; print(list(intake.open_catalog('source_4.yaml')))\"",
    },
    "demo": {
        "help": "build the demo gallery and print how to open it",
        "description": "Build the small, realistic demo gallery (real names, synthetic values) "
        "into DIR (a folder or an fsspec URL) and print how to browse it.",
        "epilog": "examples:\n  intake-cpg demo demo-gallery\n  intake-cpg --root demo-gallery ls",
    },
}


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes, before or after the command name."""
    d: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    g = parser.add_argument_group("global options")
    g.add_argument(
        "--root",
        metavar="URL",
        help=f"gallery root (default: ${ROOT_ENV} or {DEFAULT_ROOT})",
        **d,
    )
    g.add_argument(
        "--anon",
        action=argparse.BooleanOptionalAction,
        help="read anonymously (default: anonymous unless credentials are given)",
        **d,
    )
    g.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible endpoint, e.g. http://127.0.0.1:9000",
        **d,
    )
    g.add_argument(
        "--storage-option",
        metavar="KEY=VALUE",
        action="append",
        help="fsspec storage option (repeatable; VALUE parsed as JSON when it can be)",
        **d,
    )
    g.add_argument("--cache-dir", metavar="DIR", help="keep listings on disk in DIR", **d)
    g.add_argument(
        "--metadata-root",
        metavar="URL",
        help="JUMP metadata mirror (a folder or http(s) URL laid out like the datasets "
        "repository's metadata/; default: the pinned files from GitHub, cached)",
        **d,
    )
    g.add_argument(
        "--metadata-release",
        metavar="FILE",
        help="pin table of that mirror (default: the pins packaged with intake-cpg)",
        **d,
    )
    g.add_argument(
        "--refresh", action="store_true", help="list again instead of using cached listings", **d
    )
    g.add_argument(
        "-v", "--verbose", action="count", help="log more (-vv: debug); show tracebacks", **d
    )
    g.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bars", **d)


_GLOBAL_DEFAULTS: dict[str, Any] = {
    "root": None,
    "anon": None,
    "endpoint_url": None,
    "storage_option": None,
    "cache_dir": None,
    "metadata_root": None,
    "metadata_release": None,
    "refresh": False,
    "verbose": 0,
    "quiet": False,
}


def _params_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p",
        "--param",
        metavar="NAME=VALUE",
        action="append",
        help="entry parameter (repeatable), e.g. -p batch=2021_04_26_Batch1",
    )


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="intake-cpg",
        description="Browse, inspect, load, export and verify the Cell Painting Gallery.",
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        info = _COMMANDS[name]
        p = sub.add_parser(
            name,
            help=info["help"],
            description=info["description"],
            epilog=info["epilog"],
            formatter_class=fmt,
        )
        p.set_defaults(func=func)
        commands[name] = p
        return p

    p = add("ls", cmd_ls)
    p.add_argument("path", nargs="?", default="", metavar="PATH", help="level to list (root)")
    _params_option(p)
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")

    p = add("describe", cmd_describe)
    p.add_argument("path", metavar="PATH", help="catalog level or entry")
    _params_option(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = add("head", cmd_head)
    p.add_argument("path", metavar="PATH", help="table entry")
    _params_option(p)
    p.add_argument("-n", type=int, default=10, metavar="N", help="rows to print (default 10)")
    p.add_argument("--columns", metavar="A,B,...", help="only these columns")
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )

    p = add("export", cmd_export)
    p.add_argument("path", metavar="PATH", help="table entry")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE",
        help="output file (.parquet, .csv, .csv.gz, .arrow or .feather)",
    )  # fmt: skip
    p.add_argument(
        "--format",
        choices=("parquet", "csv", "arrow", "feather"),
        help="output format (default: from the output file's extension; feather is arrow)",
    )
    _params_option(p)
    p.add_argument("--columns", metavar="A,B,...", help="only these columns")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask.distributed scheduler to compute the partitions on (tcp://host:8786)",
    )
    p.add_argument(
        "--row-group-mb",
        type=float,
        default=64.0,
        metavar="MB",
        help="gather partitions into row groups of about this size in memory (default 64; "
        "0 writes each partition as its own row group)",
    )

    p = add("verify", cmd_verify)
    p.add_argument("manifest", metavar="MANIFEST", help="manifest path or URL")
    p.add_argument("--deep", action="store_true", help="recompute ETags from the bytes")
    p.add_argument(
        "--workers", type=int, default=8, metavar="N", help="concurrent checks (default 8)"
    )
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")

    p = add("freeze", cmd_freeze)
    p.add_argument("path", nargs="?", default="", metavar="PATH", help="level to freeze (root)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.yaml", help="output file")

    from .demo import add_arguments as add_demo_arguments

    add_demo_arguments(add("demo", cmd_demo))

    for p in commands.values():
        _global_options(p, suppress=True)
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    """The ``intake-cpg`` argument parser."""
    return _build()[0]


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """``{"": main parser, "ls": ..., ...}``: what the docs page is generated from."""
    parser, commands = _build()
    return {"": parser, **commands}


# =============================================================================================
# errors and main
# =============================================================================================
class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: Any) -> None:
    raise _Signalled(signum)


def _classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception."""
    if isinstance(exc, EtagMismatchError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, CPGError):
        return EXIT_ERROR, str(exc)
    modules = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    if modules & {"botocore", "aiohttp", "aiobotocore"}:
        return EXIT_ERROR, f"cannot reach the storage: {exc}"
    if isinstance(exc, OSError):
        return EXIT_ERROR, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
        # fsspec/botocore refusing an option: a --storage-option the backend does not take
        return EXIT_ERROR, f"a storage option was not accepted: {exc}"
    if isinstance(exc, (KeyError, ValueError)) and type(exc).__module__.startswith("intake"):
        return EXIT_ERROR, str(exc)
    return EXIT_INTERNAL, f"unexpected {type(exc).__name__}: {exc} (rerun with -v for details)"


def _setup_logging(args: argparse.Namespace, secrets: Sequence[str]) -> None:
    """-q: errors; default: warnings; -v: info; -vv: debug for intake_cpg only."""
    level = logging.ERROR if args.quiet else logging.WARNING
    if args.verbose:
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if args.verbose and args.verbose > 1:
        logging.getLogger("intake_cpg").setLevel(logging.DEBUG)
    if not args.verbose:
        logging.getLogger("distributed").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    for name, value in _GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    args.root_given = bool(args.root or os.environ.get(ROOT_ENV))
    args.root = args.root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    secrets = _secrets(args)
    _setup_logging(args, secrets)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if args.verbose:
            traceback.print_exc()
        sys.stderr.write(f"intake-cpg: interrupted ({signal.Signals(signum).name})\n")
        return 128 + int(signum)
    except Exception as exc:
        code, message = _classify(exc)
        if args.verbose:
            sys.stderr.write(scrub(traceback.format_exc(), secrets))
        sys.stderr.write(f"intake-cpg: error: {scrub(_one_line(message), secrets)}\n")
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
