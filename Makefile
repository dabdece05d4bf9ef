SHELL := /bin/bash
# The commands the README names. Everything installs into .venv on first use.
#   make demo       ganfast info + `ganfast train` on the default (digits, minutes on a CPU)
#   make test       the whole CPU suite (Triton kernels under the interpreter included)
#   make bench      pytest-benchmark files (CPU) and `ganfast bench`
#   make gpu-check OUT=dir   on a GPU machine: build in place, gpu tests, benchmarks, logs, in
#                            time-limited stages (scripts/gpu_check.sh)
#   make gpu-wheels  here, before a device session: the test peers' wheels for it to carry
#   make report     README's performance section and the auto table from benchmarks/results

PYTHON ?= python3
TORCH_SPEC ?= torch==2.14.1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganfast-installed
# Test peers (pytorch-fid, torch-fidelity) pull torchvision: the constraint keeps the torch installed above.
PIN_TORCH := import torch; print('torch==' + torch.__version__.split('+')[0])
OUT ?= out/gpu-check
GPU_PY ?= python3

.PHONY: install demo test test-min-torch bench gpu-check gpu-wheels report cmake-check lint clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=64" wheel ninja numpy $(TORCH_SPEC)

# Re-installs (and rebuilds ganfast._C) when the build or the CUDA sources change.
$(STAMP): $(VENV)/bin/python setup.py pyproject.toml $(wildcard csrc/*)
	$(PY) -m pip install -q -e ".[test,bench,train,peers]" --no-build-isolation \
	  -c <($(PY) -c "$(PIN_TORCH)")
	touch $@

# A GAN trains on scikit-learn's bundled digits (no download); outputs in runs/digits-<time>.
demo: install
	$(VENV)/bin/ganfast info
	$(VENV)/bin/ganfast train

test: install
	$(PY) -m pytest -m "not gpu and not interpreter"
	TRITON_INTERPRET=1 $(PY) -m pytest -m interpreter

# The oldest torch ganfast supports (the GPU machines run it: torch 2.11 with triton 3.6):
# the CPU suite and the Triton interpreter tests again, in a venv of their own, on a copy of
# the tracked files installed without the extension (this tree's ganfast._C is built against
# the newer torch and must not be loaded by the older one; CI compiles it in `make test`).
MIN_TORCH_SPEC ?= torch==2.11.0
MIN_DIR := build/min-torch
MIN_PY := $(abspath $(MIN_DIR))/venv/bin/python

test-min-torch:
	rm -rf $(MIN_DIR)/src && mkdir -p $(MIN_DIR)/src
	git ls-files -z | xargs -0 cp --parents -t $(MIN_DIR)/src
	test -x $(MIN_PY) || $(PYTHON) -m venv $(MIN_DIR)/venv
	$(MIN_PY) -m pip install -q --upgrade pip
	# triton 3.6's interpreter turns scalar kernel arguments into 1-element arrays, which numpy
	# 2.4 no longer converts to int (triton 3.8 handles it): numpy below 2.4 for these runs.
	$(MIN_PY) -m pip install -q "setuptools>=64" wheel "numpy<2.4" "$(MIN_TORCH_SPEC)"
	cd $(MIN_DIR)/src && GANFAST_SKIP_CUDA_BUILD=1 $(MIN_PY) -m pip install -q -e ".[test,bench,train]" \
	  --no-build-isolation -c <($(MIN_PY) -c "$(PIN_TORCH)")
	# (no peers: their torchvision would want a newer torch; the main run compares with them)
	cd $(MIN_DIR)/src && $(MIN_PY) -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
	# (not quality: those train for minutes to a quality target; the main run has them)
	cd $(MIN_DIR)/src && GANFAST_REQUIRE_EXTENSION=0 $(MIN_PY) -m pytest \
	  -m "not gpu and not interpreter and not quality" -p no:cacheprovider
	cd $(MIN_DIR)/src && TRITON_INTERPRET=1 $(MIN_PY) -m pytest -m interpreter -p no:cacheprovider

bench: install
	$(PY) -m pytest benchmarks --benchmark-columns=median,iqr,rounds --benchmark-sort=name
	$(VENV)/bin/ganfast bench --op gradient_penalty
	$(VENV)/bin/ganfast bench --op upsample_conv --device cpu --no-compile

# For the device machine (no network, its own python with torch, triton, pytest, ninja): build
# in place, every gpu test, the benchmarks, in stages with time limits that fit a device
# session (scripts/gpu_check.sh says how); STAGES="build tests" runs some of them.
STAGES ?=
gpu-check:
	GPU_PY=$(GPU_PY) scripts/gpu_check.sh $(OUT) $(STAGES)

# The peers the gpu tests and `ganfast bench --op fid` compare with are not in the device
# image: their wheels (pure Python; their needs are there) go to .whl/, which a device call
# carries (carry: [".whl"]) and gpu_check.sh installs for its run.
PEER_WHEELS ?= pytorch-fid==0.3.0 torch-fidelity==0.4.0
# Only pip is needed (not the extension `install` would rebuild after a csrc/ change), and .whl
# is replaced once the download succeeded: a failed one leaves the last wheels in place.
gpu-wheels: $(VENV)/bin/python
	rm -rf .whl.tmp
	$(PY) -m pip download --no-deps --only-binary=:all: -d .whl.tmp $(PEER_WHEELS)
	rm -rf .whl && mv .whl.tmp .whl  # whole: another version of a peer left there makes pip refuse both

# Committed results (GPU and CPU) -> README's performance section and docs/perf plots; the auto
# table from the GPU rows.
# The files in byte order whatever the locale: rows of one day without a time rank by file order.
report: install
	$(VENV)/bin/ganfast bench --report $(sort $(wildcard benchmarks/results/*.jsonl)) --out docs/perf \
	  --readme README.md --auto-table

# The same csrc/ through CMake and find_package(Torch): keeps the C++ tooling path building.
# torch 2.14 needs C++20 in nvcc, which CMake knows from 3.31 on: take cmake from PyPI.
cmake-check: install
	$(PY) -m pip install -q "cmake>=3.31"
	TORCH_CUDA_ARCH_LIST="$$(echo $${GANFAST_CUDA_ARCHS:-90} | sed -E 's/([0-9])([0-9a]+)/\1.\2/g')" \
	  $(VENV)/bin/cmake -S . -B build/cmake -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV)/bin/ninja) \
	  -DPython_EXECUTABLE=$(abspath $(PY)) \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	$(VENV)/bin/cmake --build build/cmake

lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check .

clean:
	rm -rf build out ganfast/_C*.so ganfast/_build_info.json
