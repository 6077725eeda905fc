# policysearch: `make search DATASET=cifar10` and `make test` bootstrap .venv from pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PS := $(VENV)/bin/policysearch
# GPU=1: TensorFlow with its CUDA wheels (the gpu extra); GPU=0: the CPU build. Unset: the GPU
# build on Linux x86_64 when `nvidia-smi -L` lists an NVIDIA GPU, else the CPU build.
ifeq ($(origin GPU),undefined)
GPU := $(shell [ "$$(uname -sm)" = "Linux x86_64" ] && nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && echo 1 || echo 0)
endif
BUILD = $(if $(filter-out 0 1,$(GPU)),$(error GPU must be 1 or 0, got '$(GPU)'),$(if $(filter 1,$(GPU)),gpu,cpu))
STAMP = $(VENV)/.installed-$(BUILD)

DATASET ?= cifar10
# Named datasets (DATASET=cifar10, DATASET=mnist) are <name>-images.tar.gz in DATA_DIR:
# ../shared/data on this project's machines; elsewhere set DATA_DIR (or POLICYSEARCH_DATA_DIR),
# or leave it empty for Keras' own CIFAR-10 download (no other dataset is downloaded).
DATA_DIR ?= $(if $(wildcard ../shared/data/*-images.tar.gz),../shared/data,)
MLFLOW_TRACKING_URI ?= sqlite:///runs/mlflow.db
UI_PORT ?= 5000
EXPERIMENT ?= cifar10
# `make test` runs the suite in this many processes (pytest-xdist); 2 suits the 2-core CI.
TEST_WORKERS ?= 2

# $(call q,VALUE): VALUE as one shell word (paths with spaces or quotes stay whole).
q = '$(subst ','\'',$(1))'
opt = $(if $(2),$(1) $(call q,$(2)),)
# SMOKE=1/yes/true/on turns smoke mode on; empty, 0, no, false or off leave it off.
smoke_flag = $(if $(filter-out 0 1 yes no true false on off,$(SMOKE)),$(error SMOKE must be 1 or 0, got '$(SMOKE)'),)$(if $(filter 1 yes true on,$(SMOKE)),--smoke,)
SEARCH_FLAGS = --dataset $(call q,$(DATASET)) \
	$(call opt,--data-dir,$(DATA_DIR)) \
	$(call opt,--experiment,$(EXPERIMENT_FILE)) \
	$(call opt,--space,$(SPACE)) \
	$(call opt,--trials,$(TRIALS)) \
	$(call opt,--epochs,$(EPOCHS)) \
	$(call opt,--train-size,$(TRAIN_SIZE)) \
	$(call opt,--val-size,$(VAL_SIZE)) \
	$(call opt,--selection-size,$(SELECTION_SIZE)) \
	$(call opt,--batch-size,$(BATCH_SIZE)) \
	$(call opt,--image-size,$(IMAGE_SIZE)) \
	$(call opt,--crop-padding,$(BASE_CROP_PADDING)) \
	$(call opt,--flip,$(BASE_FLIP)) \
	$(call opt,--seed,$(SEED)) \
	$(call opt,--timeout,$(TIMEOUT)) \
	$(call opt,--workers,$(WORKERS)) \
	$(call opt,--storage,$(STORAGE)) \
	$(call opt,--study-name,$(STUDY)) \
	$(call opt,--export,$(EXPORT)) \
	$(smoke_flag)

.PHONY: help install search worker ui test lint bench bench-gpu experiment clean soak readme

help:
	@echo "make search DATASET=cifar10 [TRIALS=.. EPOCHS=.. SPACE=.. WORKERS=.. SMOKE=1]"
	@echo "            [BATCH_SIZE=.. IMAGE_SIZE=N BASE_CROP_PADDING=auto|PX BASE_FLIP=true|false]"
	@echo "make ui            MLflow UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make test          the test suite (bootstraps .venv)"
	@echo "make worker STUDY=name STORAGE=postgresql://...   join a study"
	@echo "make bench [ONLY=runs|trial|concurrency RUNS=10 RUN_EPOCHS=.. BENCH_STUDY=..]  augmentation, run, trial times"
	@echo "make bench-gpu [IMAGES=50000 BENCH_OUT=..]   the GPU benchmark (runs on a CPU too)"
	@echo "make experiment EXPERIMENT=cifar10   fidelity + search + validate, results files"
	@echo "make fidelity EXPERIMENT=cifar10 [SEEDS=3]   does the proxy rank policies like the target?"
	@echo "make calibrate EXPERIMENT=mnist [SEEDS=3]    pick the cheapest faithful proxy for it"
	@echo "make readme             README's side-by-side table from experiments/results/*.json"
	@echo "make soak [ROUNDS=20]   faults injected into searches under load; writes docs/reliability.md"

install: $(STAMP)

$(VENV)/.installed-%: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "make: installing the $* build of TensorFlow (GPU=$(GPU); GPU=0 or GPU=1 overrides)"
	$(if $(filter gpu,$*),$(VENV)/bin/pip uninstall --quiet -y tensorflow-cpu 2>/dev/null || true,)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,$*]' 2>&1 \
		| grep -v "is ignored: it is neither a file nor a directory" || true
	$(VENV)/bin/python -c "from policysearch.cli import quiet; quiet.install(); \
		import policysearch, keras, optuna, mlflow, tensorflow" \
		|| { echo "make: the environment in $(VENV) is incomplete" >&2; exit 1; }
	touch $@

search: $(STAMP)
	MLFLOW_TRACKING_URI=$(call q,$(MLFLOW_TRACKING_URI)) $(PS) search $(SEARCH_FLAGS)

worker: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(PS) worker --study-name $(call q,$(STUDY)) \
		$(call opt,--storage,$(STORAGE))

ui: $(STAMP)
	mkdir -p runs
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) \
		--host 127.0.0.1 --port $(UI_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check policysearch tests examples

test: $(STAMP) lint
	$(VENV)/bin/python -m pytest -q --durations=10 -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(VENV)/bin/python -m pytest -q -m backends -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

.PHONY: test-interop
test-interop: $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[interop]'
	POLICYSEARCH_INTEROP_REPORT=docs/interop.md $(VENV)/bin/python -m pytest -q -o addopts="" \
		tests/interop $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m policysearch.evidence.bench $(call opt,--data-dir,$(DATA_DIR)) \
		$(call opt,--runs,$(RUNS)) $(call opt,--run-epochs,$(RUN_EPOCHS)) \
		$(call opt,--experiment,$(BENCH_EXPERIMENT)) $(call opt,--only,$(ONLY)) \
		$(call opt,--study,$(BENCH_STUDY))

experiment: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(PS) experiment $(call q,$(EXPERIMENT)) \
		$(call opt,--data-dir,$(DATA_DIR)) $(smoke_flag)

.PHONY: fidelity
fidelity: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(PS) fidelity $(EXPERIMENT) \
		$(call opt,--data-dir,$(DATA_DIR)) $(call opt,--seeds,$(SEEDS)) $(if $(SMOKE),--smoke,)

.PHONY: calibrate
calibrate: $(STAMP)
	$(PS) calibrate $(call q,$(EXPERIMENT)) $(call opt,--data-dir,$(DATA_DIR)) \
		$(call opt,--seeds,$(SEEDS)) $(smoke_flag)

# Not part of `make test`: ROUNDS searches (about a minute each, more on a busy machine), each
# hit by a fault at a random moment; needs PostgreSQL (SOAK_POSTGRES) and writes docs/reliability.md
ROUNDS ?= 20
SOAK_POSTGRES ?= postgresql://root@127.0.0.1:5432/test
soak: $(STAMP)
	$(VENV)/bin/python -m policysearch.evidence.soak --rounds $(ROUNDS) \
		--storage $(call q,$(SOAK_POSTGRES)) $(call opt,--data-dir,$(DATA_DIR))

# README's "Does it work?" table, from the committed experiments/results/*.json
readme: $(STAMP)
	$(VENV)/bin/python -m policysearch.search.side_by_side

clean:
	rm -rf runs policies previews .pytest_cache .ruff_cache

# The GPU benchmark (docs/benchmarks.md, "GPU"): one prepared script for a lent GPU machine;
# on a CPU it runs too (the test suite runs it at a tiny budget). BENCH_OUT: also a file.
bench-gpu: $(STAMP)
	$(VENV)/bin/python -m policysearch.evidence.gpu_bench $(call opt,--data-dir,$(DATA_DIR)) \
		$(call opt,--images,$(IMAGES)) $(call opt,--out,$(BENCH_OUT))
