"""Bad input: broken files, fuzzed keys and manifests, absurd parameters.

Each gives a documented ``CPGError`` subclass that names the input; nothing crashes with an
unrelated exception. Files are read from a local gallery copy and from the loopback S3 server.
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake_cpg import layout, readers
from intake_cpg.errors import (
    CPGError,
    DataReadError,
    GalleryPathError,
    ManifestError,
    ParameterError,
    ProductNotFoundError,
)
from intake_cpg.gallery_source import GallerySource
from intake_cpg.manifest import parse_manifest
from intake_cpg.sources import ProfilesSource

DATA = Path(__file__).parent / "data" / "sources"
BR37 = DATA / "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037"
PARQUET = (BR37 / "BR00117037.parquet").read_bytes()
CSV_GZ = gzip.compress(pd.read_parquet(BR37 / "BR00117037.parquet").to_csv(index=False).encode())


def _broken() -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes) of every broken file tried."""
    pq_tail = PARQUET[-8:]
    return {
        "parquet empty": ("P.parquet", b""),
        "parquet truncated to half": ("P.parquet", PARQUET[: len(PARQUET) // 2]),
        "parquet without its last byte": ("P.parquet", PARQUET[:-1]),
        "parquet with a corrupt footer length": (
            "P.parquet",
            PARQUET[:-8] + b"\xff\xff\xff\x7f" + pq_tail[4:],
        ),
        "parquet with its footer zeroed": (
            "P.parquet",
            PARQUET[:-2000] + b"\x00" * 1992 + pq_tail,
        ),
        "parquet with its magic only": ("P.parquet", b"PAR1PAR1"),
        "parquet that is a csv": ("P.parquet", b"a,b\n1,2\n"),
        "parquet that is gzip": ("P.parquet", CSV_GZ),
        "csv.gz empty": ("P.csv.gz", b""),
        "csv.gz truncated to half": ("P.csv.gz", CSV_GZ[: len(CSV_GZ) // 2]),
        "csv.gz with a bad crc": ("P.csv.gz", CSV_GZ[:-8] + b"\0\0\0\0" + CSV_GZ[-4:]),
        "csv.gz that is not gzip": ("P.csv.gz", b"Metadata_Well,x\nA01,1\n"),
        "csv.gz that is parquet": ("P.csv.gz", PARQUET),
        "csv.gz of an empty text": ("P.csv.gz", gzip.compress(b"")),
        "csv.gz of binary junk": ("P.csv.gz", gzip.compress(bytes(range(256)) * 50)),
        "csv that is parquet": ("P.csv", PARQUET),
        "csv empty": ("P.csv", b""),
    }


BROKEN = _broken()


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_local_files_raise_data_read_error_naming_the_file(tmp_path, case):
    name, blob = BROKEN[case]
    path = tmp_path / name
    path.write_bytes(blob)
    for call in (
        lambda: readers.read_schema(str(path)),
        lambda: readers.read_file(str(path), None),
        lambda: ProfilesSource(str(path)).read(),
    ):
        with pytest.raises(CPGError) as err:
            call()
        assert isinstance(err.value, DataReadError), (case, err.value)
        assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "case", ["parquet truncated to half", "csv.gz truncated to half", "parquet that is a csv"]
)
def test_broken_objects_on_s3_raise_data_read_error(s3_admin, make_bucket, s3_options, case):
    bucket = make_bucket()
    name, blob = BROKEN[case]
    url = f"{bucket}/{name}"
    s3_admin.pipe(url, blob)
    with pytest.raises(DataReadError, match=name.replace(".", r"\.")):
        readers.read_file(url, None, s3_options)


@pytest.mark.parametrize(
    ("name", "error"),
    [("P.npz", ParameterError), ("P", ParameterError), ("P.parquet.bak", ParameterError)],
)
def test_wrong_extensions_are_refused_naming_the_file(tmp_path, name, error):
    (tmp_path / name).write_bytes(PARQUET)
    with pytest.raises(error, match=name.replace(".", r"\.")):
        readers.read_file(str(tmp_path / name), None)
    df, _ = readers.read_file(str(tmp_path / name), None, format="parquet")  # the way out
    assert len(df) == len(pd.read_parquet(BR37 / "BR00117037.parquet"))


def test_broken_plate_in_a_gallery_fails_naming_it(demo_local, tmp_path):
    root = tmp_path / "g"
    shutil.copytree(demo_local.root, root)
    key = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1/BR00117037/BR00117037.parquet"
    (root / key).write_bytes(PARQUET[:1000])
    src = GallerySource(
        str(root), "cpg0016-jump", "source_4", batch="2021_04_26_Batch1", plate="BR00117037"
    )
    with pytest.raises(DataReadError, match="BR00117037.parquet"):
        src.read()


# -- fuzzing ------------------------------------------------------------------------------------
_segments = st.one_of(
    st.sampled_from(
        ["cpg0016-jump", "source_4", "workspace", "profiles", "..", ".", "", "images", "%2e%2e"]
    ),
    st.text(min_size=0, max_size=12),
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(_segments, max_size=10).map("/".join), st.booleans())
def test_parse_key_fuzzed(key, strict):
    try:
        gp = layout.parse_key(key, strict=strict)
    except GalleryPathError as exc:
        assert strict
        shown = key.lstrip("/")  # named as written, or as repr() escapes it (both quotes)
        assert shown[:30] in str(exc) or repr(shown)[1:-1][:30] in str(exc)
    else:
        assert gp.product in (*layout.PRODUCTS, "other")


@FUZZ
@given(st.text(max_size=40), st.sampled_from(["plate", "batch", "source"]), st.booleans())
def test_validate_name_fuzzed(value, field, glob):
    try:
        out = layout.validate_name(value, field, allow_glob=glob)
    except ParameterError as exc:
        assert field in str(exc)
    else:
        assert out == value
        assert "/" not in value and "\\" not in value and ".." not in value
        assert "\x00" not in value and "{{" not in value


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_record = st.fixed_dictionaries(
    {},
    optional={
        "subset": st.text(max_size=10),
        "url": st.sampled_from(
            [
                "s3://cellpainting-gallery/cpg0016-jump/source_4/workspace/profiles/B/P/P.parquet",
                "https://cellpainting-gallery.s3.amazonaws.com/x.parquet",
                "../../etc/passwd",
                "",
            ]
        )
        | st.text(max_size=20),
        "etag": st.text(max_size=36) | st.none() | st.integers(),
        "recipe_permalink": st.text(max_size=20),
    },
)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        _json_values.map(lambda v: __import__("json").dumps(v)),
        st.lists(_record, max_size=4).map(lambda v: __import__("json").dumps(v)),
        st.lists(st.lists(st.text(max_size=10), max_size=4), max_size=4).map(
            lambda rows: "\n".join(",".join(r) for r in rows)
        ),
    )
)
def test_parse_manifest_fuzzed(text):
    try:
        records = parse_manifest(text, name="fuzz.json")
    except ManifestError as exc:
        assert "fuzz.json" in str(exc)
    else:
        for rec in records:
            assert isinstance(rec.url, str) and rec.url


# -- absurd parameters ----------------------------------------------------------------------------
ABSURD: list[tuple[str, Any]] = [
    ("plate", "x" * 100_000),
    ("plate", "BR" + "\u0301" * 50),
    ("plate", "\U0001f9ea"),
    ("plate", "ＢＲ００１１７０３７"),
    ("plate", 3),
    ("plate", 3.5),
    ("plate", ["BR00117037"]),
    ("plate", b"BR00117037"),
    ("batch", None),
    ("batch", {"a": 1}),
    ("source", "source_4" * 10_000),
    ("project", ""),
]


@pytest.mark.parametrize(("field", "value"), ABSURD, ids=lambda v: repr(v)[:20])
def test_absurd_parameters_give_a_cpg_error(demo_local, field, value):
    kwargs: dict[str, Any] = {"project": "cpg0016-jump", "source": "source_4", field: value}
    try:
        src = GallerySource(demo_local.root, **kwargs)
        src.read()
    except CPGError as exc:
        assert isinstance(exc, ParameterError | ProductNotFoundError), exc
        assert len(str(exc)) < 2_000 and field in str(exc)
    else:
        assert value is None  # None means the default ('*')


@pytest.mark.parametrize(
    "kwargs",
    [
        {"columns": "Metadata_Well"},
        {"columns": [1, 2]},
        {"columns": ["NoSuchColumn"]},
        {"filters": "Metadata_Well == A01"},
        {"filters": [("Metadata_Well", "~=", "A01")]},
        {"files_per_partition": 0},
        {"files_per_partition": -1},
        {"schema": "loose"},
        {"format": "xlsx"},
        {"engine": "fastparquet"},
    ],
    ids=repr,
)
def test_absurd_reader_options(kwargs):
    with pytest.raises(ParameterError):
        ProfilesSource(str(BR37 / "BR00117037.parquet"), **kwargs).read()


def test_io_bytes_are_not_urls():
    with pytest.raises(ParameterError):
        ProfilesSource(io.BytesIO(PARQUET))  # type: ignore[arg-type]
