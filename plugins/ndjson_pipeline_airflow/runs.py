"""The conversion runs behind the core's ``ConversionRuns`` port: Glue's, or the same script on local Spark.

Chosen once, from the ``glue_runner`` setting (``conversion_runs``); everything
else (the conversion operators, their callbacks, finalise, the sweep, usage
recording) talks to the port and never asks which one it has.
"""

from __future__ import annotations

from typing import Any

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import JobResult
from ndjson_pipeline.resources import glue_job_spec
from ndjson_pipeline.settings import PipelineSettings, RunPurpose
from ndjson_pipeline.steps.converting import ConversionRuns
from ndjson_pipeline.usage import Usage
from ndjson_pipeline.usage.glue import ExecutionClass, local_run_usage, runs_usage
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.hooks.storage import StorageHook


class GlueRuns:
    """The conversion job's Glue runs of one lake root (``ManifestGlueJobHook``); they run on after ``start``.

    :param settings: the pipeline settings (job name, extra Python files, poll interval).
    :param lake_root: the lake's, or a reprocess's rebuild layout's.
    :param execution_class: the execution class runs start in (``PipelineSettings.execution_class``).
    :param connection: how the hook reaches AWS (``aws_conn_id``, ``region_name``, ``verify``, ``config``).
    """

    synchronous = False

    def __init__(
        self,
        settings: PipelineSettings,
        lake_root: str,
        execution_class: ExecutionClass = ExecutionClass.STANDARD,
        **connection: Any,
    ) -> None:
        self.settings = settings
        self.execution_class = execution_class
        self.hook = ManifestGlueJobHook(job_name=settings.names.glue_job, lake_root=lake_root, **connection)

    def active_run_of(self, manifest_id: str) -> str | None:
        return self.hook.active_run_of(manifest_id)

    def start(self, arguments: JobArguments) -> str:
        extra_py_files = self.settings.glue_extra_py_files_uri
        extra = {"--extra-py-files": extra_py_files} if extra_py_files else {}
        return self.hook.start_run(arguments, extra, execution_class=self.execution_class)

    def stop(self, manifest_id: str) -> None:
        self.hook.stop_runs_of(manifest_id)

    def request_stop(self, manifest_id: str) -> None:
        self.hook.request_stop(manifest_id)

    def billed(self, manifest_id: str, result: JobResult | None) -> Usage:
        """From the runs themselves (GetJobRuns: execution class, execution time, workers, DPU-seconds)."""
        return runs_usage(self.hook.runs_of(manifest_id), self.settings.glue_poll_seconds)


class LocalRuns:
    """The Glue script on local Spark, with the same arguments, inside the task: a run ends before ``start`` returns.

    None outlives its task, so none is ever found running or needs stopping. Local Spark has no execution
    classes: a run is priced in the class it was asked for, as the Glue job would have billed it.

    :param settings: the pipeline settings (script, time limit).
    :param s3_endpoint: the S3 endpoint the job's boto3 clients use (the local stack's).
    :param execution_class: the execution class its runs are asked for, and priced at.
    """

    synchronous = True

    def __init__(
        self,
        settings: PipelineSettings,
        s3_endpoint: str | None,
        execution_class: ExecutionClass = ExecutionClass.STANDARD,
    ) -> None:
        self.settings = settings
        self.s3_endpoint = s3_endpoint
        self.execution_class = execution_class

    def active_run_of(self, manifest_id: str) -> str | None:
        return None

    def start(self, arguments: JobArguments) -> str:
        from ndjson_pipeline.local_glue import run_glue_script_locally  # only local runs need Spark tooling

        run_glue_script_locally(
            self.settings.script_uri,
            arguments,
            s3_endpoint=self.s3_endpoint,
            timeout_seconds=self.settings.glue_max_wait_seconds,
        )
        return "local"

    def stop(self, manifest_id: str) -> None:
        """Nothing to stop: a local run ended with the task that ran it."""

    def request_stop(self, manifest_id: str) -> None:
        """Nothing to stop: a local run ended with the task that ran it."""

    def billed(self, manifest_id: str, result: JobResult | None) -> Usage:
        """Priced from the job's own timing as the Glue job of resources.json would be billed for it, in the
        execution class the run was asked for."""
        if result is None or result.timings is None:
            return Usage()
        return local_run_usage(result.timings.get("total_s", 0), glue_job_spec(), self.execution_class)


def conversion_runs(
    settings: PipelineSettings,
    layout: LakeLayout | None = None,
    purpose: RunPurpose = RunPurpose.INGEST,
    **connection: Any,
) -> ConversionRuns:
    """The runs of ``layout`` (the lake's by default) as the ``glue_runner`` setting says: Glue, or local Spark;
    started in the execution class ``purpose`` takes (``PipelineSettings.execution_class``)."""
    execution_class = settings.execution_class(purpose)
    if settings.glue_runner == "local":
        return LocalRuns(settings, StorageHook(**connection).endpoint_url, execution_class)
    return GlueRuns(settings, (layout or settings.layout).lake_root, execution_class, **connection)
