"""Ledger state machine over the moto server: claims, pages, TTL, transitions, compensation."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.intake import registration_for
from ndjson_pipeline.ledger import IllegalTransitionError, ManifestState
from ndjson_pipeline.manifest import FileResult
from tests.ledger.events import DAY, DAY_PATH


def _register(stack, count, *, prefix="f", size=100, day_path=DAY_PATH):
    regs = [
        registration_for(
            stack.names.landing_bucket,
            f"{day_path}{prefix}{i:05d}.ndjson",
            size,
            f"etag{i}",
            f"{DAY}T01:00:00+00:00",
            stack.settings,
        )
        for i in range(count)
    ]
    outcome = stack.ledger.register(regs)
    assert len(outcome.registered) == count
    return [r.file.identity for r in regs]


def _outcome(identity: str, state: FileState, **counts) -> FileResult:
    """What the conversion job reports for one file."""
    return FileResult(identity, "s3://" + identity.split("#", 1)[0], state, **counts)


def _claim(stack, max_files=99, max_bytes=10**12, lease_seconds=600):
    return stack.ledger.claim_batch(DAY, max_files=max_files, max_bytes=max_bytes, lease_seconds=lease_seconds)


def test_one_transaction_batch_with_a_known_item_still_registers_the_others(stack):
    first = _register(stack, 3)
    regs = [
        registration_for(stack.names.landing_bucket, f"{DAY_PATH}f{i:05d}.ndjson", 100, f"etag{i}", DAY, stack.settings)
        for i in range(150)
    ]

    outcome = stack.ledger.register(regs)

    assert sorted(outcome.already_known) == sorted(first)
    assert len(outcome.registered) == 147
    assert stack.ledger.pending_summary(DAY, enough_files=10**6, enough_bytes=10**12).files == 150


def test_pending_work_is_read_in_bounded_pages_across_shards(stack):
    identities = _register(stack, 260)

    seen = [f.identity for f in stack.ledger.iter_pending(DAY, page_size=7)]

    assert sorted(seen) == sorted(identities)
    assert len(seen) == len(set(seen))


def test_pending_summary_stops_counting_at_the_threshold_and_reports_the_oldest(stack):
    _register(stack, 120)

    partial = stack.ledger.pending_summary(DAY, enough_files=10, enough_bytes=10**12)
    full = stack.ledger.pending_summary(DAY, enough_files=10**6, enough_bytes=10**12)

    assert 10 <= partial.files < 120
    assert not partial.exhaustive
    assert (full.files, full.bytes, full.exhaustive) == (120, 12000, True)
    assert full.oldest_age_seconds(utcnow() + timedelta(hours=1)) >= 3600


def test_claims_drain_more_than_one_page_and_every_file_exactly_once(stack):
    identities = _register(stack, 230)

    manifests = []
    while manifest := _claim(stack, max_files=40):
        manifests.append(manifest)

    claimed = [f.identity for m in manifests for f in m.files]
    assert sorted(claimed) == sorted(identities)
    assert all(len(m.files) <= 40 for m in manifests)
    assert {stack.ledger.get_file(i)["state"] for i in identities} == {FileState.CLAIMED}


def test_claim_respects_the_byte_cap_and_ids_derive_from_content(stack):
    _register(stack, 10, size=1000)

    manifest = _claim(stack, max_bytes=3500)

    assert len(manifest.files) == 3
    record = stack.ledger.get_manifest(manifest.manifest_id)
    assert record["state"] == ManifestState.CLAIMED
    assert record["files"] == {f.identity for f in manifest.files}
    assert manifest.manifest_id == type(manifest).for_files(DAY, list(reversed(manifest.files))).manifest_id


def test_concurrent_claimers_never_receive_the_same_file(stack):
    rounds, threads, files_per_round = 3, 6, 90
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer():
        try:
            while manifest := _claim(stack, max_files=15):
                with lock:
                    claimed.extend(f.identity for f in manifest.files)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    registered = []
    for round_no in range(rounds):
        registered += _register(stack, files_per_round, prefix=f"r{round_no}-")
        workers = [threading.Thread(target=claimer) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    assert errors == []
    duplicates = [i for i, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(registered)


def test_ttl_is_set_only_on_terminal_items(stack):
    identities = _register(stack, 4)
    manifest = _claim(stack)
    pending_item = stack.ledger.get_file(identities[0])  # claimed now
    assert "expires_at" not in pending_item
    outcomes = [
        _outcome(identities[0], FileState.DONE, rows_in=3, rows_out=3),
        _outcome(identities[1], FileState.QUARANTINED, reason="not decodable: truncated gzip"),
        _outcome(identities[2], FileState.DONE),
        _outcome(identities[3], FileState.DONE),
    ]
    fresh = _register(stack, 1, prefix="late")

    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    assert "expires_at" not in stack.ledger.get_file(fresh[0])
    done = stack.ledger.get_file(identities[0])
    expected = (utcnow() + timedelta(days=30)).timestamp()
    assert abs(done["expires_at"] - expected) < 120
    assert stack.ledger.get_file(identities[1])["reason"] == "not decodable: truncated gzip"
    assert "expires_at" in stack.ledger.get_manifest(manifest.manifest_id)


def test_completing_a_manifest_twice_is_a_no_op_and_completing_a_compensated_one_is_illegal(stack):
    identities = _register(stack, 2)
    manifest = _claim(stack)
    outcomes = [_outcome(i, FileState.DONE) for i in identities]
    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    stack.ledger.complete_manifest(manifest.manifest_id, outcomes)

    with pytest.raises(IllegalTransitionError, match="SUCCEEDED to COMPENSATED"):
        stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=3, reason="late failure callback")
    assert {stack.ledger.get_file(i)["state"] for i in identities} == {FileState.DONE}


def test_compensation_returns_files_to_pending_then_fails_them_after_max_attempts(stack):
    identities = _register(stack, 3)
    failed = []
    for attempt in range(1, 4):
        manifest = _claim(stack)
        assert sorted(f.identity for f in manifest.files) == sorted(identities)
        failed = stack.ledger.compensate_manifest(
            manifest.manifest_id, max_attempts=3, reason=f"glue failed #{attempt}"
        )
        # Running the compensation twice changes nothing.
        assert stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=3, reason="again") == []
        if attempt < 3:
            assert failed == []
            assert {stack.ledger.get_file(i)["attempts"] for i in identities} == {attempt}

    assert sorted(failed) == sorted(identities)
    assert _claim(stack) is None
    item = stack.ledger.get_file(identities[0])
    assert (item["state"], item["attempts"], item["reason"]) == (FileState.FAILED, 3, "glue failed #3")
    assert "expires_at" in item

    stack.ledger.requeue_failed(identities[0])

    assert [f.identity for f in _claim(stack).files] == [identities[0]]


def test_finishing_a_file_that_is_not_claimed_by_the_manifest_is_an_illegal_transition(stack):
    identities = _register(stack, 2)
    manifest = _claim(stack)
    stack.ledger.compensate_manifest(manifest.manifest_id, max_attempts=5, reason="x")
    other = _claim(stack)

    with pytest.raises(IllegalTransitionError, match="COMPENSATED to SUCCEEDED"):
        stack.ledger.complete_manifest(manifest.manifest_id, [_outcome(i, FileState.DONE) for i in identities])
    with pytest.raises(IllegalTransitionError, match="from CLAIMED to PENDING"):
        stack.ledger.requeue_failed(identities[0])
    assert {stack.ledger.get_file(i)["manifest_id"] for i in identities} == {other.manifest_id}


def test_expired_claims_are_found_for_the_sweeper(stack):
    _register(stack, 5)
    short = _claim(stack, max_files=2, lease_seconds=1)
    long = _claim(stack, max_files=2, lease_seconds=3600)

    expired = stack.ledger.expired_manifests(DAY, now=utcnow() + timedelta(seconds=5))

    assert expired == [short.manifest_id]
    assert sorted(stack.ledger.open_manifests(DAY)) == sorted([short.manifest_id, long.manifest_id])
    stack.ledger.compensate_manifest(short.manifest_id, max_attempts=3, reason="lease expired")
    assert stack.ledger.expired_manifests(DAY, now=utcnow() + timedelta(seconds=5)) == []
