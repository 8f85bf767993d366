"""The conversion step: one Glue run per manifest, or the same script on local Spark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.sdk.exceptions import AirflowSkipException

from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.resources import default_names, glue_job_spec
from ndjson_pipeline.steps.finalising import read_result
from ndjson_pipeline_airflow.hooks import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
from ndjson_pipeline_airflow.hooks.storage import StorageHook
from ndjson_pipeline_airflow.settings_loader import load_settings


class ManifestGlueJobOperator(GlueJobOperator):
    """Converts one manifest with the Glue job, guarding against double runs.

    Before starting anything it checks, keyed by manifest id (never by map
    index or try number): the manifest must still be claimed (a compensated or
    finished manifest is skipped); a result already written means the work is
    done; a run of this manifest still active is awaited instead of starting a
    second one. With the ``glue_runner`` setting "local" the same script runs
    on local Spark with the same arguments.

    :param manifest: a manifest reference (``ManifestRef.as_dict()``) from the batching task.
    """

    template_fields: Sequence[str] = (*GlueJobOperator.template_fields, "manifest")

    def __init__(self, *, manifest: dict[str, Any], aws_conn_id: str | None = AWS_CONN_ID, **kwargs: Any) -> None:
        spec = glue_job_spec()
        kwargs.setdefault("job_name", default_names().glue_job)
        kwargs.setdefault("concurrent_run_limit", int(spec["max_concurrent_runs"]))
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.manifest = manifest

    def execute(self, context: Any) -> str | None:
        settings = load_settings()
        ref = ManifestRef.from_dict(self.manifest)
        context["manifest_id"] = ref.manifest_id  # labels the mapped task in the UI
        ledger = LedgerHook(aws_conn_id=self.aws_conn_id).get_ledger(settings)
        record = ledger.get_manifest(ref.manifest_id)
        if record is None or not record.is_open:
            state = record.state if record else "missing"
            raise AirflowSkipException(f"manifest {ref.manifest_id} is {state}: nothing to convert")
        arguments = settings.job_arguments(ref)
        storage = StorageHook(aws_conn_id=self.aws_conn_id)
        if read_result(storage.get_storage(), settings, ref) is not None:
            self.log.info(
                "manifest %s already has its result %s; not converting again", ref.manifest_id, arguments.result_uri
            )
            return None
        ledger.extend_lease(ref.manifest_id, settings.lease_seconds)
        if settings.glue_runner == "local":
            from ndjson_pipeline.local_glue import run_glue_script_locally  # only local runs need Spark tooling

            self.log.info("converting manifest %s on local Spark: %s", ref.manifest_id, settings.script_uri)
            run_glue_script_locally(
                settings.script_uri,
                arguments,
                s3_endpoint=storage.endpoint_url,
                timeout_seconds=settings.glue_max_wait_seconds,
            )
            return "local"
        self.job_name = settings.names.glue_job
        self.script_args = arguments.to_glue_args()
        if settings.glue_extra_py_files_uri:
            self.script_args["--extra-py-files"] = settings.glue_extra_py_files_uri
        self.waiter_delay = settings.glue_poll_seconds
        self.waiter_max_attempts = max(1, settings.glue_max_wait_seconds // settings.glue_poll_seconds)
        self.stop_job_run_on_kill = True
        active = ManifestGlueJobHook(job_name=settings.names.glue_job, aws_conn_id=self.aws_conn_id).active_run_of(
            ref.manifest_id
        )
        if active:
            self.log.info("manifest %s: Glue run %s is already active; waiting for it", ref.manifest_id, active)
            self._job_run_id = active
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        context["manifest_id"] = self.manifest["manifest_id"]  # the label is rendered after resuming, too
        return super().execute_complete(context, event)
