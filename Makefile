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

demo: $(STAMP)
	$(VENV)/bin/curation init
	$(VENV)/bin/curation data add mnist1d
	$(VENV)/bin/curation data ls
	$(VENV)/bin/curation compare mnist1d --method soft:ratio=0.3 --method uniform:budget=0.3

test: $(STAMP)
	$(PY) -m pytest

ui: $(STAMP)
	$(VENV)/bin/curation ui

bench: $(STAMP)
	$(PY) -m benchmarks.$(NAME) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
