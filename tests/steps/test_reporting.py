"""The day report over the moto server: counts, rows and completeness from the listing and the ledger.

The conversion job's side is played by writing the objects the job writes (a
result, a publish log, output objects); the job itself is tested in tests/glue
and end to end in tests/e2e.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ndjson_pipeline.steps.reconcile import reconcile_day
from ndjson_pipeline.steps.reporting import day_report
from ndjson_pipeline.usage import Usage, write_usage
from tests.factories import DAY, TODAY, finalise, plan, publish_result
from tools.run_local import print_cost


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
    finalise(stack, ref)
    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)
    assert report["complete"] is True
    assert report["files_by_state"] == {"DONE": 4}
    assert (report["rows_in"], report["rows_out"], report["rows_quarantined"]) == (16, 12, 4)
    assert report["latency_seconds_p50"] is not None
    assert report["latency_seconds_p50"] >= 0
    stored = json.loads(stack.storage.read_bytes(stack.settings.layout.report_uri(DAY)))
    assert stored["files_by_state"] == {"DONE": 4}


def test_day_report_prices_the_usage_recorded_for_the_day(small_batches, capsys):
    stack = small_batches
    layout = stack.settings.layout
    for i in range(2):
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=f"incoming/2026/11/24/c{i}.ndjson", Body=b"{}\n")
    reconcile_day(stack.s3, stack.ledger, stack.settings, stack.names.landing_bucket, DAY, today=TODAY)
    work = Usage(requests=Counter({"sqs.ReceiveMessage": 4}), write_units=10.0, read_units=2.0)
    write_usage(stack.storage, layout, DAY, "ingest.run-1.intake.-1.1", work)
    write_usage(stack.storage, layout, DAY, "glue-m1", Usage(glue_runs=1, glue_dpu_seconds=120.0))
    flex = Usage(glue_runs=1, glue_dpu_seconds=240.0, glue_flex_runs=1, glue_flex_dpu_seconds=240.0)
    write_usage(stack.storage, layout, DAY, "glue-m2", flex)  # the end-of-day flush's run, in FLEX
    write_usage(stack.storage, layout, "2026-11-23", "other-day", Usage(glue_runs=5, glue_dpu_seconds=600.0))

    report = day_report(stack.ledger, stack.storage, stack.settings, DAY)

    usage = report["usage"]
    assert usage["records"] == 3
    assert usage["requests"] == {"s3.PutObject": 3, "sqs.ReceiveMessage": 4}  # each record counts its own write
    assert (usage["glue_runs"], usage["glue_dpu_seconds"]) == (2, 360.0)
    assert (usage["glue_flex_runs"], usage["glue_flex_dpu_seconds"]) == (1, 240.0)
    cost = report["cost"]
    assert cost["files"] == 2
    # Each run at what it was billed: the STANDARD one at $0.44 a DPU-hour, the FLEX one at $0.29.
    assert cost["variable_usd"]["glue"] == pytest.approx(120 / 3600 * 0.44 + 240 / 3600 * 0.29, abs=1e-6)
    assert cost["per_file_usd"] == pytest.approx(cost["variable_total_usd"] / 2, rel=1e-4)
    assert cost["dynamodb_units_per_file"] == {"write": 5.0, "read": 1.0}

    print_cost(report)  # make run's summary of the day
    assert "Glue 2 runs (1 in FLEX), 360 DPU-s billed (3 usage records)" in capsys.readouterr().out
