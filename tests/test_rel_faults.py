"""Faults between us and S3: every run gives the clean result or an error naming the object.

The loopback S3 server sits behind :class:`faultproxy.FaultProxy`, which injects 500s, 503
SlowDowns, connection resets, truncated bodies and slow responses, in bursts and at random
(seeded). Browse (catalog listings), load (parquet range reads and csv.gz through the
catalog and the source) and verify (manifest ETags) are compared with a clean run.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from typing import Any

import intake
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faultproxy import FaultProxy

from intake_cpg import readers, storage
from intake_cpg.errors import CPGError, StorageError
from intake_cpg.etag import verify_manifest
from intake_cpg.manifest import read_manifest
from intake_cpg.sources import ProfilesSource

ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PLATE = "BR00117037"
PQ_KEY = f"cpg0016-jump/source_4/workspace/profiles/{BATCH}/{PLATE}/{PLATE}.parquet"
CSV_KEY = (
    "cpg0004-lincs/broad/workspace/profiles/2016_04_01_a549_48hr_batch1/SQ00015116/"
    "SQ00015116.csv.gz"
)
#: The full matrix runs with INTAKE_CPG_SOAK=1; `make test` runs a representative part of it.
SOAK = os.environ.get("INTAKE_CPG_SOAK") == "1"


def _soak(*values: Any) -> Any:
    return pytest.param(*values, marks=pytest.mark.skipif(not SOAK, reason="INTAKE_CPG_SOAK=1"))


#: botocore retries kept low where a test expects failure, so it fails fast.
FEW_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}}}


def _opts(proxy: FaultProxy, **extra: Any) -> dict[str, Any]:
    return {"anon": True, "client_kwargs": {"endpoint_url": proxy.url}, **extra}


# -- the operations, each returning a comparable value -----------------------------------------
def browse(opts: dict[str, Any]) -> Any:
    storage._SHARED.clear()
    cat = intake.open_cpg(ROOT, storage_options=opts)
    src = cat["cpg0016-jump"]["source_4"]
    return (list(cat), list(src), src["profiles"](batch=BATCH).file_keys())


def load_parquet(opts: dict[str, Any]) -> pd.DataFrame:
    storage._SHARED.clear()
    cat = intake.open_cpg(ROOT, storage_options=opts)
    return cat["cpg0016-jump"]["source_4"]["profiles"](batch=BATCH, plate=PLATE).read()


def load_csv(opts: dict[str, Any]) -> pd.DataFrame:
    return ProfilesSource(f"{ROOT}/{CSV_KEY}", storage_options=opts).read()


def verify(opts: dict[str, Any], records: list[Any], deep: bool = False) -> pd.DataFrame:
    table = verify_manifest(records, root=ROOT, storage_options=opts, deep=deep)
    return table[["url", "found", "status"]]


def _same(a: Any, b: Any) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    else:
        assert a == b


# regexes of the requests each operation makes (listings, the object, HEADs of records)
PATHS = {
    "browse": ("GET", r"list-type=2"),
    "load_parquet": ("GET", PLATE + r"\.parquet"),
    "load_csv": ("GET", r"SQ00015116\.csv\.gz"),
    "verify": ("HEAD", r"profiles_assembled/"),
}


@pytest.fixture(scope="module")
def records(demo_s3, s3_options) -> list[Any]:
    recs = read_manifest(f"{ROOT}/{demo_s3.manifest_key}", s3_options)
    return [r for r in recs if r.etag and "-" not in r.etag][:3]  # small single-part objects


@pytest.fixture(scope="module")
def clean(demo_s3, s3_options, records) -> dict[str, Any]:
    """Each operation without the proxy."""
    return {
        "browse": browse(s3_options),
        "load_parquet": load_parquet(s3_options),
        "load_csv": load_csv(s3_options),
        "verify": verify(s3_options, records),
    }


@pytest.fixture
def proxy(moto_server) -> Any:
    with FaultProxy(moto_server, seed=7) as p:
        yield p
    storage._SHARED.clear()


def _runner(op: str, records: list[Any]) -> Callable[[dict[str, Any]], Any]:
    if op == "verify":
        return lambda o: verify(o, records)
    return {"browse": browse, "load_parquet": load_parquet, "load_csv": load_csv}[op]


def _clean_urls(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(url=frame.url.str.replace(r"^s3://", "", regex=True))


# -- bursts: retried with backoff, result identical to the clean read ----------------------------
BURSTS = [
    (a, o)
    if o == "load_parquet" or (a == "500") or (a, o) == ("truncate", "verify")
    else _soak(a, o)
    for a in ("500", "503", "reset", "truncate", "slow")
    for o in PATHS
]


@pytest.mark.parametrize(("action", "op"), BURSTS)
def test_burst_of_faults_is_retried_to_the_clean_result(proxy, clean, records, op, action):
    method, path = PATHS[op]
    run = _runner(op, records)
    if action == "truncate" and method == "HEAD":  # HEADs have no body: verify deep (GETs)
        method, run = "GET", lambda o: verify(o, records, deep=True)
    proxy.add(action, method=method, path=path, count=2, delay=0.3)
    got = run(_opts(proxy))
    _same(got, clean[op])
    assert proxy.faults() == 2 or (action == "slow" and proxy.faults() >= 1)


@pytest.mark.parametrize("seed", [0, _soak(1), _soak(2), _soak(3), _soak(4)])
def test_random_mixed_faults_give_the_clean_result(moto_server, clean, records, seed):
    """Every request has a 15% chance of one fault (seeded); all four operations run."""
    with FaultProxy(moto_server, seed=seed) as proxy:
        for action in ("500", "503", "reset", "truncate"):
            proxy.add(action, probability=0.05, method="GET|HEAD")
        opts = _opts(proxy)
        for op in PATHS:
            _same(_runner(op, records)(opts), clean[op])
        assert len(proxy.log) > 10
    storage._SHARED.clear()


# -- persistent faults: a CPGError naming the object and the cause -------------------------------
CAUSES = {
    "500": "Internal|internal error",
    "503": "reduce your request rate|Slow|Service Unavailable",
    "reset": "connect|Connection",
    "truncate": "payload|Payload|Connection|closed",
}


PERSISTENT = [
    (a, o)
    if (a, o) in {("500", "load_parquet"), ("reset", "browse"), ("truncate", "load_csv")}
    else _soak(a, o)
    for a in CAUSES
    for o in ("browse", "load_parquet", "load_csv")
]


@pytest.mark.parametrize(("action", "op"), PERSISTENT)
def test_persistent_fault_fails_naming_object_and_cause(proxy, clean, records, op, action):
    method, path = PATHS[op]
    proxy.add(action, method=method, path=path)
    with pytest.raises(CPGError) as err:
        _runner(op, records)(_opts(proxy, **FEW_RETRIES))
    msg = str(err.value)
    assert isinstance(err.value, StorageError), msg
    where = {"browse": "s3://cpg-demo", "load_parquet": PQ_KEY, "load_csv": CSV_KEY}
    assert where[op] in msg
    assert re.search(CAUSES[action], msg), msg
    assert proxy.faults() >= 2  # it was retried


@pytest.mark.skipif(not SOAK, reason="INTAKE_CPG_SOAK=1")
def test_slow_server_times_out_naming_object(proxy):
    """Answers slower than the read timeout: timed out, retried, then a StorageError."""
    proxy.add("slow", method="HEAD", path=PQ_KEY, delay=1.0)
    opts = _opts(proxy, config_kwargs={"retries": {"max_attempts": 1}, "read_timeout": 0.3})
    with pytest.raises(StorageError, match="timeout|timed out|Timeout") as err:
        storage.Storage(ROOT, opts).info(PQ_KEY)
    assert PQ_KEY in str(err.value)
    assert proxy.faults() >= 2


@pytest.mark.parametrize("action", ["500", _soak("503"), _soak("reset")])
def test_verify_reports_error_never_ok_or_mismatch(proxy, records, action):
    proxy.add(action, method="HEAD", path=PATHS["verify"][1])
    table = verify(_opts(proxy, **FEW_RETRIES), records)
    assert (table.status == "error").all(), table.to_string()
    assert table.found.isna().all()


# -- retries are configurable -------------------------------------------------------------------
def test_retry_budget_is_configurable(proxy):
    """A burst of three 500s on a HEAD: the default budget rides it out, one attempt does not."""
    rule = proxy.add("500", method="HEAD", path=PQ_KEY, count=3)
    st = storage.Storage(ROOT, _opts(proxy))
    assert st.info(PQ_KEY)["size"] > 0
    assert rule.fired == 3
    rule.fired = 0
    single = {"config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(StorageError, match="InternalError|Internal Server Error"):
        storage.Storage(ROOT, _opts(proxy, **single)).info(PQ_KEY)


# -- an object replaced while it is read --------------------------------------------------------
def _frame(seed: int, rows: int = 80_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"Metadata_Well": [f"W{i:05d}" for i in range(rows)], "x": rng.random(rows)}
    ).astype({"Metadata_Well": readers.STRING_DTYPE})


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df), buf, row_group_size=10_000)  # 8 row groups
    return buf.getvalue()


@pytest.mark.parametrize("skip", [0, 1, 2])
def test_object_replaced_mid_load_is_never_mixed(moto_server, make_bucket, s3_admin, skip):
    """The object is replaced just before the (skip+1)-th GET of one parquet load."""
    bucket = make_bucket()
    key = "cpg0016-jump/source_4/workspace/profiles/B1/P1/P1.parquet"
    old, new = _frame(1), _frame(2)
    s3_admin.pipe(f"{bucket}/{key}", _parquet(old))
    new_bytes = _parquet(new)

    def replace(record: Any) -> None:
        s3_admin.pipe(f"{bucket}/{key}", new_bytes)

    with FaultProxy(moto_server) as proxy:
        proxy.add("hook", method="GET", path=r"P1\.parquet", skip=skip, count=1, hook=replace)
        try:
            got, _ = readers.read_file(f"{bucket}/{key}", None, _opts(proxy))
        except StorageError as exc:
            assert "changed while it was being read" in str(exc) and key in str(exc)
            got = None
        gets = [r for r in proxy.log if r.method == "GET"]
        assert all("If-Match" in r.headers for r in gets)  # every range read is pinned
        fired = sum(r.fault == "hook" for r in proxy.log)
        if fired:  # replaced between the open and a read: refused, not mixed
            assert got is None
        else:  # the load had ended (pyarrow coalesces ranges): the old version, whole
            pd.testing.assert_frame_equal(got, old)
            s3_admin.pipe(f"{bucket}/{key}", new_bytes)
        # the next load reads the new version whole
        df, _ = readers.read_file(f"{bucket}/{key}", None, _opts(proxy))
    pd.testing.assert_frame_equal(df, new)


def test_csv_gz_replaced_mid_load_is_never_mixed(moto_server, make_bucket, s3_admin):
    bucket = make_bucket()
    key = "cpg0004-lincs/broad/workspace/profiles/B/SQ1/SQ1.csv.gz"
    frames = {v: pd.DataFrame({"Metadata_Well": ["A01", "A02"], "x": [v, v]}) for v in (1.0, 2.0)}
    blobs = {}
    for v, f in frames.items():
        buf = io.BytesIO()
        f.to_csv(buf, index=False, compression={"method": "gzip", "mtime": 0})
        blobs[v] = buf.getvalue()
    s3_admin.pipe(f"{bucket}/{key}", blobs[1.0])
    with FaultProxy(moto_server) as proxy:
        proxy.add(
            "hook",
            method="GET",
            path=r"SQ1\.csv\.gz",
            count=1,
            hook=lambda r: s3_admin.pipe(f"{bucket}/{key}", blobs[2.0]),
        )
        with pytest.raises(StorageError, match="changed while it was being read"):
            readers.read_file(f"{bucket}/{key}", None, _opts(proxy))
        # the next load reads the new version whole
        df, _ = readers.read_file(f"{bucket}/{key}", None, _opts(proxy))
    assert df.x.tolist() == [2.0, 2.0]
