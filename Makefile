# Set-up and checks. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUDGET ?= 100
NNI_IMPORTS := json-tricks 'typeguard>=3,<4.1.3' schema colorama nvidia-ml-py simplejson pandas \
	cloudpickle tqdm requests

.PHONY: install install-base system-packages search search-fashion test lint format clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# NNI 3.0 (the nni_* criteria, tested here) goes in without its dependencies: it pins
# filelock<3.12 for its experiment manager, which this tool does not use, and Ray's virtualenv
# needs filelock>=3.24; the packages its pruners import come after it.
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	$(PY) -m pip install --quiet --no-deps 'nni==3.0'
	$(PY) -m pip install --quiet $(NNI_IMPORTS)
	touch $@

install-base: $(VENV)/.base
install: $(VENV)/.dev

search: $(VENV)/.base
	$(PY) cli.py search --budget $(BUDGET)

# Fashion-MNIST (Debian's dataset-fashion-mnist, installed by system-packages): proxy search,
# then finalize; about 90 minutes on 2 cores, teacher training included.
search-fashion: $(VENV)/.base system-packages
	$(PY) cli.py search --config configs/fashion_mnist.yaml --budget $(BUDGET)

# Chromium, iproute2, util-linux and dataset-fashion-mnist, for the browser, multi-node and
# real-data tests (apt-get, as root or through sudo).
system-packages:
	bash scripts/system-packages.sh

test: $(VENV)/.dev system-packages
	$(PY) -m pytest -q --durations=20

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache
