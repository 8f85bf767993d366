"""The day report over the moto server: counts, rows and completeness from the listing and the ledger.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import json

from ndjson_pipeline.steps.finalising import finalise_manifest
from ndjson_pipeline.steps.reconcile import reconcile_day
from ndjson_pipeline.steps.reporting import day_report
from tests.factories import DAY, TODAY, no_glue_runs, plan, publish_result


def test_day_report_counts_and_completeness(small_batches):
    stack = small_batches
    for i in range(4):
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=f"incoming/2026/11/24/f{i}.ndjson", Body=b"{}\n")
    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)
    incomplete = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert incomplete["complete"] is False
    assert incomplete["files_by_state"] == {"PENDING": 4}
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise_manifest(stack.ledger, stack.storage, stack.settings, ref, stop_active_runs=no_glue_runs)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["complete"] is True
    assert report["files_by_state"] == {"DONE": 4}
    assert (report["rows_in"], report["rows_out"], report["rows_quarantined"]) == (16, 12, 4)
    assert report["latency_seconds_p50"] is not None
    assert report["latency_seconds_p50"] >= 0
    stored = json.loads(stack.storage.read_bytes(stack.settings.layout.report_uri(DAY)))
    assert stored["files_by_state"] == {"DONE": 4}
