"""docker-compose.yaml has the MWAA local shape and the environment the DAGs rely on."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.infra.hcl import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = ("db-migrate", "scheduler", "api-server", "aws-bootstrap")


def test_services():
    assert set(SERVICES) == {"postgres", "aws", "aws-bootstrap", "db-migrate", "scheduler", "api-server"}
    assert re.fullmatch(r"motoserver/moto:5\.1\.\d+", SERVICES["aws"]["image"]), "pin the emulator image"
    assert SERVICES["api-server"]["command"][0] == "api-server"
    assert "8080:8080" in SERVICES["api-server"]["ports"][0]
    assert SERVICES["db-migrate"]["command"] == ["db", "migrate"]


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
        "api-server": {"postgres": "service_healthy", "db-migrate": "service_completed_successfully"},
    }
    for service, deps in expected.items():
        assert {name: d["condition"] for name, d in SERVICES[service]["depends_on"].items()} == deps


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_services_share_image_mounts_and_environment(service):
    spec = SERVICES[service]
    assert spec["build"]["dockerfile"] == "docker/Dockerfile"
    assert (ROOT / spec["build"]["dockerfile"]).exists()
    assert "FROM apache/airflow:3.3.1-python3.12" in (ROOT / spec["build"]["dockerfile"]).read_text()
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in spec["volumes"]}
    for folder in ("dags", "plugins", "include", "glue_scripts"):
        assert mounts[f"./{folder}"] == f"/opt/airflow/{folder}"

    env = spec["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:airflow@postgres:")
    assert "/opt/airflow/include" in env["PYTHONPATH"].split(":")
    assert json.loads(env["NDJSON_PIPELINE_SETTINGS"])["glue_runner"] == "local"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"

    conn = urlsplit(env["AIRFLOW_CONN_AWS_DEFAULT"])
    query = parse_qs(conn.query)
    assert conn.scheme == "aws"
    assert query["endpoint_url"] == ["http://aws:5000"]
    assert query["region_name"] == [env["AWS_DEFAULT_REGION"]]
