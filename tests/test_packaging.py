"""The conda recipes agree with setup.cfg, the Intake entry points resolve, and a real `.conda` builds.

``conda-recipe/meta.yaml`` (conda-forge, rendered here with jinja2 + PyYAML the way conda-build
would) and ``conda-recipe/recipe.yaml`` (rattler-build v1, rendered by py-rattler-build) must carry
the same version, python bound, run requirements and console entry points as ``setup.cfg``. The
slow test builds ``recipe.yaml`` offline against an empty local channel and opens the package.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import io
import json
import re
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

REPO = Path(__file__).resolve().parents[1]
SETUP_CFG = REPO / "setup.cfg"
META_YAML = REPO / "conda-recipe" / "meta.yaml"
RECIPE_YAML = REPO / "conda-recipe" / "recipe.yaml"

# Every PyPI requirement of setup.cfg and its conda-forge package name. A new install_requires
# entry fails the drift test until it is added here (and to both recipes).
# dask[dataframe]: conda-forge's "dask" metapackage drags in bokeh, lz4, ...; "dask-core" is dask
# itself, and the extra's own requirements (pandas, pyarrow) are direct requirements anyway.
PYPI_TO_CONDA: dict[str, str] = {
    "intake": "intake",
    "fsspec": "fsspec",
    "s3fs": "s3fs",
    "dask[dataframe]": "dask-core",
    "distributed": "distributed",
    "pyarrow": "pyarrow",
    "polars": "polars",
    "pandas": "pandas",
    "jinja2": "jinja2",
    "pyyaml": "pyyaml",
    "pooch": "pooch",
}

INTAKE_DRIVERS = ("cpg", "cpg_manifest", "cpg_profiles")


# --------------------------------------------------------------------------- what setup.cfg says


def read_setup_cfg(path: Path = SETUP_CFG) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(path, encoding="utf-8")
    return cfg


def cfg_lines(value: str) -> list[str]:
    """The non-empty, non-comment lines of a multi-line setup.cfg value."""
    lines = (line.split("#", 1)[0].strip() for line in value.splitlines())
    return [line for line in lines if line]


def cfg_entry_points(cfg: configparser.ConfigParser, group: str) -> dict[str, str]:
    """``{name: "module:attr"}`` of one entry point group of setup.cfg."""
    pairs = (line.split("=", 1) for line in cfg_lines(cfg["options.entry_points"][group]))
    return {name.strip(): value.strip() for name, value in pairs}


def conda_key(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name.lower()}{extras}"


@dataclass(frozen=True)
class PackageFacts:
    """What has to agree between setup.cfg and a recipe (specs as PEP 440 specifier sets)."""

    version: str
    python: SpecifierSet
    run: dict[str, SpecifierSet]  # conda name -> bounds, python excluded
    console_scripts: dict[str, str]
    license: str


def setup_cfg_facts(cfg: configparser.ConfigParser) -> PackageFacts:
    run: dict[str, SpecifierSet] = {}
    for line in cfg_lines(cfg["options"]["install_requires"]):
        req = Requirement(line)
        key = conda_key(req)
        assert key in PYPI_TO_CONDA, (
            f"setup.cfg requires {key!r}, which has no conda name in PYPI_TO_CONDA; add it there "
            "and to conda-recipe/meta.yaml and conda-recipe/recipe.yaml"
        )
        run[PYPI_TO_CONDA[key]] = req.specifier
    return PackageFacts(
        version=cfg["metadata"]["version"].strip(),
        python=SpecifierSet(cfg["options"]["python_requires"].strip()),
        run=run,
        console_scripts=cfg_entry_points(cfg, "console_scripts"),
        license=cfg["metadata"]["license"].strip(),
    )


# --------------------------------------------------------------------------- what a recipe says


def parse_conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """``"intake >=2.0.9,<3"`` -> ``("intake", SpecifierSet(">=2.0.9,<3"))``.

    Only the PEP 440 compatible subset of conda's match specs is accepted, so that a bound can be
    compared with setup.cfg's.
    """
    name, _, bounds = spec.strip().partition(" ")
    bounds = bounds.replace(" ", "")
    try:
        return name, SpecifierSet(bounds)
    except InvalidSpecifier as exc:
        raise AssertionError(f"conda spec {spec!r} has bounds that are not PEP 440") from exc


def parse_entry_point(line: str) -> tuple[str, str]:
    name, _, value = line.partition("=")
    return name.strip(), value.strip()


def recipe_facts(
    *, version: Any, run: list[str], entry_points: list[str], license: Any
) -> PackageFacts:
    specs = dict(parse_conda_spec(str(spec)) for spec in run)
    python = specs.pop("python", None)
    assert python is not None, f"no python in the run requirements {run}"
    return PackageFacts(
        version=str(version),
        python=python,
        run=specs,
        console_scripts=dict(parse_entry_point(line) for line in entry_points),
        license=str(license),
    )


def drift(expected: PackageFacts, found: PackageFacts) -> list[str]:
    """Human-readable differences between setup.cfg's facts and a recipe's (empty = in sync)."""
    problems = []
    if found.version != expected.version:
        problems.append(f"version {found.version!r}, setup.cfg says {expected.version!r}")
    if found.python != expected.python:
        problems.append(f"python {found.python}, setup.cfg python_requires {expected.python}")
    for name in sorted(expected.run.keys() - found.run.keys()):
        problems.append(f"run requirement {name} {expected.run[name]} is missing")
    for name in sorted(found.run.keys() - expected.run.keys()):
        problems.append(f"run requirement {name} is not in setup.cfg install_requires")
    for name in sorted(expected.run.keys() & found.run.keys()):
        if found.run[name] != expected.run[name]:
            problems.append(f"{name} bounds {found.run[name]}, setup.cfg says {expected.run[name]}")
    if found.console_scripts != expected.console_scripts:
        problems.append(
            f"entry points {found.console_scripts}, setup.cfg console_scripts "
            f"{expected.console_scripts}"
        )
    if found.license != expected.license:
        problems.append(f"license {found.license!r}, setup.cfg says {expected.license!r}")
    return problems


# conda-build's jinja context: only what a noarch recipe could plausibly use. The stubs render
# something recognisable so that a recipe starting to use them shows up in the facts.
def _stub(name: str):
    def stub(*args: Any, **kwargs: Any) -> str:
        return f"<{name}{args!r}>"

    return stub


CONDA_BUILD_JINJA = {
    "PYTHON": "$PYTHON",
    "environ": {},
    "compiler": _stub("compiler"),
    "stdlib": _stub("stdlib"),
    "pin_compatible": _stub("pin_compatible"),
    "pin_subpackage": _stub("pin_subpackage"),
    "cdt": _stub("cdt"),
    "load_setup_py_data": lambda *a, **k: {},
}

SELECTOR = re.compile(r"#\s*\[[^\]]+\]\s*$")


def render_meta_yaml(text: str) -> dict[str, Any]:
    """Render a conda-build recipe with jinja2 and load it with PyYAML."""
    selectors = [line for line in text.splitlines() if SELECTOR.search(line)]
    assert not selectors, f"a noarch recipe should not need platform selectors: {selectors}"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    rendered = env.from_string(text).render(**CONDA_BUILD_JINJA)
    return yaml.safe_load(rendered)


def meta_yaml_facts(meta: dict[str, Any]) -> PackageFacts:
    return recipe_facts(
        version=meta["package"]["version"],
        run=meta["requirements"]["run"],
        entry_points=meta["build"].get("entry_points", []),
        license=meta["about"]["license"],
    )


def render_recipe_yaml(path: Path = RECIPE_YAML) -> dict[str, Any]:
    """Render the rattler-build recipe with rattler-build itself (stage 0 -> stage 1)."""
    from rattler_build import Stage0Recipe

    variants = Stage0Recipe.from_file(path).render()
    assert len(variants) == 1, f"expected one variant of {path.name}, got {len(variants)}"
    return variants[0].recipe.to_dict()


def recipe_yaml_facts(recipe: dict[str, Any]) -> PackageFacts:
    return recipe_facts(
        version=recipe["package"]["version"],
        run=recipe["requirements"]["run"],
        entry_points=recipe["build"].get("python", {}).get("entry_points", []),
        license=recipe["about"]["license"],
    )


@pytest.fixture(scope="module")
def expected() -> PackageFacts:
    return setup_cfg_facts(read_setup_cfg())


@pytest.fixture(scope="module")
def meta() -> dict[str, Any]:
    return render_meta_yaml(META_YAML.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- meta.yaml


def test_setup_cfg_facts_are_what_setup_cfg_says(expected: PackageFacts) -> None:
    import intake_cpg

    assert expected.version == intake_cpg.__version__
    assert expected.python == SpecifierSet(">=3.11")
    assert expected.run["intake"] == SpecifierSet(">=2.0.9,<3")
    assert "dask-core" in expected.run and "dask" not in expected.run
    assert expected.console_scripts == {"intake-cpg": "intake_cpg.cli:main"}


def test_meta_yaml_matches_setup_cfg(meta: dict[str, Any], expected: PackageFacts) -> None:
    assert drift(expected, meta_yaml_facts(meta)) == []


def test_meta_yaml_is_a_noarch_python_pip_recipe(
    meta: dict[str, Any], expected: PackageFacts
) -> None:
    assert meta["package"]["name"] == "intake-cpg"
    build = meta["build"]
    assert build["noarch"] == "python"
    assert build["script"] == "$PYTHON -m pip install . -vv --no-deps --no-build-isolation"
    host = dict(parse_conda_spec(spec) for spec in meta["requirements"]["host"])
    assert host["python"] == expected.python
    assert {"pip", "setuptools", "wheel"} <= host.keys()
    source = meta["source"]
    assert source["url"] == (
        "https://pypi.org/packages/source/i/intake-cpg/intake_cpg-" + expected.version + ".tar.gz"
    )
    assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"])
    assert "intake_cpg" in meta["test"]["imports"]
    assert "intake-cpg --help" in meta["test"]["commands"]
    about = meta["about"]
    assert about["license_file"] == "LICENSE" and (REPO / "LICENSE").is_file()
    assert "BSD 3-Clause" in (REPO / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ('{% set version = "0.1.0" %}', '{% set version = "0.1.1" %}', "version '0.1.1'"),
        ("- pandas >=3.1.1\n", "- pandas >=3.0\n", "pandas bounds >=3.0"),
        ("- intake >=2.0.9,<3\n", "- intake >=2.0.9\n", "intake bounds >=2.0.9"),
        ("- pyyaml >=6.0.3\n", "", "run requirement pyyaml >=6.0.3 is missing"),
        ("- jinja2 >=3.1.6\n", "- jinja2 >=3.1.6\n    - zarr\n", "zarr is not in setup.cfg"),
        ("- dask-core >=", "- dask >=", "run requirement dask-core >=2026.8.0 is missing"),
        ('{% set python_min = "3.11" %}', '{% set python_min = "3.10" %}', "python >=3.10"),
        ("intake_cpg.cli:main", "intake_cpg.cli:run", "entry points"),
    ],
)
def test_drift_is_reported(old: str, new: str, complaint: str, expected: PackageFacts) -> None:
    text = META_YAML.read_text(encoding="utf-8")
    assert old in text, f"the mutation target {old!r} is no longer in meta.yaml"
    problems = drift(expected, meta_yaml_facts(render_meta_yaml(text.replace(old, new, 1))))
    assert any(complaint in problem for problem in problems), problems


def test_setup_cfg_requirement_without_conda_name_fails(tmp_path: Path) -> None:
    cfg = read_setup_cfg()
    cfg["options"]["install_requires"] += "\nxarray>=2025.1"
    with pytest.raises(AssertionError, match="'xarray', which has no conda name"):
        setup_cfg_facts(cfg)


def test_unknown_jinja_names_fail_the_render() -> None:
    with pytest.raises(jinja2.UndefinedError, match="load_file_regex"):
        render_meta_yaml("package:\n  name: {{ load_file_regex() }}\n")


def test_platform_selectors_are_refused() -> None:
    with pytest.raises(AssertionError, match="selectors"):
        render_meta_yaml("build:\n  skip: true  # [win]\n")


# --------------------------------------------------------------------------- recipe.yaml


def test_recipe_yaml_matches_setup_cfg(expected: PackageFacts) -> None:
    recipe = render_recipe_yaml()
    assert drift(expected, recipe_yaml_facts(recipe)) == []
    assert recipe["package"]["name"] == "intake-cpg"
    assert recipe["build"]["noarch"] == "python"


def test_both_recipes_list_requirements_in_the_same_order(meta: dict[str, Any]) -> None:
    recipe = render_recipe_yaml()
    assert [str(s) for s in recipe["requirements"]["run"]] == meta["requirements"]["run"]


# --------------------------------------------------------------------------- Intake entry points


@pytest.mark.parametrize("driver", INTAKE_DRIVERS)
def test_intake_driver_entry_point_resolves(driver: str) -> None:
    from intake.source.base import DataSource

    declared = cfg_entry_points(read_setup_cfg(), "intake.drivers")
    assert set(declared) == set(INTAKE_DRIVERS)
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="intake.drivers")}
    assert driver in installed, (
        f"intake.drivers entry point {driver!r} is not installed; run `pip install -e .` again"
    )
    ep = installed[driver]
    assert ep.value == declared[driver], "installed metadata is stale: run `pip install -e .`"
    cls = ep.load()
    module_name, _, class_name = declared[driver].partition(":")
    assert cls.__module__ == module_name and cls.__name__ == class_name
    assert issubclass(cls, DataSource)


@pytest.mark.parametrize("driver", INTAKE_DRIVERS)
def test_intake_open_function_exists(driver: str) -> None:
    import intake

    opener = getattr(intake, f"open_{driver}")
    declared = cfg_entry_points(read_setup_cfg(), "intake.drivers")[driver]
    module_name, _, class_name = declared.partition(":")
    assert opener is getattr(importlib.import_module(module_name), class_name)


# --------------------------------------------------------------------------- a real .conda


def read_conda_archive(path: Path) -> dict[str, dict[str, bytes]]:
    """``{"pkg": {member: bytes}, "info": {...}}`` of a ``.conda`` (zip of two zstd tarballs)."""
    import zstandard

    parts: dict[str, dict[str, bytes]] = {}
    with zipfile.ZipFile(path) as outer:
        names = outer.namelist()
        assert "metadata.json" in names, names
        for kind in ("pkg", "info"):
            (inner,) = [n for n in names if n.startswith(f"{kind}-") and n.endswith(".tar.zst")]
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(outer.read(inner)))
            with tarfile.open(fileobj=io.BytesIO(raw.read()), mode="r:") as tar:
                parts[kind] = {
                    m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in tar.getmembers()
                    if m.isfile()
                }
    return parts


@pytest.fixture(scope="module")
def built_conda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build conda-recipe/recipe.yaml offline: an empty local channel, nothing to download."""
    from rattler_build import Stage0Recipe, ToolConfiguration

    root = tmp_path_factory.mktemp("conda-build")
    channel = root / "empty-channel"
    (channel / "noarch").mkdir(parents=True)
    (channel / "noarch" / "repodata.json").write_text(
        json.dumps({"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTAKE_CPG_BUILD_PYTHON", sys.executable)
        results = Stage0Recipe.from_file(RECIPE_YAML).run_build(
            output_dir=root / "output",
            channels=[channel.as_uri()],
            tool_config=ToolConfiguration(test_strategy="skip"),
            package_format="conda",
        )
    (result,) = results
    (package,) = result.packages
    return Path(package)


@pytest.mark.slow
def test_built_conda_package(built_conda: Path, expected: PackageFacts) -> None:
    cfg = read_setup_cfg()
    assert re.fullmatch(
        rf"intake-cpg-{re.escape(expected.version)}-pyh\w+_0\.conda", built_conda.name
    )
    assert built_conda.parent.name == "noarch"
    parts = read_conda_archive(built_conda)
    pkg, info = parts["pkg"], parts["info"]

    # noarch python layout: site-packages/ at the root, no interpreter-specific folders or scripts
    # every module and data file of the working tree (package_data: data/**, py.typed)
    sources = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "intake_cpg").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    assert "intake_cpg/py.typed" in sources
    missing = [source for source in sources if f"site-packages/{source}" not in pkg]
    assert not missing, f"files missing from the package: {missing}"
    init = pkg["site-packages/intake_cpg/__init__.py"]
    assert init == (REPO / "intake_cpg" / "__init__.py").read_bytes()
    assert not [name for name in pkg if not name.startswith("site-packages/")]

    # the wheel metadata carries the Intake driver entry points, as setup.cfg declares them
    dist_info = f"site-packages/intake_cpg-{expected.version}.dist-info"
    entry_points = configparser.ConfigParser(interpolation=None)
    entry_points.optionxform = str  # type: ignore[assignment,method-assign]
    entry_points.read_string(pkg[f"{dist_info}/entry_points.txt"].decode())
    assert dict(entry_points["intake.drivers"]) == cfg_entry_points(cfg, "intake.drivers")
    assert dict(entry_points["console_scripts"]) == expected.console_scripts
    assert f"{dist_info}/direct_url.json" not in pkg

    # conda metadata: noarch python, run deps, and the console script conda creates at install time
    index = json.loads(info["info/index.json"])
    link = json.loads(info["info/link.json"])
    assert (index["name"], index["noarch"], index["subdir"]) == ("intake-cpg", "python", "noarch")
    assert link["noarch"]["type"] == "python"
    facts = recipe_facts(
        version=index["version"],
        run=index["depends"],
        entry_points=link["noarch"]["entry_points"],
        license=index["license"],
    )
    assert drift(expected, facts) == []
    paths = {entry["_path"] for entry in json.loads(info["info/paths.json"])["paths"]}
    assert paths == set(pkg)
