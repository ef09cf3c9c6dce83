# `make repro` runs the pipeline, `make test` the linter and the tests a newcomer needs (`make test-all`: the whole suite);
# each creates .venv first if needed.
VENV := .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro quick full sweep search test test-all ui lock

# GPU=1: TensorFlow with its CUDA libraries (the plain wheel trains on the CPU only).
LOCK := $(if $(GPU),requirements-gpu-lock.txt,requirements-lock.txt)
INSTALLED := $(VENV)/.installed$(if $(GPU),-gpu)

$(INSTALLED): $(LOCK)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r $(LOCK)
	touch $@

setup: $(INSTALLED)

# Params (and the claims the report judges) are checked before DVC starts (DVC itself would stop at a bad key, or first delete a
# stage's outputs); the tracking store is checked, and made if new, before any stage runs; and how
# long the training will take is said, and asked about if over an hour (YES=1). DVC's output then
# comes with a line per stage: k of n, and the time left (pipeline/training/progress.py).
repro: setup
	python -m pipeline.params check
	python -m pipeline.claims --check
	python -m pipeline.tracking init
	python -m pipeline.training.estimate --confirm
	python -m pipeline.training.progress

# Every stage and setting in minutes: params.yaml is set to the quick size (a smoke run of a few
# epochs on a share of the images: SIZES in pipeline/params/schema.py); every later `dvc repro` works at
# that size until `make full`.
quick: setup
	python -m pipeline.params size quick
	$(MAKE) --no-print-directory repro

# Every (setting, seed) that needs training, JOBS at a time through DVC's experiment queue, then
# gathered and reported (pipeline/scaleout/sweep.py): for a GPU box or a many-core CPU. With SCHEDULER,
# spread over a Dask cluster's workers instead (pipeline/scaleout/cluster.py; RESOURCES per task).
sweep: setup
	python -m pipeline.params check
	$(if $(SCHEDULER),python -m pipeline.scaleout.cluster --scheduler $(SCHEDULER) $(if $(RESOURCES),--resources $(RESOURCES)),python -m pipeline.scaleout.sweep $(if $(JOBS),--jobs $(JOBS)))

# An Optuna study over the space `search.$(NAME)` of params.yaml (pipeline/search/study.py), on the
# prepared data's training and validation splits; resumes where it stopped. The best trial lands in
# params.yaml as the setting <base>-searched and the sweep $(NAME); `make repro` then trains and judges it.
# JOBS=N: N trials side by side, each in a worker process (a GPU box or a many-core CPU). With SCHEDULER,
# on a Dask cluster's workers instead, one per worker or JOBS (pipeline/search/cluster.py; RESOURCES per worker).
search: setup
	$(if $(NAME),,$(error NAME=<entry>: a key under search: in params.yaml))
	python -m pipeline.tracking init
	python -m pipeline.search.study $(NAME) $(if $(JOBS),--jobs $(JOBS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER) $(if $(RESOURCES),--resources $(RESOURCES)))

# Back to the homework's size in params.yaml (the values `make quick` replaced); `make repro`
# then trains it, after saying how long that takes.
full: setup
	python -m pipeline.params size full

# The linter, then the tests a newcomer's install needs (~15 min on 2 cores); test-all: the whole
# suite, faults, clusters, searches and the README's walkthrough included (CI runs it).
test: setup
	ruff check .
	python -m pytest -m "not whole"

test-all: setup
	ruff check .
	python -m pytest

# The project's tracking store (see pipeline/tracking/store.py), on http://127.0.0.1:5000 (PORT=N for another); prints a
# link to each experiment's runs
ui: setup
	python -m pipeline.tracking.ui $(if $(PORT),--port $(PORT))

# Re-pin the whole tree after editing requirements.txt.
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet -r requirements.txt
	(echo "# The whole dependency tree, pinned (regenerate: make lock). Top-level choices: requirements.txt."; \
	 $(VENV)-lock/bin/python -m pip freeze) > requirements-lock.txt
	$(VENV)-lock/bin/python -m pip install --quiet --dry-run --ignore-installed --report $(VENV)-lock/gpu.json \
	  "tensorflow[and-cuda]==$$($(VENV)-lock/bin/python -c 'import importlib.metadata as m; print(m.version("tensorflow"))')"
	(echo "# requirements-lock.txt plus TensorFlow's CUDA libraries (tensorflow[and-cuda]): make setup GPU=1."; \
	 (tail -n +2 requirements-lock.txt; $(VENV)-lock/bin/python -c 'import json, sys; [print(p["metadata"]["name"] \
	   + "==" + p["metadata"]["version"]) for p in json.load(open(sys.argv[1]))["install"] \
	   if p["metadata"]["name"].startswith("nvidia")]' $(VENV)-lock/gpu.json) | sort -f) > requirements-gpu-lock.txt
	rm -rf $(VENV)-lock
