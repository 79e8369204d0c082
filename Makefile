# modl — one command installs everything and runs the main job, one runs every test.
#   make all    create .venv, install, validate the catalog, regenerate README.md, build the site
#   make test   create .venv if needed, then run the whole test suite
SHELL := /bin/bash
PY    := .venv/bin/python
PIP   := .venv/bin/pip
export NO_MKDOCS_2_WARNING := 1

.PHONY: all setup validate readme site serve test bench bench-catalog bench-site bench-aggregators bench-deps bib json lint-readme clean

all: setup validate readme site

# The stamp is refreshed whenever pyproject.toml or package.json changes.
setup: .stamp-setup
.stamp-setup: pyproject.toml package.json package-lock.json
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	# The CPU wheel first: a bare torch requirement would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	npm ci --silent --no-audit --no-fund
	touch $@

validate: setup
	$(PY) -m modl validate

readme: setup
	$(PY) -m modl readme

site: setup
	$(PY) -m mkdocs build --strict

serve: site
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

bib: setup
	$(PY) -m modl bib --output catalog.bib

json: setup
	$(PY) -m modl export json --output catalog.json

lint-readme: setup
	$(PY) scripts/awesome_lint.py

test: setup
	$(PY) -m pytest -n 2 --dist loadfile

bench: bench-catalog bench-site bench-aggregators

bench-catalog: setup
	$(PY) benchmarks/catalog_scaling.py

bench-site: setup
	$(PY) benchmarks/site_build.py

# TorchJD is a benchmark-only dependency: it goes to .bench-deps/, never into the project's venv.
bench-deps: .bench-deps/.stamp
.bench-deps/.stamp: setup
	$(PIP) install --quiet --target .bench-deps --no-deps torchjd==0.18.0 quadprog qpsolvers cvxpy ecos clarabel osqp scs qdldl
	touch $@

bench-aggregators: bench-deps
	$(PY) benchmarks/aggregators.py

clean:
	rm -rf public .pytest_cache artifacts catalog.json catalog.bib
