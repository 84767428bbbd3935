# Two commands do all set-up on a fresh machine, idempotently:
#   make serve   - the server with the browser UI at http://127.0.0.1:8000 (demo models by default)
#   make test    - the whole test suite (installs Chromium and tmux for the end-to-end tests)
# Anything after ARGS= is passed on, e.g. make serve ARGS="--config chorus.toml".

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/chorus serve $(ARGS)

test: $(STAMP)
	./scripts/system-packages
	$(VENV)/bin/python -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python -m bench $(ARGS)
