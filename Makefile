# modl — one command installs everything and runs the main job, one runs every test.
#   make all          create .venv from the lock, validate the catalog, regenerate README.md, build the site
#   make test         create .venv if needed, then run the whole test suite (and the solver tests under two
#                     more OpenBLAS kernels)
#   make lock         regenerate requirements/lock.txt (keeps the current pins where still allowed)
#   make lock-upgrade regenerate it with the newest allowed versions
#   make test-latest  install the newest allowed versions into .venv-latest and run the tests there
#   make bench-suite  every method on the results suites (modl bench; BENCH_ARGS="--quick" for the short one)
#   make figures      regenerate the papers' toy figures from our implementations
SHELL := /bin/bash
PYTHON ?= python3
PY    := .venv/bin/python
PIP   := .venv/bin/pip
export NO_MKDOCS_2_WARNING := 1

# The environment is locked (Python 3.11, Linux x86-64): requirements/torch.txt pins torch, which is
# installed first and on its own from the CPU wheel; requirements/lock.txt pins everything else.
# On a standard machine `pip install torch==...` fetches the multi-GB CUDA build from PyPI, so pass the
# PyTorch CPU wheel index: make all TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (empty by default: on the machine this repository is developed on, pip's configuration serves the
# CPU wheel from local disk).
LOCK        := requirements/lock.txt
TORCH_PIN   := requirements/torch.txt
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
# test-latest keeps torch at the pin by default; elsewhere: make test-latest TORCH_LATEST='torch<2.15' TORCH_INDEX=...
TORCH_LATEST ?= -r $(TORCH_PIN)

# make lock: uv (pinned, installed into .tools/, never into the project's venv) resolves pyproject.toml's
# [dev] extra plus requirements/lock.in against the torch pin, for Python 3.11 on Linux x86-64, from PyPI.
# torch and its CUDA-only dependencies (nvidia-*, cuda-*, triton) are left out of the lock: the CPU
# wheel of torch needs none of them.
UV_VERSION := 0.13.9
UV         := .tools/venv/bin/uv
LOCK_ARGS  := pyproject.toml requirements/lock.in --extra dev -c $(TORCH_PIN) --python-version 3.11 \
              --python-platform x86_64-unknown-linux-gnu --index-url https://pypi.org/simple \
              --custom-compile-command "make lock" --quiet
CUDA_ONLY  := ^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==

# The numerics-heavy tests that `make test` reruns under OpenBLAS's Prescott (SSE3) and Haswell (AVX2)
# kernels, besides the machine's native one: solvers must not depend on the BLAS kernel.
NUMERICS_TESTS := $(wildcard $(addprefix tests/reference_impls/test_,$(addsuffix .py,\
  solvers cagrad upgrad mgda sdmgrad fairgrad nash_mtl properties degenerate db_mtl pcgrad gradvac gradnorm \
  aligned_mtl imtl_g bilevel_ridge auto_lambda moml forum uw stch smg psmgd mgda_gs cr_mogm modo \
  lp set_core metrics xwc_mgda ferero tch hypervolume clusters stch_set most moo_svgd sum_of_minimum pareto_core)))
BLAS_KERNELS ?= Prescott Haswell
# The kernel numpy's OpenBLAS picked on this machine (empty when it cannot be told): a rerun under the
# same kernel would repeat the main run, so it is skipped.
BLAS_NATIVE_CMD := import ctypes, glob, os, numpy; \
  lib = ctypes.CDLL(glob.glob(os.path.dirname(numpy.__file__) + ".libs/libscipy_openblas*")[0]); \
  name = lib.scipy_openblas_get_corename64_; name.restype = ctypes.c_char_p; print(name().decode())

.PHONY: all setup validate readme site serve test test-latest lock lock-upgrade bench bench-catalog bench-site \
        bench-aggregators bench-step bench-toy bench-deps bench-suite figures bib json lint-readme clean

all: setup validate readme site

# The stamp is refreshed whenever pyproject.toml, the lock or package.json changes.
setup: .stamp-setup
.stamp-setup: pyproject.toml $(LOCK) $(TORCH_PIN) package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv .venv
	# torch first, from the CPU wheel (see TORCH_INDEX above); then the lock, exactly, without resolving.
	$(PIP) install --quiet -r $(TORCH_PIN) $(TORCH_INDEX_ARGS)
	$(PIP) install --quiet --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
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

# The whole suite, then the numerics-heavy tests again under each other OpenBLAS kernel. The browser
# test skips without Chromium: say so at the end, where it is seen.
test: setup
	@status=0; \
	$(PY) -m pytest -n 2 --dist loadfile || status=$$?; \
	if [ $$status -eq 0 ] && [ -n "$(NUMERICS_TESTS)" ]; then \
	  native=$$(env -u OPENBLAS_CORETYPE $(PY) -c '$(BLAS_NATIVE_CMD)' 2>/dev/null || true); \
	  for kernel in $(BLAS_KERNELS); do \
	    if [ "$$kernel" = "$$native" ]; then echo "== $$kernel is this machine's OpenBLAS kernel: tested above"; continue; fi; \
	    echo "== numerics tests under OPENBLAS_CORETYPE=$$kernel"; \
	    OPENBLAS_CORETYPE=$$kernel $(PY) -m pytest -q -n 2 --dist loadfile $(NUMERICS_TESTS) || { status=$$?; break; }; \
	  done; \
	fi; \
	if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  echo "make test: SKIPPED the browser tests (tests/site/test_browser*.py): Chromium is not installed."; \
	  echo "  To run it: sudo apt-get install chromium (Debian; on Ubuntu: a chromium that is not a snap), then make test."; \
	fi; \
	exit $$status

# Drift check on purpose: a fresh .venv-latest with the newest versions pyproject.toml allows (torch stays
# at the pin unless TORCH_LATEST says otherwise), how they differ from the lock, then the test suite
# (or TESTS="tests/catalog ...").
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet $(TORCH_LATEST) $(TORCH_INDEX_ARGS)
	.venv-latest/bin/pip install --quiet -e '.[dev]'
	.venv-latest/bin/pip check
	@echo "== drift: < the lock, > the newest allowed versions"
	@diff <(grep -E '^[A-Za-z0-9]' $(LOCK) | sed 's/ .*//' | tr 'A-Z_' 'a-z-' | sort) \
	      <(.venv-latest/bin/pip freeze --all --exclude-editable | grep -v '^torch==' | tr 'A-Z_' 'a-z-' | sort) \
	  && echo "none: the lock holds the newest allowed versions" || true
	.venv-latest/bin/python -m pytest -n 2 --dist loadfile $(TESTS)

$(UV):
	$(PYTHON) -m venv .tools/venv
	.tools/venv/bin/pip install --quiet uv==$(UV_VERSION)

lock: $(UV)
	cp $(LOCK) .tools/lock-full.txt 2>/dev/null || true  # the current pins are uv's preferences
	$(UV) pip compile $(LOCK_ARGS) -o .tools/lock-full.txt
	$(UV) pip compile $(LOCK_ARGS) -o $(LOCK) \
	  $$(sed -nE 's/$(CUDA_ONLY).*/--no-emit-package \1/p' .tools/lock-full.txt)

lock-upgrade: $(UV)
	$(UV) pip compile $(LOCK_ARGS) --upgrade -o .tools/lock-full.txt
	$(UV) pip compile $(LOCK_ARGS) --upgrade -o $(LOCK) \
	  $$(sed -nE 's/$(CUDA_ONLY).*/--no-emit-package \1/p' .tools/lock-full.txt)

bench: bench-catalog bench-site bench-aggregators bench-step

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

# Whole training steps: our backward() against TorchJD's mtl_backward + jac_to_grad and the floor.
bench-step: bench-deps
	$(PY) benchmarks/training_step.py

# The paper-default toy run (cagrad-toy, 35,000 steps x 5 starts) of every method: run and method time.
bench-toy: setup
	$(PY) benchmarks/toy_runs.py --store

# Every registered method on the results suites (issue 15): resumable cells in artifacts/bench/cells/, the
# results in benchmarks/results/suites/ (committed). BENCH_ARGS="--quick" for the CI-sized sweep.
bench-suite: setup
	$(PY) -m modl bench --jobs $$(nproc) $(BENCH_ARGS)

# The papers' toy figures regenerated from our implementations (issue 15): benchmarks/results/figures/*.{png,json},
# committed and shown on the method pages; each script's --all, or figure ids (e.g. toy_trajectories.py cagrad).
figures: setup
	$(PY) benchmarks/figures/toy_trajectories.py --all
	$(PY) benchmarks/figures/concave_front.py --all
	$(PY) benchmarks/figures/fronts.py --all

clean:
	rm -rf public .pytest_cache artifacts catalog.json catalog.bib
