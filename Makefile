# Set-up and checks. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUDGET ?= 100

.PHONY: install install-base system-packages search test lint format clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $@

install-base: $(VENV)/.base
install: $(VENV)/.dev

search: $(VENV)/.base
	$(PY) cli.py search --budget $(BUDGET)

# Chromium, iproute2 and util-linux for the browser and multi-node tests (apt-get, root or sudo).
system-packages:
	bash scripts/system-packages.sh

test: $(VENV)/.dev system-packages
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache
