"""PendingWorkSensor: a cleared run that already holds claims plans at once, whatever the day's pending work."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from ndjson_pipeline_airflow.sensors import PendingWorkSensor
from tests.factories import plan, register_files
from tools.local_stack import aws_connection_env

RUN_ID = "scheduled__2026-11-24T10:00:00+00:00"
OWNER = f"ndjson_ingest/{RUN_ID}"


def _context(try_number: int, run_id: str = RUN_ID) -> dict:
    return {
        "dag": SimpleNamespace(dag_id="ndjson_ingest"),
        "run_id": run_id,
        "ti": SimpleNamespace(try_number=try_number),
    }


@pytest.fixture
def sensor(stack, monkeypatch) -> PendingWorkSensor:
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():  # as the MWAA role
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS", json.dumps({"name_prefix": stack.settings.name_prefix}))
    return PendingWorkSensor(task_id="wait_for_pending_work")


def test_a_cleared_run_holding_claims_on_a_quiet_day_replans_at_once(stack, sensor):
    register_files(stack, 3)
    claimed = plan(stack, owner=OWNER)  # the run's planner claimed everything; then the whole run was cleared
    assert claimed

    days = sensor.execute(_context(try_number=2))  # the cleared sensor: nothing is pending, yet it does not wait

    assert days == []
    assert plan(stack, owner=OWNER) == claimed, "the planner re-adopts the run's manifests instead of new claims"


def test_a_first_try_and_a_run_holding_nothing_wait_for_work(stack, sensor):
    register_files(stack, 1)
    plan(stack, owner=OWNER)
    with pytest.raises(TaskDeferred):
        sensor.execute(_context(try_number=1))
    with pytest.raises(TaskDeferred):
        sensor.execute(_context(try_number=2, run_id="scheduled__2026-11-24T10:01:00+00:00"))


def test_the_trigger_waits_for_the_batch_the_latency_budget_sizes_and_wakes_this_run_only(stack, sensor):
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_context(try_number=1))
    trigger = deferred.value.trigger
    batching = stack.settings.batching
    assert trigger.dag_run == OWNER  # who takes a ready day's wake
    assert (trigger.enough_files, trigger.enough_bytes) == (batching.files, batching.bytes)
    assert trigger.max_wait_seconds == batching.wait_seconds == 420
    assert deferred.value.timeout.total_seconds() == batching.sensor_timeout_seconds + 300
