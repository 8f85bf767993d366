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
    stack.s3.delete_object(Bucket=stack.names.landing_bucket, Key=FileId.parse(gone).key)  # superseded indeed

    record = _act(stack, REPLAY)
    assert record.changed == [bad]
    after = stack.ledger.get_file(bad)
    assert (after.state, after.rows_in, after.rows_quarantined, after.manifest_id) == (FileState.PENDING, 0, 0, None)
    assert file_states(stack, [gone, good]) == {gone: FileState.QUARANTINED, good: FileState.DONE}
    with pytest.raises(Exception, match="only a file a conversion quarantined"):
        stack.ledger.replay_quarantined(rejected.file.identity)
    # After the fix the replayed file converts once; the day's rows add up.
    (replayed,) = plan(stack)
    publish_result(stack, replayed)
    finalise(stack, replayed)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["files_by_state"] == {"DONE": 2}  # the deleted version is no longer part of the day's listing
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


def test_a_requeue_racing_a_redo_reports_the_raced_files_unchanged_and_carries_on(small_batches):
    stack = small_batches
    identities = _land(stack, 3)  # one registration group
    failed = _fail_twice(stack)
    others = _land(stack, 1, prefix="z")
    (other,) = plan(stack)
    finalise(stack, other)
    (second,) = plan(stack)
    finalise(stack, second)  # the z file FAILED too, in a group of its own, by another manifest
    client = stack.ledger._table.client
    redone: list[str | None] = []

    def redo_between_read_and_write(**_):
        if not redone:  # a clear of the compensated conversion claims the first file's group under the requeue
            redone.append(None)
            redone[0] = stack.ledger.redo_compensated(failed, lease_seconds=600)

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", redo_between_read_and_write, "race")
    try:
        record = _act(stack, REQUEUE)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="race")

    assert redone[0] is not None
    assert record.changed == others, "the action carried on past the raced files"
    assert sorted(record.unchanged) == identities
    assert all("CLAIMED" in why for why in record.unchanged.values())
    (written,) = read_records(stack.storage, stack.settings, DAY)
    assert (written["changed"], sorted(written["unchanged"])) == (others, identities)
    states = file_states(stack, identities + others)
    assert [states[i] for i in identities] == [FileState.CLAIMED] * 3
    assert states[others[0]] is FileState.PENDING


def test_a_version_wrongly_quarantined_as_superseded_is_reported_and_replayed(small_batches):
    stack = small_batches
    identities = _land(stack, 3)
    wrong, gone, good = identities
    (ref,) = plan(stack)
    superseded = "superseded: no longer has its eTag"
    stack.ledger.complete_manifest(
        ref.manifest_id,
        [
            file_result(wrong, FileState.QUARANTINED, reason=superseded),  # yet S3 still holds it
            file_result(gone, FileState.QUARANTINED, reason=superseded),
            file_result(good, FileState.DONE, rows_in=1, rows_out=1),
        ],
    )
    stack.s3.delete_object(Bucket=stack.names.landing_bucket, Key=FileId.parse(gone).key)

    listed = reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)

    assert listed.present_but_superseded == [wrong]
    assert (report["complete"], report["present_but_superseded"]) == (False, [wrong])
    # Through the manifest, S3 is asked for each superseded version: only the one it still holds goes back.
    record = _act(stack, REPLAY, manifest_id=ref.manifest_id)
    assert (record.changed, list(record.unchanged)) == ([wrong], [])
    assert file_states(stack, [wrong, gone]) == {wrong: FileState.PENDING, gone: FileState.QUARANTINED}
    with pytest.raises(Exception, match="only a file a conversion quarantined"):
        stack.ledger.replay_quarantined(gone)
    (replayed,) = plan(stack)
    publish_result(stack, replayed)
    finalise(stack, replayed)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert (report["complete"], report["files_by_state"]) == (True, {"DONE": 2})
