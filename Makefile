# Quick start:  make run   (the headline experiment)   |   make test   (the test suite)
# Both create .venv and install what they need first. torch is pinned to the 2.13.0 CPU build: a bare
# `pip install torch` would pull a multi-GB CUDA build (see pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPEC ?= experiments/int8.yaml

.PHONY: setup run test validate bench chromium clean-reports docs schema

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu-all,inc,dev,docs,parallel]"
	touch $@

run: setup
	$(PY) -m optim.run $(SPEC)

validate: setup
	$(PY) -m optim.validate experiments/

# The report's browser test needs Debian's chromium; install it when we can (root), else that test skips.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser test will skip"

test: setup chromium
	$(PY) -m pytest tests -q

# The manual: site/index.html (strict: a broken link or a stale reference fails the build)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# JSON Schemas of the specs (schemas/), from the pydantic models
schema: setup
	$(PY) -m optim.schema

bench: setup
	$(PY) -m pytest benchmarks -q --benchmark-autosave
