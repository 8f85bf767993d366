"""ManifestGlueJobHook over the moto server's Glue: a manifest's runs found, started and stopped by its id."""

from __future__ import annotations

import pytest
import requests

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.runs import conversion_runs
from tools.local_stack import aws_connection_env, client


@pytest.fixture
def glue_stack(stack, monkeypatch):
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():
        monkeypatch.setenv(name, value)
    return stack


def _make_hook(stack, **overrides) -> ManifestGlueJobHook:
    return ManifestGlueJobHook(**{"job_name": stack.names.glue_job, **overrides})


def _start(stack, manifest_id: str, lake_root: str | None = None) -> str:
    """A run of the manifest as the pipeline starts one: writing to the lake, unless ``lake_root`` says otherwise."""
    glue = client("glue", stack.endpoint)
    arguments = {"--manifest_id": manifest_id, "--lake_root": lake_root or stack.settings.layout.lake_root}
    return glue.start_job_run(JobName=stack.names.glue_job, Arguments=arguments)["JobRunId"]


def test_runs_are_found_by_manifest_id_only(glue_stack):
    mine = _start(glue_stack, "20261124-aaaa")
    _start(glue_stack, "20261124-bbbb")
    runs = _make_hook(glue_stack).runs_of("20261124-aaaa")
    assert [r["Id"] for r in runs] == [mine]
    assert _make_hook(glue_stack).runs_of("20261124-cccc") == []


def test_a_reprocess_and_the_pipeline_never_see_each_others_runs_of_a_manifest(glue_stack):
    """A reprocess converts a manifest again under the same id, into its own layout (``--lake_root``)."""
    lake = glue_stack.settings.layout
    rebuild = lake.rebuild("r1")
    pipeline_run = _start(glue_stack, "20261124-aaaa", lake.lake_root)
    rebuild_run = _start(glue_stack, "20261124-aaaa", rebuild.lake_root)
    assert [r["Id"] for r in _make_hook(glue_stack, lake_root=lake.lake_root).runs_of("20261124-aaaa")] == [
        pipeline_run
    ]
    assert [r["Id"] for r in _make_hook(glue_stack, lake_root=rebuild.lake_root).runs_of("20261124-aaaa")] == [
        rebuild_run
    ]
    assert _make_hook(glue_stack, lake_root=lake.rebuild("r2").lake_root).runs_of("20261124-aaaa") == []


def test_local_conversions_are_never_found_running(slow_glue_runs):
    glue_stack = slow_glue_runs
    _start(glue_stack, "20261124-aaaa")
    assert conversion_runs(glue_stack.settings.replace(glue_runner="local")).active_run_of("20261124-aaaa") is None
    assert conversion_runs(glue_stack.settings).active_run_of("20261124-aaaa") is not None


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
    runs = _make_hook(glue_stack)
    assert state in ("STARTING", "RUNNING")  # moto moves a run through these before SUCCEEDED
    assert runs.active_run_of("20261124-aaaa") == run_id
    for _ in range(50):
        if glue.get_job_run(JobName=glue_stack.names.glue_job, RunId=run_id)["JobRun"]["JobRunState"] == "SUCCEEDED":
            break
    else:
        pytest.fail("the moto Glue run never finished")
    assert runs.active_run_of("20261124-aaaa") is None


def test_a_started_run_carries_the_manifest_and_its_extra_arguments(slow_glue_runs):
    stack = slow_glue_runs
    hook = _make_hook(stack)
    ref_args = JobArguments.from_glue_args(
        {
            "manifest_id": "20261124-dddd",
            "day": "2026-11-24",
            "lake_root": f"s3://{stack.names.lake_bucket}",
            "quarantine_root": f"s3://{stack.names.quarantine_bucket}",
            "dataset": "events",
            "schema_uri": "s3://assets/events.json",
        }
    )

    run_id = hook.start_run(ref_args, {"--extra-py-files": "s3://assets/lib.zip"})

    (run,) = hook.runs_of("20261124-dddd")
    assert run["Id"] == run_id
    assert run["Arguments"]["--manifest_id"] == "20261124-dddd"
    assert run["Arguments"]["--extra-py-files"] == "s3://assets/lib.zip"
    assert hook.active_run_of("20261124-dddd") == run_id
    # moto answers BatchStopJobRun with a 500, so stop_runs_of is exercised against AWS only.
