"""The documentation's examples: docstring doctests, and the docs build failing on a bad example.

The pages' own examples run in the docs build (``make test``'s sphinx line); these tests check
the docstring examples the API reference shows and that the example runner really fails the
build when an example breaks.
"""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXT = REPO / "docs" / "_ext"

#: Modules whose docstrings the API reference shows.
DOCUMENTED = (
    "intake_cpg",
    "intake_cpg.catalog",
    "intake_cpg.gallery_source",
    "intake_cpg.sources",
    "intake_cpg.readers",
    "intake_cpg.layout",
    "intake_cpg.layout.table",
    "intake_cpg.layout.templates",
    "intake_cpg.layout.names",
    "intake_cpg.storage",
    "intake_cpg.diskcache",
    "intake_cpg.manifest",
    "intake_cpg.manifest_catalog",
    "intake_cpg.etag",
    "intake_cpg.demo",
    "intake_cpg.errors",
)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def _build(tmp_path: Path, page: str) -> subprocess.CompletedProcess:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXT)!r})\n"
        "extensions = ['myst_parser', 'cpg_docs']\n"
        "exclude_patterns = ['_build']\n"
    )
    (src / "index.md").write_text(textwrap.dedent(page))
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


GOOD = """\
    # Examples

    ```{cpg-example}
    import intake
    cat = intake.open_cpg("demo-gallery")
    print("entries:", list(cat["cpg0016-jump"]))
    ```

    ```{cpg-example}
    :raises: ProductNotFoundError

    cat["cpg0016-jump"]["source_9"]
    ```
"""


def test_examples_run_and_their_output_is_shown(tmp_path):
    proc = _build(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    # a project lists its sources, then its project-level entries (issue 14)
    entries = "['source_13', 'source_2', 'source_4', 'source_5', 'profiles', 'plates', 'metadata']"
    assert f"entries: {entries}" in html
    assert "did you mean" in html and "source_9" in html


def test_a_broken_example_fails_the_build(tmp_path):
    broken = GOOD.replace('cat["cpg0016-jump"]["source_9"]', 'cat["cpg0016-jump"]["source_4"]')
    broken += """
    ```{cpg-example}
    cat["cpg0016-jump"]["source_4"]["profiles"](batch="no_such_batch")
    ```
    """
    proc = _build(tmp_path, broken)
    assert proc.returncode != 0
    # both failures are reported, with the page and line of each example
    assert "index.md:9" in proc.stderr and "expected ProductNotFoundError" in proc.stderr
    assert "index.md:15" in proc.stderr and "no_such_batch" in proc.stderr
    assert "2 docs example(s) failed" in proc.stderr
