# Everything installs into .venv, from requirements.lock (exact versions, hashes checked). Two entry points for a
# fresh machine: `make demo`, `make test`. `make lock` refreshes the lock after a change to pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
TORCH  := torch==2.13.0+cpu
# Where pip finds the CPU build of torch (PyPI has only the CUDA one): the folder of wheels pip is configured with
# (pip config get global.find-links), else PyTorch's page
TORCH_WHEELS ?= $(or $(firstword $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)),\
                     https://download.pytorch.org/whl/torch/)

.PHONY: demo test install lock bench ui clean

# torch first, alone, from TORCH_WHEELS (looked up there for torch only), then the rest of the lock from the index;
# both with the lock's hashes; then the project itself without dependencies.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	awk '/^torch==/ {p = 1; print; next} p && /^ +--hash/ {print; next} {p = 0}' $(LOCK) > $(VENV)/torch.lock
	$(PY) -m pip install --quiet --require-hashes --no-deps --find-links $(TORCH_WHEELS) -r $(VENV)/torch.lock
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The DVC pipeline (dvc.yaml, params.yaml) on MNIST-1D: full data vs soft sampling, k-center,
# Selective-Backprop and InfoBatch at equal compute. Its stages call `curation`, hence .venv/bin on PATH.
demo: $(STAMP)
	$(VENV)/bin/curation init
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	@echo; cat pipeline/report/table.md; echo
	@echo "Where to look:"
	@echo "  pipeline/report/       the table above (table.md), its rows (rows.json) and the charts (*.png)"
	@echo "  make ui                MLflow UI at http://127.0.0.1:5000, experiment mnist1d: every run, its curves and model"
	@echo "  .venv/bin/dvc metrics show   best/final accuracy, coverage, GFLOP, speedup per method"
	@echo "  .venv/bin/dvc plots show     dvc_plots/index.html: accuracy vs compute, coverage per epoch"
	@echo "  PATH=.venv/bin:\$$PATH dvc exp run -S select.ratio=0.5   an experiment (docs/reproducibility.md)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# The dependencies of pyproject.toml (every extra) and the CPU torch, resolved for Python 3.11 on Linux x86_64, with
# the hashes of every file. Keeps the locked versions that still fit; LOCK_ARGS=--upgrade takes the newest.
lock: $(STAMP)
	echo "$(TORCH)" | $(VENV)/bin/uv pip compile --quiet pyproject.toml - --extra dev --extra postgres --extra dask \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	    --find-links $(TORCH_WHEELS) --custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)

ui: $(STAMP)
	$(VENV)/bin/curation ui

.PHONY: stack
# Every service as its own process on 127.0.0.1 (docs/operations.md): make stack ARGS="--pg-url postgresql+psycopg://..."
stack: $(STAMP)
	$(VENV)/bin/curation stack $(ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.$(NAME) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
