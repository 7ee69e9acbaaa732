# Everything installs into .venv. Two entry points for a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench ui clean gpu-check gpu-wheels

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,postgres,dask]'
	touch $(STAMP)

install: $(STAMP)

# The DVC pipeline (dvc.yaml, params.yaml) on MNIST-1D: full data vs soft sampling, k-center and
# Selective-Backprop at equal compute. Its stages call `curation`, hence .venv/bin on PATH.
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
	$(PY) -m pytest

ui: $(STAMP)
	$(VENV)/bin/curation ui

bench: $(STAMP)
	$(PY) -m benchmarks.$(NAME) $(ARGS)

# The GPU check (issue 20, docs/benchmarks.md "GPU check"): cuda tests, throughput, accuracy per compute,
# in at most 8 minutes on one GPU. It runs on the GPU machine's own python3 (torch, numpy, pyarrow, pytest
# there), with the wheels of `make gpu-wheels` (pydantic) installed first; no .venv is needed there.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m benchmarks.gpu_check $(ARGS)

# What the GPU machine lacks and the Trainer imports (pydantic), as Python 3.12 manylinux wheels in .whl/.
GPU_WHEELS := pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
	typing-extensions==4.16.0
gpu-wheels:
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV) .pytest_cache
