"""Operator actions over the moto server: requeue FAILED files, replay quarantined ones, dry runs, records.

Landing objects are real (a day is selected through its listing); the
conversion job's side is played by writing what the job writes, or by
recording its outcomes in the ledger.
"""

from __future__ import annotations

import pytest

from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.maintenance import MaintenanceAction, read_records, run_action
from ndjson_pipeline.steps.reconcile import reconcile_day
from ndjson_pipeline.steps.reporting import day_report
from tests.factories import DAY, DAY_PATH, TODAY, file_result, file_states, finalise, plan, publish_result

REQUEUE, REPLAY = MaintenanceAction.REQUEUE_FAILED, MaintenanceAction.REPLAY_QUARANTINED


def _land(stack, count: int, prefix: str = "m") -> list[str]:
    """``count`` landing objects of DAY, registered by the reconcile; their identities."""
    for i in range(count):
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=f"{DAY_PATH}{prefix}{i}.ndjson", Body=b'{"a":1}\n')
    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)
    return _identities(stack, prefix)


def _identities(stack, prefix: str = "") -> list[str]:
    bucket = stack.names.landing_bucket
    listing = stack.s3.list_objects_v2(Bucket=bucket, Prefix=f"{DAY_PATH}{prefix}")["Contents"]
    return sorted(str(FileId.from_listing(bucket, obj)) for obj in listing)


def _fail_twice(stack) -> str:
    """Two failed conversions (max_attempts=2): the files are FAILED; returns the last manifest's id."""
    (first,) = plan(stack)
    finalise(stack, first)
    (second,) = plan(stack)
    assert finalise(stack, second).files_failed
    return second.manifest_id


def _act(stack, action, *, dry_run=False, manifest_id=None, run="ndjson_maintenance/manual__1"):
    return run_action(
        stack.ledger,
        stack.storage,
        stack.settings,
        action=action,
        day=DAY,
        manifest_id=manifest_id,
        dry_run=dry_run,
        requested_by=run,
        triggered_by="operator-1",
    )


def test_requeue_of_a_day_returns_its_failed_files_and_leaves_a_record(small_batches):
    stack = small_batches
    identities = _land(stack, 3)
    _fail_twice(stack)
    done = _land(stack, 1, prefix="ok")  # a file of the day that converts: the requeue must not touch it
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise(stack, ref)

    dry = _act(stack, REQUEUE, dry_run=True)
    assert (dry.selected, sorted(dry.changed)) == (3, identities)
    assert set(file_states(stack, identities).values()) == {FileState.FAILED}  # a dry run changes nothing
    assert read_records(stack.storage, stack.settings, DAY) == []

    record = _act(stack, REQUEUE)
    assert sorted(record.changed) == identities
    records = stack.ledger.get_files(identities).values()
    assert {(r.state, r.attempts) for r in records} == {(FileState.PENDING, 0)}
    assert file_states(stack, done) == {done[0]: FileState.DONE}
    (stored,) = read_records(stack.storage, stack.settings, DAY)
    assert (stored["action"], stored["requested_by"], stored["triggered_by"], stored["dry_run"]) == (
        "requeue_failed",
        "ndjson_maintenance/manual__1",
        "operator-1",
        False,
    )
    # Requeued files convert as new ones: the day ends complete, rows in = out + quarantined.
    (again,) = plan(stack)
    publish_result(stack, again)
    finalise(stack, again)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["complete"] is True
    assert report["files_by_state"] == {"DONE": 4}
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
    (shown,) = report["maintenance"]
    assert (shown["action"], shown["changed_count"], shown["unchanged_count"]) == ("requeue_failed", 3, 0)


def test_requeue_of_a_manifest_takes_only_its_files(small_batches):
    stack = small_batches
    failed_first = _land(stack, 2, prefix="a")
    manifest_id = _fail_twice(stack)
    _land(stack, 2, prefix="b")
    _fail_twice(stack)
    record = _act(stack, REQUEUE, manifest_id=manifest_id)
    assert sorted(record.changed) == failed_first
    others = [i for i in _identities(stack) if i not in failed_first]
    assert set(file_states(stack, others).values()) == {FileState.FAILED}


def test_an_unknown_manifest_is_refused_by_name(small_batches):
    stack = small_batches
    with pytest.raises(PipelineError, match="20261124-nope has no ledger record"):
        _act(stack, REQUEUE, manifest_id="20261124-nope")


def test_replay_returns_only_files_a_conversion_quarantined(small_batches):
    stack = small_batches
    identities = _land(stack, 3)
    (ref,) = plan(stack)
    bad, gone, good = identities
    stack.ledger.complete_manifest(
        ref.manifest_id,
        [
            file_result(bad, FileState.QUARANTINED, reason="not decodable: bad gzip", rows_in=2, rows_quarantined=2),
            file_result(gone, FileState.QUARANTINED, reason="superseded: the version is gone from S3"),
            file_result(good, FileState.DONE, rows_in=1, rows_out=1),
        ],
    )
    rejected = registration_for(
        stack.names.landing_bucket, f"{DAY_PATH}notes.txt", 10, "t1", f"{DAY}T01:00:00+00:00", stack.settings
    )
    stack.ledger.register([rejected])  # quarantined at intake: not in the listing, and never replayable

    record = _act(stack, REPLAY)
    assert record.changed == [bad]
    after = stack.ledger.get_file(bad)
    assert (after.state, after.rows_in, after.rows_quarantined, after.manifest_id) == (FileState.PENDING, 0, 0, None)
    assert file_states(stack, [gone, good]) == {gone: FileState.QUARANTINED, good: FileState.DONE}
    with pytest.raises(Exception, match="not superseded"):
        stack.ledger.replay_quarantined(rejected.file.identity)
    # After the fix the replayed file converts once; the day's rows add up.
    (replayed,) = plan(stack)
    publish_result(stack, replayed)
    finalise(stack, replayed)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["files_by_state"] == {"DONE": 2, "QUARANTINED": 1}
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]


def test_a_file_that_changed_state_since_selection_is_reported_unchanged(small_batches, monkeypatch):
    stack = small_batches
    identities = _land(stack, 2)
    _fail_twice(stack)
    selected = stack.ledger.get_files(identities)  # what the action reads ...
    stack.ledger.requeue_failed(identities[0])  # ... before someone else requeues one of them
    monkeypatch.setattr(stack.ledger, "get_files", lambda ids: {i: selected[i] for i in ids if i in selected})
    record = _act(stack, REQUEUE)
    assert record.changed == [identities[1]]
    assert list(record.unchanged) == [identities[0]]
