"""The open-days registry over the moto server: every day with open work is listed until it has none.

A day is opened in the same transaction as the files that open it, and closed
in two passes, each after the day was quiet for ``QUIET_SECONDS`` (the index is
eventually consistent), with conditions that keep a day whose work arrived
meanwhile. Passes are run on a future clock rather than waited for.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.ledger import days as open_days
from ndjson_pipeline.ledger import table_schema
from ndjson_pipeline.ledger.days import QUIET_SECONDS, DayState
from tests.conftest import make_stack
from tests.factories import DAY, claim, file_result, mwaa_ledger, register_files

OLD_DAY_PATH = "incoming/2026/10/02/"


def _later(passes: int = 1):
    return utcnow() + timedelta(seconds=passes * (QUIET_SECONDS + 1))


def _finish_everything(stack) -> None:
    while manifest := claim(stack):
        stack.ledger.complete_manifest(
            manifest.manifest_id, [file_result(f.identity, FileState.DONE) for f in manifest.files]
        )


def test_registering_pending_files_opens_their_days(stack):
    register_files(stack, 2)
    register_files(stack, 1, prefix="old", day_path=OLD_DAY_PATH)
    rejected = registration_for(
        stack.names.landing_bucket, "incoming/2026/10/09/notes.txt", 10, "e1", f"{DAY}T01:00:00+00:00", stack.settings
    )
    assert stack.ledger.register([rejected]).quarantined  # quarantined at once: no open work for its day

    assert stack.ledger.open_days() == [DAY, "2026-10-02"]


def test_a_day_with_pending_files_or_open_manifests_is_never_closed(stack):
    register_files(stack, 3)
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.OPEN
    claim(stack, max_files=2)  # one open manifest, one file still pending
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.OPEN
    claim(stack)
    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.OPEN
    assert stack.ledger.open_days() == [DAY]


def test_an_idle_day_is_closed_in_two_quiet_passes(stack):
    register_files(stack, 3)
    _finish_everything(stack)

    assert stack.ledger.close_day_if_idle(DAY) is DayState.OPEN  # it was opened just now: not quiet yet
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.CLOSING
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.CLOSING  # the second pass waits too
    assert stack.ledger.open_days() == [DAY]  # a closing day is still watched
    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.CLOSED
    assert stack.ledger.open_days() == []
    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.CLOSED


def test_work_arriving_between_the_passes_keeps_the_day_open(stack):
    register_files(stack, 1)
    _finish_everything(stack)
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.CLOSING

    register_files(stack, 1, prefix="late")

    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.OPEN
    assert stack.ledger.open_days() == [DAY]


def _same_registry_item(identity: str) -> str:
    """A file name of DAY whose registration touches the same registry item as ``identity``'s."""
    schema = table_schema()
    return next(
        prefix
        for prefix in (f"racer{n}-" for n in range(1000))
        if schema.shard_of(identity.replace("f00000.ndjson#etag0", f"{prefix}00000.ndjson#etag0"))
        == schema.shard_of(identity)
    )


@pytest.mark.parametrize("same_item", [True, False])
def test_a_registration_racing_the_closer_keeps_the_day_open(stack, monkeypatch, same_item):
    """The closer found no work; a registration commits before its delete does (or before the index shows it)."""
    (first,) = register_files(stack, 1)
    _finish_everything(stack)
    assert stack.ledger.close_day_if_idle(DAY, now=_later()) is DayState.CLOSING
    real_check = open_days.has_open_work
    racer = _same_registry_item(first) if same_item else "racer"

    def registration_lands_during_the_check(table, day):
        found = real_check(table, day)
        register_files(stack, 1, prefix=racer)
        return found  # what the index showed before the registration

    monkeypatch.setattr(open_days, "has_open_work", registration_lands_during_the_check)
    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.OPEN
    monkeypatch.undo()
    assert stack.ledger.open_days() == [DAY]


def test_a_requeue_reopens_a_closed_day(aws_endpoint):
    stack = make_stack(aws_endpoint, max_attempts=1)
    (identity,) = register_files(stack, 1)
    manifest = claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="conversion failed")
    assert stack.ledger.get_file(identity).state is FileState.FAILED
    stack.ledger.clear_alerts(manifest.manifest_id, [identity])  # the alert went out
    for passes in (1, 3):
        stack.ledger.close_day_if_idle(DAY, now=_later(passes))
    assert stack.ledger.open_days() == []

    stack.ledger.requeue_failed(identity)

    assert stack.ledger.open_days() == [DAY]
    assert [f.identity for f in stack.ledger.iter_pending(DAY)] == [identity]


def _failed_and_closed(stack):
    """One file FAILED for good, its alert out, its day closed: nothing is watched any more."""
    (identity,) = register_files(stack, 1)
    manifest = claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="conversion failed")
    stack.ledger.clear_alerts(manifest.manifest_id, [identity])
    for passes in (1, 3):
        stack.ledger.close_day_if_idle(DAY, now=_later(passes))
    assert stack.ledger.open_days() == []
    return identity, manifest


def test_a_redo_of_a_cleared_conversion_reopens_a_closed_day(aws_endpoint):
    stack = make_stack(aws_endpoint, max_attempts=1)
    identity, manifest = _failed_and_closed(stack)

    successor = stack.ledger.redo_compensated(manifest.manifest_id, lease_seconds=600)

    # Its successor is an open manifest: were the redo's task and finalise to die, the sweeper must find it.
    assert stack.ledger.open_days() == [DAY]
    assert stack.ledger.open_manifests(DAY) == [successor]
    assert stack.ledger.get_file(identity).alert_pending is None
    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.OPEN


def test_a_replayed_quarantined_file_reopens_a_closed_day(aws_endpoint):
    stack = make_stack(aws_endpoint)
    (identity,) = register_files(stack, 1)
    manifest = claim(stack)
    stack.ledger.complete_manifest(manifest.manifest_id, [file_result(identity, FileState.QUARANTINED)])
    for passes in (1, 3):
        stack.ledger.close_day_if_idle(DAY, now=_later(passes))
    assert stack.ledger.open_days() == []

    stack.ledger.replay_quarantined(identity)

    assert stack.ledger.open_days() == [DAY]
    assert [f.identity for f in stack.ledger.iter_pending(DAY)] == [identity]


def test_a_day_with_an_alert_still_to_publish_stays_open(aws_endpoint):
    stack = make_stack(aws_endpoint, max_attempts=1)
    register_files(stack, 1)
    manifest = claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="conversion failed")

    assert stack.ledger.close_day_if_idle(DAY, now=_later(3)) is DayState.OPEN
    assert stack.ledger.open_days() == [DAY]


def test_days_are_listed_with_one_consistent_read_however_much_work_they_hold(stack):
    register_files(stack, 120)
    register_files(stack, 30, prefix="old", day_path=OLD_DAY_PATH)
    ledger, recording = mwaa_ledger(stack, "query")

    assert ledger.open_days() == [DAY, "2026-10-02"]

    (request,) = recording.requests["query"]
    assert "IndexName" not in request
    assert request["ConsistentRead"] is True


def test_a_day_swept_by_name_with_work_but_not_listed_is_listed_again(stack):
    """Work recorded before the registry existed: the end-of-day run sweeps its day by name and lists it."""
    register_files(stack, 2)
    schema = table_schema()
    for shard in range(schema.pending_shards):
        key = schema.open_day_key(DAY, shard)
        stack.dynamodb.delete_item(
            TableName=stack.names.ledger_table, Key={name: {"S": value} for name, value in key.items()}
        )
    assert stack.ledger.open_days() == []

    assert stack.ledger.close_day_if_idle(DAY) is DayState.OPEN

    assert stack.ledger.open_days() == [DAY]
    assert stack.ledger.close_day_if_idle("2026-10-03") is DayState.CLOSED  # nothing there, nothing listed
    assert stack.ledger.open_days() == [DAY]
