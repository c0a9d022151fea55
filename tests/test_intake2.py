"""Intake 2 readers and catalogs over the loopback S3 server: outputs, parameters, YAML, cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import intake
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from intake.readers.entry import Catalog

from intake_cpg import intake2, storage
from intake_cpg.errors import EtagMismatchError, ParameterError, ProductNotFoundError
from intake_cpg.readers import STRING_DTYPE

REPO = Path(__file__).resolve().parents[1]
ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PLATE = "BR00117037"
ASSEMBLED = ("cpg0016-jump-assembled", "source_all", "profiles_assembled")
OUTPUTS = ("pandas", "dask", "polars", "polars_lazy", "arrow")


@pytest.fixture
def fresh(monkeypatch):
    """A process-wide storage registry of this test's own, so request counts start at zero."""
    monkeypatch.setattr(storage, "_SHARED", {})


@pytest.fixture
def cat(demo_s3, s3_options, fresh):
    """The demo gallery in the loopback S3 server, through the v1 API."""
    return intake.open_cpg(ROOT, storage_options=s3_options)


def _requests() -> int:
    return sum(sum(st.requests.values()) for st in storage._SHARED.values())


def _as_pandas(out: Any) -> pd.DataFrame:
    """Any output as pandas, strings as the project's string dtype (for comparing values)."""
    if isinstance(out, pl.LazyFrame):
        out = out.collect()
    if isinstance(out, pl.DataFrame):
        out = out.to_arrow()
    if isinstance(out, pa.Table):
        strings = {pa.string(): STRING_DTYPE, pa.large_string(): STRING_DTYPE}
        if hasattr(pa, "string_view"):
            strings[pa.string_view()] = STRING_DTYPE
        return out.to_pandas(types_mapper=strings.get)
    if hasattr(out, "compute"):
        return out.compute()
    return out


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, dtypes and values; list-typed columns compared element by element."""
    got = got.reset_index(drop=True)
    want = want.reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    lists = [c for c in want.columns if want[c].dtype == object]
    pd.testing.assert_frame_equal(got.drop(columns=lists), want.drop(columns=lists))
    for c in lists:
        assert len(got[c]) == len(want[c])
        for a, b in zip(got[c], want[c], strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert np.asarray(a).dtype == np.asarray(b).dtype


def _assert_native_types(out: Any, want: pd.DataFrame) -> None:
    """Arrow and polars keep the project's dtype rules in their own type systems."""
    if isinstance(out, pl.LazyFrame):
        out = out.collect()
    if isinstance(out, pl.DataFrame):
        schema = out.schema
        for c in want.columns:
            if want[c].dtype == STRING_DTYPE:
                assert schema[c] == pl.String, c
            elif want[c].dtype == object:
                assert isinstance(schema[c], pl.List), c
            elif want[c].dtype == np.float32:
                assert schema[c] == pl.Float32, c
    if isinstance(out, pa.Table):
        for c in want.columns:
            t = out.schema.field(c).type
            if want[c].dtype == STRING_DTYPE:
                assert pa.types.is_string(t) or pa.types.is_large_string(t), c
            elif want[c].dtype == object:
                assert pa.types.is_list(t) or pa.types.is_large_list(t), c
            elif want[c].dtype == np.float32:
                assert t == pa.float32(), c


# -- one per-plate, one deep-learning and one assembled entry, through every output -------------
@pytest.mark.parametrize(
    ("path", "params", "v1_params"),
    [
        (("cpg0016-jump", "source_4"), {"batch": BATCH, "plate": PLATE}, None),
        (("cpg0016-jump", "source_4"), {"batch": BATCH}, "dl_profiles"),
        (ASSEMBLED[:2], {}, "assembled"),
    ],
    ids=["per-plate", "dl-embeddings", "assembled"],
)
def test_every_output_has_the_v1_values_and_dtypes(cat, path, params, v1_params):
    level = cat[path[0]][path[1]]
    if v1_params == "assembled":
        level = level["profiles_assembled"]
        name = "ORF"
    else:
        name = v1_params or "profiles"
    v1 = level[name](**params).to_dask()
    want = v1.compute()
    assert len(want) > 0
    v2 = level.to_intake2()
    reader = v2(**params)[name]
    assert reader.output_instance == "dask.dataframe:DataFrame"
    for output in OUTPUTS:
        other = reader.to_reader(output)
        assert other.output_instance == intake2.OUTPUTS[output].instance
        out = other.read()
        assert type(out).__name__ == intake2.OUTPUTS[output].instance.split(":")[1], output
        if output == "dask":
            assert dict(out.dtypes) == dict(v1.dtypes)
        _assert_native_types(out, want)
        _assert_same(_as_pandas(out), want)


def test_list_embeddings_stay_lists_and_metadata_strings(cat):
    reader = cat["cpg0016-jump"]["source_4"].to_intake2(output="polars")(batch=BATCH)["dl_profiles"]
    df = reader.read()
    assert isinstance(df.schema["all_emb"], pl.List)
    assert df.schema["plate"] == pl.String and df.schema["Metadata_Plate"] == pl.String


def test_all_digit_plates_stay_strings_in_every_output(cat):
    reader = cat["cpg0016-jump"]["source_2"].to_intake2()["profiles"]
    want = cat["cpg0016-jump"]["source_2"]["profiles"]().to_dask().compute()
    assert want["Metadata_Plate"].str.isdigit().all()
    for output in ("polars", "arrow"):
        got = _as_pandas(reader.to_reader(output).read())
        assert got["Metadata_Plate"].tolist() == want["Metadata_Plate"].tolist()


def test_lazy_frame_reads_only_what_the_query_needs(cat, monkeypatch):
    from intake_cpg import outputs

    seen: list[list[str]] = []
    real = outputs._prefetched

    def spy(reader, parts, ahead):
        seen.append(list(reader.columns))
        return real(reader, parts, ahead)

    monkeypatch.setattr(outputs, "_prefetched", spy)
    src = cat["cpg0016-jump"]["source_4"]["profiles"](batch=BATCH)
    lazy = src.to_polars(lazy=True)
    assert lazy.collect_schema()["Metadata_Plate"] == pl.String
    assert seen == []  # learning the schema read no partition
    query = lazy.filter(pl.col("Metadata_Well") == "A01").select("Metadata_Plate")
    assert "PROJECT 2/64 COLUMNS" in query.explain()
    got = query.collect()
    assert sorted(got["Metadata_Plate"].to_list()) == ["BR00117037", "BR00117038"]
    assert got.columns == ["Metadata_Plate"]
    assert sorted(seen[-1]) == ["Metadata_Plate", "Metadata_Well"]  # only those were read
    assert lazy.head(5).collect().height == 5


def test_v1_sources_hand_out_polars_and_arrow(cat):
    src = cat["cpg0016-jump"]["source_4"]["profiles"](batch=BATCH, plate=PLATE)
    want = src.to_dask().compute()
    _assert_same(_as_pandas(src.to_polars()), want)
    _assert_same(_as_pandas(src.to_arrow()), want)
    inner = src._loader()  # the ProfilesSource under it
    _assert_same(_as_pandas(inner.to_arrow()), want)


# -- parameters and validation ------------------------------------------------------------------
def test_parameters_carry_the_allowed_values(cat):
    v2 = cat["cpg0016-jump"]["source_4"].to_intake2()
    ups = v2.entries["profiles"].user_parameters
    assert set(ups) == {"batch", "plate", "variant"}
    assert ups["batch"].options == ["2021_04_26_Batch1", "2021_05_31_Batch2", "*"]
    assert ups["batch"].default == "*"
    asm = cat[ASSEMBLED[0]][ASSEMBLED[1]][ASSEMBLED[2]].to_intake2()
    orf = asm.entries["ORF"].user_parameters
    assert set(orf) == {"version", "variant", "verify"}
    assert "v1.0a" in orf["version"].options
    assert orf["verify"].default is False


def test_bad_values_are_refused_before_any_request(cat):
    v2 = cat["cpg0016-jump"]["source_4"].to_intake2()
    v2.entries["profiles"]  # resolve the entry's parameters first
    before = _requests()
    for bad in ("../../x", "/etc/passwd", "a/b"):
        with pytest.raises(ParameterError):
            v2(plate=bad)["profiles"]
        with pytest.raises(ParameterError):
            v2["profiles"](plate=bad)
    with pytest.raises(ParameterError, match="takes no parameter"):
        v2["profiles"](compartment="Cells")
    assert _requests() == before


def test_unknown_names_say_what_exists(cat):
    v2 = cat["cpg0016-jump"]["source_4"].to_intake2()
    with pytest.raises(ProductNotFoundError, match="did you mean '2021_04_26_Batch1'"):
        v2(batch="2021_04_26_Batch9")["profiles"]
    reader = v2["profiles"](batch=BATCH, plate="BR00000000")
    with pytest.raises(ProductNotFoundError, match="BR00117037"):
        reader.read()


def test_assembled_reads_are_pinned_to_the_manifest_etag(demo_s3, s3_options, fresh):
    manifest = f"{ROOT}/{demo_s3.manifest_key}"
    cat = intake.open_cpg(ROOT, storage_options=s3_options, manifests=[manifest])
    asm = cat[ASSEMBLED[0]][ASSEMBLED[1]][ASSEMBLED[2]]
    v2 = asm.to_intake2(output="arrow")
    data = next(d for d in v2.data.values() if d.kwargs.get("subset") == "COMPOUND")
    assert data.kwargs["etag"] == asm._get_entries()["COMPOUND"]._open_args["etag"] is not None
    assert v2(verify=True)["COMPOUND"].read().num_rows > 0  # the demo manifest's true ETag
    # through the whole v2 path from the root: the bundled JUMP manifest carries the real
    # bucket's ETag, which the demo cannot match
    storage._SHARED.clear()
    root = intake.open_cpg(ROOT, storage_options=s3_options).to_intake2(output="arrow")
    plain = root[ASSEMBLED[0]].read()[ASSEMBLED[1]].read()[ASSEMBLED[2]].read()
    with pytest.raises(EtagMismatchError, match="expected"):
        plain(verify=True)["COMPOUND"].read()
    assert plain["COMPOUND"].read().num_rows > 0  # verify=False loads it anyway


# -- catalogs: every level, YAML round trip without listing -------------------------------------
def test_every_level_converts(cat):
    root = cat.to_intake2()
    assert isinstance(root, Catalog)
    assert list(root) == list(cat)
    project = root["cpg0016-jump"].read()
    assert list(project) == list(cat["cpg0016-jump"])
    source = project["source_4"].read()
    assert sorted(source) == sorted(cat["cpg0016-jump"]["source_4"])
    assembled = root[ASSEMBLED[0]].read()[ASSEMBLED[1]].read()[ASSEMBLED[2]].read()
    assert sorted(assembled) == ["ALL", "COMPOUND", "CRISPR", "ORF"]


def test_search_finds_entries_that_still_read(cat):
    v2 = cat["cpg0016-jump"]["source_4"].to_intake2(output="pandas")
    found = v2.search("deep-learning")
    assert sorted(found) == ["dl_profiles", "embeddings"]
    df = found(batch=BATCH)["dl_profiles"].read()
    assert len(df) > 0 and "all_emb" in df.columns


def test_conversion_lists_one_level_and_resolves_tables_lazily(cat):
    src = cat["cpg0016-jump"]["source_4"]
    list(src)
    before = _requests()
    v2 = src.to_intake2()
    assert _requests() == before  # the level's own listing is reused; no table resolved yet
    v2.entries["profiles"]
    assert _requests() > before


@pytest.mark.parametrize("opener", ["from_yaml_file", "open_catalog"])
def test_yaml_round_trip_lists_nothing_on_reopen(cat, s3_options, tmp_path, opener):
    level = cat["cpg0016-jump"]["source_4"]
    v2 = level.to_intake2()
    path = str(tmp_path / "source_4.yaml")
    v2.to_yaml_file(path)
    want = level["profiles"](batch=BATCH, plate=PLATE).to_dask().compute()

    storage._SHARED.clear()
    back = getattr(intake, opener)(path)
    assert isinstance(back, Catalog)
    assert sorted(back) == sorted(v2)
    reader = back(batch=BATCH, plate=PLATE)["profiles"]
    ups = back.entries["profiles"].user_parameters
    assert ups["batch"].options == ["2021_04_26_Batch1", "2021_05_31_Batch2", "*"]
    assert _requests() == 0  # re-opening and building a reader listed nothing
    assert storage._SHARED == {}
    _assert_same(reader.read().compute(), want)
    with pytest.raises(ProductNotFoundError):  # the saved parameters still validate
        back(batch="2021_04_26_Batch9")["profiles"]


def test_yaml_never_holds_secrets(demo_s3, s3_options, tmp_path, fresh):
    options = {**s3_options, "secret": "s3cr3t-value", "key": "AKIAEXAMPLE"}
    options["anon"] = True
    level = intake.open_cpg(ROOT, storage_options=options)["cpg0016-jump"]["source_4"]
    path = tmp_path / "c.yaml"
    level.to_intake2().to_yaml_file(str(path))
    text = path.read_text()
    assert "s3cr3t-value" not in text and "AKIAEXAMPLE" not in text
    assert "endpoint_url" in text


def test_public_v2_catalog_is_current_and_opens_any_root(demo_s3, s3_options, fresh):
    path = REPO / "catalogs" / "cellpainting-gallery-v2.yaml"
    assert path.read_text() == intake2.public_catalog_yaml()
    cat = intake.open_catalog(str(path))
    assert list(cat) == ["gallery"]
    assert _requests() == 0
    gallery = cat(root=ROOT, storage_options=s3_options)["gallery"].read()
    assert list(gallery) == ["cpg0004-lincs", "cpg0016-jump", "cpg0016-jump-assembled"]
    public = cat["gallery"]
    assert public.data.url == "s3://cellpainting-gallery"


# -- registration: a fresh process finds the readers through the entry point --------------------
_FRESH = """
import json, sys
import intake
from intake.readers.utils import subclasses
loaded = "intake_cpg.intake2" in sys.modules
pandas_loaded = "pandas" in sys.modules
ours = [c for c in subclasses(intake.readers.BaseReader) if c.__module__ == "intake_cpg.intake2" and c.implements]
data = {t for c in ours for t in c.implements}
profiles = next(t for t in data if t.__name__ == "CPGProfiles")
outputs = sorted(intake.readers.readers.recommend(profiles)["importable"], key=lambda c: c.__name__)
kinds = [t.__name__ for t in intake.readers.datatypes.recommend(sys.argv[2], head=False)]
reader = profiles(sys.argv[1], project="cpg0016-jump", source="source_4").to_reader("pandas")
df = reader.read(batch="2021_04_26_Batch1", plate="BR00117037")
print(json.dumps({
    "loaded": loaded, "pandas": pandas_loaded, "n_readers": len(ours),
    "outputs": [c.output_instance for c in outputs], "kinds": kinds,
    "rows": len(df), "plate": df["Metadata_Plate"].unique().tolist(),
}))
"""


def test_a_fresh_process_finds_the_readers_through_the_entry_point(demo_local):
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, demo_local.root, "s3://cellpainting-gallery"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["loaded"] is True  # imported by `import intake`, through intake.imports
    assert got["pandas"] is False  # and cheaply: no pandas at import
    # the generated table readers, the gallery catalog reader and the reader of the entries
    # with their own v1 class (a project's plates table and JUMP metadata catalog)
    assert got["n_readers"] == len(intake2.ENTRIES) * len(intake2.OUTPUTS) + 2
    assert sorted(got["outputs"]) == sorted(o.instance for o in intake2.OUTPUTS.values())
    assert "CellPaintingGallery" in got["kinds"]
    assert got["rows"] == 384 and got["plate"] == ["BR00117037"]


def test_every_entry_row_has_a_data_type_and_one_reader_per_output():
    from intake_cpg.entries import ENTRY_TABLE

    rows = [r for r in ENTRY_TABLE.values() if r.output in ("table", "catalog") and not r.driver]
    assert [e.name for e in intake2.ENTRIES] == [r.name for r in rows]
    # rows with their own v1 class (a source's images table, a project's plates table, its
    # JUMP metadata catalog) are read through CPGSourceReader, which opens only intake-cpg's
    # classes
    assert [r.name for r in ENTRY_TABLE.values() if r.driver] == [
        "images",
        "project_plates",
        "project_metadata",
    ]
    with pytest.raises(ParameterError, match="intake-cpg's own"):
        intake2.CPGSource("os.system", {"command": "true"})
    for entry, row in zip(intake2.ENTRIES, rows, strict=True):
        names = tuple(p.name for p in row.params)
        if row.output == "catalog":  # the first parameter names the sub-entries: a data field
            assert entry.parameters == names[1:] and entry.fixed[0] == names[0]
        else:
            assert entry.parameters == names
        data = intake2.data_class(entry.name)
        for output, spec in intake2.OUTPUTS.items():
            cls = intake2.reader_class(entry.name, output)
            assert cls.implements == {data}
            assert cls.output_instance == spec.instance
            assert getattr(intake2, cls.__name__) is cls  # importable by its qname
    with pytest.raises(ProductNotFoundError, match="did you mean 'profiles'"):
        intake2.reader_class("profile")


# -- the cluster reads the dask output on its workers --------------------------------------------
def test_dask_output_is_read_on_the_workers(cat, dask_client):
    level = cat["cpg0016-jump"]["source_4"]
    want = level["profiles"](batch=BATCH).to_dask().compute()
    ddf = level.to_intake2()(batch=BATCH)["profiles"].read()
    tagged = ddf.map_partitions(lambda df: df.assign(_pid=os.getpid()))
    got = dask_client.compute(tagged).result()
    workers = set(dask_client.run(os.getpid).values())
    assert len(workers) == 2 and os.getpid() not in workers
    assert set(got["_pid"]) <= workers
    key = ["Metadata_Plate", "Metadata_Well"]
    _assert_same(
        got.drop(columns="_pid").sort_values(key).reset_index(drop=True),
        want.sort_values(key).reset_index(drop=True),
    )
