"""The test bed itself: anonymous reads from the loopback S3 server, the 2-process cluster, ETags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs
from distributed import get_task_stream

from intake_cpg.demo import GALLERY_BUCKET, PART_SIZE, plate_profile
from intake_cpg.etag import compute_etag

SOURCE_4 = "cpg0016-jump/source_4/workspace/profiles/2021_04_26_Batch1"


@pytest.fixture(scope="module")
def anon(s3_options):
    return s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)


def test_anonymous_read_returns_what_the_demo_wrote(demo_s3, anon):
    assert demo_s3.root == "s3://cpg-demo"
    key = f"{SOURCE_4}/BR00117037/BR00117037.parquet"
    with anon.open(f"cpg-demo/{key}", "rb") as f:
        table = pq.read_table(f)
    assert table.equals(plate_profile("source_4", "BR00117037", seed=0))
    df = table.to_pandas()
    assert df.Metadata_Well.iloc[-1] == "P24"
    assert set(anon.ls(f"cpg-demo/{SOURCE_4}", detail=False)) == {
        f"cpg-demo/{SOURCE_4}/BR00117037",
        f"cpg-demo/{SOURCE_4}/BR00117038",
    }


def test_anonymous_client_sends_no_credentials(anon):
    assert anon.anon is True
    assert not any(
        k.startswith("AWS_ACCESS_KEY") or k == "AWS_SECRET_ACCESS_KEY" for k in os.environ
    )


def test_bucket_holds_the_same_bytes_as_a_local_build(demo_s3, demo_local, anon):
    differ = {demo_s3.manifest_key, *demo_s3.multipart_keys}  # built with large_object=True
    shared = sorted((set(demo_s3.keys) & set(demo_local.keys)) - differ)
    assert len(shared) > 50
    blobs = anon.cat([f"cpg-demo/{k}" for k in shared])
    for key in shared:
        assert blobs[f"cpg-demo/{key}"] == Path(demo_local.root, key).read_bytes(), key


def _read_on_worker(url: str, storage_options: dict) -> tuple[int, pd.DataFrame]:
    fs = s3fs.S3FileSystem(**storage_options)
    with fs.open(url, "rb") as f:
        return os.getpid(), pq.read_table(f).to_pandas()


def test_workers_read_the_bucket(demo_s3, s3_options, dask_client):
    urls = [f"s3://cpg-demo/{SOURCE_4}/{p}/{p}.parquet" for p in ("BR00117037", "BR00117038")]
    expected = pd.concat(
        [plate_profile("source_4", p).to_pandas() for p in ("BR00117037", "BR00117038")],
        ignore_index=True,
    )

    worker_pids = set(dask_client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    futures = dask_client.map(_read_on_worker, urls, storage_options=s3_options, pure=False)
    results = dask_client.gather(futures)
    assert {pid for pid, _ in results} <= worker_pids
    pd.testing.assert_frame_equal(pd.concat([r[1] for r in results], ignore_index=True), expected)

    ddf = dd.read_parquet(urls, storage_options=s3_options)
    with get_task_stream(dask_client) as stream:
        got = ddf.compute().reset_index(drop=True)
    assert {t["worker"] for t in stream.data}  # tasks ran on the cluster's workers
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got.Metadata_Plate.unique().tolist() == ["BR00117037", "BR00117038"]


def _manifest(anon, demo) -> list[dict]:
    return json.loads(anon.cat(f"cpg-demo/{demo.manifest_key}"))


def test_head_etag_equals_manifest_etag(demo_s3, anon):
    records = _manifest(anon, demo_s3)
    assert records and all(
        set(r) == {"subset", "url", "recipe_permalink", "config_permalink", "etag"} for r in records
    )
    prefix = f"https://{GALLERY_BUCKET}.s3.amazonaws.com/"
    kinds = set()
    for rec in records:
        assert rec["url"].startswith(prefix)
        key = rec["url"][len(prefix) :]
        head = anon.info(f"cpg-demo/{key}")
        assert head["ETag"].strip('"') == rec["etag"] == demo_s3.etags[key]
        kinds.add("multipart" if "-" in rec["etag"] else "single")
    assert kinds == {"multipart", "single"}


def test_multipart_object_has_five_mib_parts(demo_s3, anon):
    (key,) = demo_s3.multipart_keys
    data = anon.cat(f"cpg-demo/{key}")
    assert len(data) > PART_SIZE
    n_parts = -(-len(data) // PART_SIZE)
    etag = anon.info(f"cpg-demo/{key}")["ETag"].strip('"')
    assert etag == compute_etag(data, PART_SIZE) and etag.endswith(f"-{n_parts}")
    assert etag != compute_etag(data)
