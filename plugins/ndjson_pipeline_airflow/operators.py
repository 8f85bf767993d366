"""The conversion step: one run per manifest (Glue's, or the same script on local Spark), never two at once.

DAG files import this module, so it imports nothing at module level but
Airflow's authoring interface: the provider's hooks and trigger, boto3 and the
pipeline's core are imported when a task runs (the DAG processor parses the
DAG files on every loop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from ndjson_pipeline.resources import conversion_slots
from ndjson_pipeline_airflow import AWS_CONN_ID

if TYPE_CHECKING:
    from ndjson_pipeline.settings import PipelineSettings
    from ndjson_pipeline.steps.converting import Conversion, ConversionRuns

log = logging.getLogger(__name__)  # not the operator's ``self.log``: the pipeline's log settings apply to this one

# A reprocess's conversions take the end-of-day DAG's share of Glue's concurrent runs: both are occasional, and
# Glue queues what exceeds it (the DAG file sets it on the mapped rebuild: the scheduler reads it from there).
REBUILD_SLOTS = conversion_slots("end_of_day")
# What the job, its arguments and its waiting come from: the pipeline settings, read at run time.
_FROM_SETTINGS = ("job_name", "script_location", "script_args", "waiter_delay", "waiter_max_attempts")


class ManifestGlueJobOperator(BaseOperator):
    """Converts one manifest with the Glue job, never with two runs at once.

    ``execute`` runs :func:`~ndjson_pipeline.steps.converting.convert` (the whole
    protocol: redo chain, decision from recorded state, lease, run attachment,
    giving up a run found too late) and maps its outcome to Airflow: skipped,
    done, or deferred to the provider's ``GlueJobCompleteTrigger`` for the run
    converting the manifest. The runs come from :func:`~ndjson_pipeline_airflow.runs.conversion_runs`:
    Glue's, through the provider's public hook (``initialize_job``), or with the
    ``glue_runner`` setting "local" the same script on local Spark.

    Every try and every clear asks the manifest's recorded state which run to wait
    for, so a retry waits for the run an earlier try started and a clear never
    converts twice. It is not the provider's ``GlueJobOperator``: that one's
    ``durable`` execution (apache-airflow-providers-amazon 9.35.0 and later, on by
    default on Airflow 3.3) resumes the run id kept in the task state store for the
    DAG run, task and map index before anything else is asked, and that run may
    convert another manifest (a clear can map the index to another one) or one
    compensated since. Subclassing it would also make every DAG file import boto3
    when it is parsed.

    The job name, its arguments and the waiter come from the pipeline settings at
    run time (``settings.names.glue_job``, ``settings.job_arguments``,
    ``glue_poll_seconds``/``glue_max_wait_seconds``); passing them here is an error.

    :param manifest: a manifest reference (``ManifestRef.as_dict()``) from the batching task.
    :param purpose: why the run runs (a ``RunPurpose`` value: "ingest" or "end_of_day"), which decides its Glue
        execution class (``PipelineSettings.execution_class``).
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the AWS region (the connection's when None).
    :param verify: whether and how to verify TLS certificates (botocore's ``verify``).
    :param botocore_config: options of the botocore clients (botocore's ``Config`` as a dict).
    :param deferrable: wait for a Glue run in the triggerer (no worker slot held), or in the task.
    :param verbose: print the Glue run's logs into the task log while waiting.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name", "verify", "botocore_config", "manifest")

    def __init__(
        self,
        *,
        manifest: dict[str, Any],
        purpose: str = "ingest",
        aws_conn_id: str | None = AWS_CONN_ID,
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        deferrable: bool = True,
        verbose: bool = False,
        **kwargs: Any,
    ) -> None:
        given = sorted(set(_FROM_SETTINGS) & set(kwargs))
        if given:
            raise ValueError(f"ManifestGlueJobOperator takes {given} from the pipeline settings, not as arguments")
        super().__init__(**kwargs)
        self.manifest = manifest
        self.purpose = purpose
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.deferrable = deferrable
        self.verbose = verbose

    @property
    def _connection(self) -> dict[str, Any]:
        """How every hook of this task reaches AWS: the operator's connection, region and client options."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def _runs(self, settings: PipelineSettings) -> ConversionRuns:
        from ndjson_pipeline.settings import RunPurpose
        from ndjson_pipeline_airflow.runs import conversion_runs

        return conversion_runs(settings, purpose=RunPurpose(self.purpose), **self._connection)

    def execute(self, context: Any) -> str | None:
        from ndjson_pipeline_airflow.usage import task_usage

        with task_usage(self.manifest["day"]):
            return self._convert(context)

    def _convert(self, context: Any) -> str | None:
        from ndjson_pipeline.manifest import ManifestRef
        from ndjson_pipeline.steps import converting
        from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
        from ndjson_pipeline_airflow.hooks.storage import StorageHook
        from ndjson_pipeline_airflow.settings_loader import load_settings

        settings = load_settings()
        context["manifest_id"] = self.manifest["manifest_id"]  # labels the mapped task in the UI
        ledger = LedgerHook(**self._connection).get_ledger(settings)
        storage = StorageHook(**self._connection).get_storage()
        ref = ManifestRef.from_dict(self.manifest)
        return self._apply(context, settings, converting.convert(ledger, storage, settings, ref, self._runs(settings)))

    def _apply(self, context: Any, settings: PipelineSettings, conversion: Conversion) -> str | None:
        """Map what the conversion did to the task: skipped, done, or waiting (deferred) for its run."""
        from airflow.providers.amazon.aws.triggers.glue import GlueJobCompleteTrigger

        from ndjson_pipeline.steps.converting import Outcome
        from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook

        log.info(
            "%s",
            conversion.reason,
            extra={
                "manifest_id": conversion.manifest_id,
                "outcome": str(conversion.outcome),
                "run_id": conversion.run_id,
            },
        )
        if conversion.outcome is Outcome.SKIPPED:
            raise AirflowSkipException(conversion.reason)
        if conversion.outcome is Outcome.DONE or conversion.run_id is None:
            return conversion.run_id
        log.info(
            "waiting for Glue run %s of job %s (manifest %s)",
            conversion.run_id,
            settings.names.glue_job,
            conversion.manifest_id,
            extra={"manifest_id": conversion.manifest_id, "run_id": conversion.run_id},
        )
        if not self.deferrable:
            glue = ManifestGlueJobHook(job_name=settings.names.glue_job, **self._connection)
            glue.job_completion(settings.names.glue_job, conversion.run_id, self.verbose)
            return conversion.run_id
        self.defer(
            trigger=GlueJobCompleteTrigger(
                job_name=settings.names.glue_job,
                run_id=conversion.run_id,
                verbose=self.verbose,
                waiter_delay=settings.glue_poll_seconds,
                waiter_max_attempts=max(1, settings.glue_max_wait_seconds // settings.glue_poll_seconds),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
        )
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        manifest_id = self.manifest["manifest_id"]
        context["manifest_id"] = manifest_id  # the label is rendered after resuming, too
        validated = validate_execute_complete_event(event)
        if validated.get("status") != "success" or not validated.get("run_id"):
            raise AirflowException(f"Glue run of manifest {manifest_id} did not succeed: {validated}")
        run_id: str = validated["run_id"]
        return run_id

    def on_kill(self) -> None:
        """Ask for the manifest's run to stop (the finaliser and the sweeper make sure it ends)."""
        from ndjson_pipeline.manifest import ManifestRef
        from ndjson_pipeline.steps import converting
        from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
        from ndjson_pipeline_airflow.settings_loader import load_settings

        settings = load_settings()
        ledger = LedgerHook(**self._connection).get_ledger(settings)
        converting.request_stop(ledger, ManifestRef.from_dict(self.manifest), self._runs(settings))


class RebuildGlueJobOperator(ManifestGlueJobOperator):
    """Converts one manifest again for a reprocess (or compacts one), into the run's layout, one run at a time.

    Runs :func:`~ndjson_pipeline.steps.converting.rebuild`: the manifest is
    SUCCEEDED and stays so (no claim, lease or redo); its result in the rebuild
    layout means done; a run of the same rebuild still active (its runs are the
    rebuild layout's, keyed by manifest id and ``--lake_root``) is waited for;
    otherwise one run starts.

    Its runs' purpose is the reference's (``RebuildRef.purpose``), whatever ``purpose`` says.

    :param manifest: a rebuild reference (``RebuildRef.as_dict()``) from the reprocess DAG's planning task; its
        ``kind`` says whether the run rebuilds (``--run_kind rebuild``) or compacts (``--run_kind compact``).
    """

    def _runs(self, settings: PipelineSettings) -> ConversionRuns:
        from ndjson_pipeline.steps.reprocessing import RebuildRef
        from ndjson_pipeline_airflow.runs import conversion_runs

        rebuild = RebuildRef.from_dict(self.manifest)
        return conversion_runs(settings, rebuild.work_layout(settings.layout), rebuild.purpose, **self._connection)

    def _convert(self, context: Any) -> str | None:
        from ndjson_pipeline.steps import converting
        from ndjson_pipeline.steps.reprocessing import RebuildRef
        from ndjson_pipeline_airflow.hooks.storage import StorageHook
        from ndjson_pipeline_airflow.settings_loader import load_settings

        settings = load_settings()
        context["manifest_id"] = self.manifest["manifest_id"]
        storage = StorageHook(**self._connection).get_storage()
        ref = RebuildRef.from_dict(self.manifest)
        return self._apply(context, settings, converting.rebuild(storage, settings, ref, self._runs(settings)))

    def on_kill(self) -> None:
        from ndjson_pipeline_airflow.settings_loader import load_settings

        self._runs(load_settings()).request_stop(self.manifest["manifest_id"])
