"""Steps of the pipeline that no end-to-end scenario reaches, run as the role that runs them in production."""

from __future__ import annotations

from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.outputs import discard_output
from ndjson_pipeline.storage import Storage
from tools import iam_report

DAY = "2026-11-24"
MANIFEST = "20261124-0123456789abcdef0123"


def test_compensation_as_the_mwaa_role_removes_what_a_failed_run_published(stack):
    layout = stack.settings.layout
    published = [layout.part_uri(DAY, MANIFEST, 0, "snappy"), layout.quarantined_lines_uri(DAY, MANIFEST, 0)]
    for uri in published:
        stack.job_storage.write_bytes(uri, b"partial output")
    log_uri = layout.publish_log_uri(DAY, MANIFEST)
    PublishLog(frozenset(published)).write(stack.job_storage, log_uri)
    before = iam_report.last_denial(stack.endpoint)

    removed = discard_output(stack.storage, stack.settings, ManifestRef(MANIFEST, DAY, files=1, bytes=1))

    refused = iam_report.denials(stack.endpoint, since=before)
    assert not refused, "\n".join(d["message"] for d in refused)
    assert removed == len(published)
    owner = Storage(s3_client=stack.s3)
    for uri in [*published, log_uri]:
        assert owner.read_bytes_if_exists(uri) is None, f"{uri} remains"
