"""How claims end, over the moto server: completion, compensation, FAILED after max attempts, requeue, TTL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.codec import encode_item
from tests.factories import DAY, claim, file_result, register_files


def test_ttl_is_set_only_on_terminal_items(stack):
    identities = register_files(stack, 4)
    manifest = claim(stack)
    pending_item = stack.ledger.get_file(identities[0])  # claimed now
    assert pending_item.expires_at is None
    outcomes = [
        file_result(identities[0], FileState.DONE, rows_in=3, rows_out=3),
        file_result(identities[1], FileState.QUARANTINED, reason="not decodable: truncated gzip"),
        file_result(identities[2], FileState.DONE),
        file_result(identities[3], FileState.DONE),
    ]
    fresh = register_files(stack, 1, prefix="late")

    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    assert stack.ledger.get_file(fresh[0]).expires_at is None
    done = stack.ledger.get_file(identities[0])
    expected = (utcnow() + timedelta(days=stack.settings.terminal_ttl_days)).timestamp()
    assert abs(done.expires_at - expected) < 120
    assert stack.ledger.get_file(identities[1]).reason == "not decodable: truncated gzip"
    assert stack.ledger.get_manifest(manifest.manifest_id).expires_at is not None


def test_completing_a_manifest_twice_is_a_no_op_and_completing_a_compensated_one_is_illegal(stack):
    identities = register_files(stack, 2)
    manifest = claim(stack)
    outcomes = [file_result(i, FileState.DONE) for i in identities]
    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    with pytest.raises(IllegalTransitionError, match="SUCCEEDED to COMPENSATED"):
        stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=3, reason="late failure callback")
    assert {stack.ledger.get_file(i).state for i in identities} == {FileState.DONE}


def test_compensation_returns_files_to_pending_then_fails_them_after_max_attempts(stack):
    identities = register_files(stack, 3)
    failed = []
    for attempt in range(1, 4):
        manifest = claim(stack)
        assert sorted(f.identity for f in manifest.files) == sorted(identities)
        failed = stack.ledger.compensate_manifest(
            manifest.manifest_id, max_attempts=3, reason=f"glue failed #{attempt}"
        )
        # Running the compensation twice changes nothing.
        assert stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=3, reason="again") == []
        if attempt < 3:
            assert failed == []
            assert {stack.ledger.get_file(i).attempts for i in identities} == {attempt}

    assert sorted(failed) == sorted(identities)
    assert claim(stack) is None
    item = stack.ledger.get_file(identities[0])
    assert (item.state, item.attempts, item.reason) == (FileState.FAILED, 3, "glue failed #3")
    assert item.expires_at is not None

    stack.ledger.requeue_failed(identities[0])

    assert [f.identity for f in claim(stack).files] == [identities[0]]


def test_finishing_a_file_that_is_not_claimed_by_the_manifest_is_an_illegal_transition(stack):
    identities = register_files(stack, 2)
    manifest = claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=5, reason="x")
    other = claim(stack)

    with pytest.raises(IllegalTransitionError, match="COMPENSATED to SUCCEEDED"):
        stack.ledger.complete_manifest(manifest.manifest_id, [file_result(i, FileState.DONE) for i in identities])
    with pytest.raises(IllegalTransitionError, match="from CLAIMED to PENDING"):
        stack.ledger.requeue_failed(identities[0])
    assert {stack.ledger.get_file(i).manifest_id for i in identities} == {other.manifest_id}


def test_a_finaliser_writes_each_group_once_and_a_retry_finishes_what_a_crash_left(stack):
    from ndjson_pipeline.ledger import groups, transitions

    identities = register_files(stack, 99, group_size=33)
    manifest = claim(stack)
    outcomes = {i: file_result(i, FileState.DONE, rows_in=2, rows_out=2) for i in identities}
    table = stack.ledger._table
    # The first finaliser recorded one group's outcomes, then died before the rest and the manifest's close.
    first = table.groups_of(table.require_manifest(manifest.manifest_id))[0]
    groups.update(table, first, lambda g: transitions._finished(table, g, manifest.manifest_id, outcomes, utcnow()))
    calls = []
    table.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name), unique_id="count-finalise"
    )
    try:
        stack.ledger.complete_manifest(manifest.manifest_id, list(outcomes.values()))
    finally:
        table.client.meta.events.unregister("before-call.dynamodb", unique_id="count-finalise")

    # One write for each of the two groups left, not one per file; the finished group is left as it was.
    assert calls.count("PutItem") == 2, calls
    assert calls == ["GetItem", "BatchGetItem", "PutItem", "PutItem", "UpdateItem"], calls
    assert {stack.ledger.get_file(i).state for i in identities} == {FileState.DONE}
    assert {stack.ledger.get_file(i).rows_out for i in identities} == {2}
    assert stack.ledger.get_manifest(manifest.manifest_id).state == "SUCCEEDED"


def test_a_reprocess_restates_only_done_files_of_a_succeeded_manifest_and_repeats_safely(stack):
    identities = register_files(stack, 3)
    manifest = claim(stack)
    with pytest.raises(IllegalTransitionError, match="CLAIMED"):
        stack.ledger.restate_files(manifest.manifest_id, [file_result(identities[0], FileState.DONE)])
    stack.ledger.complete_manifest(
        manifest.manifest_id,
        [
            file_result(identities[0], FileState.DONE, rows_in=4, rows_out=2, rows_quarantined=2),
            file_result(identities[1], FileState.DONE, rows_in=4, rows_out=4),
            file_result(identities[2], FileState.QUARANTINED, reason="not decodable: truncated gzip"),
        ],
    )
    finished_at = stack.ledger.get_file(identities[0]).finished_at
    restated = [file_result(identities[0], FileState.DONE, rows_in=4, rows_out=4)]
    stack.ledger.restate_files(manifest.manifest_id, restated)
    stack.ledger.restate_files(manifest.manifest_id, restated)  # a retried swap

    first = stack.ledger.get_file(identities[0])
    assert (first.state, first.rows_out, first.rows_quarantined) == (FileState.DONE, 4, 0)
    assert first.finished_at == finished_at, "its latency is the first conversion's"
    assert stack.ledger.get_file(identities[1]).rows_out == 4
    # A file the manifest quarantined whole is not a reprocess's to restate (replay returns it to PENDING),
    # and a reprocess never quarantines a file whole.
    with pytest.raises(IllegalTransitionError, match=identities[2]):
        stack.ledger.restate_files(manifest.manifest_id, [file_result(identities[2], FileState.DONE)])
    with pytest.raises(IllegalTransitionError, match="QUARANTINED"):
        stack.ledger.restate_files(manifest.manifest_id, [file_result(identities[1], FileState.QUARANTINED)])
    other = register_files(stack, 1, prefix="other")
    with pytest.raises(LedgerError, match="does not hold"):
        stack.ledger.restate_files(manifest.manifest_id, [file_result(other[0], FileState.DONE)])


def _failed(stack, files=3, group_size=3):
    """Files FAILED by one compensation (max_attempts=1), and the manifest that failed them."""
    identities = register_files(stack, files, group_size=group_size)
    manifest = claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="boom")
    return identities, manifest


def test_a_requeue_racing_a_redo_of_the_same_group_leaves_the_file_to_the_redo(stack):
    identities, failed = _failed(stack)
    client = stack.ledger._table.client
    raced: list[str | None] = []

    def redo_first(**_):
        if not raced:  # the redo claims the group while the requeue reads what it decides on
            raced.append(None)
            raced[0] = stack.ledger.redo_compensated(failed.manifest_id, lease_seconds=600)

    client.meta.events.register("before-call.dynamodb.GetItem", redo_first, unique_id="race")
    try:
        with pytest.raises(IllegalTransitionError, match="CLAIMED to PENDING"):
            stack.ledger.requeue_failed(identities[0])
    finally:
        client.meta.events.unregister("before-call.dynamodb.GetItem", unique_id="race")

    records = stack.ledger.get_files(identities)
    assert {(r.state, r.manifest_id) for r in records.values()} == {(FileState.CLAIMED, raced[0])}
    assert len({r.group_id for r in records.values()}) == 1, "the file is in one group only"


def test_a_requeue_waits_until_the_compensation_that_failed_the_file_has_closed_its_manifest(stack):
    from ndjson_pipeline.ledger import groups, transitions

    identities = register_files(stack, 2, group_size=2)
    manifest = claim(stack)
    table = stack.ledger._table
    (group,) = table.groups_of(table.require_manifest(manifest.manifest_id))
    # The compensation failed the group, then died before closing the manifest.
    groups.update(table, group, lambda g: transitions._released(table, g, manifest.manifest_id, 1, "boom", utcnow()))

    with pytest.raises(IllegalTransitionError, match="still closing"):
        stack.ledger.requeue_failed(identities[0])
    assert stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="boom") == []  # its retry
    stack.ledger.requeue_failed(identities[0])

    records = stack.ledger.get_files(identities)
    assert (records[identities[0]].state, records[identities[1]].state) == (FileState.PENDING, FileState.FAILED)
    assert records[identities[0]].group_id != records[identities[1]].group_id


def test_a_version_whose_group_expired_first_reads_as_absent_and_alerts_clear_without_file_items(stack):
    identities, failed = _failed(stack, files=2, group_size=1)
    gone, kept = (stack.ledger.get_file(i) for i in identities)
    table = stack.ledger._table
    stack.dynamodb.delete_item(TableName=table.name, Key=encode_item(table.schema.group_key(gone.group_id)))
    stack.dynamodb.delete_item(TableName=table.name, Key=encode_item(table.schema.file_key(kept.file_id)))

    assert stack.ledger.get_files(identities) == {}
    assert stack.ledger.pending_alerts(DAY) == {failed.manifest_id: [identities[1]]}
    stack.ledger.clear_alerts(failed.manifest_id, [identities[1]])
    assert stack.ledger.pending_alerts(DAY) == {}


def _before_first_transaction(stack, action):
    """Run ``action`` once, just before the ledger's next transaction is sent (after its reads): a race."""
    client = stack.ledger._table.client
    fired: list[bool] = []

    def race(**_):
        if not fired:
            fired.append(True)
            action()

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", race, unique_id="race")
    return lambda: client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="race")


def test_a_requeue_whose_group_a_redo_claimed_after_its_read_is_refused_not_aborted(stack):
    identities, failed = _failed(stack)
    redone: list[str | None] = []
    done = _before_first_transaction(
        stack, lambda: redone.append(stack.ledger.redo_compensated(failed.manifest_id, lease_seconds=600))
    )
    try:
        # The redo wrote the group between the requeue's reads and its transaction: the requeue reads again and
        # finds the file claimed, a refusal the operator's action reports (not a bare LedgerError that stops it).
        with pytest.raises(IllegalTransitionError, match="CLAIMED to PENDING"):
            stack.ledger.requeue_failed(identities[0])
    finally:
        done()
    records = stack.ledger.get_files(identities)
    assert {(r.state, r.manifest_id) for r in records.values()} == {(FileState.CLAIMED, redone[0])}
    assert len({r.group_id for r in records.values()}) == 1


def test_a_requeue_whose_group_another_requeue_rewrote_after_its_read_still_moves_its_file(stack):
    identities, _ = _failed(stack)
    done = _before_first_transaction(stack, lambda: stack.ledger.requeue_failed(identities[1]))
    try:
        stack.ledger.requeue_failed(identities[0])
    finally:
        done()
    records = stack.ledger.get_files(identities)
    assert [records[i].state for i in identities] == [FileState.PENDING, FileState.PENDING, FileState.FAILED]
    assert len({records[i].group_id for i in identities}) == 3, "each requeued file in a group of its own"


def test_a_redo_whose_group_a_requeue_rewrote_after_its_read_claims_what_is_still_free(stack):
    identities, failed = _failed(stack)
    done = _before_first_transaction(stack, lambda: stack.ledger.requeue_failed(identities[0]))
    try:
        successor = stack.ledger.redo_compensated(failed.manifest_id, lease_seconds=600)
    finally:
        done()
    # The requeue only moved one file out: the group is still FAILED and free, so the redo claims it as it is now.
    assert successor is not None
    assert stack.ledger.identities_of(stack.ledger.get_manifest(successor)) == sorted(identities[1:])
    records = stack.ledger.get_files(identities)
    assert (records[identities[0]].state, records[identities[0]].manifest_id) == (FileState.PENDING, None)
    assert {(records[i].state, records[i].manifest_id) for i in identities[1:]} == {(FileState.CLAIMED, successor)}


def test_two_requeues_of_one_file_at_once_move_it_once_and_refuse_the_other(stack):
    identities, _ = _failed(stack, files=1, group_size=1)
    client = stack.ledger._table.client
    fired: list[bool] = []

    def requeue_after_the_item_read(**_):
        if not fired:  # the other requeue commits between this one's read of the file and of its group
            fired.append(True)
            stack.ledger.requeue_failed(identities[0])

    client.meta.events.register("after-call.dynamodb.GetItem", requeue_after_the_item_read, unique_id="race")
    try:
        with pytest.raises(IllegalTransitionError, match="PENDING to PENDING"):
            stack.ledger.requeue_failed(identities[0])
    finally:
        client.meta.events.unregister("after-call.dynamodb.GetItem", unique_id="race")
    assert stack.ledger.get_file(identities[0]).state is FileState.PENDING


def test_clearing_an_alert_of_a_group_an_operator_emptied_meanwhile_clears_the_others(stack):
    """A sweeper read the groups, then a requeue moved the only file out of one (the group is gone) before its
    alert was cleared: nothing is left to clear there, and the other groups' alerts still clear."""
    identities, failed = _failed(stack, files=2, group_size=1)
    client = stack.ledger._table.client
    fired: list[bool] = []

    def requeue_first(**_):
        if not fired:
            fired.append(True)
            stack.ledger.requeue_failed(identities[0])

    client.meta.events.register("before-call.dynamodb.PutItem", requeue_first, unique_id="race")
    try:
        stack.ledger.clear_alerts(failed.manifest_id, identities)
    finally:
        client.meta.events.unregister("before-call.dynamodb.PutItem", unique_id="race")

    assert fired
    assert stack.ledger.pending_alerts(DAY) == {}
    records = stack.ledger.get_files(identities)
    assert (records[identities[0]].state, records[identities[1]].state) == (FileState.PENDING, FileState.FAILED)
