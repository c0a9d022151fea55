"""Containment and credentials, over the loopback S3 server behind the counting proxy.

* Names and parameters cannot leave the gallery root, expand templates or run shell commands,
  and are refused with a ``CPGError`` before any request reaches the server.
* The public bucket is read anonymously even with ambient AWS credentials in the environment;
  secrets given in ``storage_options`` never show in logs, errors, ``describe()``, frozen YAML
  or the CLI's output.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import intake
import pytest
from faultproxy import FaultProxy

from intake_cpg import storage
from intake_cpg.errors import CPGError, GalleryPathError, ParameterError, ProductNotFoundError
from intake_cpg.gallery_source import GallerySource

REPO = Path(__file__).resolve().parents[1]
ROOT = "s3://cpg-demo"
BATCH = "2021_04_26_Batch1"
PLATE = "BR00117037"

#: Values that try to leave the root, expand a template or run a command.
ESCAPES = [
    "../../x",
    "..",
    "/etc/passwd",
    "s3://other-bucket/x",
    "%2e%2e%2f",
    "%2E%2E",
    "..%2f..%2fx",
    "a\\..\\b",
    "x\x00y",
    "x\ny",
    "{{ shell('touch /tmp/intake-cpg-pwned') }}",
    "{{ env('HOME') }}",
    "{% if 1 %}x{% endif %}",
    "!touch /tmp/intake-cpg-pwned",
    "~root",
    " BR00117037",
    "",
]
PWNED = Path("/tmp/intake-cpg-pwned")


@pytest.fixture
def proxy(demo_s3, moto_server) -> Any:
    storage._SHARED.clear()
    with FaultProxy(moto_server) as p:
        yield p
    storage._SHARED.clear()


def _opts(proxy: FaultProxy) -> dict[str, Any]:
    return {"anon": True, "client_kwargs": {"endpoint_url": proxy.url}}


# -- containment --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ESCAPES)
def test_gallery_source_refuses_before_any_request(proxy, bad):
    for field in ("project", "source", "batch", "plate", "variant", "subset", "version"):
        if field == "variant" and bad == "":
            continue  # "" is the bare file, a valid variant
        kwargs = {"project": "cpg0016-jump", "source": "source_4", field: bad}
        with pytest.raises(ParameterError) as err:
            GallerySource(ROOT, product="profiles", storage_options=_opts(proxy), **kwargs)
        assert field in str(err.value)
    assert proxy.log == []
    assert not PWNED.exists()


def test_catalog_entry_parameters_refused_before_any_request(proxy):
    cat = intake.open_cpg(ROOT, storage_options=_opts(proxy))
    entry = cat["cpg0016-jump"]["source_4"]["profiles"]
    before, counted = len(proxy.log), sum(cat.storage.requests.values())
    for bad in ESCAPES:
        for field in ("plate", "batch", "variant"):
            if field == "variant" and bad == "":
                continue
            with pytest.raises(CPGError) as err:
                entry(**{field: bad})
            assert field in str(err.value)
    assert len(proxy.log) == before and sum(cat.storage.requests.values()) == counted
    assert not PWNED.exists()


@pytest.mark.parametrize("bad", [*ESCAPES, "cpg0016-jump/../cpg0004-lincs"])
def test_catalog_names_refused_before_any_request(proxy, bad):
    cat = intake.open_cpg(ROOT, storage_options=_opts(proxy))
    with pytest.raises(ProductNotFoundError):
        cat[bad]
    assert proxy.log == [] and sum(cat.storage.requests.values()) == 0


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "..", "a/./b", "a\\b", "a\x00b"])
def test_storage_keys_cannot_leave_the_root(proxy, tmp_path, bad):
    st = storage.Storage(ROOT, _opts(proxy))
    for call in (st.ls, st.info, st.open, st.url):
        with pytest.raises(GalleryPathError):
            call(bad)
    assert proxy.log == []  # nothing was sent
    # on a local root too: nothing above the root is ever listed
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    with pytest.raises(GalleryPathError):
        storage.Storage(str(tmp_path / "root")).ls(bad)


def test_absolute_key_stays_inside_root(tmp_path):
    (tmp_path / "root" / "etc").mkdir(parents=True)
    st = storage.Storage(str(tmp_path / "root"))
    assert st.path("/etc") == str(tmp_path / "root" / "etc")
    assert st.ls("/etc") == ()


def test_no_shell_expansion_anywhere(proxy, tmp_path):
    marker = tmp_path / "shell-ran"
    cat = intake.open_cpg(ROOT, storage_options=_opts(proxy))
    levels = [cat, cat["cpg0016-jump"], cat["cpg0016-jump"]["source_4"]]
    assert all(level.getshell is False for level in levels)
    entries = cat["cpg0016-jump"]["source_4"]._get_entries()
    assert entries and all(e.getshell is False for e in entries.values())
    # a hand-written YAML that tries shell() in an argument: never run, refused by our driver
    yaml = tmp_path / "evil.yaml"
    yaml.write_text(
        textwrap.dedent(
            f"""
            sources:
              evil:
                driver: intake_cpg.gallery_source.GallerySource
                args:
                  urlpath: {ROOT}
                  project: cpg0016-jump
                  source: source_4
                  plate: "{{{{ shell('touch {marker}') }}}}"
                  storage_options: {json.dumps(_opts(proxy))}
            """
        )
    )
    ycat = intake.open_catalog(str(yaml))
    assert ycat.getshell is False
    with pytest.raises(CPGError):
        ycat["evil"].read()
    assert not marker.exists()


# -- credentials --------------------------------------------------------------------------------
_ANON_SCRIPT = """
import json, sys, intake
cat = intake.open_cpg("s3://cpg-demo", storage_options={"client_kwargs": {"endpoint_url": sys.argv[1]}})
df = cat["cpg0016-jump"]["source_4"]["profiles"](batch=sys.argv[2], plate=sys.argv[3]).read()
print(json.dumps({"rows": len(df), "anon": cat.storage.storage_options.get("anon")}))
"""


def test_ambient_credentials_are_not_used(proxy, tmp_path):
    """Fake keys and a profile in the environment: requests still go out unsigned."""
    (tmp_path / "credentials").write_text(
        "[evil]\naws_access_key_id = AKIAAMBIENTPROFILE\naws_secret_access_key = x\n"
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIAAMBIENTFAKE0001",
        "AWS_SECRET_ACCESS_KEY": "ambient-secret-value",
        "AWS_SESSION_TOKEN": "ambient-token",
        "AWS_PROFILE": "evil",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    out = subprocess.run(
        [sys.executable, "-c", _ANON_SCRIPT, proxy.url, BATCH, PLATE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] > 0 and result["anon"] is True
    assert len(proxy.log) >= 3
    assert not [r for r in proxy.log if "Authorization" in r.headers]
    assert "AMBIENT" not in json.dumps([r.headers for r in proxy.log])


def test_explicit_credentials_do_sign(proxy):
    """The converse (so the test above can fail): given keys, requests are signed."""
    opts = {"key": "AKIAEXPLICIT0001", "secret": "x", **_opts(proxy)}
    opts.pop("anon")
    storage.Storage(ROOT, opts).ls("")
    assert any("AKIAEXPLICIT0001" in r.headers.get("Authorization", "") for r in proxy.log)


SECRET_KEY = "AKIASECRETKEY0000042"
SECRET = "s3cr3t-Value-Never-Shown-42"
TOKEN = "session-token-Never-Shown-42"


def _leaks(text: str) -> list[str]:
    return [s for s in (SECRET, TOKEN) if s in text]


def test_secrets_never_shown(moto_server, demo_s3, tmp_path, caplog):
    storage._SHARED.clear()
    caplog.set_level(logging.DEBUG)
    opts = {
        "key": SECRET_KEY,
        "secret": SECRET,
        "token": TOKEN,
        "client_kwargs": {"endpoint_url": moto_server},
    }
    cat = intake.open_cpg(ROOT, storage_options=opts)
    src_cat = cat["cpg0016-jump"]["source_4"]
    entry = src_cat["profiles"]
    shown = [repr(cat), repr(cat.storage), str(entry.describe()), str(src_cat.describe())]
    src = entry(batch=BATCH, plate=PLATE)
    shown.append(str(src.describe()))
    assert len(src.read()) > 0
    errors = []
    for call in (
        lambda: entry(batch=BATCH, plate="NOPLATE").read(),
        lambda: src_cat["nothing"],
        lambda: GallerySource(ROOT, "cpg0016-jump", "source_4", storage_options=opts, plate="../x"),
        lambda: storage.Storage(ROOT, opts).info("cpg0016-jump/missing.parquet"),
    ):
        with pytest.raises(CPGError) as err:
            call()
        errors.append(f"{err.value!s} {err.value!r}")
    frozen = tmp_path / "frozen.yaml"
    src_cat.save(str(frozen))
    yaml_text = frozen.read_text()
    assert "profiles" in yaml_text  # the save did write the entries
    for text in [*shown, *errors, yaml_text]:
        assert _leaks(text) == [], text[:500]
    leaking = sorted({r.name for r in caplog.records if _leaks(r.getMessage())})
    assert leaking == []
    assert len(caplog.records) > 0
    storage._SHARED.clear()


def test_cli_output_never_shows_secrets(moto_server, demo_s3, tmp_path):
    cli = Path(sys.executable).parent / "intake-cpg"
    common = [
        "--root",
        ROOT,
        "--endpoint-url",
        moto_server,
        "--storage-option",
        f"key={SECRET_KEY}",
        "--storage-option",
        f"secret={SECRET}",
        "--storage-option",
        f"token={TOKEN}",
        "-vv",
    ]
    runs = [
        ["ls", "cpg0016-jump/source_4", *common],
        ["describe", "cpg0016-jump/source_4/profiles", *common],
        ["ls", "cpg0016-jump/nothing", *common],  # an error
        ["freeze", "cpg0016-jump/source_4", "-o", str(tmp_path / "f.yaml"), *common],
    ]
    for argv in runs:
        out = subprocess.run(
            [str(cli), *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert out.stdout or out.stderr
        assert _leaks(out.stdout + out.stderr) == [], (argv, out.stdout[-500:], out.stderr[-500:])
    assert _leaks((tmp_path / "f.yaml").read_text()) == []
