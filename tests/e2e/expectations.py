"""What every end-to-end scenario must end with, shared by the dag.test() and the real-scheduler runs."""

from __future__ import annotations

from typing import Any

from ndjson_pipeline.steps.reporting import day_report
from tests.e2e.conftest import parquet_event_ids, quarantined_line_records
from tools.sample_day import SampleDay


def assert_day_converted_exactly(stack: Any, sample: SampleDay, *, failed_ok: bool = False) -> dict[str, Any]:
    report = day_report(stack.ledger, stack.storage, stack.settings, sample.day)
    assert report["not_terminal"] == [], report
    assert report["unreconciled"] == [], report
    if not failed_ok:
        assert "FAILED" not in report["files_by_state"], report
    ids = parquet_event_ids(stack)
    assert len(ids) == len(set(ids)), "duplicate rows in the output"
    assert set(ids) == sample.expected_rows
    assert len(quarantined_line_records(stack)) == sample.expected_bad_lines
    assert report["rows_out"] == len(ids)
    return report
