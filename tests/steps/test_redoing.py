"""Clear = redo over the moto server: a compensated manifest's free files claimed back once, converted once.

The conversion job's side is played by writing what the job writes (see
test_finalising); what a cleared task does is ``manifest_to_convert`` (the
conversion) then ``manifest_to_finalise`` + finalise.
"""

from __future__ import annotations

from collections import Counter

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState, table_schema
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.redo import REDONE_AS
from ndjson_pipeline.outputs import read_manifest, read_result
from ndjson_pipeline.steps.converting import ConversionKind, decide_conversion
from ndjson_pipeline.steps.redoing import manifest_to_convert, manifest_to_finalise
from tests.factories import claim, file_states, finalise, plan, publish_result, register_files


def _fail(stack, ref):
    """A conversion that failed for good: finalise finds no result and compensates."""
    outcome = finalise(stack, ref)
    assert outcome.status == ManifestState.COMPENSATED
    return outcome


def _clear_convert(stack, ref):
    """What a cleared conversion task decides for the manifest it was mapped over."""
    current = manifest_to_convert(stack.ledger, stack.storage, stack.settings, ref)
    record = stack.ledger.get_manifest(current.manifest_id)
    result = read_result(stack.storage, stack.settings, current)
    return current, decide_conversion(current.manifest_id, record, result_exists=result is not None, active_run_id=None)


def _finalise_cleared(stack, ref):
    return finalise(stack, manifest_to_finalise(stack.ledger, ref))


def test_a_cleared_failed_conversion_converts_the_same_files_once_more(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack, owner="ndjson_end_of_day/run-1")
    _fail(stack, ref)
    current, decision = _clear_convert(stack, ref)
    assert current.manifest_id != ref.manifest_id
    assert decision.kind is ConversionKind.CONVERT
    successor = stack.ledger.get_manifest(current.manifest_id)
    assert (stack.ledger.identities_of(successor), successor.owner) == (sorted(identities), "ndjson_end_of_day/run-1")
    assert {f.identity for f in read_manifest(stack.storage, stack.settings, current).files} == set(identities)
    # A second clear before the job ran finds the same successor, claims nothing more.
    assert _clear_convert(stack, ref)[0] == current
    publish_result(stack, current)
    done = _finalise_cleared(stack, ref)
    assert (done.manifest_id, done.status, done.files_done) == (current.manifest_id, ManifestState.SUCCEEDED, 4)
    assert set(file_states(stack, identities).values()) == {FileState.DONE}
    # Cleared again after success: nothing is converted twice.
    again, decision = _clear_convert(stack, ref)
    assert (again, decision.kind) == (current, ConversionKind.SKIP)
    assert [f.claims for f in stack.ledger.get_files(identities).values()] == [2] * 4


def test_files_another_manifest_took_are_left_to_it(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    _fail(stack, ref)
    taken = claim(stack, max_files=2)  # an ingest run claimed half of them meanwhile
    current, decision = _clear_convert(stack, ref)
    assert decision.kind is ConversionKind.CONVERT
    redone = set(stack.ledger.identities_of(stack.ledger.get_manifest(current.manifest_id)))
    assert redone == frozenset(identities) - {f.identity for f in taken.files}
    records = stack.ledger.get_files(identities)
    assert Counter(r.manifest_id for r in records.values()) == {taken.manifest_id: 2, current.manifest_id: 2}


def test_nothing_to_redo_when_every_file_finished_elsewhere(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    _fail(stack, ref)
    (other,) = plan(stack, owner="ingest/run-2")
    publish_result(stack, other)
    finalise(stack, other)
    current, decision = _clear_convert(stack, ref)
    assert (current, decision.kind) == (ref, ConversionKind.SKIP)
    assert stack.ledger.successor_of(ref.manifest_id) is None
    assert set(file_states(stack, identities).values()) == {FileState.DONE}


def test_failed_files_are_claimed_back_with_a_fresh_attempt_count(small_batches):
    stack = small_batches  # max_attempts=2
    identities = register_files(stack, 4)
    (first,) = plan(stack)
    _fail(stack, first)
    (second,) = plan(stack)
    assert set(_fail(stack, second).files_failed) == set(identities)
    current, decision = _clear_convert(stack, second)
    assert decision.kind is ConversionKind.CONVERT
    records = stack.ledger.get_files(identities).values()
    assert {(r.state, r.attempts, r.manifest_id, r.expires_at) for r in records} == {
        (FileState.CLAIMED, 0, current.manifest_id, None)
    }


def test_repeated_failures_and_clears_walk_the_chain_and_convert_once(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    _fail(stack, ref)
    second, _ = _clear_convert(stack, ref)
    _finalise_cleared(stack, ref)  # the redo failed too: its files are pending again
    third, decision = _clear_convert(stack, ref)  # cleared once more
    assert len({ref.manifest_id, second.manifest_id, third.manifest_id}) == 3
    assert decision.kind is ConversionKind.CONVERT
    uris = publish_result(stack, third)
    assert _finalise_cleared(stack, ref).manifest_id == third.manifest_id
    records = stack.ledger.get_files(identities).values()
    assert {(r.state, r.manifest_id) for r in records} == {(FileState.DONE, third.manifest_id)}
    parts = stack.storage.list(stack.settings.layout.partition_uri(ref.day))
    assert sorted(parts) == sorted(uris)  # one manifest's output only


def test_a_redo_that_died_before_linking_is_adopted_not_repeated(small_batches):
    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack)
    _fail(stack, ref)
    current, _ = _clear_convert(stack, ref)
    # The link write never happened (the task died between the claim and the link).
    stack.dynamodb.update_item(
        TableName=stack.names.ledger_table,
        Key=encode_item(table_schema().manifest_key(ref.manifest_id)),
        UpdateExpression=f"REMOVE {REDONE_AS}",
    )
    assert stack.ledger.successor_of(ref.manifest_id) is None
    again, decision = _clear_convert(stack, ref)
    assert (again, decision.kind) == (current, ConversionKind.CONVERT)
    assert stack.ledger.successor_of(ref.manifest_id) == current.manifest_id
    assert [f.claims for f in stack.ledger.get_files(identities).values()] == [2] * 4


def test_a_whole_run_clear_re_adopts_the_redo(small_batches):
    stack = small_batches
    register_files(stack, 4)
    (ref,) = plan(stack, owner="ndjson_end_of_day/run-1")
    _fail(stack, ref)
    current, _ = _clear_convert(stack, ref)
    assert plan(stack, owner="ndjson_end_of_day/run-1") == [current]


def test_two_redos_of_one_manifest_at_once_make_one_successor(small_batches):
    """Two clears racing: one claims the files, the other finds its successor and links the same one."""
    import threading

    stack = small_batches
    identities = register_files(stack, 4)
    (ref,) = plan(stack, owner="ndjson_ingest/run-1")
    _fail(stack, ref)
    found, errors = [], []

    def redo():
        try:
            found.append(stack.ledger.redo_compensated(ref.manifest_id, lease_seconds=stack.settings.lease_seconds))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=redo) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert errors == []
    assert len(set(found)) == 1
    assert found[0] is not None
    assert {stack.ledger.get_file(i).manifest_id for i in identities} == {found[0]}
