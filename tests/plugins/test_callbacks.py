"""The conversion's callbacks, called directly with a context for a manifest in each state.

Callbacks are the fast path of the saga: they may fire twice, early or never, so
each acts only on a manifest that still holds an unfinished claim, and the
finaliser and the sweeper stay the guarantee. The e2e suite runs one through a
real retry (tests/e2e/test_end_to_end.py).
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import TaskDeferred

from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline_airflow.callbacks import alert_conversion_failed, stop_run_before_retry
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator
from tests.factories import DAY, finalise, plan, publish_result, register_files, write_publish_log


class _TaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def _make_context(ref: ManifestRef) -> dict:
    return {"task": ManifestGlueJobOperator(task_id="convert", manifest=ref.as_dict()), "ti": _TaskInstance()}


def _start_run(ref: ManifestRef) -> str:
    """What the failed try did: start a Glue run of the manifest (it keeps RUNNING)."""
    with pytest.raises(TaskDeferred) as deferred:
        ManifestGlueJobOperator(task_id="convert", manifest=ref.as_dict(), deferrable=True).execute(_make_context(ref))
    return deferred.value.trigger.run_id


def _partial_output(stack, ref: ManifestRef) -> list[str]:
    """What the failed run left: a staged file, and one published object named in its publish log."""
    layout = stack.settings.layout
    staged = f"{layout.staging_uri(ref.manifest_id)}/jr_1/data/dt={DAY}/part-00000.parquet"
    published = layout.part_uri(DAY, ref.manifest_id, 0, "snappy")
    write_publish_log(stack, ref, [published])
    for uri in (staged, published):
        stack.job_storage.write_bytes(uri, b"PAR1")
    return [staged, published, layout.publish_log_uri(DAY, ref.manifest_id)]


def _existing(stack, uris: list[str]) -> list[str]:
    return [u for u in uris if stack.storage.read_bytes_if_exists(u) is not None]


def test_before_a_retry_the_run_is_stopped_and_its_partial_output_removed(glue_conversions, glue_stops):
    stack = glue_conversions
    identities = register_files(stack, 3)
    (ref,) = plan(stack)
    run_id = _start_run(ref)
    partial = _partial_output(stack, ref)

    stop_run_before_retry(_make_context(ref))
    stop_run_before_retry(_make_context(ref))  # fired twice: the second finds nothing to stop or remove

    assert glue_stops == {run_id}
    assert _existing(stack, partial) == []
    assert stack.ledger.get_manifest(ref.manifest_id).state == "CLAIMED"  # the retry converts it again
    assert set(stack.ledger.get_states(identities).values()) == {"CLAIMED"}


def test_the_retry_callback_leaves_the_output_of_a_retry_that_started_meanwhile(
    glue_conversions, glue_stops, monkeypatch
):
    """Airflow runs the callback after reporting the try's state: the retry may start while it stops the run."""
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    run_id = _start_run(ref)
    real_stop = ManifestGlueJobHook.stop_runs_of

    def retry_starts_while_stopping(hook, manifest_id):
        real_stop(hook, manifest_id)
        stack.ledger.extend_lease(manifest_id, 3900)  # what the retry does before it starts its run
        _partial_output(stack, ref)  # and the retry's run publishes

    monkeypatch.setattr(ManifestGlueJobHook, "stop_runs_of", retry_starts_while_stopping)
    kept = _partial_output(stack, ref)

    stop_run_before_retry(_make_context(ref))

    assert glue_stops == {run_id}
    assert _existing(stack, kept) == kept


def _claimed_with_result(stack, ref):
    publish_result(stack, ref)


def _compensated(stack, ref):
    finalise(stack, ref)


def _succeeded(stack, ref):
    publish_result(stack, ref)
    finalise(stack, ref)


def _being_compensated(stack, ref):
    stack.ledger.fence_manifest(ref.manifest_id)  # a finaliser or sweeper has begun compensating it


@pytest.mark.parametrize("state", [_claimed_with_result, _compensated, _succeeded, _being_compensated])
def test_the_retry_callback_leaves_a_manifest_alone_unless_it_holds_an_unfinished_claim(
    glue_conversions, glue_stops, state
):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    _start_run(ref)
    partial = _partial_output(stack, ref)
    state(stack, ref)
    before = stack.ledger.get_manifest(ref.manifest_id)
    kept = _existing(stack, partial)

    stop_run_before_retry(_make_context(ref))

    assert glue_stops == set()
    assert _existing(stack, partial) == kept
    assert stack.ledger.get_manifest(ref.manifest_id) == before


def test_the_retry_callback_of_an_unknown_manifest_does_nothing(glue_conversions, glue_stops):
    stop_run_before_retry(_make_context(ManifestRef("20261124-unknown", DAY, 1, 1)))
    assert glue_stops == set()


def test_on_final_failure_one_alert_names_the_manifest_and_its_files(glue_conversions, alert_inbox):
    stack = glue_conversions
    identities = register_files(stack, 3)
    (ref,) = plan(stack)

    alert_conversion_failed(_make_context(ref))
    alert_conversion_failed(_make_context(ref))  # fired twice

    (alert,) = alert_inbox()
    assert alert["manifest_id"] == ref.manifest_id
    assert sorted(alert["files"]) == sorted(identities)
    assert alert["kind"] == "conversion_failed"


@pytest.mark.parametrize("state", [_claimed_with_result, _compensated, _succeeded])
def test_no_failure_alert_for_a_manifest_that_has_its_outcome(glue_conversions, alert_inbox, state):
    stack = glue_conversions
    register_files(stack, 3)
    (ref,) = plan(stack)
    state(stack, ref)

    alert_conversion_failed(_make_context(ref))

    assert alert_inbox() == []
