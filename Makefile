# Two entry points: `make demo` (install, then run the main job end to end) and
# `make test` (install with dev extras, then run the test suite). `make docs` builds the
# documentation site into site/ (warnings are errors).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU machines take the CPU build of torch that pip finds locally; machines with an NVIDIA
# driver take pip's default build. Either way torch is installed before the package so that
# the package's torch range is already satisfied.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)

.PHONY: demo test docs install install-dev install-docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e ".[text]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,text]"
	touch $@

$(VENV)/.installed-docs: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[docs,text]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

install-docs: $(VENV)/.installed-docs

demo: install
	$(BIN)/mmssl demo

test: install-dev
	$(BIN)/pytest

# NO_MKDOCS_2_WARNING: Material prints a notice about MkDocs 2 on every build; it is not a
# warning about this site.
docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
