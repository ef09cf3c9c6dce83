# `make repro` runs the pipeline, `make test` the test suite; both create .venv first if needed.
VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test ui lock

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

test: setup
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
