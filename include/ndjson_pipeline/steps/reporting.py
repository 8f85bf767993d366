"""Reporting: one day's completeness and figures, written as the day report."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.dataset_schema import DeclaredSchema
from ndjson_pipeline.drift import drift_section, read_day_drift
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import day_listing_pages
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.ledger.maintenance import is_superseded
from ndjson_pipeline.resources import landing_noncurrent_days
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.maintenance import read_records
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import read_day_usage
from ndjson_pipeline.usage.costs import day_cost


def day_report(ledger: Ledger, storage: Storage, settings: PipelineSettings, day: str) -> dict[str, Any]:
    """Completeness and figures of one day, from the day's S3 listing and the ledger, one page at a time.

    The cost is priced from the day's usage records (every task try and job run
    that worked for the day, up to this report) and the day's landing bytes.
    """
    bucket = settings.names.landing_bucket
    states: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    latencies: list[float] = []
    unreconciled: list[str] = []
    not_terminal: list[str] = []
    failed: list[str] = []
    present_but_superseded: list[str] = []
    for objects in day_listing_pages(storage.s3, bucket, day, settings):
        identities = [str(FileId.from_listing(bucket, obj)) for obj in objects]
        records = ledger.get_files(identities)
        for identity in identities:
            record = records.get(identity)
            if record is None or not record.state.terminal:
                states[record.state if record else "UNKNOWN"] += 1
                not_terminal.append(identity)
                continue
            states[record.state] += 1
            if record.state is FileState.FAILED:
                failed.append(identity)
            if is_superseded(record.state, record.reason):
                present_but_superseded.append(identity)  # listed with this eTag: S3 holds it, its rows are missing
            totals["bytes"] += record.file.size
            totals["rows_in"] += record.rows_in
            totals["rows_out"] += record.rows_out
            totals["rows_rescued"] += record.rows_rescued
            totals["rows_quarantined"] += record.rows_quarantined
            if not record.reconciled:
                unreconciled.append(identity)
            if record.state is FileState.DONE and record.finished_at:
                arrived = datetime.fromisoformat(record.event_time)
                finished = datetime.fromisoformat(record.finished_at)
                latencies.append(max(0.0, (finished - arrived).total_seconds()))
    usage, usage_records = read_day_usage(storage, settings.layout, day)
    day_drift = read_day_drift(storage, settings.layout, day)
    current = None
    if day_drift.drift.paths:  # where the new fields go: the schema the next runs read
        current = DeclaredSchema.from_json(storage.read_bytes(settings.dataset_schema_uri), settings.dataset_schema_uri)
    files = sum(states.values())
    landing_days = settings.landing_retention_days + landing_noncurrent_days()
    report = {
        "day": day,
        "generated_at": utcnow().isoformat(),
        "complete": not not_terminal and not unreconciled and not present_but_superseded,
        "files": files,
        "files_by_state": dict(sorted(states.items())),
        "bytes": totals["bytes"],
        "rows_in": totals["rows_in"],
        "rows_out": totals["rows_out"],
        "rows_rescued": totals["rows_rescued"],
        "rows_quarantined": totals["rows_quarantined"],
        "latency_seconds_p50": _percentile(latencies, 50),
        "latency_seconds_p95": _percentile(latencies, 95),
        "not_terminal": not_terminal[:20],
        "unreconciled": unreconciled[:20],
        "failed": failed[:20],
        "present_but_superseded": present_but_superseded[:20],
        "usage": {**usage.as_dict(), "records": usage_records},
        "cost": day_cost(usage, files=files, landing_bytes=totals["bytes"], landing_days=landing_days),
        # Fields the declared schema does not read, found in _rescued_data, and the next version that reads them.
        "drift": drift_section(
            day_drift, current, totals["rows_out"], totals["rows_rescued"], settings.rescued_rows_alert_percent
        ),
        # Operator actions on the day's files (maintenance and reprocess DAGs), oldest first.
        "maintenance": [_summary(r) for r in read_records(storage, settings, day)],
    }
    uri = settings.layout.report_uri(day)
    storage.write_bytes(uri, json.dumps(report, indent=2, sort_keys=True).encode())
    report["report_uri"] = uri
    return report


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 3)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """An action record as the report shows it: each list or mapping cut to its first 20, with its count."""
    summary = dict(record)
    for name, value in record.items():
        if isinstance(value, list):
            summary[name], summary[f"{name}_count"] = value[:20], len(value)
        elif isinstance(value, dict):
            summary[name], summary[f"{name}_count"] = dict(list(value.items())[:20]), len(value)
    return summary
