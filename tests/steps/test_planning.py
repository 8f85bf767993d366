"""Planning over the moto server: bounded plans, retries that re-adopt, create-only manifests.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

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
