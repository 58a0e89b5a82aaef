# Developer entry points. `make test` and `make run` set everything up on a fresh machine.
#   GPU machine:  make test TORCH_VERSION=... TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cu128'
#   (changing TORCH_* on an existing venv: `rm .venv/.installed` first)

PYTHON              ?= python3
VENV                ?= .venv
TORCH_VERSION       ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
TORCH_PIP_ARGS      ?=
PYTEST_ARGS         ?=

PIP   := $(VENV)/bin/python -m pip
STAMP := $(VENV)/.installed

.PHONY: install test run clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(VENV)/bin/python
	$(PIP) install $(TORCH_PIP_ARGS) torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)
	$(PIP) install -e '.[test]'
	touch $@

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

run: $(STAMP)
	$(VENV)/bin/simudy local

clean:
	rm -rf $(VENV) .pytest_cache
