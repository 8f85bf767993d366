"""The main job on the embedded local stack: sample day -> SQS -> ledger -> claimed manifests.

Starts a moto server, creates the pipeline's resources, uploads a generated
sample day, drains the notifications into the ledger, reconciles the day's
listing and claims batches, printing progress and a summary.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
from collections import Counter

from ndjson_pipeline.intake import day_prefix, drain_queue, reconcile_day
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from tools.local_stack import bootstrap_resources, client, moto_server

DAY = "2026-11-24"


def sample_day(settings: PipelineSettings, files: int = 200) -> dict[str, bytes]:
    """A few hundred small NDJSON files, with an empty file, a gzip file and a bad suffix."""
    rng = random.Random(7)
    prefix = day_prefix(DAY, settings)
    objects = {}
    for i in range(files):
        lines = [json.dumps({"event_id": f"{i}-{n}", "value": rng.randint(0, 999)}) for n in range(rng.randint(5, 50))]
        objects[f"{prefix}batch-{i:04d}.ndjson"] = ("\n".join(lines) + "\n").encode()
    objects[f"{prefix}empty.ndjson"] = b""
    objects[f"{prefix}compressed.ndjson.gz"] = gzip.compress(b'{"event_id": "gz-1", "value": 1}\n')
    objects[f"{prefix}notes.txt"] = b"not data\n"
    return objects


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = PipelineSettings(intake_wait_seconds=1)
    names = settings.names
    with moto_server() as endpoint:
        print(f"local AWS (moto) at {endpoint}")
        bootstrap_resources(endpoint, names)
        s3, sqs, dynamodb = client("s3", endpoint), client("sqs", endpoint), client("dynamodb", endpoint)
        ledger = Ledger(dynamodb, names.ledger_table, terminal_ttl_days=settings.terminal_ttl_days)
        objects = sample_day(settings)
        for n, (key, body) in enumerate(objects.items(), 1):
            s3.put_object(Bucket=names.landing_bucket, Key=key, Body=body)
            if n % 50 == 0:
                print(f"uploaded {n}/{len(objects)} files")
        time.sleep(2)
        queue_url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
        intake = drain_queue(sqs, queue_url, ledger, settings)
        print(f"intake: {json.dumps(intake.as_dict())}")
        reconcile = reconcile_day(s3, ledger, settings, names.landing_bucket, DAY)
        print(f"reconcile: {json.dumps(reconcile.as_dict())}")
        manifests = []
        while manifest := ledger.claim_batch(
            DAY,
            max_files=settings.max_files_per_manifest,
            max_bytes=settings.max_bytes_per_manifest,
            lease_seconds=settings.lease_seconds,
        ):
            manifests.append(manifest)
            print(f"claimed manifest {manifest.manifest_id}: {len(manifest.files)} files")
        states = reconcile_day(s3, ledger, settings, names.landing_bucket, DAY).states
        print("summary:")
        print(f"  files by state: {dict(Counter(states))}")
        print(f"  manifests claimed: {len(manifests)} covering {sum(len(m.files) for m in manifests)} files")


if __name__ == "__main__":
    main()
