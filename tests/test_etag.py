"""S3 ETags: computed by hand, against a real multipart upload on the loopback S3 server."""

from __future__ import annotations

import hashlib
import io
import logging
import os

import pytest

from intake_cpg.errors import EtagMismatchError, ParameterError, StorageError
from intake_cpg.etag import (
    EtagHasher,
    MiB,
    check_object,
    compute_etag,
    etag_part_count,
    etag_part_size,
    verify_files,
    verify_object,
)
from intake_cpg.layout import parse_key
from intake_cpg.storage import Storage


def _by_hand(data: bytes, part: int) -> str:
    chunks = [data[i : i + part] for i in range(0, len(data), part)]
    joined = b"".join(hashlib.md5(c).digest() for c in chunks)
    return f"{hashlib.md5(joined).hexdigest()}-{len(chunks)}"


def test_single_part_is_plain_md5():
    assert compute_etag(b"hello") == "5d41402abc4b2a76b9719d911017c592"
    assert compute_etag(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    data = os.urandom(3000)
    assert compute_etag(data) == hashlib.md5(data).hexdigest()
    # a part size at least the size of the data is one part: plain md5 too
    assert compute_etag(data, part_size=3000) == hashlib.md5(data).hexdigest()
    assert compute_etag(data, part_size=10_000) == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size,part", [(10, 3), (12, 4), (1000, 7), (3 * MiB + 5, MiB)])
def test_multipart_matches_hand_computation(size, part):
    data = os.urandom(size)
    assert compute_etag(data, part_size=part) == _by_hand(data, part)
    # file objects are hashed in chunks with the same result
    assert compute_etag(io.BytesIO(data), part_size=part) == _by_hand(data, part)


def test_hasher_is_independent_of_chunking():
    data = os.urandom(10_001)
    h = EtagHasher(part_size=1000)
    for i in range(0, len(data), 333):
        h.update(data[i : i + 333])
    assert h.hexdigest() == _by_hand(data, 1000)


def test_bad_inputs():
    with pytest.raises(ValueError, match="part_size"):
        compute_etag(b"x", part_size=0)
    with pytest.raises(TypeError, match="bytes or a binary file"):
        compute_etag("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an S3 ETag"):
        etag_part_count("abc-2")


def test_part_size_inference():
    assert etag_part_count("0" * 32) == 1
    assert etag_part_count("0" * 32 + "-44") == 44
    # 8 MiB (aws cli default) is the first consistent common size for 3 parts of 20 MiB
    assert etag_part_size("0" * 32 + "-3", 20 * MiB) == [8 * MiB, 7 * MiB, 6990507]
    # every candidate really gives N parts
    size = 1_234_567_890
    for p in etag_part_size("0" * 32 + "-24", size):
        assert -(-size // p) == 24
    assert 50 * MiB in etag_part_size("0" * 32 + "-24", size)  # s3fs default
    assert etag_part_size("0" * 32, 100) == []


def test_real_multipart_upload_etag(s3_admin, make_bucket, s3_options):
    """The loopback S3 server's ETag of a 3-part upload equals ours, and deep checks find it."""
    bucket = make_bucket()
    data = os.urandom(11 * MiB)
    path = f"{bucket}/big/object.bin"
    with s3_admin.open(path, "wb", block_size=5 * MiB) as f:
        for start in range(0, len(data), 5 * MiB):  # part-size writes: s3fs sends 3 parts
            f.write(data[start : start + 5 * MiB])
    s3_admin.invalidate_cache()
    server = s3_admin.info(path)["ETag"].strip('"')
    assert server.endswith("-3")
    assert server == compute_etag(data, part_size=5 * MiB) == _by_hand(data, 5 * MiB)

    storage = Storage(bucket, s3_options)
    assert verify_object(storage, "big/object.bin", server) == server
    # deep: part size inferred from "-3" and the size, recomputed from the bytes
    assert verify_object(storage, "big/object.bin", server, deep=True) == server
    assert storage.requests["open"] == 1


def test_verify_object_local(tmp_path):
    (tmp_path / "a").mkdir()
    data = os.urandom(17 * MiB)
    (tmp_path / "a" / "x.bin").write_bytes(data)
    good = compute_etag(data, part_size=8 * MiB)  # aws cli default: "-3"
    assert good.endswith("-3")
    assert verify_object(str(tmp_path), "a/x.bin", good, deep=True) == good
    # an uploader part size that no rule predicts cannot be inferred: reported, not hidden
    odd = compute_etag(data, part_size=6 * MiB + 1)
    assert (
        odd.endswith("-3")
        and check_object(str(tmp_path), "a/x.bin", odd, deep=True).status == "mismatch"
    )
    with pytest.raises(EtagMismatchError) as err:
        verify_object(str(tmp_path), "a/x.bin", "0" * 32, deep=True, subset="demo")
    msg = str(err.value)
    assert "'demo'" in msg and "a/x.bin" in msg and "0" * 32 in msg
    assert hashlib.md5(data).hexdigest() in msg
    # without deep, a local file has no ETag to compare: a clear error, not a pass
    res = check_object(str(tmp_path), "a/x.bin", good)
    assert res.status == "error" and "deep=True" in res.message
    assert check_object(str(tmp_path), "a/missing.bin", good).status == "missing"
    with pytest.raises(StorageError, match="missing.bin"):
        verify_object(str(tmp_path), "a/missing.bin", good)


def test_bad_inputs_are_cpg_errors_naming_the_input(tmp_path):
    with pytest.raises(ParameterError, match="part_size=-5"):
        EtagHasher(part_size=-5)
    with pytest.raises(ParameterError, match="'abc-2'"):
        etag_part_count("abc-2")
    with pytest.raises(ParameterError, match="no expected ETag given for .*x.bin"):
        (tmp_path / "x.bin").write_bytes(b"x")
        verify_object(str(tmp_path), "x.bin", "")


# -- one verify policy ------------------------------------------------------------------------------
def test_verify_files_checks_one_file_and_warns_otherwise(tmp_path, caplog):
    (tmp_path / "a.bin").write_bytes(b"hello")
    (tmp_path / "b.bin").write_bytes(b"world")
    good = compute_etag(b"hello")
    assert verify_files(str(tmp_path), ["a.bin"], good, deep=True) == good
    with pytest.raises(EtagMismatchError, match="'orf'"):
        verify_files(str(tmp_path), ["a.bin"], "0" * 32, deep=True, subset="orf")
    caplog.set_level(logging.WARNING, logger="intake_cpg.etag")
    assert verify_files(str(tmp_path), ["a.bin"], None, subset="orf") is None
    assert "subset 'orf': no ETag recorded" in caplog.text and "a.bin not verified" in caplog.text
    caplog.clear()
    assert verify_files(str(tmp_path), ["a.bin", "b.bin"], good) is None
    assert "one ETag cannot verify 2 files" in caplog.text and "b.bin" in caplog.text


def test_gallery_and_manifest_entries_share_the_policy(demo_local, caplog, tmp_path):
    from intake_cpg.gallery_source import GallerySource
    from intake_cpg.manifest_catalog import ManifestProfilesSource

    caplog.set_level(logging.WARNING, logger="intake_cpg.etag")
    where = {"project": "cpg0016-jump", "source": "source_4", "batch": "2021_04_26_Batch1"}
    batch = GallerySource(demo_local.root, **where, verify=True, etag="0" * 32)
    assert len(batch.file_keys()) == 2 and len(batch.read()) == 2 * 384  # loads unverified
    assert "one ETag cannot verify 2 files" in caplog.text
    caplog.clear()
    key = demo_local.plates.key.iloc[0]
    no_etag = ManifestProfilesSource(f"{demo_local.root}/{key}", verify=True, subset="x")
    assert len(no_etag.read()) == 384
    assert "subset 'x': no ETag recorded" in caplog.text
    caplog.clear()
    plate = GallerySource(demo_local.root, **where, plate=parse_key(key).plate, verify=True)
    assert len(plate.read()) == 384 and "no ETag recorded" in caplog.text
