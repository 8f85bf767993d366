# Two entry points (see README): `make run` and `make test`. Both install what is missing first.
# `make ui` serves the Airflow UI on the local stack until Ctrl-C.
PYTHON ?= python3
VENV := .venv
CHROMIUM := /usr/bin/chromium
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints/*.txt | sha256sum | cut -c1-16)
export PYTHONPATH := include:plugins:.
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: run ui test test-ui test-provider-next lint iac-check install install-browser build deploy bench-ledger bench-glue bench-capacity

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
	$(MAKE) test-provider-next

# The plugin tests (the conversion's double-run guard included) against the next Amazon provider, in a venv of
# their own: make test stays on MWAA's pins. Only the provider's pin differs from Airflow's constraints.
PROVIDER_NEXT := 9.35.0
NEXT_VENV := $(VENV)/provider-next
test-provider-next: install
	@test -x $(NEXT_VENV)/bin/python || $(VENV)/bin/uv venv -q -p $(VENV)/bin/python $(NEXT_VENV)
	sed 's/^apache-airflow-providers-amazon==.*/apache-airflow-providers-amazon==$(PROVIDER_NEXT)/' \
		constraints/airflow-3.3.1-constraints-py3.12.txt > $(NEXT_VENV)/constraints.txt
	$(VENV)/bin/uv pip install -q --python $(NEXT_VENV)/bin/python -c $(NEXT_VENV)/constraints.txt apache-airflow==3.3.1 \
		"apache-airflow-providers-amazon[aiobotocore]==$(PROVIDER_NEXT)" "moto[server]==5.2.5" pytest==8.4.2 pytest-timeout==2.4.0
	$(NEXT_VENV)/bin/python -m pytest tests/plugins tests/steps/test_converting.py

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

# Latency, backlog and the requests and DynamoDB units of a file, end to end (benchmarks/capacity_benchmark.py).
bench-capacity: install
	$(VENV)/bin/python -m benchmarks.capacity_benchmark $(BENCH_ARGS)
