"""Finalising over the moto server: results recorded once, failed conversions compensated, then FAILED.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from ndjson_pipeline.steps.finalising import finalise_manifest
from tests.factories import DAY, file_states, no_glue_runs, plan, publish_result, register_files, write_publish_log


def test_finalise_marks_files_done_and_is_idempotent(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    first = finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=no_glue_runs)
    again = finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=no_glue_runs)
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
    first = finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=stopped.append)
    twice = finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=stopped.append)
    assert first.status == twice.status == ManifestState.COMPENSATED
    assert stopped == [ref.manifest_id]  # the second call found the manifest already compensated
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=lake, Prefix=f"{stack.settings.dataset}/")
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=quarantine, Prefix=f"{stack.settings.dataset}/")
    assert set(file_states(stack, identities).values()) == {FileState.PENDING}
    # Second (and last, max_attempts=2) failure: FAILED, reported for the alert.
    (again,) = plan(stack)
    assert again.manifest_id != ref.manifest_id  # a new claim generation gets a new id
    final = finalise_manifest(stack.ledger, stack.storage, stack.settings, again, stop_active_runs=no_glue_runs)
    assert sorted(final.files_failed) == sorted(identities)
    assert set(file_states(stack, identities).values()) == {FileState.FAILED}


def test_a_succeeded_manifest_is_never_reset(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=no_glue_runs)
    with pytest.raises(Exception, match="SUCCEEDED"):
        stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=2, reason="late callback")
    assert set(file_states(stack, identities).values()) == {FileState.DONE}
