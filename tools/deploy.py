"""Upload a build (``tools.build_artifacts``) to the assets bucket, which is MWAA's source bucket.

``python -m tools.deploy --name-prefix acme-ndjson-prod [--dist dist] [--dry-run]``

Uploads the DAG files to ``dags/`` (and removes DAG files the build no longer has,
since MWAA syncs that folder as it is), ``plugins/plugins.zip``,
``requirements/requirements.txt`` and the Glue code under content-hashed keys.
An object whose stored sha256 already matches is not uploaded again, so an
unchanged plugins.zip or requirements.txt keeps its S3 version and MWAA does not
need an update. Prints the object versions MWAA needs and the values of the
Airflow Variable ``ndjson_pipeline_settings`` and of the Terraform variables that
point at the new Glue code. ``--dry-run`` prints the plan and makes no AWS call.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from ndjson_pipeline.resources import ResourceNames, default_names
from ndjson_pipeline.settings import PipelineSettings
from tools.build_artifacts import echo

ROOT = Path(__file__).resolve().parents[1]
SHA_METADATA = "sha256"  # stored as x-amz-meta-sha256 on every uploaded object
DAGS_PREFIX = "dags/"
# The zips a Glue run imports, in --extra-py-files order.
GLUE_PY_FILES = ("glue_python", "glue_job_python")
DEFAULT_DATASET = PipelineSettings().dataset


class DeployError(RuntimeError):
    """The build or the target is not what a deploy needs; the message says which."""


@dataclass(frozen=True)
class Plan:
    bucket: str
    uploads: list[dict[str, Any]]
    unchanged: list[dict[str, Any]]
    stale_dags: list[str]


def load_build(dist: Path) -> list[dict[str, Any]]:
    path = dist / "build.json"
    if not path.exists():
        raise DeployError(f"{path} not found: run `python -m tools.build_artifacts --out {dist}` first")
    artifacts = json.loads(path.read_text())["artifacts"]
    for artifact in artifacts:
        if not (dist / artifact["path"]).is_file():
            raise DeployError(f"{dist / artifact['path']} is listed in build.json but missing")
    return artifacts


def settings_for(bucket: str, artifacts: list[dict[str, Any]], dataset: str = DEFAULT_DATASET) -> dict[str, str]:
    """The ``ndjson_pipeline_settings`` keys that point a run at this build's Glue code and ``dataset``'s schema."""
    by_kind = {a["kind"]: a["key"] for a in artifacts}
    schemas = {
        a["key"].rsplit("/", 1)[1].removesuffix(".json"): a["key"] for a in artifacts if a["kind"] == "glue_schema"
    }
    if dataset not in schemas:
        raise DeployError(f"the build has no schema of dataset {dataset!r} (glue_scripts/schemas/): {sorted(schemas)}")
    settings = {
        "glue_script_uri": f"s3://{bucket}/{by_kind['glue_script']}",
        # Glue's --extra-py-files takes a comma-separated list: the contract package, then the job's own.
        "glue_extra_py_files_uri": ",".join(f"s3://{bucket}/{by_kind[kind]}" for kind in GLUE_PY_FILES),
        "schema_uri": f"s3://{bucket}/{schemas[dataset]}",
    }
    if dataset != DEFAULT_DATASET:
        settings["dataset"] = dataset
    return settings


def _stored_sha(s3, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get(SHA_METADATA)


def _dag_keys(s3, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DAGS_PREFIX):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def plan(s3, bucket: str, artifacts: list[dict[str, Any]]) -> Plan:
    uploads, unchanged = [], []
    for artifact in artifacts:
        same = _stored_sha(s3, bucket, artifact["key"]) == artifact["sha256"]
        (unchanged if same else uploads).append(artifact)
    built_dags = {a["key"] for a in artifacts if a["kind"] == "dag"}
    stale = sorted(k for k in _dag_keys(s3, bucket) if k not in built_dags)
    return Plan(bucket=bucket, uploads=uploads, unchanged=unchanged, stale_dags=stale)


def apply(s3, dist: Path, deploy_plan: Plan) -> None:
    for artifact in deploy_plan.uploads:
        s3.put_object(
            Bucket=deploy_plan.bucket,
            Key=artifact["key"],
            Body=(dist / artifact["path"]).read_bytes(),
            Metadata={SHA_METADATA: artifact["sha256"]},
        )
        echo("uploaded s3://%s/%s", deploy_plan.bucket, artifact["key"])
    for key in deploy_plan.stale_dags:
        s3.delete_object(Bucket=deploy_plan.bucket, Key=key)
        echo("removed stale DAG file s3://%s/%s", deploy_plan.bucket, key)


def _version_id(s3, bucket: str, key: str) -> str | None:
    return s3.head_object(Bucket=bucket, Key=key).get("VersionId")


def _report(s3, bucket: str, artifacts: list[dict[str, Any]]) -> None:
    by_kind = {a["kind"]: a["key"] for a in artifacts}
    plugins_version = _version_id(s3, bucket, by_kind["plugins"])
    requirements_version = _version_id(s3, bucket, by_kind["requirements"])
    echo("MWAA object versions (update the environment when they change):")
    echo("  plugins %s version %s", by_kind["plugins"], plugins_version)
    echo("  requirements %s version %s", by_kind["requirements"], requirements_version)
    echo("Terraform variables (infra/envs/prod):")
    echo('  glue_script_key                     = "%s"', by_kind["glue_script"])
    echo('  glue_extra_py_files_key             = "%s"', by_kind["glue_python"])
    echo('  glue_job_py_files_key               = "%s"', by_kind["glue_job_python"])
    echo('  mwaa_plugins_s3_object_version      = "%s"', plugins_version)
    echo('  mwaa_requirements_s3_object_version = "%s"', requirements_version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="build folder (default: dist/)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--name-prefix", help="deployment name prefix; the assets bucket is <prefix>-assets")
    target.add_argument("--bucket", help="assets bucket name, when it does not follow the naming")
    parser.add_argument("--endpoint-url", help="S3 endpoint (a moto server in tests)")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be uploaded; make no AWS call")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"the deployment's dataset ({DEFAULT_DATASET})")
    args = parser.parse_args(argv)

    names = ResourceNames(args.name_prefix) if args.name_prefix else default_names()
    bucket = args.bucket or names.assets_bucket
    try:
        artifacts = load_build(args.dist)
        settings = settings_for(bucket, artifacts, args.dataset)
    except DeployError as exc:
        echo("deploy failed: %s", exc, err=True)
        return 1

    if args.dry_run:
        # No client at all: a dry run cannot touch anything, not even with a read.
        for artifact in artifacts:
            echo("would upload (if changed) %s -> s3://%s/%s", artifact["path"], bucket, artifact["key"])
        echo("would remove DAG files under s3://%s/%s that the build does not contain", bucket, DAGS_PREFIX)
    else:
        s3 = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
        deploy_plan = plan(s3, bucket, artifacts)
        for artifact in deploy_plan.unchanged:
            echo("unchanged s3://%s/%s", bucket, artifact["key"])
        apply(s3, args.dist, deploy_plan)
        _report(s3, bucket, artifacts)

    if args.name_prefix:
        settings["name_prefix"] = args.name_prefix
    echo("Airflow Variable ndjson_pipeline_settings must contain (merge with your other settings):")
    echo("%s", json.dumps(settings, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
