"""Claims over the moto server: every file exactly once, byte caps, races, leases the sweeper finds."""

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
    assert record.files == {f.identity for f in manifest.files}
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


def test_a_manifest_of_hundreds_of_files_is_claimed_99_per_transaction_and_its_record_lists_them(stack):
    identities = register_files(stack, 250)
    calls = []
    client = stack.ledger._table.client
    client.meta.events.register("before-call.dynamodb.TransactWriteItems", lambda **_: calls.append(1), unique_id="n")
    try:
        manifest = claim(stack, max_files=600)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="n")

    assert len(calls) == 3  # 99 + 99 + 52
    assert sorted(f.identity for f in manifest.files) == sorted(identities)
    record = stack.ledger.get_manifest(manifest.manifest_id)
    assert (record.files, record.file_count, record.total_bytes) == (set(identities), 250, 250 * 100)
    assert set(_claimed_by(stack, identities).values()) == {manifest.manifest_id}
    # Nothing was lost to a race: the id is the content's, as a single-transaction claim's is.
    assert manifest.manifest_id == type(manifest).for_files(DAY, list(manifest.files)).manifest_id


def test_a_file_taken_by_another_claimer_between_two_transactions_is_left_to_it(stack):
    identities = register_files(stack, 150)
    client = stack.ledger._table.client
    transactions = []

    def race(**_):
        transactions.append(1)
        if len(transactions) == 2:  # the other claimer wins five files of the second transaction
            stack.ledger.claim_batch(DAY, max_files=5, max_bytes=10**12, lease_seconds=600, start_shard=0)

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", race, unique_id="race")
    try:
        manifest = claim(stack, max_files=600)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="race")

    owners = _claimed_by(stack, identities)
    mine = {i for i, m in owners.items() if m == manifest.manifest_id}
    others = {i for i, m in owners.items() if m != manifest.manifest_id}
    assert len(others) == 5
    assert len({owners[i] for i in others}) == 1
    assert mine | others == set(identities)
    assert {f.identity for f in manifest.files} == mine == stack.ledger.get_manifest(manifest.manifest_id).files


def test_a_claimer_that_dies_between_transactions_leaves_a_consistent_manifest_its_retry_readopts(stack):
    from ndjson_pipeline.steps.planning import readopt_manifests

    identities = register_files(stack, 200)
    client = stack.ledger._table.client
    transactions = []

    def dies_at_the_second(**_):
        transactions.append(1)
        if len(transactions) == 2:
            raise ConnectionError("worker killed")

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", dies_at_the_second, unique_id="die")
    try:
        with pytest.raises(ConnectionError):
            stack.ledger.claim_batch(DAY, max_files=600, max_bytes=10**12, lease_seconds=600, owner="ingest/run-1")
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="die")

    (adopted,) = readopt_manifests(stack.ledger, "ingest/run-1")
    assert len(adopted.files) == 99
    owners = _claimed_by(stack, identities)
    assert {i for i, m in owners.items() if m == adopted.manifest_id} == {f.identity for f in adopted.files}
    assert stack.ledger.get_manifest(adopted.manifest_id).files == {f.identity for f in adopted.files}
    left = [i for i, m in owners.items() if m is None]
    assert len(left) == 101
    assert {stack.ledger.get_file(i).state for i in left} == {FileState.PENDING}


def test_concurrent_claimers_of_large_manifests_never_receive_the_same_file(stack):
    identities = register_files(stack, 600)
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
        assert stack.ledger.get_manifest(m.manifest_id).files == held
        assert {owners[i] for i in held} == {m.manifest_id}
