# Quick start:  make run   (the headline experiment)   |   make test   (the test suite)
# Both create .venv and install what they need first. torch is pinned to the 2.13.0 CPU build: a bare
# `pip install torch` would pull a multi-GB CUDA build (see pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPEC ?= experiments/int8.yaml
# The serving environment: PyTriton 0.7 needs numpy<2, the lab's own venv has numpy 2 (docs/serving.md).
SERVE_VENV ?= .venv-serve

.PHONY: setup serve-setup run test validate bench chromium promtool clean-reports docs schema demo demo-streamlit

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu-all,inc,dev,docs,demo,client,monitor,parallel,ray]"
	touch $@

serve-setup: $(SERVE_VENV)/.installed

$(SERVE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install -q torch==2.13.0
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve]"
	touch $@

run: setup
	$(PY) -m optim.run $(SPEC)

validate: setup
	$(PY) -m optim.validate --specs-only experiments/  # finetune_continue.yaml starts from another run's model

# The report's browser test needs Debian's chromium; install it when we can (root), else that test skips.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser test will skip"

# The alerting rules' tests need promtool (Debian's prometheus package); install it when we can, else they skip.
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	  echo "promtool not installed: the rules' promtool tests will skip"

test: setup serve-setup chromium promtool
	$(PY) -m pytest tests -q

# The manual: site/index.html (strict: a broken link or a stale reference fails the build)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# JSON Schemas of the specs (schemas/), from the pydantic models
schema: setup
	$(PY) -m optim.schema

bench: setup
	$(PY) -m pytest benchmarks -q --benchmark-autosave

# The web demo on http://127.0.0.1:7860 (Gradio) or :8501 (Streamlit): the shipped model, plus the variants of
# reports/int8 once `make run` has written it.
DEMO_REPORT ?= reports/int8
DEMO_ARGS ?= $(if $(wildcard $(DEMO_REPORT)/results.json),--report $(DEMO_REPORT))

demo: setup
	$(PY) -m optim.demo.gradio_app $(DEMO_ARGS)

demo-streamlit: setup
	$(VENV)/bin/streamlit run optim/demo/streamlit_app.py --server.address 127.0.0.1 --server.headless true \
	  --browser.gatherUsageStats false --client.toolbarMode viewer -- $(DEMO_ARGS)
