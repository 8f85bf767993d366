"""Operating ``ndjson_end_of_day`` from the Airflow UI in Chromium: close a day, backfill days, read the grid.

Each test checks what the pipeline wrote (ledger, day report, Parquet), not
only what the page shows.
"""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import quote

import pytest

from tests.ui.conftest import (
    FILES_PER_DAY,
    assert_day_closed_exactly,
    day_manifest_ids,
    day_parquet_snapshot,
    days_ago,
    logged_in_page,
    save_failure,
)
from tests.ui.pages import (
    clear_task_instance,
    open_mapped_instances,
    start_backfill,
    trigger_with_params,
    wait_for_backfill_completed,
    wait_for_run_state,
    wait_for_task_state,
)

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(900)]

DAG_ID = "ndjson_end_of_day"
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def triggered_day(ui, browser):
    """A day landed, then closed by a run triggered through the form (its ``day`` param filled in the form)."""
    sample = ui.land(days_ago(3), files=FILES_PER_DAY)
    with logged_in_page(browser, ui) as page:
        try:
            run_id = trigger_with_params(page, ui, DAG_ID, day=sample.day)
            wait_for_run_state(page, ui, DAG_ID, run_id, "Success", RUN_TIMEOUT_S)
        except Exception:
            save_failure(page, ui, "triggered_day")
            raise
    return sample, run_id


def test_trigger_form_closes_the_chosen_day(ui, triggered_day):
    sample, run_id = triggered_day
    run = ui.api_get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id)}")
    assert (run["state"], run["run_type"], run["conf"]) == ("success", "manual", {"day": sample.day})
    report = assert_day_closed_exactly(ui, sample)
    # The batches, the gzip file, the key with '#' and '?' in it and the overwritten key convert; the empty and the
    # .txt file are rejected.
    assert report["files_by_state"] == {"DONE": FILES_PER_DAY + 3, "QUARANTINED": 2}


def test_grid_labels_each_conversion_with_its_manifest_id(ui, triggered_day, page, screenshots):
    sample, run_id = triggered_day
    manifests = day_manifest_ids(ui, sample.day)
    assert len(manifests) >= 2, manifests
    rows = open_mapped_instances(page, ui, DAG_ID, run_id, "convert_manifest.convert", count=len(manifests))
    labels = {row.get_by_role("cell").nth(1).inner_text() for row in rows.all()}
    assert labels == manifests
    page.screenshot(path=screenshots / "grid-mapped-conversions.png")


def test_clearing_a_finished_conversion_converts_nothing_twice(ui, triggered_day, page):
    sample, run_id = triggered_day
    before = day_parquet_snapshot(ui, sample.day)
    assert before
    clear_task_instance(page, ui, DAG_ID, run_id, "convert_manifest.convert", map_index=0)
    # The cleared conversion finds its manifest finished and skips; finalise and the report run again.
    manifest_id = wait_for_task_state(page, ui, DAG_ID, run_id, "convert_manifest.convert", 0, "Skipped", RUN_TIMEOUT_S)
    assert manifest_id in day_manifest_ids(ui, sample.day)
    wait_for_run_state(page, ui, DAG_ID, run_id, "Success", RUN_TIMEOUT_S)
    assert day_parquet_snapshot(ui, sample.day) == before
    assert_day_closed_exactly(ui, sample)


def test_backfill_dialog_closes_each_day_once(ui, page, screenshots):
    # Runs of "30 0 * * *" at 00:30 close the day before: this range holds two, closing 6 and 5 days ago.
    first, second = days_ago(6), days_ago(5)
    samples = [ui.land(day, files=1, seed=11) for day in (first, second)]  # one manifest a day
    start, end = f"{days_ago(5)}T00:00", f"{days_ago(4)}T01:00"
    start_backfill(
        page, ui, DAG_ID, start, end, max_active_runs=2, runs=2, screenshot=screenshots / "backfill-dialog.png"
    )
    wait_for_backfill_completed(page, ui, DAG_ID, start, RUN_TIMEOUT_S)

    backfill_runs = ui.api_get(f"/api/v2/dags/{DAG_ID}/dagRuns", run_type="backfill")["dag_runs"]
    closed = sorted(date.fromisoformat(r["logical_date"][:10]) - timedelta(days=1) for r in backfill_runs)
    assert [d.isoformat() for d in closed] == [first, second], backfill_runs
    assert {r["state"] for r in backfill_runs} == {"success"}, backfill_runs
    for sample in samples:
        assert_day_closed_exactly(ui, sample)
