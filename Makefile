# `make repro` runs the pipeline, `make test` the linter and the test suite; both create .venv first if needed.
VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro quick test ui lock

$(VENV)/.installed: requirements-lock.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-lock.txt
	touch $@

setup: $(VENV)/.installed

# The tracking store is created before any stage runs: processes creating it at once race.
repro: setup
	python -m pipeline.tracking init
	dvc repro

# Every stage and setting in about 18 min on a 2-core CPU: 2 epochs on 10 % of the training
# images, a smoke run (tagged smoke_run=true in MLflow, labelled in the report). DVC records it as
# the experiment `quick` (dvc exp show). `dvc exp run -S` writes the values into params.yaml: the
# file is put back as it was afterwards, also after Ctrl-C.
SAVED_PARAMS := .dvc/tmp/params-before-quick.yaml
quick: setup
	python -m pipeline.tracking init
	mkdir -p .dvc/tmp && cp params.yaml $(SAVED_PARAMS)
	trap 'mv $(SAVED_PARAMS) params.yaml' EXIT; trap 'exit 130' INT TERM; \
	  dvc exp run --force -n quick -S train.epochs=2 -S train.subset=0.1

test: setup
	ruff check .
	python -m pytest

# The project's tracking store (see pipeline/tracking.py), on http://127.0.0.1:5000
ui: setup
	python -m pipeline.tracking ui

# Re-pin the whole tree after editing requirements.txt.
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet -r requirements.txt
	(echo "# The whole dependency tree, pinned (regenerate: make lock). Top-level choices: requirements.txt."; \
	 $(VENV)-lock/bin/python -m pip freeze) > requirements-lock.txt
	rm -rf $(VENV)-lock
