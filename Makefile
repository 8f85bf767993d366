# Two entry points (see README): `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints/*.txt | sha256sum | cut -c1-16)

.PHONY: run test lint install

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q uv==0.12.3
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

run: install
	PYTHONPATH=include:plugins:. $(VENV)/bin/python -m tools.run_local

lint: install
	$(VENV)/bin/ruff check include tools tests
	$(VENV)/bin/ruff format --check include tools tests

test: install lint
	$(VENV)/bin/python -m pytest
