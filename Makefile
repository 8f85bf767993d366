# Two entry points (see README): `make run` and `make test`. Both install what is missing first.
# `make ui` serves the Airflow UI on the local stack until Ctrl-C.
PYTHON ?= python3
VENV := .venv
CHROMIUM := /usr/bin/chromium
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints/*.txt | sha256sum | cut -c1-16)
export PYTHONPATH := include:plugins:.
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: run ui test test-ui lint iac-check install install-browser build deploy bench-ledger bench-glue

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q uv==0.12.3
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

# Debian's chromium for the browser tests (tests/ui): Playwright cannot download its own browsers here.
install-browser: $(CHROMIUM)

$(CHROMIUM):
	bash tools/install_chromium.sh

run: install
	$(VENV)/bin/python -m tools.run_local

ui: install
	$(VENV)/bin/python -m tools.ui_stack

lint: install
	$(VENV)/bin/ruff check include plugins dags glue_scripts tools tests benchmarks
	$(VENV)/bin/ruff format --check include plugins dags glue_scripts tools tests benchmarks

iac-check:
	bash tools/iac_checks.sh

test: install install-browser lint iac-check
	$(VENV)/bin/python -m pytest

test-ui: install install-browser
	$(VENV)/bin/python -m pytest tests/ui

build: install
	$(VENV)/bin/python -m tools.build_artifacts --out dist

# make deploy NAME_PREFIX=my-pipeline [DRY_RUN=1]
deploy: build
	$(VENV)/bin/python -m tools.deploy --name-prefix $(NAME_PREFIX) --dist dist $(if $(DRY_RUN),--dry-run)

bench-ledger: install
	$(VENV)/bin/python -m benchmarks.ledger_benchmark

bench-glue: install
	$(VENV)/bin/python -m benchmarks.glue_job_benchmark
