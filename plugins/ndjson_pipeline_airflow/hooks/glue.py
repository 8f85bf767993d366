"""The conversion job's Glue runs, found by the manifest they convert."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.glue import GlueJobHook

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.usage.glue import ExecutionClass
from ndjson_pipeline_airflow.hooks import RecordsRequests

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient

# The module's logger, not the hook's structlog ``self.log``: the pipeline's log settings apply to it (``logs``).
log = logging.getLogger(__name__)

MANIFEST_ARGUMENT = "--manifest_id"
LAKE_ROOT_ARGUMENT = "--lake_root"
ACTIVE_STATES = frozenset({"STARTING", "RUNNING", "WAITING", "STOPPING"})


class ManifestGlueJobHook(RecordsRequests, GlueJobHook):
    """Finds, starts and stops the conversion job's runs of one manifest, keyed by its ``--manifest_id`` argument.

    Keyed by content, never by task, try or map index: whichever task instance
    started a run, a retry or a clear of any of them finds it.

    :param job_name: the conversion job (``settings.names.glue_job``); it must exist (Terraform creates it).
    :param lake_root: only runs writing to this ``--lake_root``: the lake's, or a reprocess's rebuild layout
        (a reprocess converts a manifest again under the same id); any when None.
    :param max_run_pages: pages of ``GetJobRuns`` (200 runs each, newest first) searched for a manifest's runs.

    Additional arguments (such as ``aws_conn_id``) are passed down to ``GlueJobHook``.
    """

    def __init__(self, *, job_name: str, lake_root: str | None = None, max_run_pages: int = 5, **kwargs: Any) -> None:
        super().__init__(job_name=job_name, **kwargs)
        self.lake_root = lake_root
        self.max_run_pages = max_run_pages

    @property
    def _glue(self) -> GlueClient:
        """The hook's boto3 client, typed (the provider's hooks leave it untyped)."""
        client: GlueClient = self.conn
        return client

    @property
    def conversion_job(self) -> str:
        if not self.job_name:
            raise ValueError("ManifestGlueJobHook needs a job_name")
        return str(self.job_name)

    def runs_of(self, manifest_id: str) -> list[dict[str, Any]]:
        """Recent runs that carry ``--manifest_id <manifest_id>`` (and the hook's ``--lake_root``), newest first.

        .. seealso::
            - :external+boto3:py:meth:`Glue.Client.get_job_runs`
        """
        runs: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(self.max_run_pages):
            request: dict[str, Any] = {"JobName": self.conversion_job, "MaxResults": 200}
            if token:
                request["NextToken"] = token
            page = self._glue.get_job_runs(**request)
            runs += [dict(r) for r in page.get("JobRuns", []) if self._converts(r.get("Arguments") or {}, manifest_id)]
            token = page.get("NextToken")
            if not token:
                break
        return runs

    def _converts(self, arguments: dict[str, str], manifest_id: str) -> bool:
        root = arguments.get(LAKE_ROOT_ARGUMENT)
        return arguments.get(MANIFEST_ARGUMENT) == manifest_id and self.lake_root in (None, root)

    def active_run_of(self, manifest_id: str) -> str | None:
        """The id of a run of the manifest that has not ended, or None."""
        return next((r["Id"] for r in self.runs_of(manifest_id) if r.get("JobRunState") in ACTIVE_STATES), None)

    def is_active(self, manifest_id: str) -> bool:
        return self.active_run_of(manifest_id) is not None

    def start_run(
        self,
        arguments: JobArguments,
        extra_arguments: dict[str, str] | None = None,
        *,
        execution_class: ExecutionClass = ExecutionClass.STANDARD,
    ) -> str:
        """Start one run converting ``arguments.manifest_id`` in ``execution_class``; return its run id.

        .. seealso::
            - :meth:`GlueJobHook.initialize_job`
        """
        if not self.has_job(self.conversion_job):
            # initialize_job would create a job with no script; the real one comes from Terraform.
            raise ValueError(f"Glue job {self.conversion_job} does not exist (infra/modules/glue creates it)")
        script_args = {**arguments.to_glue_args(), **(extra_arguments or {})}
        run_id: str = self.initialize_job(script_args, {"ExecutionClass": str(execution_class)})["JobRunId"]
        log.info(
            "started Glue run %s of job %s for manifest %s (%s)",
            run_id,
            self.conversion_job,
            arguments.manifest_id,
            execution_class,
            extra={
                "manifest_id": arguments.manifest_id,
                "day": arguments.day,
                "run_id": run_id,
                "execution_class": str(execution_class),
            },
        )
        return run_id

    def request_stop(self, manifest_id: str) -> str | None:
        """Ask Glue to stop the manifest's active run, without waiting; the run id asked for, or None.

        .. seealso::
            - :external+boto3:py:meth:`Glue.Client.batch_stop_job_run`
        """
        run_id = self.active_run_of(manifest_id)
        if run_id:
            log.warning(
                "stopping Glue run %s of manifest %s",
                run_id,
                manifest_id,
                extra={"manifest_id": manifest_id, "run_id": run_id},
            )
            self._glue.batch_stop_job_run(JobName=self.conversion_job, JobRunIds=[run_id])
        return run_id

    def stop_runs_of(self, manifest_id: str, timeout_seconds: int = 600, poll_seconds: float = 10) -> None:
        """Stop every active run of the manifest and wait until none is active, so its output is final."""
        deadline = time.monotonic() + timeout_seconds
        while run_id := self.request_stop(manifest_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Glue run {run_id} of manifest {manifest_id} did not stop in {timeout_seconds}s")
            time.sleep(poll_seconds)
