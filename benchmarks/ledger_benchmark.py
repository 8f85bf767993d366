"""Ledger and intake costs against the local stack (moto, and DynamoDB Local for the ledger).

Prints:
- AWS requests per registered file while draining S3 notifications (target <= 0.5);
- AWS requests per claimed file while batching (target <= 0.05);
- peak Python memory growth while finding pending work with 1,000 vs 50,000
  pending files (target <= 50 MB), measured with tracemalloc in this process.

Requests are counted by a botocore ``before-send`` hook on the clients the code
under test uses, so retries count too; set-up and checks use other clients.
Run: ``make bench-ledger``.

The ledger's table is served by DynamoDB Local (tools/dynamodb_local.py), behind
the emulator's IAM layer; neither changes the requests counted here nor this
process's memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.ledger import Ledger, table_schema
from ndjson_pipeline.ledger.groups import new_group
from ndjson_pipeline.ledger.registration import file_item
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.reconcile import reconcile_day
from tools.local_stack import bootstrap_resources, client, moto_server

DAY = "2026-11-24"
MiB = 1024 * 1024
PAGE = 1000  # iter_pending page size; moto reads the whole table for every query, so fewer pages run faster


def server_rss_mb() -> int:
    """Resident memory of the moto server (this process's children), from ps."""
    out = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "rss="], capture_output=True, text=True, check=True)
    return sum(int(kib) for kib in out.stdout.split()) // 1024


def progress(message: str, started: float) -> None:
    print(f"  {message} ({time.monotonic() - started:.0f}s; moto server {server_rss_mb()} MB)", flush=True)


class RequestCounter:
    def __init__(self, *clients) -> None:
        self.by_operation: Counter[str] = Counter()
        for c in clients:
            c.meta.events.register("before-send", self._count)

    def _count(self, event_name: str, **_kwargs) -> None:
        self.by_operation[event_name.rsplit(".", 1)[-1]] += 1  # before-send.<service>.<Operation>

    def take(self) -> tuple[int, dict[str, int]]:
        total, ops = sum(self.by_operation.values()), dict(self.by_operation)
        self.by_operation.clear()
        return total, ops


def _settings(prefix: str) -> PipelineSettings:
    return PipelineSettings(name_prefix=prefix, intake_wait_seconds=1)


def measure_requests(endpoint: str, files: int) -> dict:
    settings = _settings("bench-requests")
    names = settings.names
    bootstrap_resources(endpoint, names)
    s3, sqs, dynamodb = client("s3", endpoint), client("sqs", endpoint), client("dynamodb", endpoint)
    queue_url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    keys = [f"incoming/{DAY.replace('-', '/')}/f{i:06d}.ndjson" for i in range(files)]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:  # moto sends each object-created notification within PutObject
        list(pool.map(lambda key: s3.put_object(Bucket=names.landing_bucket, Key=key, Body=b'{"a": 1}\n'), keys))
    progress(f"uploaded {files} files", started)

    counted_sqs, counted_dynamodb = client("sqs", endpoint), client("dynamodb", endpoint)
    counter = RequestCounter(counted_sqs, counted_dynamodb)
    ledger = Ledger.for_settings(counted_dynamodb, settings)
    reports = []  # one drain per intake run; a run stops at its time budget, the next one goes on
    while not reports or reports[-1].stopped_because not in ("queue empty", "queue drained"):
        reports.append(report := drain_queue(counted_sqs, queue_url, ledger, settings))
        progress(f"drain {len(reports)}: {report.registered} registered, stopped: {report.stopped_because}", started)
    register_requests, register_ops = counter.take()
    registered = sum(r.registered for r in reports)

    attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    left = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=attributes)["Attributes"]
    ledger_view = Ledger.for_settings(dynamodb, settings)
    check = reconcile_day(s3, ledger_view, settings, names.landing_bucket, DAY, today=date.fromisoformat(DAY))

    claimed = claims = 0
    while manifest := ledger.claim_batch(
        DAY,
        max_files=settings.max_files_per_manifest,
        max_bytes=settings.max_bytes_per_manifest,
        lease_seconds=3600,
    ):
        claimed += len(manifest.files)
        claims += 1
    claim_requests, claim_ops = counter.take()
    progress(f"claimed {claimed} files", started)
    return {
        "drains": len(reports),
        "messages": sum(r.messages for r in reports),
        "registered": registered,
        "left_in_queue": sum(int(left[a]) for a in attributes),
        "reconcile": check,
        "requests_per_registered_file": register_requests / max(1, registered),
        "register_requests_by_operation": register_ops,
        "claims": claims,
        "claimed": claimed,
        "requests_per_claimed_file": claim_requests / max(1, claimed),
        "claim_requests_by_operation": claim_ops,
    }


def _bulk_load_pending(dynamodb, ledger: Ledger, settings: PipelineSettings, count: int) -> None:
    """The items intake would leave (groups of 24 files), written with BatchWriteItem (25 per request), two threads."""
    now, bucket, event_time = datetime.now(UTC), settings.names.landing_bucket, f"{DAY}T00:00:00+00:00"

    table = LedgerTable(dynamodb, ledger.table_name, table_schema(), settings.terminal_ttl_days)

    def write(start: int) -> None:
        regs = []
        for i in range(start, min(count, start + 24)):
            key = f"incoming/{DAY.replace('-', '/')}/{i:07d}.ndjson"
            regs.append(registration_for(bucket, key, 3_500_000, f"e{i}", event_time, settings))
        group = new_group(DAY, [reg.file for reg in regs], now)
        batch = [{"PutRequest": {"Item": file_item(table, reg, now, group.group_id)}} for reg in regs]
        batch.append({"PutRequest": {"Item": group.item(table.schema)}})
        request = {ledger.table_name: batch}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        for done, _ in enumerate(pool.map(write, range(0, count, 24)), 1):
            if done * 24 % 9_600 == 0 or done * 24 >= count:
                progress(f"loaded {min(count, done * 24):>6} pending files", started)


def measure_memory(endpoint: str, pending: int) -> dict:
    settings = _settings(f"bench-mem-{pending}")
    bootstrap_resources(endpoint, settings.names)
    dynamodb = client("dynamodb", endpoint)
    ledger = Ledger(dynamodb, settings.names.ledger_table)
    _bulk_load_pending(dynamodb, ledger, settings, pending)
    batching = settings.batching

    started = time.monotonic()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    summary = ledger.pending_summary(DAY, enough_files=batching.files, enough_bytes=batching.bytes)
    manifest = ledger.claim_batch(DAY, max_files=99, max_bytes=settings.max_bytes_per_manifest, lease_seconds=3600)
    streamed = sum(1 for _ in ledger.iter_pending(DAY, page_size=PAGE))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert manifest is not None
    assert streamed == pending - len(manifest.files), (streamed, pending, len(manifest.files))
    dynamodb.delete_table(TableName=ledger.table_name)  # frees the server for the next case
    return {
        "pending": pending,
        "summary_files": summary.files,
        "claimed": len(manifest.files),
        "streamed": streamed,
        "seconds": time.monotonic() - started,
        "peak_growth_mb": (peak - base) / MiB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files to upload, register and claim")
    parser.add_argument("--large", type=int, default=50_000, help="pending files in the large memory case")
    args = parser.parse_args()
    started = time.monotonic()
    with moto_server() as endpoint:
        costs = measure_requests(endpoint, args.files)
        check = costs["reconcile"]
        print(
            f"intake: {costs['drains']} drains read {costs['messages']} messages; {costs['left_in_queue']} left in "
            f"the queue; reconcile of the day: {check.seen} objects, {check.already_known} already in the ledger, "
            f"{check.registered} missing"
        )
        print(
            f"registered {costs['registered']} of {args.files} files: "
            f"{costs['requests_per_registered_file']:.3f} requests/file (target <= 0.5) "
            f"{costs['register_requests_by_operation']}"
        )
        print(
            f"claimed {costs['claimed']} files in {costs['claims']} manifests: "
            f"{costs['requests_per_claimed_file']:.3f} requests/file (target <= 0.05) "
            f"{costs['claim_requests_by_operation']}",
            flush=True,
        )
        cases = [measure_memory(endpoint, n) for n in (1_000, args.large)]
        for case in cases:
            print(
                f"finding pending work with {case['pending']:>6} pending files: peak memory growth "
                f"{case['peak_growth_mb']:.2f} MB (target <= 50 MB; summary counted {case['summary_files']}, "
                f"claimed {case['claimed']}, streamed {case['streamed']}; {case['seconds']:.0f}s)"
            )
        print(
            f"memory growth from 1,000 to {args.large:,} pending: "
            f"{cases[1]['peak_growth_mb'] - cases[0]['peak_growth_mb']:+.2f} MB; moto server {server_rss_mb()} MB"
        )
        shards = table_schema().pending_shards
        print(
            f"  the peak is two query pages of <= {PAGE} items (the last one is still referenced while the next is "
            f"parsed): with 1,000 pending each of the {shards} shards holds ~{1_000 // shards} items, so pages are "
            f"small; from {2 * PAGE * shards:,} pending on, shards hold two full pages and the peak stops growing"
        )
    print(f"benchmark took {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
