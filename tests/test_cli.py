"""The ``intake-cpg`` command line, driven through its real entry points as subprocesses.

Every command runs against the demo gallery in the loopback S3 server (``s3://cpg-demo``),
as ``python -m intake_cpg`` and as the installed ``intake-cpg`` script, and its output is
checked against what the catalog (or a direct read of the files) says.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import intake
import pandas as pd
import pyarrow.parquet as pq
import pytest
import s3fs

from intake_cpg import cli

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "intake-cpg"
ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PLATE = "BR00117037"
PROFILES = "cpg0016-jump/source_4/profiles"
COMPOUND = "cpg0016-jump-assembled/source_all/profiles_assembled/COMPOUND"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INTAKE_CPG_"))}
    env.update(extra)
    return env


def run(
    *args: str,
    server: str | None = None,
    script: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run the command line; with ``server``, against the demo bucket on that endpoint."""
    cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "intake_cpg"]
    if server is not None:
        cmd += ["--root", ROOT, "--endpoint-url", server]
    return subprocess.run(
        cmd + list(args),
        capture_output=True,
        text=True,
        env=env or _env(),
        cwd=cwd,
        timeout=300,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    )
    return proc.stdout


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("intake-cpg: error: ")
    return lines[0]


@pytest.fixture(scope="session")
def server(moto_server, demo_s3):
    """The loopback S3 endpoint, with the demo gallery in ``s3://cpg-demo``."""
    return moto_server


@pytest.fixture(scope="module")
def cat(demo_s3, s3_options):
    return intake.open_cpg(ROOT, storage_options=s3_options)


def _direct(s3_options, keys: list[str]) -> pd.DataFrame:
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    frames = []
    for key in keys:
        with fs.open(f"{ROOT}/{key}", "rb") as f:
            frames.append(pq.read_table(f).to_pandas())
    return pd.concat(frames, ignore_index=True)


# -- pure helpers -------------------------------------------------------------------------------
def test_render_table_aligns_and_cuts():
    text = cli.render_table(
        [
            {"name": "BR00117037", "files": 12, "note": None},
            {"name": "x", "files": 3, "note": "a" * 80},
        ],
        max_width=10,
    )
    assert text.splitlines() == [
        "name        files  note",
        "----------  -----  ----------",
        "BR00117037     12",
        "x               3  aaaaaaa...",
    ]
    assert cli.render_table([{"a": 1.0 / 3, "b": True, "c": ["x", "y"]}]).splitlines()[2] == (
        "0.333333  yes  x, y"
    )


def test_parse_assignments_and_coerce():
    assert cli.parse_assignments(["a=1", "b=x=y"], "-p") == {"a": "1", "b": "x=y"}
    opts = cli.parse_assignments(
        ["anon=false", 'client_kwargs={"region_name": "us-east-1"}', "key=AKIA"],
        "--storage-option",
        json_values=True,
    )
    assert opts == {"anon": False, "client_kwargs": {"region_name": "us-east-1"}, "key": "AKIA"}
    with pytest.raises(cli.ParameterError, match="NAME=VALUE") as err:
        cli.parse_assignments(["hunter2-secret"], "--storage-option")
    assert "hunter2" not in str(err.value)  # a value without '=' may be a secret: never echoed
    assert cli.coerce("TRUE", "bool", "verify") is True
    assert cli.coerce("no", "bool", "verify") is False
    with pytest.raises(cli.ParameterError, match="true/false"):
        cli.coerce("maybe", "bool", "verify")
    assert cli.path_parameters(["model", "batch", "plate"]) == ["model", "batch", "plate"]
    assert cli.split_path("/a//b/") == ["a", "b"]


def test_progress_draws_only_when_enabled():
    stream = io.StringIO()
    bar = cli.Progress("export", 4, stream, enabled=True)
    bar.update(1, "384 rows")
    bar.update(4)
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\rexport [" + "#" * 7 + "." * 23 + "] 1/4 384 rows")
    assert text.endswith("] 4/4\n")
    quiet = io.StringIO()
    bar = cli.Progress("export", 4, quiet, enabled=False)
    bar.update(2)
    bar.close()
    assert quiet.getvalue() == ""


def test_docs_reference_covers_every_command_and_option():
    spec = importlib.util.spec_from_file_location("cli_doc", REPO / "docs" / "_ext" / "cli_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    parsers = cli.command_parsers()
    text = mod.render_text(parsers)
    for name, parser in parsers.items():
        assert f"== {parser.prog}" in text
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help", "--version"):
                    assert opt in text, (name, opt)
    assert set(parsers) == {"", "ls", "describe", "head", "export", "verify", "freeze", "demo"}
    assert len(mod.render_nodes(parsers)) == len(parsers)


# -- help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", ["", "ls", "describe", "head", "export", "verify", "freeze", "demo"]
)
def test_help(command):
    proc = run(*([command] if command else []), "--help", script=True)
    out = ok(proc)
    assert out.startswith(f"usage: intake-cpg {command}".rstrip())
    assert "--root" in out and "--storage-option" in out


# -- ls -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "",
        "cpg0016-jump",
        "cpg0016-jump/source_4",
        "cpg0016-jump-assembled/source_all/profiles_assembled",
    ],
)
def test_ls_json_lists_what_the_catalog_lists(server, cat, path):
    rows = json.loads(ok(run("ls", path, "--json", server=server)))
    node = cat
    for part in cli.split_path(path):
        node = node[part]
    assert [r["name"] for r in rows] == list(node)


def test_ls_product_batches_plates_files(server, demo_s3, cat):
    rows = json.loads(ok(run("ls", PROFILES, "--json", server=server, script=True)))
    assert [r["name"] for r in rows] == ["2021_04_26_Batch1", "2021_05_31_Batch2"]
    assert {r["kind"] for r in rows} == {"batch"}

    plates = demo_s3.plates
    want = sorted(plates[(plates.source == "source_4") & (plates.batch == BATCH)].plate.unique())
    text = ok(run("ls", f"{PROFILES}/{BATCH}", server=server))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "kind", "files"]
    assert [ln.split()[0] for ln in lines[2 : 2 + len(want)]] == want
    rows = json.loads(ok(run("ls", f"{PROFILES}/{BATCH}", "--json", server=server)))
    assert [(r["name"], r["kind"], r["files"]) for r in rows] == [(p, "plate", 1) for p in want]

    rows = json.loads(ok(run("ls", f"{PROFILES}/{BATCH}/{PLATE}", "--json", server=server)))
    assert [r["key"] for r in rows] == [
        f"cpg0016-jump/source_4/workspace/profiles/{BATCH}/{PLATE}/{PLATE}.parquet"
    ]


def test_ls_assembled_subset_versions_and_variants(server, cat):
    entry = cat["cpg0016-jump-assembled"]["source_all"]["profiles_assembled"]["COMPOUND"]
    params = {p["name"]: p for p in entry.describe()["user_parameters"]}
    rows = json.loads(ok(run("ls", COMPOUND, "--json", server=server)))
    assert [r["name"] for r in rows] == params["version"]["allowed"]
    assert [r["name"] for r in rows if r["default"]] == [params["version"]["default"]]
    version = params["version"]["default"]
    rows = json.loads(ok(run("ls", f"{COMPOUND}/{version}", "--json", server=server)))
    assert [r["name"] for r in rows] == params["variant"]["allowed"]
    assert [r["name"] for r in rows if r["default"]] == [params["variant"]["default"]]


def test_global_options_after_the_command_and_root_from_environment(server, cat):
    proc = run("ls", "--json", "--root", ROOT, "--endpoint-url", server)
    assert [r["name"] for r in json.loads(ok(proc))] == list(cat)
    proc = run("--endpoint-url", server, "ls", "--json", env=_env(INTAKE_CPG_ROOT=ROOT))
    assert [r["name"] for r in json.loads(ok(proc))] == list(cat)


# -- describe -----------------------------------------------------------------------------------
def test_describe_entry_shows_parameters_template_and_provenance(server, cat):
    text = ok(run("describe", COMPOUND, server=server))
    assert "{project}/{source}/workspace/profiles_assembled/{subset}/{version}/{variant}" in text
    assert "provenance:" in text and "recipe_permalink:" in text
    info = json.loads(ok(run("describe", COMPOUND, "--json", server=server)))
    entry = cat["cpg0016-jump-assembled"]["source_all"]["profiles_assembled"]["COMPOUND"]
    assert [p["name"] for p in info["parameters"]] == ["version", "variant", "verify"]
    assert info["parameters"][1]["allowed"] == entry.describe()["user_parameters"][1]["allowed"]
    # provenance: the record of the bundled JUMP manifest that points at this subset's file
    provenance = entry.describe()["metadata"]["provenance"]
    assert info["provenance"] == provenance
    assert provenance["etag"] and provenance["path_subset"] == "COMPOUND"
    assert f"etag: {provenance['etag']}" in text

    info = json.loads(ok(run("describe", f"{PROFILES}/{BATCH}", "--json", server=server)))
    assert info["files"]["count"] == 2
    assert all(f"/{BATCH}/" in k for k in info["files"]["keys"])
    assert {p["name"]: p.get("value") for p in info["parameters"]}["batch"] == BATCH


# -- head ---------------------------------------------------------------------------------------
def test_head_prints_the_first_rows_of_the_right_plate(server, s3_options):
    cols = "Metadata_Plate,Metadata_Well,Cells_AreaShape_Area"
    out = ok(
        run(
            "head",
            f"{PROFILES}/{BATCH}/{PLATE}",
            "-n",
            "3",
            "--columns",
            cols,
            "--format",
            "csv",
            server=server,
        )
    )
    got = pd.read_csv(io.StringIO(out), dtype={"Metadata_Plate": str})
    key = f"cpg0016-jump/source_4/workspace/profiles/{BATCH}/{PLATE}/{PLATE}.parquet"
    want = _direct(s3_options, [key])[cols.split(",")].head(3)
    assert len(got) == 3
    assert got.Metadata_Plate.tolist() == [PLATE] * 3
    assert got.Metadata_Well.tolist() == want.Metadata_Well.tolist()
    # float32 in the file, printed with 7 significant digits
    assert got.Cells_AreaShape_Area.to_numpy() == pytest.approx(
        want.Cells_AreaShape_Area.to_numpy(dtype=float), rel=1e-6
    )

    table = ok(
        run(
            "head",
            PROFILES,
            "-p",
            f"plate={PLATE}",
            "-n",
            "3",
            "--columns",
            cols,
            server=server,
            script=True,
        )
    ).splitlines()
    assert table[0].split() == cols.split(",")
    assert len(table) == 2 + 3 and all(line.split()[0] == PLATE for line in table[2:])

    # more rows than the first plate holds: the next partition (plate) supplies the rest
    out = ok(run("head", f"{PROFILES}/{BATCH}", "-n", "500", "--columns", "Metadata_Plate",
                 "--format", "json", server=server))  # fmt: skip
    plates = [r["Metadata_Plate"] for r in json.loads(out)]
    assert len(plates) == 500 and plates[0] == PLATE and plates[-1] != PLATE


# -- export -------------------------------------------------------------------------------------
def _profile_keys(demo_s3, batch: str | None = None) -> list[str]:
    p = demo_s3.plates
    sel = p[(p.project == "cpg0016-jump") & (p.source == "source_4")]
    if batch:
        sel = sel[sel.batch == batch]
    return sorted(sel.key, key=lambda k: (k.split("/")[4], k.split("/")[5]))


def test_export_equals_the_files_read_directly(server, demo_s3, s3_options, tmp_path):
    out = tmp_path / "batch1.parquet"
    proc = run("export", f"{PROFILES}/{BATCH}", "-o", str(out), server=server, script=True)
    text = ok(proc)
    assert f"wrote {out}" in text
    got = pq.read_table(out).to_pandas()
    want = _direct(s3_options, _profile_keys(demo_s3, BATCH))
    pd.testing.assert_frame_equal(got[want.columns.tolist()], want, check_dtype=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch1.parquet"]  # no temp file left
    assert "\r" not in proc.stderr  # stderr is not a terminal: no progress bar


def test_export_on_a_dask_scheduler(server, demo_s3, s3_options, dask_client, tmp_path):
    out = tmp_path / "all.parquet"
    cols = "Metadata_Plate,Metadata_Well,Cells_AreaShape_Area"
    ok(
        run(
            "export",
            PROFILES,
            "-o",
            str(out),
            "--columns",
            cols,
            "--scheduler",
            dask_client.scheduler.address,
            server=server,
        )
    )
    got = pq.read_table(out).to_pandas()
    want = _direct(s3_options, _profile_keys(demo_s3))[cols.split(",")]
    assert got.columns.tolist() == cols.split(",")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_leaves_no_output(server, tmp_path, signum):
    out = tmp_path / "all.parquet"
    cmd = [sys.executable, "-m", "intake_cpg", "--root", ROOT, "--endpoint-url", server,
           "export", PROFILES, "-o", str(out), "--row-group-mb", "0"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(INTAKE_CPG_EXPORT_DELAY="60"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # the first partition is written (Parquet header and data in the temp file), then the
        # hook sleeps: the export is mid-way, with a partial temp file on disk
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
            if temps and temps[0].stat().st_size > 1000:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        assert temps and not out.exists()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, (proc.returncode, stderr)
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temp file


# -- verify -------------------------------------------------------------------------------------
def test_verify_demo_manifest_ok(server, demo_s3, s3_admin):
    proc = run("verify", demo_s3.manifest_key, server=server, script=True)
    text = ok(proc)
    manifest = json.loads(s3_admin.cat(f"cpg-demo/{demo_s3.manifest_key}"))
    rows = [ln.split() for ln in text.splitlines()[2 : 2 + len(manifest)]]
    assert [r[0] for r in rows] == [m["subset"] for m in manifest]
    assert {r[1] for r in rows} == {"ok"}
    assert f"{len(manifest)} object(s): {len(manifest)} ok" in text


def test_verify_tampered_copy_fails(server, demo_s3, s3_admin, make_bucket, tmp_path):
    manifest = json.loads(s3_admin.cat(f"cpg-demo/{demo_s3.manifest_key}"))
    records = [
        r for r in manifest if r["url"].split(".amazonaws.com/")[1] not in demo_s3.multipart_keys
    ]
    keep = records[:3]
    bucket = make_bucket()
    for i, rec in enumerate(keep):
        key = rec["url"].split(".amazonaws.com/")[1]
        data = s3_admin.cat(f"cpg-demo/{key}")
        s3_admin.pipe(f"{bucket[5:]}/{key}", data + b"tampered" if i == 1 else data)
    local = tmp_path / "manifest.json"
    local.write_text(json.dumps(keep))
    proc = run("verify", str(local), "--root", bucket, "--endpoint-url", server, "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    rows = json.loads(proc.stdout)
    assert [(r["subset"], r["status"]) for r in rows] == [
        (keep[0]["subset"], "ok"),
        (keep[1]["subset"], "mismatch"),
        (keep[2]["subset"], "ok"),
    ]
    assert rows[1]["expected"] == keep[1]["etag"] and rows[1]["found"] != keep[1]["etag"]
    assert proc.stderr.strip() == f"intake-cpg: 1 of 3 object(s) do not match {local}"


def test_verify_bad_manifest_is_a_user_error(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    line = one_error_line(run("verify", str(bad)))
    assert "manifest.json" in line


# -- freeze -------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Shell command not executed")  # intake issue 887
def test_freeze_writes_a_catalog_that_loads_without_secrets(server, cat, s3_options, tmp_path):
    out = tmp_path / "source_4.yaml"
    proc = run("freeze", "cpg0016-jump/source_4", "-o", str(out),
               "--storage-option", "key=AKIAVERYSECRETKEY", "--storage-option",
               "secret=wJalrXUtnFEMIverysecret", "-vv", server=server)  # fmt: skip
    ok(proc)
    yaml_text = out.read_text()
    for secret in ("AKIAVERYSECRETKEY", "wJalrXUtnFEMIverysecret"):
        assert secret not in yaml_text + proc.stdout + proc.stderr
    frozen = intake.open_catalog(str(out))
    assert list(frozen) == list(cat["cpg0016-jump"]["source_4"])
    got = frozen["profiles"](batch=BATCH, plate=PLATE).read()
    key = f"cpg0016-jump/source_4/workspace/profiles/{BATCH}/{PLATE}/{PLATE}.parquet"
    want = _direct(s3_options, [key])
    assert got.Metadata_Well.tolist() == want.Metadata_Well.tolist()


def test_freeze_refuses_a_table_entry(server, tmp_path):
    line = one_error_line(run("freeze", PROFILES, "-o", str(tmp_path / "x.yaml"), server=server))
    assert "is a table entry" in line
    assert not (tmp_path / "x.yaml").exists()


# -- demo ---------------------------------------------------------------------------------------
def test_demo_builds_and_says_how_to_open_it(tmp_path):
    target = tmp_path / "gallery"
    text = ok(run("demo", str(target), "--plates-per-batch", "1", script=True))
    assert "open it with:" in text and f"intake-cpg --root {target} ls" in text
    rows = json.loads(ok(run("--root", str(target), "ls", "--json")))
    assert [r["name"] for r in rows] == ["cpg0004-lincs", "cpg0016-jump", "cpg0016-jump-assembled"]


# -- failures -----------------------------------------------------------------------------------
def test_unknown_path_one_line_with_suggestion_and_traceback_with_v(server):
    line = one_error_line(run("ls", "cpg0016-jump/source4", server=server, script=True))
    assert "did you mean 'source_4'" in line
    proc = run("ls", "cpg0016-jump/source4", "-v", server=server)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ProductNotFoundError" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["head", PROFILES, "-p", "batch=2021_04_26_Batch"], "did you mean '2021_04_26_Batch1'"),
        (["head", PROFILES, "-p", "plat=BR00117037"], "did you mean 'plate'"),
        (["head", PROFILES, "--columns", "Metadata_Plat"], "did you mean 'Metadata_Plate'"),
        (["head", "cpg0016-jump/source_4"], "is a catalog level, not a table"),
        (["ls", f"{PROFILES}/{BATCH}/{PLATE}/extra"], "below this entry a path selects"),
        (["head", COMPOUND, "-p", "verify=perhaps"], "true/false"),
        (["ls", "--storage-option", "nonsense"], "NAME=VALUE"),
    ],
)
def test_user_errors_exit_2_with_one_line(server, args, expected):
    line = one_error_line(run(*args, server=server))
    assert expected in line


def test_unreachable_endpoint_is_a_user_error():
    proc = run(
        "--root", "s3://cpg-demo", "--endpoint-url", "http://127.0.0.1:9",
        "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}', "ls",
    )  # fmt: skip
    line = one_error_line(proc)
    assert "could not list s3://cpg-demo" in line and "Could not connect" in line


def test_usage_error_exits_2():
    proc = run("head")
    assert proc.returncode == 2
    assert "the following arguments are required: PATH" in proc.stderr


# -- export_parquet (the streaming writer behind `export`) --------------------------------------
def _frames_ddf(frames):
    import dask.dataframe as dd

    return dd.from_map(lambda i: frames[i], range(len(frames)), meta=frames[0].iloc[:0])


def test_export_parquet_casts_partitions_to_the_first_schema(tmp_path):
    from intake_cpg.export import export_parquet

    frames = [
        pd.DataFrame({"Metadata_Plate": ["1053601756"], "x": [1.5], "n": [1]}),
        pd.DataFrame({"Metadata_Plate": ["BR00117037"], "n": [2]}),  # no x: nulls
        pd.DataFrame({"n": [3], "Metadata_Plate": ["P3"], "x": [2.5]}),  # other order
    ]
    out = tmp_path / "t.parquet"
    result = export_parquet(_frames_ddf(frames), out)
    assert (result.rows, result.partitions) == (3, 3)
    got = pq.read_table(out)
    assert got.column_names == ["Metadata_Plate", "x", "n"]
    assert got.column("Metadata_Plate").to_pylist() == ["1053601756", "BR00117037", "P3"]
    assert got.column("x").to_pylist() == [1.5, None, 2.5]
    assert got.column("n").to_pylist() == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_export_parquet_failure_leaves_nothing(tmp_path):
    from intake_cpg.errors import SchemaMismatchError
    from intake_cpg.export import export_parquet

    frames = [pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2], "surprise": [3]})]
    with pytest.raises(SchemaMismatchError, match="surprise"):
        export_parquet(_frames_ddf(frames), tmp_path / "t.parquet")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(cli.ParameterError, match="does not exist"):
        export_parquet(_frames_ddf(frames), tmp_path / "missing" / "t.parquet")


def test_refresh_sees_what_the_disk_cache_hides(moto_server, s3_admin, make_bucket, tmp_path):
    bucket = make_bucket()
    s3_admin.pipe(f"{bucket}/cpg0001-first/broad/workspace/profiles/b/p/p.parquet", b"x")

    def projects(*extra: str) -> list[str]:
        proc = run("--root", bucket, "--endpoint-url", moto_server, "--cache-dir",
                   str(tmp_path), "ls", "--json", *extra)  # fmt: skip
        return [row["name"] for row in json.loads(ok(proc))]

    assert projects() == ["cpg0001-first"]
    s3_admin.pipe(f"{bucket}/cpg0002-second/broad/workspace/profiles/b/p/p.parquet", b"x")
    assert projects() == ["cpg0001-first"]  # served by the on-disk listing cache
    assert projects("--refresh") == ["cpg0001-first", "cpg0002-second"]


def test_export_gathers_partitions_into_row_groups(server, tmp_path):
    import pyarrow.parquet as pq

    one, each = tmp_path / "one.parquet", tmp_path / "each.parquet"
    ok(run("export", PROFILES, "-o", str(one), server=server))
    ok(run("export", PROFILES, "-o", str(each), "--row-group-mb", "0", server=server))
    parts = len(pd.read_parquet(each).Metadata_Plate.unique())
    assert pq.ParquetFile(one).metadata.num_row_groups == 1
    assert pq.ParquetFile(each).metadata.num_row_groups == parts > 1
    pd.testing.assert_frame_equal(pd.read_parquet(one), pd.read_parquet(each))
    # statistics for identifiers only: a wide table's float statistics would stay in memory
    meta = pq.ParquetFile(one).metadata
    names = meta.schema.names
    stats = {names[i]: meta.row_group(0).column(i).is_stats_set for i in range(len(names))}
    assert stats["Metadata_Plate"] and not stats[names[-1]]


def test_export_plans_partitions_with_the_streaming_size(server, tmp_path, monkeypatch, capsys):
    from intake_cpg import export, parquet_engine

    seen: list[int] = []
    plan = parquet_engine.plan_pieces

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(parquet_engine.partition_target())
        return plan(*args, **kwargs)

    monkeypatch.setattr(parquet_engine, "plan_pieces", spy)
    where = ["--root", ROOT, "--endpoint-url", server]
    assert (
        cli.main([*where, "export", f"{PROFILES}/{BATCH}", "-o", str(tmp_path / "t.parquet")]) == 0
    )
    exported, seen[:] = set(seen), []
    assert cli.main([*where, "head", f"{PROFILES}/{BATCH}", "-n", "1"]) == 0
    capsys.readouterr()
    assert exported == {export.EXPORT_PARTITION_BYTES}  # export: smaller partitions
    assert set(seen) == {parquet_engine.PARTITION_BYTES}  # other commands: the default


def test_project_level_entries_from_the_command_line(demo_jump):
    """A project lists its project-level entries; their CLI path is source/batch/plate."""
    opts = ["--root", demo_jump.root, "--metadata-root", demo_jump.metadata_root]
    opts += ["--metadata-release", demo_jump.metadata_release]
    rows = json.loads(ok(run(*opts, "ls", "cpg0016-jump", "--json")))
    sources = sorted(set(demo_jump.plates[demo_jump.plates.project == "cpg0016-jump"].source))
    assert [r["name"] for r in rows] == [*sources, "profiles", "plates", "metadata"]
    assert [r["kind"] for r in rows[-3:]] == ["entry"] * 3
    rows = json.loads(ok(run(*opts, "ls", "cpg0016-jump/profiles", "--json")))
    assert [r["name"] for r in rows] == sources
    text = ok(run(*opts, "head", "cpg0016-jump/profiles/source_4", "-p", "plate_type=TARGET2"))
    assert "BR00121437" in text  # the demo's one TARGET2 plate of source_4
    tables = json.loads(ok(run(*opts, "ls", "cpg0016-jump/metadata", "--json")))
    assert "well" in [r["name"] for r in tables]
