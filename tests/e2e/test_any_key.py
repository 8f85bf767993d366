"""Any S3 key, through the whole path: notification, ledger, manifest, the job's read, lineage, reconcile listing.

S3 keys may hold any UTF-8 character. Each example lands objects under keys
drawn from what S3 allows (``#``, ``?``, ``%``, ``+``, spaces, unicode, ``//``,
a leading ``/``, keys near S3's 1,024-byte limit), delivers their notifications
as moto sends them and as S3 encodes them (space as ``+``, ``/`` kept), then
runs intake, planning, the conversion job's core (its tasks in this process,
reading S3 as the Glue role), finalise and the end-of-day reconcile. Every key
in the landing layout must end DONE with its rows in the lake under its exact
key, every other key QUARANTINED at intake with a reason, and the reconcile
must know every listed version.
"""

from __future__ import annotations

import io
import itertools
import json

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndjson_job import job
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import MAX_KEY_BYTES
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.reconcile import reconcile_day
from ndjson_pipeline.storage import Storage
from tests.factories import DAY, DAY_PATH, TODAY, finalise, make_body, make_record, plan, send
from tests.glue.in_process import tasks_here
from tools.sample_data import ndjson_body

pytestmark = pytest.mark.e2e

EXAMPLES = 30
# Characters URL and path handling get wrong, and the rest of Unicode but surrogates and control characters.
AWKWARD = "#?%+ &=;:@$,'\"!*()[]{}<>|\\^`~/."
KEY_CHARACTER = st.one_of(st.sampled_from(AWKWARD), st.characters(exclude_categories=("Cs", "Cc", "Cn")))
# Each name holds at least one of what breaks URL parsing and percent-decoding, wherever it falls.
NAME = st.tuples(
    st.text(KEY_CHARACTER, max_size=12),
    st.sampled_from(["#", "?", "%", "%2F", "+", " ", "//"]),
    st.text(KEY_CHARACTER, max_size=12),
).map("".join)
LONG_NAME = st.integers(200, 480).map(lambda n: "é" * n)  # two bytes a character: keys near S3's limit


@st.composite
def landing_keys(draw) -> tuple[list[str], list[str]]:
    """Keys of the landing layout (they convert) and keys outside it (a leading ``/``, no day): both awkward."""
    inside = draw(st.lists(st.one_of(NAME, LONG_NAME), min_size=1, max_size=3, unique=True))
    outside = draw(st.lists(NAME, max_size=2, unique=True))
    return inside, outside


_examples = itertools.count()


@pytest.fixture
def glue_role_tasks(stack, monkeypatch):
    """The job's tasks in this process, reading and writing S3 as the Glue job role (as Spark's tasks would)."""
    for name, value in {**stack.identities.glue.env(), "AWS_ENDPOINT_URL": stack.endpoint}.items():
        monkeypatch.setenv(name, value)
    return tasks_here(monkeypatch), Storage(endpoint_url=stack.endpoint)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=landing_keys())
def test_every_key_s3_allows_is_converted_once_under_its_exact_name(stack, glue_role_tasks, keys):
    spark, job_storage = glue_role_tasks
    n = next(_examples)  # keeps each example's objects apart (shrinking runs examples again)
    inside = [k for k in (f"{DAY_PATH}{n}/{name}.ndjson" for name in keys[0]) if _fits(k)]
    outside = [f"/{n}/{name}.ndjson" for name in keys[1]]
    bucket = stack.names.landing_bucket
    bodies = {key: ndjson_body(4, seed=i, prefix=f"x{n}-{i}")[0] + b"{not json\n" for i, key in enumerate(inside)}
    bodies |= {key: b'{"event_id": "outside"}\n' for key in outside}
    records = []
    for key, body in bodies.items():
        etag = stack.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')  # moto notifies, quote_plus
        records.append(make_record(bucket, key, etag=etag, size=len(body)))  # and again as S3 encodes it
    send(stack, make_body(*records))
    identities = {
        key: str(FileId(bucket, key, r["s3"]["object"]["eTag"])) for key, r in zip(bodies, records, strict=True)
    }

    intake = drain_queue(stack.sqs, stack.queue_url, stack.ledger, stack.settings)

    assert intake.registered == len(bodies) - intake.quarantined
    for key in outside:
        record = stack.ledger.get_file(identities[key])
        assert (record.file.key, record.state) == (key, FileState.QUARANTINED)
        assert "outside the landing layout" in record.reason
    refs = plan(stack, owner=f"any-key/{n}")
    for ref in refs:
        job.convert_manifest(spark, stack.settings.job_arguments(ref), job_storage)
        finalise(stack, ref)
    for key in inside:
        record = stack.ledger.get_file(identities[key])
        assert (record.file.key, record.state, record.reason) == (key, FileState.DONE, None), key
        assert (record.rows_in, record.rows_out, record.rows_quarantined) == (5, 4, 1), key
    lineage = _lake_lineage(stack, refs)
    assert sorted(lineage) == sorted(f"s3://{bucket}/{key}" for key in inside for _ in range(4))
    assert _quarantine_lineage(stack, refs) == sorted(f"s3://{bucket}/{key}" for key in inside)
    listed = reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY, today=TODAY)
    assert (listed.registered, listed.present_but_superseded) == (0, [])
    assert listed.states["DONE"] >= len(inside)


def _fits(key: str) -> bool:
    return len(key.encode()) <= MAX_KEY_BYTES


def _lake_lineage(stack, refs) -> list[str]:
    """The ``_source_uri`` of every row the manifests published."""
    uris = []
    for ref in refs:
        result = JobResult.from_json(
            stack.storage.read_bytes(stack.settings.layout.result_uri(ref.day, ref.manifest_id))
        )
        for output in result.output_files:
            table = pq.read_table(io.BytesIO(stack.storage.read_bytes(output.path)), columns=["_source_uri"])
            uris += table.column("_source_uri").to_pylist()
    return uris


def _quarantine_lineage(stack, refs) -> list[str]:
    """The source of every line the manifests quarantined."""
    uris = []
    for ref in refs:
        for uri in stack.storage.list(stack.settings.layout.quarantine_uri(ref.day, ref.manifest_id) + "/"):
            if uri.rsplit("/", 1)[-1].startswith("lines-"):
                uris += [json.loads(line)["uri"] for line in stack.storage.read_bytes(uri).decode().splitlines()]
    return sorted(uris)
