"""ManifestGlueJobOperator over the moto server: it applies the conversion decision and never runs a manifest twice.

moto's Glue runs execute nothing; here they are held active (manual state
progression) so a retry meets the run an earlier try started. A retry or a clear
is a fresh operator instance with the next try number and the same task state
store, as in Airflow 3.3: the store is kept per DAG run, task and map index,
across retries and clears. The operator is not the provider's
``GlueJobOperator``, so the provider's ``durable`` run tracking (9.35.0 and later:
the store, the ``--airflow_task_uuid`` argument) never applies: the manifest's
recorded state decides, and the tests check neither is ever used.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
import requests
from airflow.providers.amazon import __version__ as PROVIDER_VERSION
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowSkipException, TaskDeferred

from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.settings import RunPurpose
from ndjson_pipeline.steps.reprocessing import RebuildRef
from ndjson_pipeline.steps.sweeping import sweep_expired_claims
from ndjson_pipeline.usage.glue import ExecutionClass
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator, RebuildGlueJobOperator
from ndjson_pipeline_airflow.runs import conversion_runs
from tests.factories import RecordedRuns, plan, publish_result, register_files, wait_for_expired_claims
from tools.local_stack import client

PROVIDER_HAS_DURABLE = "durable" in inspect.signature(GlueJobOperator.__init__).parameters
_needs_durable = pytest.mark.skipif(
    not PROVIDER_HAS_DURABLE,
    reason=f"apache-airflow-providers-amazon {PROVIDER_VERSION} has no `durable` (it came with 9.35.0)",
)
# What the provider's run tracking would leave behind: its store key and the argument its runs carry.
PROVIDER_STORE_KEY = getattr(GlueJobOperator, "external_id_key", "glue_job_run_id")
PROVIDER_TASK_ARGUMENT = GlueJobOperator.TASK_UUID_ARG


class _TaskInstance:
    """What the operator may touch of Airflow's runtime: the try's identity and XCom (empty on every try)."""

    def __init__(self, try_number: int, map_index: int) -> None:
        self.dag_id = "ndjson_ingest"
        self.task_id = "convert_manifest.convert"
        self.run_id = "scheduled__2026-11-24T00:00:00+00:00"
        self.map_index = map_index
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value

    def xcom_pull(self, *args: object, **kwargs: object) -> None:
        return None  # Airflow 3 clears a task's XCom before each try


class _TaskStateStore:
    """One (DAG run, task, map index)'s task state store: kept across retries and clears; every access recorded."""

    def __init__(self, values: dict[str, object] | None = None) -> None:
        self.values = dict(values or {})
        self.accessed: list[tuple[str, str]] = []

    def get(self, key: str, default: object = None) -> object:
        self.accessed.append(("get", key))
        return self.values.get(key, default)

    def set(self, key: str, value: object, **kwargs: object) -> None:
        self.accessed.append(("set", key))
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.accessed.append(("delete", key))
        self.values.pop(key, None)


def _make_context(try_number: int = 1, store: _TaskStateStore | None = None, map_index: int = 0) -> dict:
    return {"ti": _TaskInstance(try_number, map_index), "task_state_store": store or _TaskStateStore()}


def _make_operator(ref, **overrides) -> ManifestGlueJobOperator:
    return ManifestGlueJobOperator(**{"task_id": "convert", "manifest": ref.as_dict(), "deferrable": True, **overrides})


def _runs(stack, manifest_id: str) -> list[str]:
    return [r["Id"] for r in ManifestGlueJobHook(job_name=stack.names.glue_job).runs_of(manifest_id)]


def _assert_provider_tracking_unused(stack, *stores: _TaskStateStore) -> None:
    """Neither the task state store nor the provider's task argument: the manifest's recorded state decided."""
    assert [store.accessed for store in stores] == [[] for _ in stores]
    runs = client("glue", stack.endpoint).get_job_runs(JobName=stack.names.glue_job)["JobRuns"]
    assert runs
    assert all(PROVIDER_TASK_ARGUMENT not in (run.get("Arguments") or {}) for run in runs)


def _let_runs_finish(stack) -> None:
    """moto's runs held RUNNING by the fixture read SUCCEEDED from now on."""
    transition = {"model_name": "glue::job_run", "transition": {"progression": "immediate"}}
    requests.post(
        f"{stack.endpoint}/moto-api/state-manager/set-transition", json=transition, timeout=10
    ).raise_for_status()


def _trigger_gives_up(trigger: GlueJobCompleteTrigger) -> dict:
    """Run the deferral's own trigger against moto with one poll: the run is still going, so it reports an error."""
    trigger.waiter_delay, trigger.attempts = 1, 1

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event())


def test_a_retry_after_a_deferral_waits_for_the_run_the_first_try_started(glue_conversions):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    store = _TaskStateStore()

    with pytest.raises(TaskDeferred) as first:
        _make_operator(ref).execute(_make_context(1, store))
    # A retry is a fresh operator instance: nothing of the first try survives but what AWS and the store recorded.
    with pytest.raises(TaskDeferred) as retried:
        _make_operator(ref).execute(_make_context(2, store))

    trigger = first.value.trigger
    assert isinstance(trigger, GlueJobCompleteTrigger)
    assert isinstance(retried.value.trigger, GlueJobCompleteTrigger)
    assert retried.value.trigger.run_id == trigger.run_id
    assert _runs(stack, ref.manifest_id) == [trigger.run_id]
    assert trigger.job_name == stack.names.glue_job
    assert (trigger.waiter_delay, trigger.attempts) == (5, 120)
    assert first.value.method_name == "execute_complete"
    _assert_provider_tracking_unused(stack, store)


def test_a_retry_after_its_trigger_failed_waits_for_the_same_run(glue_conversions):
    """The trigger gives up while the run goes on (#59075, #55804): the try fails, the retry waits for that run."""
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    store = _TaskStateStore()
    with pytest.raises(TaskDeferred) as first:
        _make_operator(ref).execute(_make_context(1, store))
    run_id = first.value.trigger.run_id

    event = _trigger_gives_up(first.value.trigger)
    assert (event["status"], event["run_id"]) == ("error", run_id)
    with pytest.raises(AirflowException, match=ref.manifest_id):
        _make_operator(ref).execute_complete(_make_context(1, store), event)
    with pytest.raises(TaskDeferred) as retried:
        _make_operator(ref).execute(_make_context(2, store))

    assert retried.value.trigger.run_id == run_id
    assert _runs(stack, ref.manifest_id) == [run_id]
    _assert_provider_tracking_unused(stack, store)


def test_a_clear_after_the_run_succeeded_starts_no_run(glue_conversions):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    store = _TaskStateStore()
    with pytest.raises(TaskDeferred) as first:
        _make_operator(ref).execute(_make_context(1, store))
    publish_result(stack, ref)  # what the run leaves behind
    _let_runs_finish(stack)
    run_id = first.value.trigger.run_id
    succeeded = {"status": "success", "run_id": run_id}
    assert _make_operator(ref).execute_complete(_make_context(1, store), succeeded) == run_id

    # Clearing the task instance: a new try of the same (DAG run, task, map index), its store kept.
    assert _make_operator(ref).execute(_make_context(2, store)) is None

    assert _runs(stack, ref.manifest_id) == [run_id]
    _assert_provider_tracking_unused(stack, store)


def test_a_clear_that_maps_another_manifest_to_the_index_converts_that_manifest(glue_conversions):
    """The store of map index 0 holds the run of manifest A (as the provider's ``durable`` keeps it), still going;
    after the clear, index 0 is manifest B: B gets its own run, A's run is left alone."""
    stack = glue_conversions
    register_files(stack, 3, prefix="a")
    (manifest_a,) = plan(stack)
    register_files(stack, 3, prefix="b")
    (manifest_b,) = plan(stack, owner="ingest/run-2")
    with pytest.raises(TaskDeferred) as converting_a:
        _make_operator(manifest_a).execute(_make_context(1, map_index=0))
    run_a = converting_a.value.trigger.run_id
    store = _TaskStateStore({PROVIDER_STORE_KEY: run_a})

    with pytest.raises(TaskDeferred) as cleared:
        _make_operator(manifest_b).execute(_make_context(2, store, map_index=0))

    (run_b,) = _runs(stack, manifest_b.manifest_id)
    assert cleared.value.trigger.run_id == run_b != run_a
    assert _runs(stack, manifest_a.manifest_id) == [run_a]
    _assert_provider_tracking_unused(stack, store)


@_needs_durable
def test_the_providers_durable_resumes_the_stored_run_whatever_it_converts(glue_conversions):
    """Why the operator is not a GlueJobOperator: the provider's, durable, asked to convert manifest B on map index 0,
    resumes the run the store holds for that index (manifest A's) and starts none for B."""
    stack = glue_conversions
    register_files(stack, 3, prefix="a")
    (manifest_a,) = plan(stack)
    register_files(stack, 3, prefix="b")
    (manifest_b,) = plan(stack, owner="ingest/run-2")
    with pytest.raises(TaskDeferred) as converting_a:
        _make_operator(manifest_a).execute(_make_context(1, map_index=0))
    run_a = converting_a.value.trigger.run_id
    store = _TaskStateStore({PROVIDER_STORE_KEY: run_a})
    convert = GlueJobOperator(
        task_id="convert",
        job_name=stack.names.glue_job,
        script_args=stack.settings.job_arguments(manifest_b).to_glue_args(),
        durable=True,
        wait_for_completion=False,
    )

    assert convert.execute(_make_context(2, store, map_index=0)) == run_a

    assert _runs(stack, manifest_b.manifest_id) == []
    assert ("get", PROVIDER_STORE_KEY) in store.accessed


def test_the_providers_durable_never_applies_to_the_conversion():
    assert not issubclass(ManifestGlueJobOperator, GlueJobOperator)
    with DAG("durable_by_default", schedule=None, default_args={"durable": True}):  # a DAG-wide default: ignored
        operator = ManifestGlueJobOperator(task_id="convert", manifest={"manifest_id": "20261124-aaaa"})
    assert not hasattr(operator, "durable")


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

    def start_after_a_compensation(hook, arguments, extra=None, **run_options):
        # This try stalled past its lease; the other DAG's sweeper found the claim expired and gave it up.
        stack.ledger.extend_lease(ref.manifest_id, 1)
        wait_for_expired_claims(stack, [ref])
        sweep_expired_claims(
            stack.ledger,
            stack.storage,
            stack.settings,
            [ref.day],
            runs=RecordedRuns(),
            catalog=None,
        )
        return real_start(hook, arguments, extra, **run_options)

    monkeypatch.setattr(ManifestGlueJobHook, "start_run", start_after_a_compensation)

    with pytest.raises(AirflowSkipException, match="compensated"):
        _make_operator(ref).execute(_make_context())

    assert glue_stops == set(_runs(stack, ref.manifest_id))  # the one run it started, stopped
    assert len(glue_stops) == 1
    assert stack.ledger.get_manifest(ref.manifest_id).state == "COMPENSATED"
    assert set(stack.ledger.get_states(identities).values()) == {"PENDING"}


def test_the_end_of_day_flush_runs_in_flex_and_is_billed_at_its_rate_while_ingest_runs_standard(glue_conversions):
    """The run kind decides the execution class Glue is asked for; what finalise records is what each run reports."""
    stack = glue_conversions
    register_files(stack, 3)
    (ingest,) = plan(stack, owner="ndjson_ingest/run-1")
    register_files(stack, 2, prefix="late")
    (flush,) = plan(stack, owner="ndjson_end_of_day/run-1")

    for ref, kind in ((ingest, "ingest"), (flush, "end_of_day")):
        with pytest.raises(TaskDeferred):
            _make_operator(ref, purpose=kind).execute(_make_context())
    _let_runs_finish(stack)

    runs = client("glue", stack.endpoint).get_job_runs(JobName=stack.names.glue_job)["JobRuns"]
    classes = {run["Arguments"]["--manifest_id"]: run["ExecutionClass"] for run in runs}
    assert classes == {ingest.manifest_id: "STANDARD", flush.manifest_id: "FLEX"}
    settings = stack.settings
    billed = conversion_runs(settings, purpose=RunPurpose.END_OF_DAY).billed(flush.manifest_id, None)
    assert (billed.glue_runs, billed.glue_flex_runs) == (1, 1)
    assert billed.glue_flex_dpu_seconds == billed.glue_dpu_seconds > 0
    assert conversion_runs(settings).billed(ingest.manifest_id, None).glue_flex_runs == 0
    # A reprocess's rebuilds are not latency-bound either; with the setting at STANDARD nothing runs in FLEX.
    rebuild = RebuildGlueJobOperator(task_id="rebuild", manifest=RebuildRef(flush, "rebuild-1").as_dict())
    assert rebuild._runs(settings).execution_class is ExecutionClass.FLEX
    standard = settings.replace(background_execution_class="STANDARD")
    assert rebuild._runs(standard).execution_class is ExecutionClass.STANDARD


def test_a_local_run_is_billed_in_the_execution_class_its_kind_asks_for(glue_conversions):
    local = glue_conversions.settings.replace(glue_runner="local")
    result = JobResult("20261124-aaaa", "2026-11-24", (), timings={"total_s": 30.0})
    flex = conversion_runs(local, purpose=RunPurpose.END_OF_DAY).billed("20261124-aaaa", result)
    standard = conversion_runs(local, purpose=RunPurpose.INGEST).billed("20261124-aaaa", result)
    assert (flex.glue_flex_runs, flex.glue_flex_dpu_seconds, flex.glue_dpu_seconds) == (1, 120, 120)
    assert (standard.glue_flex_runs, standard.glue_dpu_seconds) == (0, 120)
