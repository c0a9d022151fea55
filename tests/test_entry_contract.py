"""One contract, run for every row of the entry table on the demo gallery (local and loopback S3).

A row must: have a selector; have demo data (some source of the demo holds its product); list
the allowed values of its listed parameters; select keys that parse back to its product; load;
freeze with ``save`` and re-open through ``intake.open_catalog`` with the same result; read the
same through its generated Intake 2 reader. A row
added without one of these fails here (see the bogus-row tests at the end).

Project-level rows (``level="project"``) are checked the same way on a project where they
apply, next to its sources, with the demo's mirror of the JUMP metadata; a project-level row
that selects files must select them across every source that holds its product.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import intake
import pandas as pd
import pytest

from intake_cpg import intake2, storage
from intake_cpg.entries import ENTRY_TABLE, EntryRow, EntryTable, SourceView, describe_row
from intake_cpg.layout import parse_key
from intake_cpg.project import project_view
from intake_cpg.resolve import Gallery

SOURCE_ROWS = [r.name for r in ENTRY_TABLE.at_level("source")]
PROJECT_ROWS = [r.name for r in ENTRY_TABLE.at_level("project")]


def _demo_source(gallery: Gallery, row: EntryRow) -> tuple[str, str]:
    for project in gallery.projects():
        for source in gallery.sources(project):
            if row.product in gallery.present(project, source, [row.product]):
                return project, source
    raise AssertionError(f"entry row {row.name!r}: no demo data (no source holds {row.product!r})")


def _head(src: Any) -> pd.DataFrame:
    return src.to_dask().head(5, npartitions=-1).reset_index(drop=True)


def check_row(row: EntryRow, root: str, options: dict[str, Any] | None, tmp_path: Any) -> None:
    """Assert the contract for one row (AssertionError naming the row and the broken part)."""
    assert row.select is not None, f"entry row {row.name!r} has no selector"
    assert row.cli_path, f"entry row {row.name!r} has no CLI path"
    st = storage.get_storage(root, options)
    gallery = Gallery(st)
    project, source = _demo_source(gallery, row)
    view = SourceView(gallery, project, source)

    bound, values = _check_parameters(row, view)
    if row.output == "catalog":  # a child's default variant must exist in its default version
        values["variant"] = next(iter(_variants_of(row, view, values)))

    _check_selection(row, view, values, st)

    # it loads, through the catalog
    level = intake.open_cpg(root, storage_options=options)[project][source]
    if row.output == "catalog":
        level = level[row.name]
        name = bound[row.params[0].name]
    else:
        name = row.name
    assert name in list(level), f"{row.name}: the catalog does not list {name!r}"
    head = _head(level[name])
    assert len(head) and len(head.columns), f"{row.name}: loaded nothing"

    # its Intake 2 reader (generated from the row; a row with its own driver is read through
    # CPGSourceReader) reads the same
    v2 = level.to_intake2()[name]
    reader = intake2.CPGSourceReader if row.driver else intake2.reader_class(row.name, "dask")
    assert type(v2) is reader, f"{row.name}: no Intake 2 reader"
    pd.testing.assert_frame_equal(v2.read().head(5, npartitions=-1).reset_index(drop=True), head)

    # it freezes and re-opens with the same result
    path = tmp_path / f"{row.name}.yaml"
    level.save(str(path))
    frozen = intake.open_catalog(str(path))
    pd.testing.assert_frame_equal(_head(frozen[name]), head)


def _check_parameters(row: EntryRow, view: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters list their allowed values; gives the bound child (catalog rows) and the
    default values."""
    bound: dict[str, Any] = {}
    if row.output == "catalog":
        first = row.params[0].resolve(view, {})
        assert first.allowed, f"{row.name}: catalog row lists no {first.name}"
        bound = {first.name: first.allowed[0]}
    params, _ = describe_row(row, view, bound)
    for p in params:
        if row.param(p.name).allowed is not None:
            assert p.allowed, f"{row.name}: parameter {p.name!r} lists no allowed values"
    return bound, {**bound, **{p.name: p.default for p in params if p.default is not None}}


def _check_selection(row: EntryRow, view: Any, values: dict[str, Any], st: Any) -> list[Any]:
    """Every selected key parses back to the row's product; gives the selected files."""
    assert row.select is not None
    refs = row.select(view, values)
    assert refs, f"{row.name}: the selector chose no file for the defaults {values}"
    for ref in refs:
        assert parse_key(ref.key).product in row.products, (row.name, ref.key)
        assert ref.path is not None and ref.path.product in row.products, (row.name, ref.key)
        assert ref.url == st.url(ref.key)
    return refs


def _variants_of(row: EntryRow, view: SourceView, values: dict[str, Any]) -> list[str]:
    tree = view.gallery.assembled(view.project, view.source, row.product)
    return sorted(tree[values[row.params[0].name]][values["version"]])


@pytest.mark.parametrize("name", SOURCE_ROWS)
def test_row_contract_local(name, demo_local, tmp_path):
    check_row(ENTRY_TABLE[name], demo_local.root, None, tmp_path)


@pytest.mark.parametrize("name", SOURCE_ROWS)
def test_row_contract_s3(name, demo_s3, s3_options, tmp_path):
    check_row(ENTRY_TABLE[name], "s3://cpg-demo", s3_options, tmp_path)


# -- project-level rows ----------------------------------------------------------------------------
def _demo_project(gallery: Gallery, row: EntryRow, meta: dict[str, Any]) -> tuple[str, Any]:
    """The project where the row applies whose data spans the most sources."""
    found = []
    for project in gallery.projects():
        view = project_view(gallery, project, meta)
        if row.applies_to(view):
            n = len(view.sources_with(row.product)) if row.products else 1
            if n:
                found.append((n, project, view))
    if not found:
        raise AssertionError(f"entry row {row.name!r}: no demo data (no project where it applies)")
    _, project, view = max(found, key=lambda t: t[0])
    return project, view


def _child(entry: Any, row: EntryRow, bound: dict[str, Any]) -> Any:
    if row.output == "catalog":
        return entry[bound[row.params[0].name]]
    # the sources' feature sets differ (as in the bucket): a load that spans them names how
    # to align the columns (without, it is a SchemaMismatchError saying so)
    return entry(schema="union") if not row.driver else entry


def check_project_row(
    row: EntryRow, root: str, options: dict[str, Any] | None, meta: dict[str, Any], tmp_path: Any
) -> None:
    """The contract for a project-level row (AssertionError naming the row and the part)."""
    if row.products:
        assert row.select is not None, f"entry row {row.name!r} has no selector"
    else:  # a row that loads no gallery file is a catalog of its own (the JUMP metadata)
        assert row.driver and row.output == "catalog", f"{row.name}: no products and no driver"
    assert row.cli_path, f"entry row {row.name!r} has no CLI path"
    st = storage.get_storage(root, options)
    gallery = Gallery(st)
    project, view = _demo_project(gallery, row, meta)
    bound, values = _check_parameters(row, view)
    if row.select is not None:
        refs = _check_selection(row, view, values, st)
        spanned = {r.path.source for r in refs}
        assert spanned == set(view.sources_with(row.product)), (row.name, spanned)

    # it is listed next to the sources, and loads
    level = intake.open_cpg(root, storage_options=options, **meta)[project]
    assert row.entry_name in list(level), f"{row.name}: {project} does not list it"
    assert set(gallery.sources(project)) < set(level), f"{row.name}: sources not all listed"
    head = _head(_child(level[row.entry_name], row, bound))
    assert len(head) and len(head.columns), f"{row.name}: loaded nothing"

    # Intake 2 reads the same
    v2 = level.to_intake2()[row.entry_name]
    v2 = v2.read() if row.output == "catalog" else v2
    got = (v2[bound[row.params[0].name]] if bound else v2).read(
        **({"schema": "union"} if not row.driver else {})
    )
    pd.testing.assert_frame_equal(got.head(5, npartitions=-1).reset_index(drop=True), head)

    # it freezes and re-opens with the same result
    path = tmp_path / f"{row.name}.yaml"
    level.save(str(path))
    frozen = intake.open_catalog(str(path))
    pd.testing.assert_frame_equal(_head(_child(frozen[row.entry_name], row, bound)), head)


@pytest.fixture(scope="module")
def jump_meta(demo_jump):
    return {
        "metadata_root": demo_jump.metadata_root,
        "metadata_release": demo_jump.metadata_release,
    }


@pytest.mark.parametrize("name", PROJECT_ROWS)
def test_project_row_contract_local(name, demo_jump, jump_meta, tmp_path):
    check_project_row(ENTRY_TABLE[name], demo_jump.root, None, jump_meta, tmp_path)


@pytest.mark.parametrize("name", PROJECT_ROWS)
def test_project_row_contract_s3(name, demo_s3, s3_options, jump_meta, tmp_path):
    # the profiles from the loopback bucket, the JUMP metadata from the local mirror of the
    # same demo plates (the metadata is not in the bucket)
    check_project_row(ENTRY_TABLE[name], "s3://cpg-demo", s3_options, jump_meta, tmp_path)


def test_project_rows_are_listed_where_they_apply(demo_jump, jump_meta):
    cat = intake.open_cpg(demo_jump.root, **jump_meta)
    for project in ("cpg0016-jump", "cpg0016-jump-assembled"):
        assert {"profiles", "plates", "metadata"} <= set(cat[project]), project
    lincs = cat["cpg0004-lincs"]
    assert list(lincs) == ["broad", "profiles", "plates"]  # no JUMP metadata for LINCS
    # listing a project lists its sources only: the project rows cost nothing until used
    assert lincs["plates"].read().Metadata_Plate.tolist() == sorted(
        demo_jump.plates[demo_jump.plates.project == "cpg0004-lincs"].plate.unique()
    )


def test_a_project_row_without_a_selector_fails(demo_jump, jump_meta, tmp_path):
    bogus = replace(ENTRY_TABLE["project_profiles"], name="copy", select=None)
    with pytest.raises(AssertionError, match="no selector"):
        check_project_row(bogus, demo_jump.root, None, jump_meta, tmp_path)


def test_a_project_row_that_does_not_span_the_sources_fails(demo_jump, jump_meta, tmp_path):
    row = ENTRY_TABLE["project_profiles"]

    def one_source(view, params):
        return [r for r in row.select(view, params) if r.path.source == "source_4"]

    bogus = replace(row, select=one_source)
    with pytest.raises(AssertionError, match="project_profiles"):
        check_project_row(bogus, demo_jump.root, None, jump_meta, tmp_path)


# -- a row missing a piece fails the contract ----------------------------------------------------
def test_a_row_without_a_selector_fails(demo_local, tmp_path):
    bogus = replace(ENTRY_TABLE["profiles"], name="profiles_copy", select=None)
    table = EntryTable([*ENTRY_TABLE.values(), bogus])
    with pytest.raises(AssertionError, match="no selector"):
        check_row(table["profiles_copy"], demo_local.root, None, tmp_path)


def test_a_row_without_demo_data_fails(demo_local, tmp_path):
    bogus = replace(ENTRY_TABLE["profiles"], name="qc", products=("quality_control",))
    table = EntryTable([*ENTRY_TABLE.values(), bogus])
    with pytest.raises(AssertionError, match="no demo data"):
        check_row(table["qc"], demo_local.root, None, tmp_path)


def test_table_is_read_only_and_names_its_rows():
    with pytest.raises(TypeError):
        ENTRY_TABLE["x"] = ENTRY_TABLE["profiles"]  # type: ignore[index]
    with pytest.raises(KeyError, match="did you mean 'analysis'"):
        ENTRY_TABLE["analysys"]
    # the compartments exist once: the analysis row's allowed values include Experiment
    assert "Experiment" in ENTRY_TABLE["analysis"].param("compartment").allowed(None, {})
