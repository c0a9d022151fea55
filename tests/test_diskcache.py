"""The disk helper both caches share: whole-or-nothing writes, checksums, corrupt entries, bounds.

Failures are real where the machine allows it: a file name longer than the filesystem takes
makes the rename itself fail (the temporary file, with a short name, was written); a folder
that is a file makes the write fail; ``os.replace`` raising stands in for a full disk.
"""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from intake_cpg import diskcache
from intake_cpg.diskcache import TMP_PREFIX, DiskCache, atomic_write
from intake_cpg.errors import ParameterError


def _leftovers(folder) -> list[str]:
    return [n for _, _, names in os.walk(folder) for n in names if n.startswith(TMP_PREFIX)]


# -- atomic_write ---------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_files(tmp_path):
    fn = tmp_path / "a" / "b" / "x.bin"
    atomic_write(fn, b"first")
    atomic_write(fn, lambda f: f.write(b"second, written by a function"))
    assert fn.read_bytes() == b"second, written by a function"
    assert _leftovers(tmp_path) == []


def test_a_rename_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    fn = tmp_path / ("n" * 300)  # longer than any file name the filesystem takes
    with pytest.raises(OSError) as err:
        atomic_write(fn, b"x" * 10_000)
    assert "name too long" in str(err.value).lower()
    assert os.listdir(tmp_path) == []  # the temporary file was written, then removed


def test_a_write_into_a_folder_that_is_a_file_fails_cleanly(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "blocker" / "x.bin", b"data")
    assert sorted(os.listdir(tmp_path)) == ["blocker"]


def test_replace_failing_keeps_the_old_content(tmp_path, monkeypatch):
    fn = tmp_path / "x.bin"
    atomic_write(fn, b"old")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(diskcache.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(fn, b"new")
    assert fn.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_an_interrupted_writer_leaves_nothing(tmp_path):
    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.bin", interrupted)
    assert os.listdir(tmp_path) == []


# -- DiskCache: bytes -------------------------------------------------------------------------------
def test_entries_are_keyed_and_survive_a_new_instance(tmp_path):
    DiskCache(tmp_path).put(("s3://b/k", "e1", 10), b"\x00payload\xff")
    again = DiskCache(tmp_path)
    assert again.get(("s3://b/k", "e1", 10)) == b"\x00payload\xff"
    assert again.get(("s3://b/k", "e2", 10)) is None
    assert ("s3://b/k", "e1", 10) in again and ("s3://b/k", "e2", 10) not in again
    assert again.stats["corrupt"] == 0


def _damaged(blob: bytes, kind: str) -> bytes:
    return {
        "truncated": blob[: len(blob) // 2],
        "empty": b"",
        "junk": b"\x01" * 64,
        "flipped payload byte": blob[:-3] + bytes([blob[-3] ^ 0xFF]) + blob[-2:],
        "shorter payload": blob[:-1],
        "header length past the end": blob[:8] + (10**6).to_bytes(4, "little") + blob[12:],
        "wrong format": blob.replace(b'"format": 1', b'"format": 2'),
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "empty",
        "junk",
        "flipped payload byte",
        "shorter payload",
        "header length past the end",
        "wrong format",
    ],
)
def test_a_damaged_entry_is_a_miss_logged_removed_and_rebuilt(tmp_path, caplog, kind):
    cache = DiskCache(tmp_path, what="test entry", then="recomputing")
    cache.put("k", b"the real bytes " * 100)
    fn = cache.path("k")
    with open(fn, "rb") as f:
        blob = f.read()
    bad = _damaged(blob, kind)
    assert bad != blob
    with open(fn, "wb") as f:
        f.write(bad)
    caplog.set_level(logging.WARNING, logger="intake_cpg.diskcache")
    assert cache.get("k") is None
    assert cache.stats["corrupt"] == 1
    assert "ignoring unreadable test entry" in caplog.text and "recomputing" in caplog.text
    assert not os.path.exists(fn)
    cache.put("k", b"rebuilt")
    assert DiskCache(tmp_path).get("k") == b"rebuilt"


def test_an_entry_of_another_key_under_this_name_is_not_served(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put("a", b"bytes of a")
    cache.put("b", b"bytes of b")
    with open(cache.path("a"), "rb") as f:
        blob_a = f.read()
    with open(cache.path("b"), "wb") as f:
        f.write(blob_a)  # a valid entry, checksum and all, but of key "a"
    assert cache.get("b") is None and cache.stats["corrupt"] == 1
    assert cache.get("a") == b"bytes of a"


def test_an_unwritable_cache_is_not_an_error(tmp_path, caplog):
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    cache = DiskCache(tmp_path / "blocker" / "cache", what="test entry")
    caplog.set_level(logging.WARNING, logger="intake_cpg.diskcache")
    assert cache.put("k", b"data") is False
    assert "could not write test entry" in caplog.text
    assert cache.get("k") is None


def test_a_failed_replace_keeps_the_previous_entry(tmp_path, monkeypatch):
    cache = DiskCache(tmp_path)
    cache.put("k", b"previous")

    def failing(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(diskcache.os, "replace", failing)
    assert cache.put("k", b"next") is False
    monkeypatch.undo()
    assert cache.get("k") == b"previous"
    assert _leftovers(tmp_path) == []


def test_fanout_spreads_entries_over_subfolders(tmp_path):
    cache = DiskCache(tmp_path, suffix=".footer", fanout=True)
    cache.put("k", b"x")
    rel = os.path.relpath(cache.path("k"), tmp_path)
    folder, name = os.path.split(rel)
    assert len(folder) == 2 and name.startswith(folder) and name.endswith(".footer")


# -- DiskCache: JSON ----------------------------------------------------------------------------------
def test_json_entries_are_readable_documents(tmp_path):
    cache = DiskCache(tmp_path, suffix=".json")
    value = {"time": 1.5, "entries": [["a", "p/a", False, 3, "e"]]}
    assert cache.put_json(["listing", "/root", "p"], value)
    assert cache.get_json(["listing", "/root", "p"]) == value
    with open(cache.path(["listing", "/root", "p"]), encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["value"] == value and doc["format"] == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace('"p/a"', '"p/X"'),  # tampered value
        lambda t: t.replace('"format": 1', '"format": 7'),
        lambda t: "[1, 2]",
        lambda t: "null",
        lambda t: t[: len(t) // 2],
    ],
    ids=["tampered", "format", "list", "null", "truncated"],
)
def test_a_damaged_json_entry_is_a_miss(tmp_path, damage):
    cache = DiskCache(tmp_path, suffix=".json")
    cache.put_json("k", {"entries": [["a", "p/a"]]})
    fn = cache.path("k")
    with open(fn, encoding="utf-8") as f:
        text = f.read()
    with open(fn, "w", encoding="utf-8") as f:
        f.write(damage(text))
    assert cache.get_json("k") is None and cache.stats["corrupt"] == 1


# -- bounds and housekeeping ------------------------------------------------------------------------
def test_a_bounded_cache_drops_the_least_recently_used(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=3 * 1200)
    for i, key in enumerate("abc"):
        cache.put(key, bytes([i]) * 1000)
        os.utime(cache.path(key), (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.get("a") is not None  # used: now the most recent
    cache.put("d", b"d" * 1000)  # over the bound: the oldest unused entry ("b") goes
    assert [k for k in "abcd" if k in cache] == ["a", "c", "d"]
    assert cache.stats["evicted"] == 1
    assert cache.size() <= 3 * 1200


def test_clear_and_delete(tmp_path):
    cache = DiskCache(tmp_path / "c")
    cache.put("a", b"1")
    cache.put("b", b"2")
    cache.delete("a")
    cache.delete("never stored")
    assert "a" not in cache and cache.get("b") == b"2"
    cache.clear()
    assert not (tmp_path / "c").exists() and cache.get("b") is None


def test_a_negative_bound_is_refused():
    with pytest.raises(ParameterError, match="max_bytes=-1"):
        DiskCache("/tmp/never-created", max_bytes=-1)
