"""Claims over the moto server: every file exactly once, byte caps, races, leases the sweeper finds."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

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
