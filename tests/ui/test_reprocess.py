"""Reprocessing a closed day from the trigger form: its manifests rebuilt (one mapped task each), the day swapped in.

The same code and raw files rebuild the same rows, so the day must close
exactly again; the ledger, the lake and the catalog are checked afterwards.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import FILES_PER_DAY, assert_day_closed_exactly, day_manifest_ids, days_ago
from tests.ui.pages import open_mapped_instances, trigger_with_params, wait_for_run_state
from tools.local_stack import client

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(1200)]

DAG_ID = "ndjson_reprocess"
RUN_TIMEOUT_S = 600


def test_reprocess_from_the_trigger_form_rebuilds_and_swaps_the_day(ui, page, screenshots):
    sample = ui.land(days_ago(1), files=FILES_PER_DAY, seed=41)  # a day no other browser test lands or closes
    close = trigger_with_params(page, ui, "ndjson_end_of_day", day=sample.day)
    wait_for_run_state(page, ui, "ndjson_end_of_day", close, "Success", RUN_TIMEOUT_S)
    before = assert_day_closed_exactly(ui, sample)
    manifests = day_manifest_ids(ui, sample.day)
    assert len(manifests) >= 2, "the grid should show more than one rebuild"

    run_id = trigger_with_params(page, ui, DAG_ID, day=sample.day, switches={"dry_run": False})
    wait_for_run_state(page, ui, DAG_ID, run_id, "Success", RUN_TIMEOUT_S)
    rows = open_mapped_instances(page, ui, DAG_ID, run_id, "rebuild", len(manifests), in_group=False)
    for manifest_id in manifests:  # each rebuild is labelled by the manifest it converts again
        expect(rows.filter(has_text=re.compile(re.escape(manifest_id)))).to_have_count(1)
    page.screenshot(path=screenshots / "reprocess-rebuilds.png")

    after = assert_day_closed_exactly(ui, sample)
    assert (after["rows_out"], after["rows_quarantined"]) == (before["rows_out"], before["rows_quarantined"])
    assert day_manifest_ids(ui, sample.day) == manifests, "the same manifests, rebuilt in place"
    (record,) = [r for r in after["maintenance"] if r["action"] == "reprocess_day"]
    assert (record["requested_by"], record["triggered_by"]) == (f"{DAG_ID}/{run_id}", ui.username)
    assert (record["manifests"], record["rows_out_before"], record["rows_out_after"]) == (
        len(manifests),
        before["rows_out"],
        before["rows_out"],
    )
    partition = client("glue", ui.endpoint).get_partition(
        DatabaseName=ui.settings.names.catalog_database, TableName="events", PartitionValues=[sample.day]
    )["Partition"]
    assert partition["StorageDescriptor"]["Location"] == f"{ui.settings.layout.partition_uri(sample.day)}/"
    leftovers = ui.s3().list_objects_v2(Bucket=ui.settings.names.lake_bucket, Prefix="_work/events/rebuilds/")
    assert leftovers.get("KeyCount", 0) == 0, "the rebuild layout is removed"
