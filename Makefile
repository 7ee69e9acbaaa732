# Everything installs into .venv. Two entry points for a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench ui clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,postgres,dask]'
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
	$(PY) -m pytest

ui: $(STAMP)
	$(VENV)/bin/curation ui

bench: $(STAMP)
	$(PY) -m benchmarks.$(NAME) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
