"""Sweeping over the moto server: expired claims finalised or compensated, active runs given more time.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import time

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from ndjson_pipeline.steps.sweeping import sweep_expired_claims
from tests.conftest import make_stack
from tests.factories import DAY, file_states, no_glue_runs, plan, publish_result, register_files

# The shortest lease the settings accept: it must outlast the conversion's wait plus one poll.
SHORT_LEASE = {"lease_seconds": 3, "glue_max_wait_seconds": 1, "glue_poll_seconds": 1}


def test_sweeper_repairs_claims_whose_finaliser_never_ran(aws_endpoint):
    stack = make_stack(aws_endpoint, max_files_per_manifest=4, **SHORT_LEASE)
    identities = register_files(stack, 8)
    done_ref, lost_ref = plan(stack)
    publish_result(stack, done_ref)  # finished, but its finaliser never ran
    active = set()

    time.sleep(SHORT_LEASE["lease_seconds"] + 0.5)
    repaired = sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack.settings,
        [DAY],
        run_is_active=lambda m: m in active,
        stop_active_runs=no_glue_runs,
        catalog=None,
    )
    assert {r.manifest_id: r.status for r in repaired} == {
        done_ref.manifest_id: ManifestState.SUCCEEDED,
        lost_ref.manifest_id: ManifestState.COMPENSATED,
    }
    states = file_states(stack, identities)
    assert sorted(states.values()) == sorted([FileState.DONE] * 4 + [FileState.PENDING] * 4)
    assert (
        sweep_expired_claims(
            stack.ledger,
            stack.storage,
            stack.settings,
            [DAY],
            run_is_active=lambda m: False,
            stop_active_runs=no_glue_runs,
            catalog=None,
        )
        == []
    )


def test_sweeper_extends_the_lease_of_a_manifest_still_converting(aws_endpoint):
    stack = make_stack(aws_endpoint, **SHORT_LEASE)
    register_files(stack, 3)
    (ref,) = plan(stack)

    time.sleep(SHORT_LEASE["lease_seconds"] + 0.5)
    stack_settings = stack.settings.replace(lease_seconds=600)
    repaired = sweep_expired_claims(
        stack.ledger,
        stack.storage,
        stack_settings,
        [DAY],
        run_is_active=lambda m: True,
        stop_active_runs=no_glue_runs,
        catalog=None,
    )
    assert repaired == []
    assert stack.ledger.get_manifest(ref.manifest_id).state is ManifestState.CLAIMED
    assert stack.ledger.expired_manifests(DAY) == []
