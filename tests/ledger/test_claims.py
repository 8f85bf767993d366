"""Claims over the moto server: every file exactly once, byte caps, whole groups, races, leases the sweeper finds."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from tests.factories import DAY, claim, register_files


def test_claims_drain_more_than_one_page_and_every_file_exactly_once(stack):
    identities = register_files(stack, 230)

    manifests = []
    while manifest := claim(stack, max_files=40):
        manifests.append(manifest)

    claimed = [f.identity for m in manifests for f in m.files]
    assert sorted(claimed) == sorted(identities)
    assert all(len(m.files) <= 40 for m in manifests)
    assert {stack.ledger.get_file(i).state for i in identities} == {FileState.CLAIMED}


def test_claim_respects_the_byte_cap_and_ids_derive_from_content(stack):
    register_files(stack, 10, size=1000)

    manifest = claim(stack, max_bytes=3500)

    assert len(manifest.files) == 3
    record = stack.ledger.get_manifest(manifest.manifest_id)
    assert record.state is ManifestState.CLAIMED
    assert len(record.groups) == 3
    assert stack.ledger.identities_of(record) == sorted(f.identity for f in manifest.files)
    assert manifest.manifest_id == type(manifest).for_files(DAY, list(reversed(manifest.files))).manifest_id


def test_concurrent_claimers_never_receive_the_same_file(stack):
    rounds, threads, files_per_round = 3, 6, 90
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer():
        try:
            while manifest := claim(stack, max_files=15):
                with lock:
                    claimed.extend(f.identity for f in manifest.files)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    registered = []
    for round_no in range(rounds):
        registered += register_files(stack, files_per_round, prefix=f"r{round_no}-")
        workers = [threading.Thread(target=claimer) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    assert errors == []
    duplicates = [i for i, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert sorted(claimed) == sorted(registered)


def test_expired_claims_are_found_for_the_sweeper(stack):
    register_files(stack, 5)
    short = claim(stack, max_files=2, lease_seconds=1)
    long = claim(stack, max_files=2, lease_seconds=3600)

    expired = stack.ledger.expired_manifests(DAY, now=utcnow() + timedelta(seconds=5))

    assert expired == [short.manifest_id]
    assert sorted(stack.ledger.open_manifests(DAY)) == sorted([short.manifest_id, long.manifest_id])
    stack.ledger.compensate_manifest(short.manifest_id, max_attempts=3, reason="lease expired")
    assert stack.ledger.expired_manifests(DAY, now=utcnow() + timedelta(seconds=5)) == []


def _claimed_by(stack, identities):
    return {i: stack.ledger.get_file(i).manifest_id for i in identities}


def _transactions(stack, hook=None):
    """Count the ledger client's transactions (and run ``hook`` before each) while the block runs."""
    calls: list[int] = []

    def before(**_):
        calls.append(1)
        if hook:
            hook(len(calls))

    client = stack.ledger._table.client
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", before, unique_id="count")
    return calls, lambda: client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="count")


def test_a_manifest_of_hundreds_of_files_is_claimed_in_one_transaction_of_whole_groups(stack):
    identities = register_files(stack, 250, group_size=50)
    calls, stop = _transactions(stack)
    try:
        manifest = claim(stack, max_files=600)
    finally:
        stop()

    assert len(calls) == 1  # five group writes and the manifest record
    assert sorted(f.identity for f in manifest.files) == sorted(identities)
    record = stack.ledger.get_manifest(manifest.manifest_id)
    assert (len(record.groups), record.file_count, record.total_bytes) == (5, 250, 250 * 100)
    assert stack.ledger.identities_of(record) == sorted(identities)
    assert set(_claimed_by(stack, identities).values()) == {manifest.manifest_id}
    assert manifest.manifest_id == type(manifest).for_files(DAY, list(manifest.files)).manifest_id


def test_the_limits_count_whole_groups_and_a_group_is_never_split(stack):
    register_files(stack, 30, group_size=10)

    first = claim(stack, max_files=15)  # a second group would pass the limit
    big = claim(stack, max_files=5)  # the first group is taken whatever its size

    assert (len(first.files), len(big.files)) == (10, 10)


def test_a_group_taken_by_another_claimer_meanwhile_is_left_to_it(stack):
    identities = register_files(stack, 150, group_size=10)

    def race(call):
        if call == 1:  # the other claimer wins one group after this claim read its candidates
            stack.ledger.claim_batch(DAY, max_files=5, max_bytes=10**12, lease_seconds=600, start_shard=0)

    calls, stop = _transactions(stack, race)
    try:
        manifest = claim(stack, max_files=600)
    finally:
        stop()

    owners = _claimed_by(stack, identities)
    mine = {i for i, m in owners.items() if m == manifest.manifest_id}
    others = {i for i, m in owners.items() if m != manifest.manifest_id}
    assert len(calls) == 3  # the other claim, this one refused for the group it lost, this one again
    assert len(others) == 10
    assert len({owners[i] for i in others}) == 1
    assert mine | others == set(identities)
    assert {f.identity for f in manifest.files} == mine
    assert set(stack.ledger.identities_of(stack.ledger.get_manifest(manifest.manifest_id))) == mine


def test_a_claim_whose_answer_was_lost_is_readopted_whole_by_the_retry(stack):
    from ndjson_pipeline.steps.planning import readopt_manifests

    identities = register_files(stack, 200, group_size=40)
    client = stack.ledger._table.client

    def answer_lost(**_):
        raise ConnectionError("worker killed after its claim committed")

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", answer_lost, unique_id="die")
    try:
        with pytest.raises(ConnectionError):
            stack.ledger.claim_batch(DAY, max_files=600, max_bytes=10**12, lease_seconds=600, owner="ingest/run-1")
    finally:
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", unique_id="die")

    (adopted,) = readopt_manifests(stack.ledger, "ingest/run-1")
    assert sorted(f.identity for f in adopted.files) == sorted(identities)
    assert set(_claimed_by(stack, identities).values()) == {adopted.manifest_id}
    assert claim(stack) is None


def test_concurrent_claimers_of_large_manifests_never_receive_the_same_file(stack):
    identities = register_files(stack, 600, group_size=20)
    manifests, errors, lock = [], [], threading.Lock()

    def claimer():
        try:
            while manifest := claim(stack, max_files=250):
                with lock:
                    manifests.append(manifest)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=claimer) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert errors == []
    claimed = [f.identity for m in manifests for f in m.files]
    assert sorted(claimed) == sorted(identities)
    owners = _claimed_by(stack, identities)
    for m in manifests:
        held = {f.identity for f in m.files}
        assert set(stack.ledger.identities_of(stack.ledger.get_manifest(m.manifest_id))) == held
        assert {owners[i] for i in held} == {m.manifest_id}
