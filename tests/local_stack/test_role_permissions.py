"""Steps of the pipeline that no end-to-end scenario reaches, run as the role that runs them in production."""

from __future__ import annotations

import json

from ndjson_pipeline.manifest import publish_log_uri, result_key
from ndjson_pipeline.pipeline import ManifestRef, discard_output
from tools import iam_report
from tools.local_stack import client

DAY = "2026-11-24"
MANIFEST = "20261124-0123456789abcdef0123"


def test_compensation_as_the_mwaa_role_removes_what_a_failed_run_published(stack):
    lake, quarantine, dataset = stack.names.lake_bucket, stack.names.quarantine_bucket, stack.settings.dataset
    published = [
        (lake, f"{dataset}/dt={DAY}/part-{MANIFEST}-00000.snappy.parquet"),
        (quarantine, f"{dataset}/dt={DAY}/manifest={MANIFEST}/lines-00000.json"),
    ]
    for bucket, key in published:
        stack.s3.put_object(Bucket=bucket, Key=key, Body=b"partial output")
    result_uri = f"s3://{lake}/{result_key(DAY, MANIFEST)}"
    log_key = publish_log_uri(result_uri).split(f"s3://{lake}/", 1)[1]
    uris = [f"s3://{bucket}/{key}" for bucket, key in published]
    stack.s3.put_object(Bucket=lake, Key=log_key, Body=json.dumps({"uris": uris}).encode())
    ref = ManifestRef(MANIFEST, DAY, f"s3://{lake}/m.json", result_uri, files=1, bytes=1)
    before = iam_report.last_denial(stack.endpoint)

    removed = discard_output(client("s3", stack.endpoint, stack.identities.mwaa), stack.settings, ref)

    refused = iam_report.denials(stack.endpoint, since=before)
    assert not refused, "\n".join(d["message"] for d in refused)
    assert removed == len(published)
    for bucket, key in [*published, (lake, log_key)]:
        assert stack.s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0, f"s3://{bucket}/{key} remains"
