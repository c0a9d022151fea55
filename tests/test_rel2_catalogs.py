"""Reliability round two (issue 17): what opening a catalog can do with the environment.

Intake expands ``{{ env(X) }}`` in the arguments of the entries it builds (``getenv=True`` is
its default). intake-cpg's own catalog levels never do: a root or ``storage_options`` value
that looks like a template is passed on as the text it is, so no environment variable can
travel to an endpoint through a catalog intake-cpg builds. The catalogs shipped in
``catalogs/`` and the YAML ``freeze``/``save`` writes contain no ``env()``/``shell()``
template at all. What a hand-written (or tampered) YAML file can still do is documented in
``docs/reliability.md`` and ``docs/howto/freeze.md``; these tests pin the facts those pages
state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import intake
import pytest
import yaml
from faultproxy import FaultProxy

from intake_cpg import storage

REPO = Path(__file__).resolve().parents[1]
SECRET = "i17-not-for-export"


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture
def secret_env(monkeypatch) -> str:
    monkeypatch.setenv("I17_SECRET", SECRET)
    return SECRET


def test_catalog_levels_do_not_expand_env_in_storage_options(demo_s3, moto_server, secret_env):
    storage._SHARED.clear()
    template = "{{ env('I17_SECRET') }}"
    with FaultProxy(moto_server) as proxy:
        opts = {
            "client_kwargs": {"endpoint_url": proxy.url},
            "config_kwargs": {"user_agent_extra": template},  # sent with every request
        }
        cat = intake.open_cpg("s3://cpg-demo", storage_options=opts)
        source = cat["cpg0016-jump"]["source_4"]
        entry = source["profiles"](batch="2021_04_26_Batch1", plate="BR00117037")
        assert len(entry.read()) > 0
        for level in (cat["cpg0016-jump"], source, entry):
            assert level.storage.storage_options["config_kwargs"]["user_agent_extra"] == template
        assert proxy.log and not [r for r in proxy.log if SECRET in repr(r.headers)]
    assert SECRET not in repr(entry.describe())
    storage._SHARED.clear()


def test_catalog_levels_do_not_expand_env_in_the_root(tmp_path, secret_env):
    storage._SHARED.clear()
    weird = tmp_path / "{{ env('I17_SECRET') }}"
    (weird / "cpg0016-jump" / "source_4" / "workspace" / "profiles").mkdir(parents=True)
    cat = intake.open_cpg(str(weird))
    project = cat["cpg0016-jump"]
    assert SECRET not in project.storage.root
    # its one source, then the project-level entries (the JUMP project has its metadata)
    assert list(project) == ["source_4", "profiles", "plates", "metadata"]


def test_frozen_catalog_and_shipped_catalogs_hold_no_env_or_shell_template(demo_local, tmp_path):
    storage._SHARED.clear()
    out = tmp_path / "frozen.yaml"
    intake.open_cpg(demo_local.root)["cpg0016-jump"]["source_4"].save(str(out))
    for fn in [out, *sorted((REPO / "catalogs").glob("*.yaml"))]:
        doc = yaml.safe_load(fn.read_text())
        texts = _strings(doc)
        assert texts, fn
        bad = [t for t in texts if "env(" in t or "shell(" in t]
        assert bad == [], (fn, bad)


def test_a_yaml_catalog_opened_with_getenv_false_does_not_expand_env(tmp_path, secret_env):
    # The advice docs/howto/freeze.md gives for catalogs from elsewhere.
    fn = tmp_path / "shared.yaml"
    fn.write_text(
        "sources:\n  g:\n    driver: cpg\n    args:\n"
        f"      urlpath: {tmp_path}\n"
        "      storage_options: {note: \"{{ env('I17_SECRET') }}\"}\n"
    )
    trusted = intake.open_catalog(str(fn)).g
    assert trusted._captured_init_kwargs["storage_options"]["note"] == SECRET  # intake's default
    untrusted = intake.open_catalog(str(fn), getenv=False, getshell=False).g
    assert SECRET not in repr(untrusted._captured_init_kwargs)
