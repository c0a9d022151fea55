"""Sphinx extension for the intake-cpg docs: executed examples against a demo gallery.

When the builder starts, a demo gallery is built (:func:`intake_cpg.build_demo`) into
``<workdir>/demo-gallery``, where ``<workdir>`` is a fresh temporary folder that also gets a
copy of the repository's ``catalogs/`` (so it looks like a clone after ``make demo``). Examples run with
``<workdir>`` as their current directory, so they open the gallery exactly as a reader who
followed the getting-started page does: ``intake.open_cpg("demo-gallery")``.

Directives:

``{cpg-example}``
    Runs its Python code at build time and renders the code followed by what it printed
    (stdout, stderr and log lines), like a notebook cell: when the last statement is an
    expression, its ``repr`` is shown too. Code blocks of one page share a namespace, in page
    order. An exception fails the build (exit status 1, with or without ``-W``), so a stale example
    cannot reach the published docs. Options: ``:raises: ExceptionName`` (the example must
    raise it; its message is shown as Python would show it), ``:hide-code:``,
    ``:hide-output:``.
``{cpg-shell}``
    Runs a shell command line (``python`` means this interpreter) in the work folder and shows
    ``$ <command>`` with its output; a non-zero exit status fails the build.
``{cpg-tree}``
    The gallery's folder tree, drawn from :data:`intake_cpg.layout.PRODUCT_SPECS`.
``{cpg-products}``
    A table of the products in :data:`intake_cpg.layout.PRODUCT_SPECS`.
``{cpg-parameters}``
    A table of the parameters of every table entry of the demo gallery's catalog, as
    ``entry.describe()`` reports them.

The temporary folder's path is shown as ``/home/you/cpg-work`` in outputs.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging as sphinx_logging
from sphinx.util.docutils import SphinxDirective

log = sphinx_logging.getLogger(__name__)

#: Where outputs say the examples ran (the real folder is a temporary one).
SHOWN_WORKDIR = "/home/you/cpg-work"
#: The demo gallery's folder name inside the work folder.
DEMO_NAME = "demo-gallery"
#: Environment variable holding the work folder (for code that wants it).
ENV_VAR = "INTAKE_CPG_DOCS_WORKDIR"


class _State:
    workdir: Path | None = None
    failures: list[str] = []  # reset at builder-inited


def _workdir() -> Path:
    if _State.workdir is None:
        raise ExtensionError("cpg_docs: the work folder was not prepared (builder-inited)")
    return _State.workdir


def _prepare(app: Sphinx) -> None:
    """Build the demo gallery into a fresh work folder."""
    import intake_cpg

    _State.failures = []
    workdir = Path(tempfile.mkdtemp(prefix="intake-cpg-docs-")).resolve()
    intake_cpg.build_demo(str(workdir / DEMO_NAME), jump_metadata=True)
    # Examples that use the YAML catalogs run as from a clone: catalogs/ beside demo-gallery/.
    catalogs = Path(app.confdir).parent / "catalogs"
    if catalogs.is_dir():
        shutil.copytree(catalogs, workdir / "catalogs")
    _State.workdir = workdir
    os.environ[ENV_VAR] = str(workdir)
    log.info("cpg_docs: demo gallery built in %s", workdir / DEMO_NAME)


def _finish(app: Sphinx, exception: BaseException | None) -> None:
    workdir, _State.workdir = _State.workdir, None
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    if exception is None and _State.failures:
        # Fail the build whatever the -W setting: a broken example must never be published.
        app.statuscode = 1
        log.error(
            "%d docs example(s) failed:\n%s", len(_State.failures), "\n".join(_State.failures)
        )


def _reread_everything(app: Sphinx, env: Any, added: set, changed: set, removed: set) -> list:
    """Re-read every page on every build: examples must run against today's library."""
    return sorted(env.found_docs - added - changed - removed)


def _shown(text: str) -> str:
    """Output with the temporary work folder replaced by :data:`SHOWN_WORKDIR`."""
    workdir = str(_workdir())
    return text.replace(workdir, SHOWN_WORKDIR).rstrip()


@contextlib.contextmanager
def _in_workdir() -> Any:
    old = os.getcwd()
    os.chdir(_workdir())
    try:
        yield
    finally:
        os.chdir(old)


def _run_cell(
    code: str, namespace: dict[str, Any], filename: str
) -> tuple[str, BaseException | None]:
    """Execute ``code`` like a notebook cell; return what it printed and the exception."""
    tree = ast.parse(code, filename=filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    out = io.StringIO()
    error: BaseException | None = None
    try:
        # Log records reach the output the way they reach a user's terminal: through logging's
        # last-resort handler, which writes WARNING and above to the current sys.stderr.
        with _in_workdir(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), namespace)
                if value is not None:
                    print(repr(value))
    except Exception as exc:  # the example's own failure, reported by the caller
        error = exc
    return out.getvalue(), error


def _exception_text(exc: BaseException) -> str:
    """How Python shows an exception's last line: ``Name: message``."""
    return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()


def _literal(text: str, language: str, classes: list[str]) -> nodes.literal_block:
    node = nodes.literal_block(text, text)
    node["language"] = language
    node["classes"] += classes
    return node


class ExampleDirective(SphinxDirective):
    """``{cpg-example}``: run the code, render code and output."""

    has_content = True
    option_spec = {
        "raises": directives.unchanged_required,
        "hide-code": directives.flag,
        "hide-output": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        namespace = self.env.temp_data.setdefault(
            "cpg_namespace", {"__name__": "__main__", "__builtins__": __builtins__}
        )
        where = f"{self.env.docname}:{self.lineno}"
        output, error = _run_cell(code, namespace, f"<{where}>")
        expected = self.options.get("raises")
        problem = None
        if expected:
            if error is None:
                problem = f"expected {expected} to be raised, but the example ran without error"
            elif type(error).__name__ != expected:
                problem = "raised " + _exception_text(error) + f", expected {expected}"
            else:
                output += "Traceback (most recent call last):\n  ...\n" + _exception_text(error)
        elif error is not None:
            # the example's frames only, not the runner's
            tb = "".join(
                traceback.format_exception(type(error), error, error.__traceback__.tb_next)
            )
            problem = f"raised an exception:\n{_shown(tb)}"
        if problem:
            _State.failures.append(f"{where}: {problem.splitlines()[-1]}")
            log.error("docs example %s", problem, location=(self.env.docname, self.lineno))
        out: list[nodes.Node] = []
        if "hide-code" not in self.options:
            out.append(_literal(code, "python", ["cpg-code"]))
        shown = _shown(output)
        if shown and "hide-output" not in self.options:
            out.append(_literal(shown, "none", ["cpg-output"]))
        return out


class ShellDirective(SphinxDirective):
    """``{cpg-shell}``: run a command line in the work folder, render it and its output."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        command = " ".join(line.strip() for line in self.content).strip()
        argv = shlex.split(command)
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        where = f"{self.env.docname}:{self.lineno}"
        proc = subprocess.run(
            argv, cwd=_workdir(), capture_output=True, text=True, timeout=120, check=False
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            _State.failures.append(f"{where}: `{command}` exited with {proc.returncode}")
            log.error(
                "docs command `%s` exited with %d:\n%s",
                command,
                proc.returncode,
                output,
                location=(self.env.docname, self.lineno),
            )
        text = f"$ {command}\n{_shown(output)}"
        return [_literal(text, "console", ["cpg-shell"])]


# -- generated from the layout table ----------------------------------------------------------
def _segment(seg: str) -> str:
    return seg.replace("{", "<").replace("}", ">")


def gallery_tree() -> str:
    """The folder tree of every product in ``PRODUCT_SPECS``, as box-drawing text."""
    from intake_cpg.layout import PRODUCT_SPECS

    trie: dict[str, Any] = {}
    for spec in PRODUCT_SPECS.values():
        segs = spec.template.split("/")[2:]  # below {project}/{source}/
        node = trie
        for seg in segs[:-1]:
            node = node.setdefault(_segment(seg) + "/", {})
        label = f"{spec.name} (tier {spec.tier})"
        leaf = node.setdefault(_segment(segs[-1]), {})
        leaf.setdefault("", []).append(label)

    lines = ["<project>/", "└── <source>/"]

    def walk(node: dict[str, Any], indent: str) -> None:
        names = [k for k in node if k]
        for i, name in enumerate(names):
            last = i == len(names) - 1
            child = node[name]
            labels = child.get("", [])
            text = f"{indent}{'└── ' if last else '├── '}{name}"
            if labels:
                text = f"{text}    ← {', '.join(labels)}"
            lines.append(text)
            walk(child, indent + ("    " if last else "│   "))

    walk(trie, "    ")
    return "\n".join(lines)


class TreeDirective(SphinxDirective):
    """``{cpg-tree}``: the folder tree drawn from the product table."""

    def run(self) -> list[nodes.Node]:
        return [_literal(gallery_tree(), "none", ["cpg-tree"])]


def _table(header: list[str], rows: list[list[str]], widths: list[int]) -> nodes.table:
    """A docutils table; the first column of the body is shown as code."""
    table = nodes.table(classes=["cpg-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    for target, cells_rows in ((head, [header]), (body, rows)):
        for cells in cells_rows:
            row = nodes.row()
            for i, cell in enumerate(cells):
                code = target is body and i == 0
                inner = nodes.literal(cell, cell) if code else nodes.Text(cell)
                row += nodes.entry("", nodes.paragraph("", "", inner))
            target += row
    return table


class ProductsDirective(SphinxDirective):
    """``{cpg-products}``: one row per product of the layout table."""

    def run(self) -> list[nodes.Node]:
        from intake_cpg.layout import PRODUCT_SPECS

        rows = [
            [spec.name, str(spec.tier), ", ".join(spec.levels) or "-", spec.description]
            for spec in PRODUCT_SPECS.values()
        ]
        return [_table(["product", "tier", "levels", "description"], rows, [22, 5, 28, 60])]


class ParametersDirective(SphinxDirective):
    """``{cpg-parameters}``: the parameters of every table entry of the demo catalog."""

    def run(self) -> list[nodes.Node]:
        import intake

        from intake_cpg.entries import ENTRY_TABLE

        with _in_workdir():
            mirror = f"{DEMO_NAME}/jump-metadata"
            cat = intake.open_cpg(
                DEMO_NAME,
                metadata_root=f"{mirror}/metadata",
                metadata_release=f"{mirror}/pins.csv",
            )
            seen: dict[str, Any] = {}
            for project in cat:
                level = cat[project]
                for row in ENTRY_TABLE.at_level("project"):  # the entries next to the sources
                    if row.output == "table" and row.entry_name in level:
                        seen.setdefault(f"<project>/{row.entry_name}", level[row.entry_name])
                for source in level.gallery.sources(project):
                    for product in cat[project][source]:
                        entry = cat[project][source][product]
                        if product == "profiles_assembled":
                            subsets = list(entry)
                            if subsets:
                                seen.setdefault("profiles_assembled/<subset>", entry[subsets[0]])
                        else:
                            seen.setdefault(product, entry)
        rows = []
        for name, entry in seen.items():
            for p in entry.describe()["user_parameters"]:
                default = p.get("default")
                rows.append([name, p["name"], p["type"], repr(default), p["description"]])
        return [
            _table(
                ["entry", "parameter", "type", "default (demo)", "description"],
                rows,
                [24, 12, 6, 20, 50],
            )
        ]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("cpg-example", ExampleDirective)
    app.add_directive("cpg-shell", ShellDirective)
    app.add_directive("cpg-tree", TreeDirective)
    app.add_directive("cpg-products", ProductsDirective)
    app.add_directive("cpg-parameters", ParametersDirective)
    app.connect("builder-inited", _prepare)
    app.connect("env-get-outdated", _reread_everything)
    app.connect("build-finished", _finish)
    app.add_css_file("cpg.css")
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
