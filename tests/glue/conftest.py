"""The Glue job tests' marker, and a factory for a manifest of local files (their Spark session: tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.manifest import Manifest

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "glue_scripts" / "schemas" / "events.json"
LANDING_BUCKET = "landing"
DAY = "2026-11-24"
GLUE_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Mark the job's tests ``glue_job``: `make test` runs those that are not end to end in each Glue environment
    (test-glue-envs), the end-to-end ones in .venv's run, which leaves the others out."""
    for item in items:
        if GLUE_TESTS in item.path.parents:
            item.add_marker(pytest.mark.glue_job)


@dataclass
class LocalJob:
    """A manifest of local landing files and the job arguments that convert it, all under one directory.

    ``args`` are the job's arguments as Glue passes them (names without ``--``);
    the lake and quarantine roots are local directories.
    """

    root: Path
    manifest: Manifest
    args: dict[str, str]

    @property
    def bucket_root(self) -> str:
        return str(self.root / "buckets")

    @property
    def arguments(self) -> JobArguments:
        return JobArguments.from_glue_args(self.args)

    @property
    def lake_dir(self) -> Path:
        return Path(self.arguments.layout.dataset_uri)

    @property
    def quarantine_dir(self) -> Path:
        layout = self.arguments.layout
        return Path(layout.quarantine_root) / layout.dataset

    @property
    def result_path(self) -> Path:
        return Path(self.arguments.result_uri)

    @property
    def publish_log_path(self) -> Path:
        return Path(self.arguments.layout.publish_log_uri(self.manifest.day, self.manifest.manifest_id))


def make_local_job(root: Path, bodies: dict[str, bytes], day: str = DAY, **arg_overrides: str) -> LocalJob:
    """Write ``bodies`` (key -> bytes) as landing objects and a manifest of them; return the job's arguments."""
    files = []
    for key, body in bodies.items():
        path = root / "buckets" / LANDING_BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        files.append(FileVersion(bucket=LANDING_BUCKET, key=key, etag=etag, size=len(body)))
    manifest = Manifest.for_files(day, files)
    args = {
        "manifest_id": manifest.manifest_id,
        "day": day,
        "lake_root": str(root / "lake"),
        "quarantine_root": str(root / "quarantine"),
        "dataset": "events",
        "schema_uri": str(SCHEMA_PATH),
        **arg_overrides,
    }
    job = LocalJob(root=root, manifest=manifest, args=args)
    # Where the job looks for it: under the manifest id it is given.
    manifest_path = Path(job.arguments.manifest_uri)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(manifest.to_json())
    return job


def read_result(job: LocalJob) -> dict:
    return json.loads(job.result_path.read_text())
