# Two commands on a fresh clone:  make demo   (the whole DAG on the sample corpus)
#                                 make test   (the test suite)
# Each creates .venv and installs what it needs on first use.
#
# TORCH_SPEC picks the torch build. Default: the CPU build (CI, laptops). With GPUs, e.g.
#   make demo TORCH_SPEC="torch==2.9.1" TORCH_INDEX=https://download.pytorch.org/whl/cu128

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CONFIG ?= configs/demo.yaml
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell echo "$(TORCH_SPEC)" | tr -c 'A-Za-z0-9.\n' '_')
export PREFECT_HOME ?= $(CURDIR)/.prefect
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "babelforge needs Python >= 3.10"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_SPEC)" -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(BIN)/babelforge run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest tests --durations=15

# Benchmarks against the peers (datatrove, raw fastText); needs ../shared/data. Results: bench/RESULTS.md
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	taskset -c 0 $(BIN)/python bench/langid_bench.py
	taskset -c 0 $(BIN)/python bench/langid_bench.py --sentences 10
	taskset -c 0 $(BIN)/python bench/filters_bench.py
	taskset -c 0 $(BIN)/python bench/minhash_bench.py
	taskset -c 0 $(BIN)/python bench/minhash_disk_bench.py
	$(BIN)/python bench/noise_bench.py
	$(BIN)/python bench/noise_bench.py --held-out
	$(BIN)/python bench/langid_accuracy.py --table
	taskset -c 0 $(BIN)/python bench/prepare_bench.py
	$(BIN)/python bench/memory_bench.py
	$(BIN)/python bench/train_overhead.py --steps 100

clean:
	rm -rf runs mlruns .prefect .pytest_cache
