# Two commands do all set-up on a fresh machine, idempotently:
#   make serve   - the server with the browser UI at http://127.0.0.1:8000 (demo models by default)
#   make test    - the whole test suite (installs Chromium, tmux, redis-server and nginx for the
#                  end-to-end tests)
# Anything after ARGS= is passed on, e.g. make serve ARGS="--config chorus.toml".
#
# The Python packages come from the lock files, pinned exactly, so every machine runs the
# versions the suite passed with; `make lock` rewrites them after a change to pyproject.toml
# (`make lock ARGS=--upgrade` moves every pin to the newest release pyproject.toml allows).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
LOCKS := requirements.lock requirements-test.lock
PIP_TOOLS := pip-tools==7.6.2
# The lock names packages only: which index they come from is the installing machine's affair.
COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras \
	--allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

# The page's third-party code (KaTeX, Prism), from the pinned npm packages into
# app/static/vendor/ (generated, git-ignored, shipped as package data).
VENDOR := app/static/vendor/katex.js

.PHONY: serve test lint bench lock

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCKS) | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-test.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(VENDOR): package.json package-lock.json scripts/web-packages
	./scripts/web-packages

# Without npm the page still works (formulas as TeX, code unhighlighted): serve anyway.
serve: $(STAMP)
	-@$(MAKE) --no-print-directory $(VENDOR)
	$(VENV)/bin/chorus serve $(ARGS)

test: $(STAMP)
	./scripts/system-packages
	$(MAKE) --no-print-directory $(VENDOR)
	$(VENV)/bin/python -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python -m bench $(ARGS)

# The test lock is resolved first and the runtime lock within it, so the two never pin a
# package at different versions.
lock: | $(VENV)/bin/python
	test -x $(VENV)/bin/pip-compile || $(VENV)/bin/python -m pip install --quiet $(PIP_TOOLS)
	$(COMPILE) $(ARGS) --extra test --output-file requirements-test.lock pyproject.toml
	$(COMPILE) $(ARGS) --constraint requirements-test.lock --output-file requirements.lock \
		pyproject.toml
