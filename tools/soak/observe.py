"""What a soak ended with, read straight from the local AWS as the account owner: not from the day report.

The ledger is scanned whole (file versions and manifests), the queue and DLQ are
counted and read, the lake's dataset, its work prefix (staging) and the
quarantine bucket are listed, every job result is read, every Parquet row's ``event_id`` is loaded
(DuckDB), and the alerts are read from the alert topic's inbox and CloudWatch.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import duckdb

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import FileRecord, ManifestRecord, table_schema
from ndjson_pipeline.ledger.codec import decode_item
from ndjson_pipeline.ledger.records import Group
from ndjson_pipeline.ledger.schema import GROUP_SORT_KEY
from ndjson_pipeline.manifest import JobResult
from tools import iam_report
from tools.soak.stack import SoakStack

MANIFEST_ID = re.compile(r"\d{8}-[0-9a-f]{20}")


@dataclass
class Observed:
    files: dict[str, FileRecord] = field(default_factory=dict)
    manifests: dict[str, ManifestRecord] = field(default_factory=dict)
    results: dict[str, JobResult] = field(default_factory=dict)  # manifest id -> its result object
    parquet: list[str] = field(default_factory=list)  # the dataset's Parquet objects
    other_dataset_objects: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)  # work in progress: objects under _work/<dataset>/
    quarantine_objects: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)  # (event_id, manifest id of its file), duplicates kept
    quarantined_lines: int = 0
    queue: Counter = field(default_factory=Counter)  # visible, in_flight, delayed
    dlq_bodies: list[str] = field(default_factory=list)
    alerted: set[str] = field(default_factory=set)  # identities named by the alert topic's messages
    failed_files_metric: float = 0.0
    refused_calls: list[str] = field(default_factory=list)


def manifest_of(uri: str) -> str | None:
    found = MANIFEST_ID.search(uri.rsplit("/", 2)[-1]) or MANIFEST_ID.search(uri)
    return found.group(0) if found else None


def observe(stack: SoakStack) -> Observed:
    seen = Observed()
    _ledger(stack, seen)
    _lake(stack, seen)
    _queues(stack, seen)
    _alerts(stack, seen)
    seen.refused_calls = [d["message"] for d in iam_report.denials(stack.endpoint) if d["identity"] != "root"]
    return seen


def _ledger(stack: SoakStack, seen: Observed) -> None:
    schema = table_schema()
    paginator = stack.client("dynamodb").get_paginator("scan")
    file_items, groups = [], {}
    for page in paginator.paginate(TableName=stack.names.ledger_table, ConsistentRead=True):
        for raw in page["Items"]:
            item = decode_item(raw)
            sort_key = str(item[schema.sort_key])
            if sort_key.startswith("V#"):
                file_items.append(item)
            elif sort_key == GROUP_SORT_KEY:
                group = Group.from_item(item, schema.ttl_attribute)
                groups[group.group_id] = group
            elif sort_key == "MANIFEST":
                manifest = ManifestRecord.from_item(item, schema.ttl_attribute)
                seen.manifests[manifest.manifest_id] = manifest
    for item in file_items:  # a version's state is its group's
        record = FileRecord.from_items(item, groups.get(str(item.get("group_id"))), schema.ttl_attribute)
        seen.files[record.identity] = record


def _lake(stack: SoakStack, seen: Observed) -> None:
    storage, layout = stack.storage(), stack.settings.layout
    seen.staging = sorted(storage.list(layout.work_uri + "/"))
    for uri in storage.list(layout.dataset_uri + "/"):
        if uri.endswith(".parquet"):
            seen.parquet.append(uri)
        else:
            seen.other_dataset_objects.append(uri)
    results_prefix = f"{layout.lake_root}/_pipeline/results/"
    for uri in storage.list(results_prefix):
        result = JobResult.from_json(storage.read_bytes(uri))
        seen.results[result.manifest_id] = result
    seen.quarantine_objects = sorted(storage.list(f"{layout.quarantine_root}/{layout.dataset}/"))
    for uri in seen.quarantine_objects:
        if uri.rsplit("/", 1)[-1].startswith("lines-"):
            seen.quarantined_lines += sum(1 for line in storage.read_bytes(uri).splitlines() if line.strip())
    with tempfile.TemporaryDirectory(prefix="soak-parquet-") as target:
        manifests = {}
        for n, uri in enumerate(sorted(seen.parquet)):
            path = Path(target) / f"{n:05d}.parquet"
            path.write_bytes(storage.read_bytes(uri))
            manifests[str(path)] = manifest_of(uri) or uri
        if manifests:
            files = ", ".join(f"'{path}'" for path in manifests)
            query = f"SELECT event_id, filename FROM read_parquet([{files}], filename = true)"
            seen.rows = [(event_id, manifests[name]) for event_id, name in duckdb.sql(query).fetchall()]


def _queues(stack: SoakStack, seen: Observed) -> None:
    sqs = stack.client("sqs")
    names = {
        "visible": "ApproximateNumberOfMessages",
        "in_flight": "ApproximateNumberOfMessagesNotVisible",
        "delayed": "ApproximateNumberOfMessagesDelayed",
    }
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=list(names.values()))["Attributes"]
    seen.queue = Counter({name: int(attrs[attr]) for name, attr in names.items()})
    seen.dlq_bodies = _read_all(sqs, stack.dlq_url)


def _read_all(sqs, queue_url: str) -> list[str]:
    """Every message of a queue, each once (they stay hidden for the rest of the soak)."""
    bodies = []
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=3600, WaitTimeSeconds=1
    ).get("Messages", []):
        bodies += [m["Body"] for m in messages]
    return bodies


def _alerts(stack: SoakStack, seen: Observed) -> None:
    for body in _read_all(stack.client("sqs"), stack.alerts_queue_url):
        seen.alerted.update(json.loads(body).get("failed", []))
    stats = stack.client("cloudwatch").get_metric_statistics(
        Namespace=stack.settings.metrics_namespace,
        MetricName="FailedFiles",
        Dimensions=[{"Name": "Dataset", "Value": stack.settings.dataset}],
        StartTime=utcnow() - timedelta(days=1),
        EndTime=utcnow() + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    seen.failed_files_metric = sum(point["Sum"] for point in stats["Datapoints"])
