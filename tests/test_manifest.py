"""Manifest parsing: every real shape in tests/data/manifests and the described ones not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intake_cpg.errors import ManifestError
from intake_cpg.manifest import ManifestRecord, parse_manifest, read_manifest, split_storage_url

DATA = Path(__file__).parent / "data" / "manifests"
BUCKET_URL = "https://cellpainting-gallery.s3.amazonaws.com/"
JUMP_SUBSETS = [
    "orf",
    "crispr",
    "compound",
    "orf_interpretable",
    "crispr_interpretable",
    "compound_interpretable",
    "all",
    "all_interpretable",
]


def _read(name: str) -> tuple[ManifestRecord, ...]:
    return read_manifest(str(DATA / name))


def test_json_list_current_jump_manifest():
    records = _read("jump-datasets_profile_index_v0.13.json")
    assert [r.subset for r in records] == JUMP_SUBSETS
    orf = records[0]
    assert orf.url == (
        BUCKET_URL + "cpg0016-jump-assembled/source_all/workspace/profiles_assembled/ORF/v1.0a/"
        "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony.parquet"
    )
    assert orf.bucket == "cellpainting-gallery"
    assert orf.key == orf.url[len(BUCKET_URL) :]
    assert orf.storage_url == "s3://cellpainting-gallery/" + orf.key
    assert orf.etag == "064759b3a850dc351b357116b3e7b32d"
    assert orf.recipe_ref == "a917fa79342ff92cf0ea05d6d9174d9028a90f8f"
    assert orf.config_permalink.endswith("/inputs/orf.json")
    # fields parsed from the URL through the gallery layout
    assert (orf.project, orf.source) == ("cpg0016-jump-assembled", "source_all")
    assert (orf.path_subset, orf.version) == ("ORF", "v1.0a")
    assert orf.variant == "profiles_wellpos_cc_var_mad_outlier_featselect_sphering_harmony"
    by_name = {r.subset: r for r in records}
    assert by_name["compound_interpretable"].etag == "67212e3cbdaa25de511f318cdd0503dc-3"
    assert by_name["all"].version == "v1.0b"


def test_json_list_older_paths_and_tag_permalink():
    old = _read("jump-datasets_profile_index_v0.10.0.json")
    assert [r.subset for r in old] == JUMP_SUBSETS
    assert old[0].etag == "c05a241135dcedda4e9cc639480b3f8e-44"
    assert old[0].project == "cpg0016-jump-assembled"
    chandra = _read("chandrasekaran-production_profile_index_list_2696b64.json")  # no final newline
    assert [r.subset for r in chandra] == [
        "compound_no_source7",
        "compound_no_source7_interpretable",
    ]
    assert chandra[0].recipe_ref == "v0.6.0"
    assert chandra[0].version == "v1.0"
    assert chandra[1].etag == "3ece1cc202c4a2190e84a95a2dd2d6b3-418"


def test_csv_with_etag_quoted():
    records = _read("jump-datasets_profile_index_v0.9.0.csv")
    assert [r.subset for r in records] == JUMP_SUBSETS
    assert records[2].etag == "1368a48ddbd4c44b1bfbc084591aaf10-338"
    assert records[2].recipe_permalink is None and records[2].recipe_ref is None
    chandra = _read("chandrasekaran-production_profile_index_49ad033.csv")  # no final newline
    assert [r.etag for r in chandra] == [
        "35cb79ad41b1a4eb9afeab0d90035dfa-330",
        "3ece1cc202c4a2190e84a95a2dd2d6b3-418",
    ]


def test_early_csv_with_comma_space_and_no_etag():
    records = _read("jump-datasets_profile_index_v0.6.0.csv")
    assert [r.subset for r in records] == JUMP_SUBSETS[:6]
    assert all(r.etag is None for r in records)
    assert records[0].url.startswith(BUCKET_URL)  # no leading space kept
    assert records[0].key.startswith("cpg0016-jump-assembled/")


def test_clue_tsv_file_list_with_md5():
    records = _read("lincs_clue_manifest_cell_painting_lincs_pilot_1.txt")
    assert len(records) == 410
    first = records[0]
    assert first.subset == "SQ00014812_augmented"
    assert first.etag == "68b09b6f20066ac825df4e24be831329"
    assert first.bucket is None and first.storage_url == first.url  # not a bucket URL
    assert first.url.startswith("https://media.githubusercontent.com/")


def test_unquoted_csv_and_wrapped_json_and_profile_url():
    csv_text = (
        "subset,url,etag\norf,s3://b/p/orf.parquet,\ncrispr,s3://b/p/crispr.parquet,abc" + "0" * 29
    )
    records = parse_manifest(csv_text, "plain.csv")
    assert [r.subset for r in records] == ["orf", "crispr"]
    assert records[0].etag is None and records[1].etag == "abc" + "0" * 29
    doc = {
        "datasets": [
            {"subset": "orf", "profile_url": BUCKET_URL + "k/orf.parquet", "etag": ""},
            {"subset": "crispr", "url": BUCKET_URL + "k/crispr.parquet", "etag": "F" * 32 + "-2"},
        ]
    }
    records = parse_manifest(json.dumps(doc), "wrapped.json")
    assert records[0].url == BUCKET_URL + "k/orf.parquet" and records[0].etag is None
    assert records[1].etag == "f" * 32 + "-2"  # normalised to lower case
    assert records[0].resolve() == "s3://cellpainting-gallery/k/orf.parquet"


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            '[{"subset": "a", "url": "s3://b/x"}, {"subset": "a", "url": "s3://b/y"}]',
            "record 1 (subset 'a'): duplicate subset name, also record 0",
        ),
        (
            '[{"subset": "a", "url": "s3://b/x"}, {"subset": "b", "etag": ""}]',
            "record 1 (subset 'b'): no URL",
        ),
        (
            '[{"subset": "a", "url": "s3://b/x"}, {"subset": "b", "url": ""}]',
            "record 1 (subset 'b'): no URL",
        ),
        ('[{"subset": "a", "url": "s3://b/x", "etag": "nope"}]', "'nope' is not an S3 ETag"),
        ('[{"subset": "a", "url": "s3://b/x", "profile_url": "s3://b/y"}]', "conflicting values"),
        ('[{"subset": "a", "url": "s3://b/x"}, {"url": "s3://b/y"}]', "record 1: no subset name"),
        ('{"records": []}', "under 'datasets'"),
        ('{"datasets": [1', "not valid JSON"),
        ("", "the manifest is empty"),
        ("<html><body>not found</body></html>", "unrecognised manifest header"),
        ("subset,url\na,s3://b/x,extra,more", "record 0 (subset 'a'): 4 fields for 2 columns"),
        ('["s3://b/x"]', "record 0: expected an object"),
    ],
)
def test_bad_manifests_name_file_and_record(text, needle):
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, "bad-index.json")
    assert str(err.value).startswith("bad-index.json")
    assert needle in str(err.value)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ManifestError, match="no manifest at"):
        read_manifest(str(tmp_path / "absent.json"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="garbage.bin"):
        read_manifest(str(garbage))


def test_url_mapping_and_roots():
    url = BUCKET_URL + "a/b.parquet"
    assert split_storage_url(url) == (
        "cellpainting-gallery",
        "a/b.parquet",
        "s3://cellpainting-gallery/a/b.parquet",
    )
    assert split_storage_url("s3://bkt/a/b.parquet")[:2] == ("bkt", "a/b.parquet")
    (rec,) = parse_manifest(json.dumps([{"subset": "x", "url": url}]), "m.json")
    assert rec.resolve("/mirror") == "/mirror/a/b.parquet"
    assert rec.resolve("/mirror/") == "/mirror/a/b.parquet"
    assert rec.resolve("s3://other-bucket/prefix") == "s3://other-bucket/prefix/a/b.parquet"
    assert rec.storage_root() == "s3://cellpainting-gallery"
    assert rec.storage_root("s3://other/p/") == "s3://other/p"
    with pytest.raises(ManifestError, match="names no object"):
        parse_manifest('[{"subset": "x", "url": "s3://bucket-only"}]', "m.json")


def test_read_manifest_from_s3_and_https_bucket_url(s3_admin, make_bucket, s3_options):
    bucket = make_bucket()
    body = (DATA / "jump-datasets_profile_index_v0.13.json").read_bytes()
    s3_admin.pipe(f"{bucket}/manifests/profile_index.json", body)
    records = read_manifest(f"{bucket}/manifests/profile_index.json", s3_options)
    assert [r.subset for r in records] == JUMP_SUBSETS
    # the https bucket form of the same object is read through S3
    name = bucket[len("s3://") :]
    https = f"https://{name}.s3.amazonaws.com/manifests/profile_index.json"
    assert read_manifest(https, s3_options) == records
