"""Part 1 of the capacity benchmark: every step of the pipeline once over the moto server, its usage counted.

Each step runs with its real code (the steps, the hooks, the trigger, the Glue job
on local Spark) and every request is counted by the botocore hooks the day report
uses (``hooks.TASK_RECORDER``); DynamoDB units are computed from item sizes
(``usage/capacity.py``), since moto reports constants. Airflow's configuration
and the ``aws_default`` connection must be in the environment before this module
is used (the benchmark sets them).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import quote_plus

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId
from ndjson_pipeline.ledger import wakes
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.schema import table_schema
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.usage import Usage
from ndjson_pipeline.usage.capacity import TableShape, item_size
from tools.local_stack import GLUE_SCRIPT, bootstrap_resources, client
from tools.sample_data import ndjson_body


@dataclass
class Measured:
    """Usage per execution of each step (and per file of the steps that scale with files)."""

    per_step: dict[str, Usage] = field(default_factory=dict)
    # Steps that scale with a manifest's files: usage per file, on top of ``per_step`` (then per manifest).
    per_file: dict[str, Usage] = field(default_factory=dict)
    pending_item_bytes: float = 0.0  # index bytes a sensor's query reads per pending file
    notes: list[str] = field(default_factory=list)

    def split(self, step: str, sizes: list[tuple[int, Usage]]) -> None:
        """A step measured on manifests of two sizes, as a line: a part per manifest and a part per file."""
        ordered = sorted(sizes, key=lambda size: size[0])
        (small, at_small), (large, at_large) = ordered[0], ordered[-1]
        if small == large:
            raise ValueError(f"{step} was measured on one manifest size only ({small} files)")

        def line(pick) -> tuple[float, float]:
            slope = max(0.0, (pick(at_large) - pick(at_small)) / (large - small))
            return max(0.0, pick(at_small) - slope * small), slope

        per_manifest, per_file = Usage(), Usage()
        for op in {*at_small.requests, *at_large.requests}:
            per_manifest.requests[op], per_file.requests[op] = line(lambda u, op=op: u.requests[op])
        per_manifest.write_units, per_file.write_units = line(lambda u: u.write_units)
        per_manifest.read_units, per_file.read_units = line(lambda u: u.read_units)
        self.per_step[step], self.per_file[step] = per_manifest, per_file


# ---------------------------------------------------------------------- part 1: measured over moto


def _event(bucket: str, key: str, etag: str, size: int, sequencer: int) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": iso(utcnow()),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": f"{sequencer:016X}"},
        },
    }
    return json.dumps({"Records": [record]})


def measure(endpoint: str, files: int, settings: PipelineSettings) -> Measured:
    """Run every step once over moto with counted clients; return what each execution used."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    from ndjson_pipeline.local_glue import run_glue_script_locally
    from ndjson_pipeline.steps import converting, planning, reporting, sweeping
    from ndjson_pipeline.steps.finalising import finalise_manifest
    from ndjson_pipeline.steps.intake import drain_queue
    from ndjson_pipeline.steps.reconcile import reconcile_day
    from ndjson_pipeline_airflow.hooks import TASK_RECORDER
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.monitoring import publish_metrics
    from ndjson_pipeline_airflow.runs import GlueRuns
    from ndjson_pipeline_airflow.triggers import PendingWorkTrigger
    from ndjson_pipeline_airflow.usage import record_conversion

    measured = Measured()
    names = settings.names
    bootstrap_resources(endpoint, names)
    day = utcnow().date().isoformat()
    raw_s3 = client("s3", endpoint)
    TASK_RECORDER.computed_capacity = True

    def take(step: str, executions: int = 1) -> Usage:
        usage = TASK_RECORDER.take()
        scaled = Usage(
            requests=Counter({k: v / executions for k, v in usage.requests.items()}),
            read_units=usage.read_units / executions,
            write_units=usage.write_units / executions,
        )
        measured.per_step[step] = scaled
        print(
            f"  {step:<22} x{executions:<4} {dict(usage.requests)} WRU {usage.write_units:g} RRU {usage.read_units:g}"
        )
        return scaled

    # The day's files, and one notification each as S3 sends it.
    keys = [f"{settings.landing_prefix}{day.replace('-', '/')}/f{i:05d}.ndjson" for i in range(files)]
    bodies = {key: ndjson_body(7, seed=i, prefix=f"f{i}")[0] for i, key in enumerate(keys)}
    sqs = TASK_RECORDER.attach(SqsHook().conn)
    queue_url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    raw_sqs = client("sqs", endpoint)
    with ThreadPoolExecutor(4) as pool:
        etags = dict(
            zip(
                keys,
                pool.map(
                    lambda k: raw_s3.put_object(Bucket=names.landing_bucket, Key=k, Body=bodies[k])["ETag"].strip('"'),
                    keys,
                ),
                strict=True,
            )
        )
    time.sleep(1.5)
    raw_sqs.purge_queue(QueueUrl=queue_url)  # moto's own notifications carry no sequencer
    time.sleep(1)
    for start in range(0, files, 10):
        raw_sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": _event(names.landing_bucket, k, etags[k], len(bodies[k]), start + n + 1)}
                for n, k in enumerate(keys[start : start + 10])
            ],
        )
    TASK_RECORDER.take()
    print(f"measured over moto at {endpoint}, {files} files of ~{len(bodies[keys[0]])} bytes, day {day}:")

    ledger = LedgerHook().get_ledger(settings)
    storage = StorageHook().get_storage()
    glue = GlueRuns(settings, settings.layout.lake_root)  # no claim expires while the benchmark runs
    sqs.get_queue_url(QueueName=names.queue)
    take("intake.task")
    report = drain_queue(sqs, queue_url, ledger, settings)
    receives = math.ceil(files / 10)
    measured.notes.append(
        f"intake drained {report.messages} messages in {receives} receives of 10 + 1 empty, registered in groups of "
        "up to 90 files (one per transaction); a group's writes cost in proportion to its files, so a file's share "
        "hardly depends on the group's size (at 100K/day a one-minute intake run holds about 70)"
    )
    usage = TASK_RECORDER.take()
    per_receive = Counter(
        {op: usage.requests[op] / receives for op in ("dynamodb.TransactWriteItems", "sqs.DeleteMessageBatch")}
    )
    per_receive["sqs.ReceiveMessage"] = 1
    measured.per_step["intake.receive"] = Usage(requests=per_receive)
    measured.per_step["intake.empty_receive"] = Usage(requests=Counter({"sqs.ReceiveMessage": 1}))
    measured.per_step["file.register"] = Usage(write_units=usage.write_units / files)
    print(
        f"  intake                 {dict(usage.requests)} WRU {usage.write_units:g} "
        f"({usage.write_units / files:g}/file)"
    )

    days = ledger.open_days()  # what the ingest sweep reads
    sweeping.sweep_expired_claims(ledger, storage, settings, days, runs=glue, catalog=None)
    for d in days:
        ledger.pending_summary(d, enough_files=1, enough_bytes=1)
    publish_metrics(settings, {"OldestPendingAgeSeconds": 0.0})
    take("sweep.task")

    trigger = PendingWorkTrigger(
        work_index=ledger.work_index.as_dict(),
        dag_run="bench/sensor",
        enough_files=10**9,
        enough_bytes=10**15,
        max_wait_seconds=10**9,
        deadline=iso(utcnow() - timedelta(seconds=1)),
    )
    event = asyncio.run(anext(aiter(trigger.run()))).payload
    poll = Usage.from_dict(event["usage"])
    measured.per_step["sensor.poll"] = Usage(requests=poll.requests)
    # What a sensor's query reads per pending file: its group's index entry (as the index projects it), shared.
    raw_dynamodb = client("dynamodb", endpoint)
    schema = table_schema()
    file_item = raw_dynamodb.get_item(
        TableName=names.ledger_table,
        Key=encode_item(schema.file_key(FileId(names.landing_bucket, keys[0], etags[keys[0]]))),
    )["Item"]
    group = raw_dynamodb.get_item(
        TableName=names.ledger_table, Key=encode_item(schema.group_key(file_item["group_id"]["S"]))
    )["Item"]
    shape = TableShape(raw_dynamodb.describe_table(TableName=names.ledger_table)["Table"])
    entry = item_size(shape.projected(group, schema.index_name))
    measured.pending_item_bytes = entry / int(group["file_count"]["N"])
    print(
        f"  sensor.poll            {dict(poll.requests)} (a pending group's index entry is {entry} bytes "
        f"for {group['file_count']['N']} files)"
    )

    # A ready day's wake: taken by one trigger (the others' refused writes cost the same), released by its planner.
    dynamodb = LedgerHook().conn  # counted, as every hook client
    dynamodb.update_item(**wakes.take_request(ledger.work_index, day, "bench/sensor", utcnow()))
    take("wake.take")
    wakes.release(dynamodb, ledger.work_index, day, "bench/sensor", utcnow())
    take("wake.release")

    # One manifest at a time, each claimed by its own plan call, so each step is measured on two manifest sizes.
    refs = []
    claims: list[tuple[int, Usage]] = []
    while planned := planning.plan_manifests(
        ledger, storage, settings, [day], owner=f"bench/plan-{len(refs)}", max_manifests=1
    ):
        refs += planned
        claims.append((planned[0].files, take(f"claim of {planned[0].files}")))
        claims[-1][1].requests["dynamodb.Query"] -= 1  # the task's re-adoption scan, one query per day: plan.task
    take("plan (nothing left)")
    measured.per_step["plan.task"] = Usage(requests=Counter({"dynamodb.Query": 1}))
    measured.split("claim", claims)

    starts = []
    for ref in refs:  # what ManifestGlueJobOperator.execute does, on the AWS path
        converting.convert(ledger, storage, settings, ref, glue)
        starts.append((ref.files, take(f"conversion.start of {ref.files}")))
    measured.split("conversion.start", starts)

    log_dir = tempfile.mkdtemp(prefix="bench-capacity-")
    started = time.monotonic()
    jobs = []
    for ref in refs:
        run_glue_script_locally(
            str(GLUE_SCRIPT),
            settings.job_arguments(ref),
            s3_endpoint=endpoint,
            log_path=os.path.join(log_dir, f"{ref.manifest_id}.log"),
        )
        job = Usage()
        for uri in storage.list(settings.layout.usage_prefix(day)):
            if "/job-" in uri and ref.manifest_id in uri:
                key = uri.split("/", 3)[3]
                job.add(
                    Usage.from_dict(json.loads(raw_s3.get_object(Bucket=names.lake_bucket, Key=key)["Body"].read()))
                )
        jobs.append((ref.files, Usage(requests=job.requests)))
        print(f"  glue.job of {ref.files:<9} {dict(job.requests)}")
    TASK_RECORDER.take()
    print(f"  (the Glue job on local Spark: {time.monotonic() - started:.0f}s)")
    measured.split("glue.job", jobs)

    finalised = []
    for ref in refs:
        finalise_manifest(ledger, storage, settings, ref, runs=glue, catalog=None)
        record_conversion(settings, ref)
        finalised.append((ref.files, take(f"finalise of {ref.files}")))
    measured.split("finalise.task", finalised)

    today = date.fromisoformat(day)
    reconcile_day(storage.s3, ledger, settings, names.landing_bucket, day, today=today)
    sweeping.sweep_expired_claims(ledger, storage, settings, [day], runs=glue, catalog=None)
    planning.plan_manifests(ledger, storage, settings, [day], owner="bench/eod")
    report = reporting.day_report(ledger, storage, settings, day)
    eod = take("end_of_day", files)
    measured.per_step["end_of_day"] = eod
    measured.notes.append(f"the day report: complete={report['complete']}, {report['usage']['records']} usage records")
    return measured
