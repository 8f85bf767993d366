"""The conversion protocol without Airflow: the decision from recorded state, and what a conversion does with runs.

The runs are the port's test double (``RecordedRuns``): the ledger and the
lake are real (moto and DynamoDB Local), the job's side is played by the test.
"""

from __future__ import annotations

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestRecord, ManifestState
from ndjson_pipeline.steps import converting
from ndjson_pipeline.steps.converting import ConversionKind, Outcome, decide_conversion
from ndjson_pipeline.steps.reprocessing import RebuildRef
from tests.factories import RecordedRuns, finalise, plan, publish_result, register_files, write_publish_log

MANIFEST = "20261124-0123456789abcdef0123"


def _make_record(**overrides) -> ManifestRecord:
    fields = {
        "manifest_id": MANIFEST,
        "day": "2026-11-24",
        "state": ManifestState.CLAIMED,
        "groups": frozenset({"20261124-0123456789abcdef0123"}),
        "file_count": 1,
        "total_bytes": 10,
        "generation": 0,
        "owner": "ndjson_ingest/run-1",
        "created_at": "2026-11-24T01:00:00.000000+00:00",
        "lease_expires_at": "2026-11-24T02:00:00.000000+00:00",
    }
    return ManifestRecord(**{**fields, **overrides})


def test_an_open_manifest_without_result_or_run_is_converted():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=False, active_run_id=None)
    assert (decision.kind, decision.run_id, decision.holds_the_claim) == (ConversionKind.CONVERT, None, True)


def test_an_active_run_is_waited_for_instead_of_starting_another():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=False, active_run_id="jr_1")
    assert (decision.kind, decision.run_id, decision.holds_the_claim) == (ConversionKind.WAIT_FOR, "jr_1", True)


def test_a_result_means_done_even_while_a_run_winds_down():
    decision = decide_conversion(MANIFEST, _make_record(), result_exists=True, active_run_id="jr_1")
    assert (decision.kind, decision.holds_the_claim) == (ConversionKind.ALREADY_DONE, False)


@pytest.mark.parametrize("state", [ManifestState.SUCCEEDED, ManifestState.COMPENSATED])
def test_a_closed_manifest_is_skipped_whatever_else_is_found(state):
    decision = decide_conversion(MANIFEST, _make_record(state=state), result_exists=True, active_run_id="jr_1")
    assert decision.kind is ConversionKind.SKIP
    assert f"{MANIFEST} is {state}" in decision.reason


def test_an_unknown_manifest_is_skipped():
    decision = decide_conversion(MANIFEST, None, result_exists=False, active_run_id=None)
    assert decision.kind is ConversionKind.SKIP
    assert "missing" in decision.reason


# ---------------------------------------------------------------------- the protocol, without Airflow


def _convert(stack, ref, runs):
    return converting.convert(stack.ledger, stack.storage, stack.settings, ref, runs)


def _partial_output(stack, ref) -> str:
    """What a run that died mid-publish leaves: its publish log and one object."""
    partial = stack.settings.layout.part_uri(ref.day, ref.manifest_id, 0, "snappy")
    write_publish_log(stack, ref, [partial])
    stack.job_storage.write_bytes(partial, b"PAR1")
    return partial


def test_a_conversion_starts_one_run_and_every_retry_waits_for_it(small_batches):
    stack = small_batches
    register_files(stack, 3)
    (ref,) = plan(stack)
    runs = RecordedRuns()

    first = _convert(stack, ref, runs)
    retried = _convert(stack, ref, runs)

    assert (first.outcome, retried.outcome) == (Outcome.RUNNING, Outcome.RUNNING)
    assert retried.run_id == first.run_id
    assert runs.started == [ref.manifest_id]
    assert stack.ledger.get_manifest(ref.manifest_id).run_id == first.run_id


def test_a_synchronous_run_is_done_when_it_returns_and_a_result_means_done(small_batches):
    stack = small_batches
    register_files(stack, 2)
    (ref,) = plan(stack)
    runs = RecordedRuns(synchronous=True, on_start=lambda _m: publish_result(stack, ref))

    done = _convert(stack, ref, runs)
    again = _convert(stack, ref, runs)

    assert (done.outcome, done.run_id) == (Outcome.DONE, f"run-{ref.manifest_id}")
    assert (again.outcome, again.run_id) == (Outcome.DONE, None)  # its result exists: nothing runs again
    assert runs.started == [ref.manifest_id]


def test_a_cleared_conversion_of_a_compensated_manifest_converts_its_redo_once(small_batches):
    stack = small_batches
    identities = register_files(stack, 2)
    (ref,) = plan(stack)
    finalise(stack, ref)  # the conversion failed for good: compensated, its files pending again
    runs = RecordedRuns()

    redo = _convert(stack, ref, runs)
    cleared_again = _convert(stack, ref, runs)

    assert (redo.outcome, cleared_again.outcome) == (Outcome.RUNNING, Outcome.RUNNING)
    assert redo.manifest_id != ref.manifest_id
    assert cleared_again.manifest_id == redo.manifest_id
    assert runs.started == [redo.manifest_id]
    assert {r.manifest_id for r in stack.ledger.get_files(identities).values()} == {redo.manifest_id}


def test_a_compensation_between_the_decision_and_the_start_gets_the_run_stopped(small_batches):
    stack = small_batches
    identities = register_files(stack, 3)
    (ref,) = plan(stack)

    def compensated_meanwhile(manifest_id: str) -> None:  # the other DAG's sweeper gave the claim up
        assert stack.ledger.fence_manifest(manifest_id)
        stack.ledger.compensate_manifest(manifest_id, max_attempts=3, reason="lease expired")
        _partial_output(stack, ref)  # and the run got to publish something

    runs = RecordedRuns(on_start=compensated_meanwhile)
    skipped = _convert(stack, ref, runs)

    assert skipped.outcome is Outcome.SKIPPED
    assert "was compensated" in skipped.reason
    assert runs.stopped == [ref.manifest_id]
    assert stack.storage.list(stack.settings.layout.partition_uri(ref.day) + "/") == {}
    assert set(stack.ledger.get_states(identities).values()) == {FileState.PENDING}


def test_a_closed_manifest_with_an_active_run_gets_it_stopped(small_batches):
    stack = small_batches
    register_files(stack, 2)
    (ref,) = plan(stack)
    assert stack.ledger.fence_manifest(ref.manifest_id)  # a compensation began and stopped half way
    partial = _partial_output(stack, ref)
    runs = RecordedRuns(active={ref.manifest_id})

    skipped = _convert(stack, ref, runs)

    assert skipped.outcome is Outcome.SKIPPED
    assert runs.stopped == [ref.manifest_id]
    assert stack.storage.read_bytes_if_exists(partial) is None


def test_before_a_retry_the_failed_run_is_stopped_and_its_output_removed_unless_a_newer_try_took_over(small_batches):
    stack = small_batches
    register_files(stack, 2)
    (ref,) = plan(stack)
    _convert(stack, ref, runs := RecordedRuns())
    partial = _partial_output(stack, ref)

    removed = converting.clean_up_before_retry(stack.ledger, stack.storage, stack.settings, ref, runs)

    assert (removed, runs.stopped) == (1, [ref.manifest_id])
    assert stack.storage.read_bytes_if_exists(partial) is None
    # A newer try extended the lease while this callback stopped the run: what is there now is the newer try's.
    newer = RecordedRuns(on_stop=lambda m: stack.ledger.extend_lease(m, 900))
    partial = _partial_output(stack, ref)
    assert converting.clean_up_before_retry(stack.ledger, stack.storage, stack.settings, ref, newer) == 0
    assert stack.storage.read_bytes_if_exists(partial) == b"PAR1"


def test_a_killed_conversion_asks_for_the_run_of_the_manifest_its_redo_chain_ends_at(small_batches):
    stack = small_batches
    register_files(stack, 2)
    (ref,) = plan(stack)
    finalise(stack, ref)
    redo = _convert(stack, ref, RecordedRuns())  # a cleared conversion converts the redo
    runs = RecordedRuns(active={redo.manifest_id})

    converting.request_stop(stack.ledger, ref, runs)

    assert runs.stopped == [redo.manifest_id]


def test_a_rebuild_is_done_once_rebuilt_waits_for_its_run_or_starts_one(small_batches):
    stack = small_batches
    register_files(stack, 2)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise(stack, ref)
    rebuild_ref = RebuildRef(ref, "r1")
    rebuilt = stack.settings.layout.rebuild("r1")
    stack.storage.copy(  # the reprocess's plan writes the manifest into its rebuild layout
        stack.settings.layout.manifest_uri(ref.day, ref.manifest_id), rebuilt.manifest_uri(ref.day, ref.manifest_id)
    )
    runs = RecordedRuns()

    started = converting.rebuild(stack.storage, stack.settings, rebuild_ref, runs)
    waiting = converting.rebuild(stack.storage, stack.settings, rebuild_ref, runs)
    publish_result(stack, ref, layout=rebuilt)
    done = converting.rebuild(stack.storage, stack.settings, rebuild_ref, runs)

    assert (started.outcome, waiting.outcome, done.outcome) == (Outcome.RUNNING, Outcome.RUNNING, Outcome.DONE)
    assert waiting.run_id == started.run_id
    assert runs.started == [ref.manifest_id]
