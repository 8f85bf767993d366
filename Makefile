# Two entry points (see README): `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints/*.txt | sha256sum | cut -c1-16)
export PYTHONPATH := include:plugins:.
export SPARK_LOCAL_IP := 127.0.0.1

# The Glue job also runs on what each supported Glue version ships (requirements-glue5x.txt);
# Airflow's constraints pin .venv's pyarrow, so each version gets a venv of its own.
GLUE_ENVS := glue50 glue51
glue_stamp = .venv-$(1)/.installed-$(shell cat requirements-$(1).txt | sha256sum | cut -c1-16)
GLUE_STAMPS := $(foreach env,$(GLUE_ENVS),$(call glue_stamp,$(env)))

.PHONY: run test lint iac-check install install-glue-envs test-glue-envs build deploy bench-ledger bench-glue bench-glue-memory

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q uv==0.12.3
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

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
		.venv-$$env/bin/python -m pytest tests/glue -m "not e2e" -q -p no:cacheprovider || exit 1; \
	done

run: install
	$(VENV)/bin/python -m tools.run_local

lint: install
	$(VENV)/bin/ruff check include plugins dags glue_scripts tools tests benchmarks
	$(VENV)/bin/ruff format --check include plugins dags glue_scripts tools tests benchmarks

iac-check:
	bash tools/iac_checks.sh

test: install lint iac-check test-glue-envs
	$(VENV)/bin/python -m pytest

build: install
	$(VENV)/bin/python -m tools.build_artifacts --out dist

# make deploy NAME_PREFIX=my-pipeline [DRY_RUN=1]
deploy: build
	$(VENV)/bin/python -m tools.deploy --name-prefix $(NAME_PREFIX) --dist dist $(if $(DRY_RUN),--dry-run)

bench-ledger: install
	$(VENV)/bin/python -m benchmarks.ledger_benchmark

bench-glue: install
	$(VENV)/bin/python -m benchmarks.glue_job_benchmark

# Peak memory of one task on 100 MB plain, 1 GB plain and 1 GB gzip (about 6 GB of text) files; takes minutes.
bench-glue-memory: install
	$(VENV)/bin/python -m benchmarks.glue_memory_benchmark
