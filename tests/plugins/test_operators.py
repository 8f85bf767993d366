"""ManifestGlueJobOperator over the moto server: it applies the conversion decision and never runs a manifest twice.

moto's Glue runs execute nothing; here they are held active (manual state
progression) so a retry meets the run an earlier try started.
"""

from __future__ import annotations

import time

import pytest
from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger
from airflow.sdk.exceptions import AirflowException, AirflowSkipException, TaskDeferred

from ndjson_pipeline.steps.sweeping import sweep_expired_claims
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator
from tests.factories import RecordedRuns, plan, publish_result, register_files


class _TaskInstance:
    """What the operator touches of Airflow's runtime: XCom for the Glue console link."""

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def _make_context() -> dict:
    return {"ti": _TaskInstance()}


def _make_operator(ref, **overrides) -> ManifestGlueJobOperator:
    return ManifestGlueJobOperator(**{"task_id": "convert", "manifest": ref.as_dict(), "deferrable": True, **overrides})


def _runs(stack, manifest_id: str) -> list[str]:
    return [r["Id"] for r in ManifestGlueJobHook(job_name=stack.names.glue_job).runs_of(manifest_id)]


def test_a_retry_while_a_run_is_active_never_starts_a_second_run(glue_conversions):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)

    with pytest.raises(TaskDeferred) as first:
        _make_operator(ref).execute(_make_context())
    # A retry is a fresh operator instance: nothing of the first try survives but what AWS recorded.
    with pytest.raises(TaskDeferred) as retried:
        _make_operator(ref).execute(_make_context())

    trigger = first.value.trigger
    assert isinstance(trigger, GlueJobCompleteTrigger)
    assert isinstance(retried.value.trigger, GlueJobCompleteTrigger)
    assert retried.value.trigger.run_id == trigger.run_id
    assert _runs(stack, ref.manifest_id) == [trigger.run_id]
    assert trigger.job_name == stack.names.glue_job
    assert (trigger.waiter_delay, trigger.attempts) == (5, 120)
    assert first.value.method_name == "execute_complete"


def test_a_manifest_with_a_result_or_closed_starts_no_run(glue_conversions):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    publish_result(stack, ref)

    assert _make_operator(ref).execute(_make_context()) is None
    assert _runs(stack, ref.manifest_id) == []
    stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=3, reason="test")
    (other,) = plan(stack, owner="ingest/run-2")  # every file is held by another manifest: nothing to redo
    with pytest.raises(AirflowSkipException, match="COMPENSATED"):
        _make_operator(ref).execute(_make_context())
    assert _runs(stack, ref.manifest_id) == []
    assert _runs(stack, other.manifest_id) == []


def test_a_cleared_conversion_of_a_compensated_manifest_runs_its_redo_once(glue_conversions, monkeypatch):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=3, reason="conversion failed")

    with pytest.raises(TaskDeferred) as cleared:
        _make_operator(ref).execute(_make_context())
    with pytest.raises(TaskDeferred) as cleared_again:
        _make_operator(ref).execute(_make_context())

    redo_id = stack.ledger.successor_of(ref.manifest_id)
    assert redo_id is not None
    assert _runs(stack, redo_id) == [cleared.value.trigger.run_id]
    assert cleared_again.value.trigger.run_id == cleared.value.trigger.run_id
    assert _runs(stack, ref.manifest_id) == []
    # Killing the task stops the run it waits for: the redo's (moto answers BatchStopJobRun with a 500: not called).
    asked = []
    monkeypatch.setattr(ManifestGlueJobHook, "request_stop", lambda _hook, manifest_id: asked.append(manifest_id))
    _make_operator(ref).on_kill()
    assert asked == [redo_id]


def test_the_trigger_event_is_validated():
    operator = ManifestGlueJobOperator(task_id="convert", manifest={"manifest_id": "20261124-aaaa"})
    assert operator.execute_complete({}, {"status": "success", "run_id": "jr_1"}) == "jr_1"
    with pytest.raises(AirflowException, match="20261124-aaaa"):
        operator.execute_complete({}, {"status": "error", "message": "Glue job failed", "run_id": "jr_1"})
    with pytest.raises(AirflowException, match="event is None"):
        operator.execute_complete({}, None)


def test_the_job_and_its_arguments_come_from_the_settings_only():
    with pytest.raises(ValueError, match="job_name"):
        ManifestGlueJobOperator(task_id="convert", manifest={}, job_name="other-job")


def test_a_manifest_compensated_while_its_run_starts_gets_the_run_stopped(glue_conversions, glue_stops, monkeypatch):
    """The sweep of the other DAG compensates the manifest between this task's decision and its run's start."""
    stack = glue_conversions
    identities = register_files(stack, 3)
    (ref,) = plan(stack)
    real_start = ManifestGlueJobHook.start_run

    def start_after_a_compensation(hook, arguments, extra=None):
        # This try stalled past its lease; the other DAG's sweeper found the claim expired and gave it up.
        stack.ledger.extend_lease(ref.manifest_id, 1)
        time.sleep(1.5)
        sweep_expired_claims(
            stack.ledger,
            stack.storage,
            stack.settings,
            [ref.day],
            runs=RecordedRuns(),
            catalog=None,
        )
        return real_start(hook, arguments, extra)

    monkeypatch.setattr(ManifestGlueJobHook, "start_run", start_after_a_compensation)

    with pytest.raises(AirflowSkipException, match="compensated"):
        _make_operator(ref).execute(_make_context())

    assert glue_stops == set(_runs(stack, ref.manifest_id))  # the one run it started, stopped
    assert len(glue_stops) == 1
    assert stack.ledger.get_manifest(ref.manifest_id).state == "COMPENSATED"
    assert set(stack.ledger.get_states(identities).values()) == {"PENDING"}
