# `make repro` runs the pipeline, `make test` the linter and the test suite; both create .venv first if needed.
VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro quick full test ui lock

$(VENV)/.installed: requirements-lock.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-lock.txt
	touch $@

setup: $(VENV)/.installed

# Params are checked before DVC starts (DVC itself would stop at a bad key, or first delete a
# stage's outputs); the store is created before any stage runs (processes creating it at once
# race); and how long the training will take is said, and asked about if over an hour (YES=1).
repro: setup
	python -m pipeline.params check
	python -m pipeline.tracking init
	python -m pipeline.estimate --confirm
	dvc repro

# Every stage and setting in minutes: params.yaml is set to the quick size (2 epochs on 10 % of
# the images, a smoke run); every later `dvc repro` works at that size until `make full`.
quick: setup
	python -m pipeline.params size quick
	$(MAKE) --no-print-directory repro

# Back to the homework's size in params.yaml (the values `make quick` replaced); `make repro`
# then trains it, after saying how long that takes.
full: setup
	python -m pipeline.params size full

test: setup
	ruff check .
	python -m pytest

# The project's tracking store (see pipeline/tracking.py), on http://127.0.0.1:5000; prints a
# link to each experiment's runs
ui: setup
	python -m pipeline.tracking ui

# Re-pin the whole tree after editing requirements.txt.
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet -r requirements.txt
	(echo "# The whole dependency tree, pinned (regenerate: make lock). Top-level choices: requirements.txt."; \
	 $(VENV)-lock/bin/python -m pip freeze) > requirements-lock.txt
	rm -rf $(VENV)-lock
