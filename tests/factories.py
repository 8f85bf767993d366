"""Shared test factories: the test day, S3 notification bodies as AWS sends them, registered files, job results.

Tests build their inputs here instead of importing helpers from each other.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from ndjson_pipeline.dataset_schema import DeclaredSchema, output_fields
from ndjson_pipeline.drift import Drift
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.manifest import FileResult, JobResult, Manifest, ManifestRef, OutputFile
from ndjson_pipeline.steps.finalising import Finalised, finalise_manifest
from ndjson_pipeline.steps.planning import plan_manifests
from tools.s3_events import make_body, make_record

__all__ = ["make_body", "make_record"]  # the notification bodies tests send, from where the soak sends them too

DAY = "2026-11-24"
DAY_PATH = "incoming/2026/11/24/"
EVENTS_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "glue_scripts" / "schemas" / "events.json"
EVENTS_SCHEMA = DeclaredSchema.from_json(EVENTS_SCHEMA_PATH.read_text(), str(EVENTS_SCHEMA_PATH))


def _evolved(schema: DeclaredSchema) -> DeclaredSchema:
    """The next version: ``source`` at the top level and ``user.tier`` inside a struct, both optional."""
    fields = copy.deepcopy(list(schema.fields))
    user = next(f for f in fields if f["name"] == "user")
    user["type"]["fields"].append({"name": "tier", "type": "string", "nullable": True, "metadata": {}})
    fields.append({"name": "source", "type": "string", "nullable": True, "metadata": {}})
    return DeclaredSchema(version=schema.version + 1, fields=tuple(fields))


EVOLVED_SCHEMA = _evolved(EVENTS_SCHEMA)
# The day a test closes DAY on (the end-of-day DAG's usual run), so a fixed DAY never grows too old to close.
TODAY = date(2026, 11, 25)


# ------------------------------------------------------------------ S3 notifications (bodies: tools.s3_events)


def send(stack, *bodies: str) -> None:
    for start in range(0, len(bodies), 10):
        stack.sqs.send_message_batch(
            QueueUrl=stack.queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def queue_depth(stack, url: str | None = None) -> tuple[int, int]:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=url or stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds: a test waits for what it needs, not for a fixed time that is too long on a
    quiet machine and too short on a loaded one."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def wait_for_expired_claims(stack: Any, refs: list[ManifestRef]) -> None:
    """Until the ledger lists the claims of ``refs`` as expired: what the sweeper then finds, without a fixed wait."""
    claimed = {ref.manifest_id for ref in refs}
    days = {ref.day for ref in refs}
    wait_until(
        lambda: claimed <= {m for day in days for m in stack.ledger.expired_manifests(day)},
        f"the claims of {len(claimed)} manifests to expire",
    )


# The shortest lease the settings accept (it must outlast the conversion's wait plus one poll): claims made
# under it expire within seconds, while the DAGs that find them keep the default settings.
SHORT_LEASE = {"lease_seconds": 3, "glue_max_wait_seconds": 1, "glue_poll_seconds": 1}


# ------------------------------------------------------------------ ledger contents


def register_files(
    stack: Any, count: int, *, prefix: str = "f", size: int = 100, day_path: str = DAY_PATH, group_size: int = 1
) -> list[str]:
    """Register ``count`` new pending files of ``DAY`` in the stack's ledger; return their identities.

    ``group_size`` files are registered together (one group), so a claim's limits are met file by file by default.
    """
    regs = [
        registration_for(
            stack.names.landing_bucket,
            f"{day_path}{prefix}{i:05d}.ndjson",
            size,
            f"etag{i}",
            f"{DAY}T01:00:00+00:00",
            stack.settings,
        )
        for i in range(count)
    ]
    registered = 0
    for start in range(0, count, group_size):
        registered += len(stack.ledger.register(regs[start : start + group_size]).registered)
    assert registered == count
    return [r.file.identity for r in regs]


def claim(stack: Any, *, max_files: int = 99, max_bytes: int = 10**12, lease_seconds: int = 600) -> Any:
    """One claim of ``DAY``'s pending files (a Manifest, or None when nothing is pending)."""
    return stack.ledger.claim_batch(DAY, max_files=max_files, max_bytes=max_bytes, lease_seconds=lease_seconds)


def file_result(identity: str, state: FileState, **counts: Any) -> FileResult:
    """What the conversion job reports for one file."""
    return FileResult(identity, FileId.parse(identity).uri, state, **counts)


# ------------------------------------------------------------------ the steps around the job


def plan(stack: Any, owner: str = "ingest/run-1", **kwargs: Any) -> list[ManifestRef]:
    """The planning step over ``DAY``."""
    return plan_manifests(stack.ledger, stack.storage, stack.settings, [DAY], owner=owner, **kwargs)


def file_states(stack: Any, identities: list[str]) -> dict[str, FileState]:
    return stack.ledger.get_states(identities)


def finalise(stack: Any, ref: ManifestRef, *, runs: Any = None, catalog: Any = None) -> Finalised:
    """The finalise step as the tasks call it; no runs and no catalog unless given."""
    return finalise_manifest(
        stack.ledger, stack.storage, stack.settings, ref, runs=runs or RecordedRuns(), catalog=catalog
    )


def publish_result(
    stack: Any,
    ref: ManifestRef,
    *,
    rows_per_file: int = 3,
    quarantined_per_file: int = 1,
    outputs: int = 1,
    layout: LakeLayout | None = None,
    rescued_per_file: int = 0,
    drift: Drift | None = None,
) -> list[str]:
    """What a successful run leaves behind in ``layout`` (the lake's by default): output, publish log, then result.

    ``drift``: the field paths the job found in ``_rescued_data`` (None: a result written before they were counted).
    """
    layout = layout or stack.settings.layout
    manifest = Manifest.from_json(stack.storage.read_bytes(layout.manifest_uri(ref.day, ref.manifest_id)))
    uris = [layout.part_uri(ref.day, ref.manifest_id, n, "snappy") for n in range(outputs)]
    write_publish_log(stack, ref, uris, layout)
    for uri in uris:
        stack.job_storage.write_bytes(uri, b"PAR1")
    files = tuple(
        FileResult(
            f.identity,
            f.uri,
            FileState.DONE,
            None,
            rows_per_file + quarantined_per_file,
            rows_per_file,
            rescued_per_file,
            quarantined_per_file,
        )
        for f in manifest.files
    )
    rows = rows_per_file * len(files)
    result = JobResult(
        ref.manifest_id,
        ref.day,
        files,
        tuple(OutputFile(u, 4, rows if i == 0 else 0) for i, u in enumerate(uris)),
        schema={"type": "struct", "fields": output_fields(EVENTS_SCHEMA.fields, rescue=True, lineage=True)},
        schema_version=EVENTS_SCHEMA.version,
        drift=drift,
    )
    stack.job_storage.write_bytes(layout.result_uri(ref.day, ref.manifest_id), result.to_json().encode())
    return uris


def write_publish_log(stack: Any, ref: ManifestRef, uris: list[str], layout: LakeLayout | None = None) -> None:
    layout = layout or stack.settings.layout
    PublishLog(frozenset(uris)).write(stack.job_storage, layout.publish_log_uri(ref.day, ref.manifest_id))


class RecordedRuns:
    """The ``ConversionRuns`` port where the test plays the job's side: runs are recorded, never executed.

    ``active`` holds the manifests whose run the test says is still going; ``started`` and ``stopped`` record
    what the code under test asked for. ``on_start`` (manifest id -> None) lets a test act when a run starts;
    ``on_stop`` may raise, as a run that will not stop does. ``synchronous`` runs end inside ``start``.
    """

    def __init__(
        self,
        *,
        active: set[str] | None = None,
        synchronous: bool = False,
        on_start: Any = None,
        on_stop: Any = None,
    ) -> None:
        self.active = active if active is not None else set()
        self.synchronous = synchronous
        self.on_start = on_start
        self.on_stop = on_stop
        self.started: list[str] = []
        self.stopped: list[str] = []

    def active_run_of(self, manifest_id: str) -> str | None:
        return f"run-{manifest_id}" if manifest_id in self.active else None

    def start(self, arguments: Any) -> str:
        self.started.append(arguments.manifest_id)
        if self.on_start is not None:
            self.on_start(arguments.manifest_id)
        if not self.synchronous:
            self.active.add(arguments.manifest_id)
        return f"run-{arguments.manifest_id}"

    def stop(self, manifest_id: str) -> None:
        if self.on_stop is not None:
            self.on_stop(manifest_id)
        self.stopped.append(manifest_id)
        self.active.discard(manifest_id)

    def request_stop(self, manifest_id: str) -> None:
        self.stop(manifest_id)

    def billed(self, manifest_id: str, result: Any) -> Any:
        from ndjson_pipeline.usage import Usage

        return Usage(glue_runs=self.started.count(manifest_id))


class RecordingClient:
    """A boto3 client that records the requests of the operations named, and passes every call on."""

    def __init__(self, client: Any, *operations: str) -> None:
        self._client = client
        self.requests: dict[str, list[dict[str, Any]]] = {name: [] for name in operations}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self.requests:
            return method

        def recorded(**request: Any) -> Any:
            self.requests[name].append(request)
            return method(**request)

        return recorded


def mwaa_ledger(stack: Any, *recorded_operations: str) -> tuple[Any, RecordingClient]:
    """A ledger on the stack's table as the MWAA role, whose client records the operations named."""
    from ndjson_pipeline.ledger import Ledger
    from tools.local_stack import client

    recording = RecordingClient(client("dynamodb", stack.endpoint, stack.identities.mwaa), *recorded_operations)
    return Ledger(recording, stack.names.ledger_table), recording
