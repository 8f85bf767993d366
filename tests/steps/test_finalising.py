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
from tests.factories import (
    DAY,
    EVENTS_SCHEMA,
    file_states,
    finalise,
    plan,
    publish_result,
    register_files,
    write_publish_log,
)
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
    stopped = []
    first = finalise(stack, ref, stop_active_runs=stopped.append)
    twice = finalise(stack, ref, stop_active_runs=stopped.append)
    assert first.status == twice.status == ManifestState.COMPENSATED
    assert stopped == [ref.manifest_id]  # the second call found the manifest already compensated
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
