"""Sweeping over the moto server: expired claims finalised or compensated, active runs given more time.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState, table_schema
from ndjson_pipeline.steps.sweeping import sweep_expired_claims
from tests.conftest import make_stack
from tests.factories import (
    DAY,
    SHORT_LEASE,
    RecordedRuns,
    file_states,
    plan,
    publish_result,
    register_files,
    wait_for_expired_claims,
    write_publish_log,
)
from tools import faults
from tools.faults import FaultRule


def test_sweeper_repairs_claims_whose_finaliser_never_ran(aws_endpoint):
    stack = make_stack(aws_endpoint, max_files_per_manifest=4, **SHORT_LEASE)
    identities = register_files(stack, 8)
    done_ref, lost_ref = plan(stack)
    publish_result(stack, done_ref)  # finished, but its finaliser never ran
    active = set()

    wait_for_expired_claims(stack, [done_ref, lost_ref])
    repaired = sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack.settings,
        [DAY],
        runs=RecordedRuns(active=active),
        catalog=None,
    )
    assert {r.manifest_id: r.status for r in repaired.repaired} == {
        done_ref.manifest_id: ManifestState.SUCCEEDED,
        lost_ref.manifest_id: ManifestState.COMPENSATED,
    }
    states = file_states(stack, identities)
    assert sorted(states.values()) == sorted([FileState.DONE] * 4 + [FileState.PENDING] * 4)
    assert (
        sweep_expired_claims(
            stack.ledger,
            stack.storage,
            stack.settings,
            [DAY],
            runs=RecordedRuns(),
            catalog=None,
        ).repaired
        == []
    )


def test_sweeper_extends_the_lease_of_a_manifest_still_converting(aws_endpoint):
    stack = make_stack(aws_endpoint, **SHORT_LEASE)
    register_files(stack, 3)
    (ref,) = plan(stack)

    wait_for_expired_claims(stack, [ref])
    stack_settings = stack.settings.replace(lease_seconds=600)
    repaired = sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack_settings,
        [DAY],
        runs=RecordedRuns(active={ref.manifest_id}),
        catalog=None,
    )
    assert (repaired.repaired, repaired.extended) == ([], [ref.manifest_id])
    assert stack.ledger.get_manifest(ref.manifest_id).state is ManifestState.CLAIMED
    assert stack.ledger.expired_manifests(DAY) == []


def _sweep(stack, **overrides):
    kwargs = {"runs": RecordedRuns(), "catalog": None, **overrides}
    return sweep_expired_claims(stack.ledger, stack.storage, stack.settings, [DAY], **kwargs)


def test_one_manifest_the_sweeper_cannot_repair_does_not_stop_the_others(aws_endpoint):
    stack = make_stack(aws_endpoint, max_files_per_manifest=2, **SHORT_LEASE)
    register_files(stack, 8)
    refs = plan(stack)
    undeletable, unstoppable, inconsistent, healthy = refs
    # A run of the first published an object that S3 now refuses to delete.
    partial = stack.settings.layout.part_uri(DAY, undeletable.manifest_id, 0, "snappy")
    write_publish_log(stack, undeletable, [partial])
    stack.job_storage.write_bytes(partial, b"PAR1")
    # The third's record names a group the ledger has no record of.
    schema = table_schema()
    stack.dynamodb.update_item(
        TableName=stack.names.ledger_table,
        Key={name: {"S": value} for name, value in schema.manifest_key(inconsistent.manifest_id).items()},
        UpdateExpression="ADD #groups :ghost",
        ExpressionAttributeNames={"#groups": "groups"},
        ExpressionAttributeValues={":ghost": {"SS": ["20261124-00000000000000000000"]}},
    )

    def stop_active_runs(manifest_id: str) -> None:
        if manifest_id == unstoppable.manifest_id:
            raise TimeoutError(f"Glue run of manifest {manifest_id} did not stop in 600s")

    wait_for_expired_claims(stack, refs)
    refused = FaultRule(
        "access_denied", service="s3", operation="DeleteObjects", resource=f"*{undeletable.manifest_id}*"
    )
    with faults.injected(stack.endpoint, refused):
        report = _sweep(stack, runs=RecordedRuns(on_stop=stop_active_runs))

    assert stack.ledger.get_manifest(healthy.manifest_id).state is ManifestState.COMPENSATED
    for ref in (undeletable, unstoppable):
        record = stack.ledger.get_manifest(ref.manifest_id)
        assert record.state is ManifestState.CLAIMED
        assert set(file_states(stack, stack.ledger.identities_of(record)).values()) == {FileState.CLAIMED}
    assert [r.manifest_id for r in report.repaired] == [healthy.manifest_id]
    assert sorted(report.unrepaired) == sorted(r.manifest_id for r in (undeletable, unstoppable, inconsistent))
    assert "did not stop" in report.unrepaired[unstoppable.manifest_id]
    # Once S3 deletes again and the run stops, the next pass repairs both.
    again = _sweep(stack)
    assert sorted(r.manifest_id for r in again.repaired) == sorted([undeletable.manifest_id, unstoppable.manifest_id])
    assert list(again.unrepaired) == [inconsistent.manifest_id]


def test_the_sweeper_never_compensates_a_claim_a_conversion_just_took_back(aws_endpoint):
    """The other DAG's conversion extends the lease between the sweeper's look and its repair."""
    stack = make_stack(aws_endpoint, **SHORT_LEASE)
    identities = register_files(stack, 3)
    (ref,) = plan(stack)
    wait_for_expired_claims(stack, [ref])

    class ConversionStartsMeanwhile(RecordedRuns):
        def active_run_of(self, manifest_id: str) -> str | None:
            stack.ledger.extend_lease(manifest_id, 600)  # what the conversion task does before it starts its run
            return None  # and its run has not started yet

    report = _sweep(stack, runs=ConversionStartsMeanwhile())

    assert stack.ledger.get_manifest(ref.manifest_id).state is ManifestState.CLAIMED
    assert set(file_states(stack, identities).values()) == {FileState.CLAIMED}
    assert report.repaired == []


def test_files_a_dead_finaliser_failed_are_alerted_by_the_sweeper_once(aws_endpoint):
    from ndjson_pipeline.steps.sweeping import publish_stranded_alerts

    stack = make_stack(aws_endpoint, max_attempts=1)
    identities = register_files(stack, 3)
    (ref,) = plan(stack)
    stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=1, reason="conversion failed")
    # The finaliser died here, before it published the alert.
    published = []

    def publish(manifest_id: str, failed: list[str]) -> None:
        published.append((manifest_id, sorted(failed)))

    publish_stranded_alerts(stack.ledger, [DAY], publish)
    publish_stranded_alerts(stack.ledger, [DAY], publish)

    assert published == [(ref.manifest_id, sorted(identities))]
