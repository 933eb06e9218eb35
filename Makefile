# Two entry points for a fresh machine with only Python and the system compilers:
#   make test   - create .venv, install torch ($(TORCH_SPEC)) and the package, build the kernels,
#                 compile-check the CUDA sources when nvcc is present, lint, run the test suite.
#   make demo   - the same set-up, then the main job (synthetic THUMOS14-timed benchmark, A2Net).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
# torch's extension builder calls `ninja` from PATH; the venv's ninja must be found.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MAX_JOBS ?= 2

SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

.PHONY: test demo install cuda-check lint pytest bench clean

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet numpy scipy PyYAML tqdm matplotlib ninja setuptools wheel \
		pytest hypothesis ruff tensorboard
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.built

cuda-check: $(VENV)/.deps
	PYTHON=$(PY) bash scripts/cuda_check.sh

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check rc3d_af tests benchmarks setup.py

pytest: install
	$(PY) -m rc3d_af.ops
	RC3D_AF_REQUIRE_COMPILED=1 $(PY) -m pytest -q

test: install cuda-check lint pytest

demo: install
	$(PY) -m rc3d_af demo

bench: install
	$(PY) benchmarks/ops.py

clean:
	rm -rf build rc3d_af/_C*.so *.egg-info $(VENV)
