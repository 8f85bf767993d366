"""The maintenance DAG from the trigger form: a dry run, then a requeue of a day's FAILED files, then the day closes.

The FAILED files are set up through the ledger (each claimed and compensated
with one attempt allowed): three failing end-of-day runs would show nothing more.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.steps.maintenance import read_records
from ndjson_pipeline.steps.reconcile import reconcile_day
from tests.ui.conftest import assert_day_closed_exactly, days_ago
from tests.ui.pages import trigger_with_params, wait_for_run_state

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(900)]

DAG_ID = "ndjson_maintenance"
RUN_TIMEOUT_S = 600


def _fail_every_file(ui, day: str) -> list[str]:
    ledger = ui.ledger()
    reconcile_day(ui.s3(), ledger, ui.settings, ui.settings.names.landing_bucket, day)
    failed: list[str] = []
    while manifest := ledger.claim_batch(day, max_files=99, max_bytes=10**12, lease_seconds=600, owner="test/setup"):
        failed += ledger.compensate_manifest(manifest.manifest_id, max_attempts=1, reason="conversion failed (test)")
    return sorted(failed)


def _maintain_output(ui, run_id: str) -> dict:
    value = ui.api_get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}/taskInstances/maintain/xcomEntries/return_value")
    return json.loads(value["value"]) if isinstance(value["value"], str) else value["value"]


def test_requeue_from_the_trigger_form_returns_the_failed_files(ui, page, screenshots):
    sample = ui.land(days_ago(4), files=2, seed=31)  # a day no other browser test lands or closes
    failed = _fail_every_file(ui, sample.day)
    assert failed
    ledger = ui.ledger()

    dry_run = trigger_with_params(page, ui, DAG_ID, day=sample.day)  # dry_run is on by default
    wait_for_run_state(page, ui, DAG_ID, dry_run, "Success", RUN_TIMEOUT_S)
    planned = _maintain_output(ui, dry_run)
    assert (planned["dry_run"], sorted(planned["changed"])) == (True, failed)
    assert set(ledger.get_states(failed).values()) == {FileState.FAILED}
    assert read_records(ui.storage(), ui.settings, sample.day) == []

    run_id = trigger_with_params(page, ui, DAG_ID, day=sample.day, switches={"dry_run": False})
    wait_for_run_state(page, ui, DAG_ID, run_id, "Success", RUN_TIMEOUT_S)
    page.screenshot(path=screenshots / "maintenance-requeue-run.png")
    records = ledger.get_files(failed).values()
    assert {(r.state, r.attempts) for r in records} == {(FileState.PENDING, 0)}
    (record,) = read_records(ui.storage(), ui.settings, sample.day)
    assert (record["action"], record["requested_by"]) == ("requeue_failed", f"{DAG_ID}/{run_id}")
    assert record["triggered_by"] == ui.username
    assert sorted(record["changed"]) == failed

    # The next end-of-day run converts them once; its report lists the requeue.
    close = trigger_with_params(page, ui, "ndjson_end_of_day", day=sample.day)
    wait_for_run_state(page, ui, "ndjson_end_of_day", close, "Success", RUN_TIMEOUT_S)
    report = assert_day_closed_exactly(ui, sample)
    (shown,) = report["maintenance"]
    assert (shown["requested_by"], shown["changed_count"]) == (f"{DAG_ID}/{run_id}", len(failed))
