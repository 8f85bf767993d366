"""Planning over the moto server: bounded plans, retries that re-adopt, create-only manifests.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import time

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.outputs import read_manifest
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.planning import plan_manifests, write_manifest
from ndjson_pipeline.storage import Storage
from tests.factories import DAY, file_states, plan, register_files

OTHER_DAY = "2026-11-23"


def test_plan_is_bounded_and_leaves_the_rest_pending(small_batches):
    stack = small_batches
    identities = register_files(stack, 14)
    refs = plan(stack)
    assert [r.files for r in refs] == [4, 4, 4]  # max_manifests_per_run=3, max_files_per_manifest=4
    states = file_states(stack, identities)
    assert sum(s == FileState.CLAIMED for s in states.values()) == 12
    assert sum(s == FileState.PENDING for s in states.values()) == 2
    for ref in refs:
        manifest = read_manifest(stack.storage, stack.settings, ref)
        assert manifest.manifest_id == ref.manifest_id
        assert len(manifest.files) == ref.files


def test_a_retried_plan_readopts_its_manifests_instead_of_claiming_more(small_batches):
    stack = small_batches
    register_files(stack, 14)
    first = plan(stack)
    # The first try died after claiming; its manifest objects were never written.
    for ref in first:
        Storage(s3_client=stack.s3).delete([stack.settings.layout.manifest_uri(ref.day, ref.manifest_id)])
    retried = plan(stack)
    assert [r.manifest_id for r in retried] == [r.manifest_id for r in first]
    assert all(read_manifest(stack.storage, stack.settings, r).manifest_id == r.manifest_id for r in retried)
    other_run = plan(stack, owner="ingest/run-2")
    assert [r.files for r in other_run] == [2]


def test_manifest_write_is_create_only(small_batches):
    stack = small_batches
    register_files(stack, 4)
    (ref,) = plan(stack)
    manifest = read_manifest(stack.storage, stack.settings, ref)
    assert write_manifest(stack.storage, stack.settings, manifest) == ref  # same bytes: fine
    Storage(s3_client=stack.s3).write_bytes(
        stack.settings.layout.manifest_uri(ref.day, ref.manifest_id), b'{"tampered": true}'
    )
    with pytest.raises(PipelineError, match=ref.manifest_id):
        write_manifest(stack.storage, stack.settings, manifest)


def test_a_retried_plan_readopts_its_manifests_of_every_day(small_batches):
    """The retry's sensor found only today ready; yesterday's manifests of the first try are adopted too."""
    stack = small_batches
    register_files(stack, 3)
    register_files(stack, 3, prefix="late", day_path=f"incoming/{OTHER_DAY.replace('-', '/')}/")
    first = plan_manifests(stack.ledger, stack.storage, stack.settings, [DAY, OTHER_DAY], owner="ingest/run-1")
    assert {r.day for r in first} == {DAY, OTHER_DAY}

    retried = plan_manifests(stack.ledger, stack.storage, stack.settings, [DAY], owner="ingest/run-1")

    assert sorted(r.manifest_id for r in retried) == sorted(r.manifest_id for r in first)


def test_a_woken_plan_leaves_a_young_remainder_to_fill_a_later_run_and_takes_it_once_it_waited(small_batches):
    """A batch that became ready on its size is claimed as full manifests; the files left over would make a small
    run of their own (a Glue run is billed at least a minute), so they wait for more, up to the batch wait."""
    stack = small_batches
    identities = register_files(stack, 10)  # two full manifests of 4, and 2 files more

    refs = plan(stack, woken=True)

    assert [r.files for r in refs] == [4, 4]
    assert sum(s == FileState.PENDING for s in file_states(stack, identities).values()) == 2
    assert plan(stack, owner="ingest/run-2", woken=True) == []  # still young: nothing to plan

    stack.settings = stack.settings.replace(max_wait_seconds=1)  # the remainder has now waited the batch wait
    time.sleep(1.1)
    (late,) = plan(stack, owner="ingest/run-3", woken=True)

    assert late.files == 2
    assert set(file_states(stack, identities).values()) == {FileState.CLAIMED}


def test_the_end_of_day_flush_claims_whatever_is_pending(small_batches):
    stack = small_batches
    identities = register_files(stack, 6)
    assert [r.files for r in plan(stack, owner="end_of_day/run-1")] == [4, 2]
    assert set(file_states(stack, identities).values()) == {FileState.CLAIMED}
