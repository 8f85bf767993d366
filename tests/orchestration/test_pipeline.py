"""Planning, finalising, compensation and sweeping over the moto server.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from ndjson_pipeline import pipeline
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.ledger import ManifestState
from ndjson_pipeline.manifest import FileResult, JobResult, OutputFile
from tests.conftest import make_stack
from tests.factories import DAY, register_files


@pytest.fixture
def small_batches(aws_endpoint):
    return make_stack(aws_endpoint, max_files_per_manifest=4, max_manifests_per_run=3, max_attempts=2)


def _plan(stack, owner="ingest/run-1", **kwargs):
    return pipeline.plan_manifests(stack.ledger, stack.storage, stack.settings, [DAY], owner=owner, **kwargs)


def _states(stack, identities):
    return stack.ledger.get_states(identities)


def _publish(stack, ref, *, rows_per_file=3, quarantined_per_file=1, outputs=1):
    """What a successful run leaves behind: output objects, their publish log, then the result."""
    manifest = pipeline.read_manifest(stack.storage, stack.settings, ref)
    layout = stack.settings.layout
    uris = [layout.part_uri(ref.day, ref.manifest_id, n, "snappy") for n in range(outputs)]
    _write_publish_log(stack, ref, uris)
    for uri in uris:
        stack.storage.write_bytes(uri, b"PAR1")
    files = tuple(
        FileResult(
            f.identity,
            f.uri,
            FileState.DONE,
            None,
            rows_per_file + quarantined_per_file,
            rows_per_file,
            0,
            quarantined_per_file,
        )
        for f in manifest.files
    )
    rows = rows_per_file * len(files)
    result = JobResult(
        ref.manifest_id, ref.day, files, tuple(OutputFile(u, 4, rows if i == 0 else 0) for i, u in enumerate(uris))
    )
    stack.storage.write_bytes(layout.result_uri(ref.day, ref.manifest_id), result.to_json().encode())
    return uris


def _write_publish_log(stack, ref, uris):
    PublishLog(frozenset(uris)).write(stack.storage, stack.settings.layout.publish_log_uri(ref.day, ref.manifest_id))


def _no_glue(_manifest_id):
    return None


def test_plan_is_bounded_and_leaves_the_rest_pending(small_batches):
    stack = small_batches
    identities = register_files(stack, 14)
    refs = _plan(stack)
    assert [r.files for r in refs] == [4, 4, 4]  # max_manifests_per_run=3, max_files_per_manifest=4
    states = _states(stack, identities)
    assert sum(s == FileState.CLAIMED for s in states.values()) == 12
    assert sum(s == FileState.PENDING for s in states.values()) == 2
    for ref in refs:
        manifest = pipeline.read_manifest(stack.storage, stack.settings, ref)
        assert manifest.manifest_id == ref.manifest_id
        assert len(manifest.files) == ref.files


def test_a_retried_plan_readopts_its_manifests_instead_of_claiming_more(small_batches):
    stack = small_batches
    register_files(stack, 14)
    first = _plan(stack)
    # The first try died after claiming; its manifest objects were never written.
    for ref in first:
        stack.storage.delete([stack.settings.layout.manifest_uri(ref.day, ref.manifest_id)])
    retried = _plan(stack)
    assert [r.manifest_id for r in retried] == [r.manifest_id for r in first]
    assert all(pipeline.read_manifest(stack.storage, stack.settings, r).manifest_id == r.manifest_id for r in retried)
    other_run = _plan(stack, owner="ingest/run-2")
    assert [r.files for r in other_run] == [2]


def test_manifest_write_is_create_only(small_batches):
    stack = small_batches
    register_files(stack, 4)
    (ref,) = _plan(stack)
    manifest = pipeline.read_manifest(stack.storage, stack.settings, ref)
    assert pipeline.write_manifest(stack.storage, stack.settings, manifest) == ref  # same bytes: fine
    stack.storage.write_bytes(stack.settings.layout.manifest_uri(ref.day, ref.manifest_id), b'{"tampered": true}')
    with pytest.raises(pipeline.PipelineError, match=ref.manifest_id):
        pipeline.write_manifest(stack.storage, stack.settings, manifest)


def test_finalise_marks_files_done_and_is_idempotent(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = _plan(stack)
    _publish(stack, ref)
    first = pipeline.finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=_no_glue)
    again = pipeline.finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=_no_glue)
    assert first == again
    assert (first.files_done, first.rows_in, first.rows_out, first.rows_quarantined) == (4, 16, 12, 4)
    assert set(_states(stack, identities).values()) == {FileState.DONE}
    item = stack.ledger.get_file(identities[0])
    assert (item.rows_in, item.rows_out, item.rows_quarantined) == (4, 3, 1)


def test_failed_conversion_is_compensated_once_then_fails_with_alert(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = _plan(stack)
    # A run that died mid-publish: its publish log and one object exist, no result.
    lake, quarantine = stack.names.lake_bucket, stack.names.quarantine_bucket
    partial = stack.settings.layout.part_uri(DAY, ref.manifest_id, 0, "snappy")
    bad_lines = stack.settings.layout.quarantined_lines_uri(DAY, ref.manifest_id, 0)
    _write_publish_log(stack, ref, [partial, bad_lines])
    stack.storage.write_bytes(partial, b"PAR1")
    stack.storage.write_bytes(bad_lines, b"{}\n")
    stopped = []
    first = pipeline.finalise_manifest(
        stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=stopped.append
    )
    twice = pipeline.finalise_manifest(
        stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=stopped.append
    )
    assert first.status == twice.status == ManifestState.COMPENSATED
    assert stopped == [ref.manifest_id]  # the second call found the manifest already compensated
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=lake, Prefix=f"{stack.settings.dataset}/")
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=quarantine, Prefix=f"{stack.settings.dataset}/")
    assert set(_states(stack, identities).values()) == {FileState.PENDING}
    # Second (and last, max_attempts=2) failure: FAILED, reported for the alert.
    (again,) = _plan(stack)
    assert again.manifest_id != ref.manifest_id  # a new claim generation gets a new id
    final = pipeline.finalise_manifest(stack.ledger, stack.storage, stack.settings, again, stop_active_runs=_no_glue)
    assert sorted(final.files_failed) == sorted(identities)
    assert set(_states(stack, identities).values()) == {FileState.FAILED}


def test_a_succeeded_manifest_is_never_reset(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = _plan(stack)
    _publish(stack, ref)
    pipeline.finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=_no_glue)
    with pytest.raises(Exception, match="SUCCEEDED"):
        stack.ledger.compensate_manifest(ref.manifest_id, max_attempts=2, reason="late callback")
    assert set(_states(stack, identities).values()) == {FileState.DONE}


def test_sweeper_repairs_claims_whose_finaliser_never_ran(aws_endpoint):
    stack = make_stack(aws_endpoint, max_files_per_manifest=4, lease_seconds=1)
    identities = register_files(stack, 8)
    done_ref, lost_ref = _plan(stack)
    _publish(stack, done_ref)  # finished, but its finaliser never ran
    active = set()

    time.sleep(1.5)
    repaired = pipeline.sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack.settings,
        [DAY],
        run_is_active=lambda m: m in active,
        stop_active_runs=_no_glue,
    )
    assert {r.manifest_id: r.status for r in repaired} == {
        done_ref.manifest_id: ManifestState.SUCCEEDED,
        lost_ref.manifest_id: ManifestState.COMPENSATED,
    }
    states = _states(stack, identities)
    assert sorted(states.values()) == sorted([FileState.DONE] * 4 + [FileState.PENDING] * 4)
    assert (
        pipeline.sweep_expired_claims(
            stack.ledger, stack.storage, stack.settings, [DAY], run_is_active=lambda m: False, stop_active_runs=_no_glue
        )
        == []
    )


def test_sweeper_extends_the_lease_of_a_manifest_still_converting(aws_endpoint):
    stack = make_stack(aws_endpoint, lease_seconds=1)
    register_files(stack, 3)
    (ref,) = _plan(stack)

    time.sleep(1.5)
    stack_settings = stack.settings.replace(lease_seconds=600)
    repaired = pipeline.sweep_expired_claims(
        stack.ledger, stack.storage, stack_settings, [DAY], run_is_active=lambda m: True, stop_active_runs=_no_glue
    )
    assert repaired == []
    assert stack.ledger.get_manifest(ref.manifest_id).state is ManifestState.CLAIMED
    assert stack.ledger.expired_manifests(DAY) == []


def test_day_report_counts_and_completeness(small_batches):
    stack = small_batches
    for i in range(4):
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=f"incoming/2026/11/24/f{i}.ndjson", Body=b"{}\n")
    from ndjson_pipeline.intake import reconcile_day

    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY)
    incomplete = pipeline.day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert incomplete["complete"] is False
    assert incomplete["files_by_state"] == {"PENDING": 4}
    (ref,) = _plan(stack)
    _publish(stack, ref)
    pipeline.finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=_no_glue)
    report = pipeline.day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["complete"] is True
    assert report["files_by_state"] == {"DONE": 4}
    assert (report["rows_in"], report["rows_out"], report["rows_quarantined"]) == (16, 12, 4)
    assert report["latency_seconds_p50"] is not None
    assert report["latency_seconds_p50"] >= 0
    stored = json.loads(stack.storage.read_bytes(stack.settings.layout.report_uri(DAY)))
    assert stored["files_by_state"] == {"DONE": 4}


def test_days_to_watch_includes_late_days():
    now = utcnow().replace(year=2026, month=11, day=24, hour=0, minute=5)
    assert pipeline.days_to_watch(now, ["2026-11-20"]) == ["2026-11-24", "2026-11-23", "2026-11-20"]
    assert pipeline.days_to_watch(now + timedelta(hours=1), []) == ["2026-11-24", "2026-11-23"]
