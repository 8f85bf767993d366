"""Clearing a failed conversion in the Airflow UI converts the manifest's files again, once.

The conversion is made to fail for good (the local job is refused its
manifest), so finalise compensates and the run fails; the fault is then fixed
and the operator clears the failed ``convert`` from its page. The ledger and
the lake are checked afterwards, not only the page.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import ManifestState
from tests.ui.conftest import assert_day_closed_exactly, day_manifest_ids, days_ago
from tests.ui.pages import clear_task_instance, trigger_with_params, wait_for_run_state, wait_for_task_state
from tools import faults
from tools.faults import FaultRule

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(1200)]

DAG_ID = "ndjson_end_of_day"
CONVERT = "convert_manifest.convert"
RUN_TIMEOUT_S = 600


def test_clearing_a_failed_conversion_converts_its_files_again(ui, page, screenshots):
    sample = ui.land(days_ago(2), files=1, seed=23)  # one manifest
    refused = FaultRule(
        "access_denied", service="s3", operation="GetObject", resource=f"*_pipeline/manifests/dt={sample.day}/*"
    )
    with faults.injected(ui.endpoint, refused):
        run_id = trigger_with_params(page, ui, DAG_ID, day=sample.day)
        wait_for_run_state(page, ui, DAG_ID, run_id, "Failed", RUN_TIMEOUT_S)
    ledger = ui.ledger()
    (failed_id,) = (m for m in ledger_manifests(ui, sample.day))
    failed = ledger.get_manifest(failed_id)
    assert failed.state is ManifestState.COMPENSATED
    assert set(ledger.get_states(ledger.identities_of(failed)).values()) == {FileState.PENDING}
    assert day_manifest_ids(ui, sample.day) == set()  # nothing was published

    clear_task_instance(page, ui, DAG_ID, run_id, CONVERT, map_index=0)
    label = wait_for_task_state(page, ui, DAG_ID, run_id, CONVERT, 0, "Success", RUN_TIMEOUT_S)
    assert label == failed_id  # the task keeps its manifest's label; it converted the redo
    page.screenshot(path=screenshots / "cleared-conversion-succeeded.png")
    wait_for_run_state(page, ui, DAG_ID, run_id, "Success", RUN_TIMEOUT_S)

    run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}"
    redo_id = ledger.successor_of(failed_id)
    assert redo_id is not None
    redo = ledger.get_manifest(redo_id)
    assert (redo.state, ledger.identities_of(redo)) == (ManifestState.SUCCEEDED, ledger.identities_of(failed))
    assert {r.manifest_id for r in ledger.get_files(ledger.identities_of(failed)).values()} == {redo_id}
    assert day_manifest_ids(ui, sample.day) == {redo_id}  # one output per file version
    report = assert_day_closed_exactly(ui, sample)
    # The day report is readable in the UI as the run's one report_day XCom.
    xcoms = ui.api_get(f"{run_path}/taskInstances/report_day/xcomEntries")["xcom_entries"]
    assert [x["key"] for x in xcoms] == ["return_value"]
    shown = ui.api_get(f"{run_path}/taskInstances/report_day/xcomEntries/return_value")["value"]
    shown = json.loads(shown) if isinstance(shown, str) else shown
    assert (shown["day"], shown["complete"], shown["files_by_state"]) == (sample.day, True, report["files_by_state"])


def ledger_manifests(ui, day: str) -> list[str]:
    """Ids of the day's manifest documents the planner wrote."""
    prefix = ui.settings.layout.manifest_uri(day, "").removesuffix(".json")
    return [uri.removeprefix(prefix).removesuffix(".json") for uri in ui.storage().list(prefix)]
