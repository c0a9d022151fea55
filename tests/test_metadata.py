"""JUMP metadata: pinned files fetched once over HTTP(S) from loopback, verified, reused offline."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import replace

import pandas as pd
import pytest
from jump_fixtures import REAL_TABLES, build_release_tree, demo_jump_plates, metadata_folder
from loopback_http import LoopbackHTTP

from intake_cpg.errors import (
    ChecksumError,
    MetadataUnavailableError,
    ParameterError,
    ProductNotFoundError,
)
from intake_cpg.metadata import JumpMetadata, default_release, read_pin_table
from intake_cpg.metadata.pins import git_blob_id
from intake_cpg.metadata.synthetic import packaged_file
from intake_cpg.readers import STRING_DTYPE

ISSUE_TABLES = (
    "plate",
    "well",
    "compound",
    "orf",
    "crispr",
    "perturbation_control",
    "microscope_config",
    "microscope_filter",
    "cellprofiler_version",
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, demo_local):
    root = tmp_path_factory.mktemp("raw-host")
    release = build_release_tree(root, demo_jump_plates(demo_local))
    return root, release


@pytest.fixture
def served(tree):
    root, release = tree
    with LoopbackHTTP(root) as server:
        yield server, release.with_raw_base(server.url)


def _url_path(release, table: str) -> str:
    return f"/{release.repository}/{release.commit}/metadata/{release.pin(table).file}"


# ------------------------------------------------------------------------------ the pin table


def test_pin_table_names_every_table_of_the_issue_at_a_named_release():
    release = default_release()
    assert set(ISSUE_TABLES) <= set(release.tables)
    assert release.name == "v0.13" and len(release.commit) == 40
    assert release.pin("well").check == "git-blob" and release.pin("compound").check == "git-blob"
    assert {release.pin(t).check for t in release.tables if t not in ("well", "compound")} == {
        "sha256"
    }


@pytest.mark.parametrize("table", REAL_TABLES)
def test_packaged_pins_match_the_real_files(table):
    """sha256, git blob id and size in the pin table are those of the real v0.13 files."""
    pin = default_release().pin(table)
    data = packaged_file(table)
    assert (pin.sha256, pin.git_blob, pin.size) == (
        hashlib.sha256(data).hexdigest(),
        git_blob_id(data),
        len(data),
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ("v1,o/r,{c},plate,plate.csv.gz,1,,", "neither a sha256 nor a git blob id"),
        ("v1,o/r,{c},plate,../plate.csv.gz,1,,{b}", "not a plain name"),
        ("v1,o/r,{c},plate,plate.csv.gz,1,abc,", "not a hex digest"),
        ("v1,o/r,nothex,plate,plate.csv.gz,1,,{b}", "not a 40-hex git commit"),
    ],
)
def test_bad_pin_tables_are_refused(row, message):
    head = "release,repository,commit,table,file,size,sha256,git_blob\n"
    text = head + row.format(c="a" * 40, b="b" * 40) + "\n"
    with pytest.raises(ParameterError, match=message):
        read_pin_table(text)


def test_unknown_table_names_the_tables(tmp_path):
    with pytest.raises(ProductNotFoundError, match="did you mean 'plate'"):
        JumpMetadata(cache_dir=tmp_path).path("plates")


# ------------------------------------------------------------------------------ fetch and cache


def test_fetched_once_then_offline(served, tmp_path):
    server, release = served
    store = JumpMetadata(release=release, cache_dir=tmp_path)
    first = {t: store.read(t) for t in ISSUE_TABLES}
    assert all(server.gets[_url_path(release, t)] == 1 for t in ISSUE_TABLES)
    # a second store in the same cache makes no request
    again = JumpMetadata(release=release, cache_dir=tmp_path)
    for t in ISSUE_TABLES:
        pd.testing.assert_frame_equal(again.read(t), first[t])
    assert sum(server.gets.values()) == len(ISSUE_TABLES)
    server.stop()  # offline
    offline = JumpMetadata(release=release, cache_dir=tmp_path)
    for t in ISSUE_TABLES:
        pd.testing.assert_frame_equal(offline.read(t), first[t])
    # the cached bytes are the served bytes
    served_dir = metadata_folder(release, server.folder)
    for t in ISSUE_TABLES:
        name = release.pin(t).file
        assert offline.cached_path(t).read_bytes() == (served_dir / name).read_bytes()


def test_offline_without_cache_says_what_to_do(served, tmp_path):
    server, release = served
    server.stop()
    with pytest.raises(MetadataUnavailableError) as err:
        JumpMetadata(release=release, cache_dir=tmp_path).path("plate")
    text = str(err.value)
    assert "plate.csv.gz" in text and "v0.13" in text and "metadata_root" in text


@pytest.mark.parametrize("table", ["plate", "well"])  # a sha256 pin and a git-blob pin
def test_tampered_cached_file_is_caught(served, tmp_path, caplog, table):
    server, release = served
    JumpMetadata(release=release, cache_dir=tmp_path).path(table)
    cached = JumpMetadata(release=release, cache_dir=tmp_path).cached_path(table)
    good = cached.read_bytes()
    cached.write_bytes(good[:-10] + b"0123456789")  # same size, other bytes
    with caplog.at_level(logging.WARNING, logger="intake_cpg.metadata"):
        path = JumpMetadata(release=release, cache_dir=tmp_path).path(table)
    assert "does not match its pin" in caplog.text and release.pin(table).file in caplog.text
    assert path.read_bytes() == good and server.gets[_url_path(release, table)] == 2
    # offline, a tampered copy is refused, never used
    cached.write_bytes(good + b"x")
    server.stop()
    with pytest.raises(MetadataUnavailableError, match=release.pin(table).file):
        JumpMetadata(release=release, cache_dir=tmp_path).path(table)
    assert not cached.exists()


@pytest.mark.parametrize("table, digest", [("crispr", "sha256"), ("well", "git_blob")])
def test_served_file_that_differs_from_the_pin_is_refused_and_not_cached(
    served, tmp_path, table, digest
):
    server, release = served
    pins = dict(release.pins)
    pins[table] = replace(pins[table], **{digest: "0" * (64 if digest == "sha256" else 40)})
    wrong = replace(release, pins=pins)
    store = JumpMetadata(release=wrong, cache_dir=tmp_path)
    with pytest.raises(ChecksumError) as err:
        store.path(table)
    assert f"{table}.csv.gz" in str(err.value) and "v0.13" in str(err.value)
    assert not store.cached_path(table).exists()
    assert not list(store.cached_path(table).parent.glob(".fetch-*"))  # no partial files


# ------------------------------------------------------------------------------ mirrors


@pytest.fixture
def mirror(tree, tmp_path):
    root, release = tree
    folder = tmp_path / "mirror" / "metadata"
    shutil.copytree(metadata_folder(release, root), folder)
    return folder, release


def test_local_mirror_is_verified_in_place(mirror, tmp_path):
    folder, release = mirror
    store = JumpMetadata(folder, release=release, cache_dir=tmp_path / "cache")
    assert store.path("orf") == folder / "orf.csv.gz"
    assert len(store.read("well")) > 0
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_mirror_with_wrong_checksum_is_refused_unless_verify_false(mirror, caplog, tmp_path):
    folder, release = mirror
    plate = pd.read_csv(folder / "plate.csv.gz", dtype=str)
    plate.iloc[:5].to_csv(folder / "plate.csv.gz", index=False)  # another plate list
    with pytest.raises(ChecksumError) as err:
        JumpMetadata(folder, release=release, cache_dir=tmp_path).read("plate")
    text = str(err.value)
    assert "plate.csv.gz" in text and "v0.13" in text and "metadata_verify=False" in text
    with caplog.at_level(logging.WARNING, logger="intake_cpg.metadata"):
        got = JumpMetadata(folder, verify=False, release=release, cache_dir=tmp_path).read("plate")
    assert len(got) == 5
    assert "metadata_verify=False" in caplog.text and "plate.csv.gz" in caplog.text


def test_http_mirror_is_verified_and_cached_under_the_commit(mirror, tmp_path):
    folder, release = mirror
    with LoopbackHTTP(folder.parent) as server:
        url = f"{server.url}/metadata"
        store = JumpMetadata(url, release=release, cache_dir=tmp_path)
        assert store.read("crispr").equals(JumpMetadata(folder, release=release).read("crispr"))
        assert server.gets["/metadata/crispr.csv.gz"] == 1
        assert store.cached_path("crispr").is_file()
        (folder / "microscope_config.csv").write_text("Metadata_Source\nsource_1\n")
        with pytest.raises(ChecksumError, match="microscope_config.csv"):
            JumpMetadata(url, release=release, cache_dir=tmp_path).path("microscope_config")
        assert not store.cached_path("microscope_config").exists()
        # unverified: used, never cached, fetched again by each store
        for _ in range(2):
            got = JumpMetadata(url, verify=False, release=release, cache_dir=tmp_path)
            assert got.read("microscope_config").Metadata_Source.tolist() == ["source_1"]
        assert server.gets["/metadata/microscope_config.csv"] == 3
        assert not store.cached_path("microscope_config").exists()


def test_missing_file_in_a_mirror_names_file_release_and_fix(mirror, tmp_path):
    folder, release = mirror
    (folder / "compound.csv.gz").unlink()
    with pytest.raises(MetadataUnavailableError) as err:
        JumpMetadata(folder, release=release, cache_dir=tmp_path).read("compound")
    text = str(err.value)
    assert "compound.csv.gz" in text and "v0.13" in text and str(folder) in text
    assert "Add compound.csv.gz to the mirror" in text
    with LoopbackHTTP(folder.parent) as server:
        store = JumpMetadata(f"{server.url}/metadata", release=release, cache_dir=tmp_path)
        with pytest.raises(MetadataUnavailableError, match="compound.csv.gz .*404"):
            store.path("compound")


@pytest.mark.parametrize(
    "root, error",
    [("s3://bucket/metadata", ParameterError), ("/no/such/folder", MetadataUnavailableError)],
)
def test_bad_metadata_root(root, error):
    with pytest.raises(error, match="metadata"):
        JumpMetadata(root)


# ------------------------------------------------------------------------------ strings


def test_every_column_is_a_string_and_only_empty_fields_are_missing(mirror):
    folder, release = mirror
    store = JumpMetadata(folder, release=release)
    for table in ISSUE_TABLES:
        df = store.read(table)
        assert all(dt == STRING_DTYPE for dt in df.dtypes), table
    plate = store.read("plate")
    assert "1053601756" in set(plate.Metadata_Plate)
    orf = store.read("orf")
    assert orf.set_index("Metadata_JCP2022").loc["JCP2022_900002", "Metadata_NCBI_Gene_ID"] == "9"
    crispr = store.read("crispr")
    row = crispr.set_index("Metadata_JCP2022").loc["JCP2022_800001"]
    assert pd.isna(row.Metadata_NCBI_Gene_ID) and row.Metadata_Symbol == "no-guide"
    mc = store.read("microscope_config").set_index("Metadata_Source")
    assert mc.loc["source_1", "Metadata_Objective_NA"] == "1.0"
    # the same counts as pandas reading the raw file as text
    raw = pd.read_csv(folder / "orf.csv.gz", dtype=str, keep_default_na=False)
    assert len(raw) == len(orf) and (raw == "").sum().sum() == orf.isna().sum().sum()


# ------------------------------------------------------------------------------ intake faces


def test_metadata_catalog_has_one_entry_per_table(mirror, tmp_path):
    import intake

    from intake_cpg.metadata.pins import write_pin_table
    from intake_cpg.metadata.source import MetadataCatalog

    folder, release = mirror
    pins = tmp_path / "pins.csv"
    pins.write_text(write_pin_table(release))
    cat = MetadataCatalog(metadata_root=str(folder), metadata_release=str(pins))
    assert sorted(cat) == sorted(release.tables) and set(ISSUE_TABLES) <= set(cat)
    src = cat["well"]
    assert src.metadata["release"] == "v0.13" and src.metadata["check"] == "git-blob"
    assert src.metadata["commit"] == release.commit
    store = JumpMetadata(folder, release=release)
    pd.testing.assert_frame_equal(src.read(), store.read("well"))
    pd.testing.assert_frame_equal(cat["orf"].to_dask().compute(), store.read("orf"))
    # the same catalog from YAML, parameters as plain values
    yaml = tmp_path / "meta.yaml"
    yaml.write_text(
        "sources:\n  jump_metadata:\n    driver: intake_cpg.metadata.source.MetadataCatalog\n"
        f"    args:\n      metadata_root: {folder}\n      metadata_release: {pins}\n"
    )
    opened = intake.open_catalog(str(yaml)).jump_metadata()
    assert opened["plate"].read().Metadata_Plate.dtype == STRING_DTYPE
    # the packaged pins refuse the built well table of this mirror
    with pytest.raises(ChecksumError, match="well.csv.gz"):
        MetadataCatalog(metadata_root=str(folder))["well"].read()
