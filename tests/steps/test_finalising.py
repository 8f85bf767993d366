"""Finalising over the moto server: results recorded once, failed conversions compensated, then FAILED.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import pytest

from ndjson_pipeline.catalog import DatasetCatalog, TableDefinition, ensure_table
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from ndjson_pipeline.steps.sweeping import sweep_expired_claims
from tests.factories import (
    DAY,
    EVENTS_SCHEMA,
    RecordedRuns,
    file_states,
    finalise,
    plan,
    publish_result,
    register_files,
    write_publish_log,
)
from tools import faults
from tools.faults import FaultRule
from tools.local_stack import client


def test_finalise_marks_files_done_and_is_idempotent(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    first = finalise(stack, ref)
    again = finalise(stack, ref)
    assert first == again
    assert (first.files_done, first.rows_in, first.rows_out, first.rows_quarantined) == (4, 16, 12, 4)
    assert set(file_states(stack, identities).values()) == {FileState.DONE}
    item = stack.ledger.get_file(identities[0])
    assert (item.rows_in, item.rows_out, item.rows_quarantined) == (4, 3, 1)


def test_failed_conversion_is_compensated_once_then_fails_with_alert(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    # A run that died mid-publish: its publish log and one object exist, no result.
    lake, quarantine = stack.names.lake_bucket, stack.names.quarantine_bucket
    partial = stack.settings.layout.part_uri(DAY, ref.manifest_id, 0, "snappy")
    bad_lines = stack.settings.layout.quarantined_lines_uri(DAY, ref.manifest_id, 0)
    write_publish_log(stack, ref, [partial, bad_lines])
    stack.job_storage.write_bytes(partial, b"PAR1")
    stack.job_storage.write_bytes(bad_lines, b"{}\n")
    runs = RecordedRuns()
    first = finalise(stack, ref, runs=runs)
    twice = finalise(stack, ref, runs=runs)
    assert first.status == twice.status == ManifestState.COMPENSATED
    # The second call found it compensated: it only makes sure no late run still publishes.
    assert runs.stopped == [ref.manifest_id, ref.manifest_id]
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=lake, Prefix=f"{stack.settings.dataset}/")
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=quarantine, Prefix=f"{stack.settings.dataset}/")
    assert set(file_states(stack, identities).values()) == {FileState.PENDING}
    # Second (and last, max_attempts=2) failure: FAILED, reported for the alert.
    (again,) = plan(stack)
    assert again.manifest_id != ref.manifest_id  # a new claim generation gets a new id
    final = finalise(stack, again)
    assert sorted(final.files_failed) == sorted(identities)
    assert set(file_states(stack, identities).values()) == {FileState.FAILED}


def test_a_succeeded_manifest_is_never_reset(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise(stack, ref)
    with pytest.raises(Exception, match="SUCCEEDED"):
        stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=2, reason="late callback")
    assert set(file_states(stack, identities).values()) == {FileState.DONE}


def test_a_finalised_manifest_makes_its_partition_visible_once(small_batches):
    stack = small_batches
    glue = client("glue", stack.endpoint)
    definition = TableDefinition.for_dataset(
        stack.names.catalog_database, stack.settings.layout, EVENTS_SCHEMA, ConversionOptions()
    )
    ensure_table(glue, definition)
    catalog = DatasetCatalog(glue, stack.names.catalog_database, stack.settings.layout)
    register_files(stack, 4)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    assert glue.get_partitions(DatabaseName=definition.database, TableName="events")["Partitions"] == []
    finalise(stack, ref, catalog=catalog)
    finalise(stack, ref, catalog=catalog)  # a retried finalise: the ledger and the catalog already hold it
    (partition,) = glue.get_partitions(DatabaseName=definition.database, TableName="events")["Partitions"]
    assert partition["Values"] == [DAY]
    assert partition["StorageDescriptor"]["Location"] == f"{stack.settings.layout.partition_uri(DAY)}/"
    assert partition["StorageDescriptor"]["Columns"] == definition.columns


def test_finalising_a_compensated_manifest_removes_what_a_late_run_published(small_batches):
    """A run that was still starting when its manifest was compensated publishes afterwards."""
    stack = small_batches
    register_files(stack, 4)
    (ref,) = plan(stack)
    assert finalise(stack, ref).status == ManifestState.COMPENSATED
    late = publish_result(stack, ref)  # output, publish log and result, all after the compensation

    assert finalise(stack, ref).status == ManifestState.COMPENSATED

    for uri in [*late, stack.settings.layout.result_uri(DAY, ref.manifest_id)]:
        assert stack.storage.read_bytes_if_exists(uri) is None, uri


def test_compensation_removes_the_failed_runs_staging_objects(small_batches):
    stack = small_batches
    register_files(stack, 4)
    (ref,) = plan(stack)
    # The run died while converting: it had staged its groups and published nothing.
    staging = stack.settings.layout.staging_uri(ref.manifest_id)
    staged = [
        f"{staging}/attempt-1/data/dt={DAY}/part-00000.parquet",
        f"{staging}/attempt-1/quarantine/lines-00000.json",
    ]
    for uri in staged:
        stack.job_storage.write_bytes(uri, b"x")

    assert finalise(stack, ref).status == ManifestState.COMPENSATED

    assert stack.storage.list(staging + "/") == {}


def test_a_failed_delete_keeps_the_claims_for_the_sweepers_next_pass(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    partial = stack.settings.layout.part_uri(DAY, ref.manifest_id, 0, "snappy")
    write_publish_log(stack, ref, [partial])
    stack.job_storage.write_bytes(partial, b"PAR1")
    refused = FaultRule("access_denied", service="s3", operation="DeleteObjects", identity="*-mwaa-execution")

    with faults.injected(stack.endpoint, refused), pytest.raises(Exception, match=r"(?i)access ?denied"):
        finalise(stack, ref)

    assert set(file_states(stack, identities).values()) == {FileState.CLAIMED}
    assert stack.storage.read_bytes_if_exists(partial) == b"PAR1"
    assert ref.manifest_id in stack.ledger.expired_manifests(DAY)  # the next sweep retries it, not in an hour
    swept = sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack.settings,
        [DAY],
        runs=RecordedRuns(),
        catalog=None,
    )
    assert [r.manifest_id for r in swept.repaired] == [ref.manifest_id]
    assert set(file_states(stack, identities).values()) == {FileState.PENDING}
    assert stack.storage.read_bytes_if_exists(partial) is None


def test_failed_files_stay_marked_for_their_alert_until_it_is_published(small_batches):
    """A retried finalise that compensated on its first try still knows which files went FAILED."""
    from ndjson_pipeline.steps.finalising import publish_alerts

    stack = small_batches  # max_attempts=2
    identities = register_files(stack, 4)
    finalise(stack, plan(stack)[0])
    (ref,) = plan(stack)
    assert sorted(finalise(stack, ref).files_failed) == sorted(identities)  # then the task died before alerting
    published = []

    def publish(manifest_id: str, failed: list[str]) -> None:
        if not published:
            published.append("refused")
            raise ConnectionError("SNS unreachable")
        published.append((manifest_id, sorted(failed)))

    with pytest.raises(ConnectionError):
        publish_alerts(stack.ledger, ref.manifest_id, publish)
    assert finalise(stack, ref).status == ManifestState.COMPENSATED  # the retry
    publish_alerts(stack.ledger, ref.manifest_id, publish)
    publish_alerts(stack.ledger, ref.manifest_id, publish)

    assert published == ["refused", (ref.manifest_id, sorted(identities))]
