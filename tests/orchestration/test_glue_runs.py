"""Finding a manifest's Glue runs by the manifest id they carry, over the moto server's Glue."""

from __future__ import annotations

import pytest
import requests

from ndjson_pipeline_airflow.aws import GlueRuns
from tools.local_stack import aws_connection_env, client


@pytest.fixture
def glue_stack(stack, monkeypatch):
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():  # as the MWAA role
        monkeypatch.setenv(name, value)
    return stack


def _start(stack, manifest_id: str) -> str:
    glue = client("glue", stack.endpoint)
    return glue.start_job_run(JobName=stack.names.glue_job, Arguments={"--manifest_id": manifest_id})["JobRunId"]


def test_runs_are_found_by_manifest_id_only(glue_stack):
    mine = _start(glue_stack, "20261124-aaaa")
    _start(glue_stack, "20261124-bbbb")
    runs = GlueRuns(glue_stack.settings).runs_of("20261124-aaaa")
    assert [r["Id"] for r in runs] == [mine]
    assert GlueRuns(glue_stack.settings).runs_of("20261124-cccc") == []


def test_local_runs_never_look_for_glue_runs(glue_stack):
    _start(glue_stack, "20261124-aaaa")
    local = glue_stack.settings.replace(glue_runner="local")
    assert GlueRuns(local).runs_of("20261124-aaaa") == []
    assert GlueRuns(local).is_active("20261124-aaaa") is False


@pytest.fixture
def slow_glue_runs(glue_stack):
    """moto's Glue runs advance one state per GetJobRun call for this test, instead of finishing at once."""
    state_manager = f"{glue_stack.endpoint}/moto-api/state-manager"
    transition = {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 3}}
    requests.post(f"{state_manager}/set-transition", json=transition, timeout=10).raise_for_status()
    yield glue_stack
    requests.post(f"{state_manager}/unset-transition", json={"model_name": "glue::job_run"}, timeout=10)


def test_an_active_run_is_reused_and_a_finished_one_is_not(slow_glue_runs):
    glue_stack = slow_glue_runs
    run_id = _start(glue_stack, "20261124-aaaa")
    glue = client("glue", glue_stack.endpoint)
    state = glue.get_job_run(JobName=glue_stack.names.glue_job, RunId=run_id)["JobRun"]["JobRunState"]
    runs = GlueRuns(glue_stack.settings)
    assert state in ("STARTING", "RUNNING")  # moto moves a run through these before SUCCEEDED
    assert runs.active_run("20261124-aaaa") == run_id
    for _ in range(50):
        if glue.get_job_run(JobName=glue_stack.names.glue_job, RunId=run_id)["JobRun"]["JobRunState"] == "SUCCEEDED":
            break
    else:
        pytest.fail("the moto Glue run never finished")
    assert runs.active_run("20261124-aaaa") is None
